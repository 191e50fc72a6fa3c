"""The HTTP API (aiohttp, versioned under /v1): submit, receipts, queries, status, events.

Part of keiretsu_node/. Handlers translate HTTP to calls on the node and back; errors are JSON
problem details with a stable `code`; every body, batch and wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack
from aiohttp import web

from keiretsu_node import queries
from keiretsu_node.jsonview import block_json, safe
from keiretsu_node.openapi import openapi_document
from ledger.keys import is_address
from ledger.query import parse_cursor
from ledger.store import MAX_HEIGHT

if TYPE_CHECKING:
    from keiretsu_node.node import Node

BODY_READ_TIMEOUT_S = 10
MAX_HISTORY_LIMIT = 1000
SSE_KEEPALIVE_S = 15
SSE_WRITE_TIMEOUT_S = 10
MSGPACK = "application/msgpack"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)


class ApiProblem(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": f"urn:keiretsu:problem:{code}", "title": code.replace("_", " ").lower(),
            "status": status, "code": code, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json", headers=headers)


# Routes that read nothing of the ledger's database (a node's position is held in memory).
LEDGER_FREE_PATHS = frozenset({"/v1/status", "/v1/events", "/v1/openapi.json", "/healthz", "/healthz/ready",
                               "/metrics"})
LEDGER_REPLACING_DETAIL = "this node is replacing its ledger with a snapshot from the cluster; retry"


def ledger_replacing_problem() -> web.Response:
    return problem(503, "NOT_READY", LEDGER_REPLACING_DETAIL, {"Retry-After": "1"})


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app.get(NODE_KEY)
    if node is not None and node.ledger_replacing and request.path not in LEDGER_FREE_PATHS:
        return ledger_replacing_problem()
    try:
        return await handler(request)
    except ApiProblem as exc:
        response = problem(exc.status, exc.code, exc.detail, exc.headers)
        if exc.status == 408:
            response.force_close()  # a client too slow to send its body does not keep the socket
        return response
    except web.HTTPRequestEntityTooLarge as exc:
        return problem(413, "TOO_LARGE", f"request body over the limit: {exc.text}")
    except web.HTTPException as exc:
        if exc.status == 404:
            return problem(404, "NOT_FOUND", f"no route {request.method} {request.path}")
        if exc.status == 405:
            return problem(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.path}")
        raise
    except Exception:
        # A request that began before a snapshot install and read after it closed the store.
        if node is not None and node.ledger_replacing:
            return ledger_replacing_problem()
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return problem(500, "INTERNAL", "the node failed to answer this request; the failure is in its log")


NODE_KEY: web.AppKey[Node] = web.AppKey("node")


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _hex_id(text: str, name: str = "id") -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise ApiProblem(400, "BAD_REQUEST", f"{name} must be hex") from exc
    if len(value) != 32:
        raise ApiProblem(400, "BAD_REQUEST", f"{name} must be 32 bytes of hex")
    return value


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiProblem(400, "BAD_REQUEST", f"query parameter {name} must be an integer") from exc
    if not low <= value <= high:
        raise ApiProblem(400, "BAD_REQUEST", f"query parameter {name} must be in {low}..{high}")
    return value


def _bool_param(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("1", "true", "yes")


async def _read_body(request: web.Request) -> bytes:
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except TimeoutError as exc:
        raise ApiProblem(408, "TIMEOUT", f"request body not received within {BODY_READ_TIMEOUT_S} s") from exc


def _decode_tx_list(request: web.Request, body: bytes, batch: bool) -> list[bytes]:
    """Raw signed transactions from JSON ({"tx": hex} / {"txs": [hex]}) or msgpack."""
    if request.content_type == MSGPACK:
        if not batch:
            return [body]
        try:
            items = msgpack.unpackb(body, raw=False, max_array_len=100_000)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise ApiProblem(400, "MALFORMED", f"body is not a msgpack array of transactions: {exc}") from exc
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise ApiProblem(400, "MALFORMED", "body must be a msgpack array of binary transactions")
        return items
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # nested past the parser's depth
        raise ApiProblem(400, "MALFORMED", "body is not JSON (or send application/msgpack)") from exc
    key = "txs" if batch else "tx"
    if not isinstance(doc, dict) or key not in doc:
        raise ApiProblem(400, "MALFORMED", f'JSON body must be an object with "{key}"')
    values = doc[key] if batch else [doc[key]]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ApiProblem(400, "MALFORMED", f'"{key}" must hold hex strings')
    try:
        return [bytes.fromhex(v) for v in values]
    except ValueError as exc:
        raise ApiProblem(400, "MALFORMED", "a transaction is not valid hex") from exc


# ---------------------------------------------------------------- transactions


async def submit_one(request: web.Request) -> web.Response:
    node = _node(request)
    raws = _decode_tx_list(request, await _read_body(request), batch=False)
    wait = _bool_param(request, "wait")
    timeout_ms = _int_param(request, "timeout_ms", 10_000, 1, node.config.api.max_wait_ms)
    outcome = (await node.submit([raws[0]]))[0]
    if not outcome.accepted:
        if outcome.code == "BUSY":
            raise ApiProblem(503, "BUSY", outcome.detail, {"Retry-After": str(outcome.retry_after_s)})
        raise ApiProblem(400 if outcome.code != "DUPLICATE" else 409, outcome.code, outcome.detail)
    result: dict[str, Any] = {"tx_id": outcome.tx_id_hex, "status": "pending"}
    if wait:
        result = await node.wait_for(outcome.tx_id, timeout_ms / 1000)
        if result["status"] == "pending":
            return web.json_response(result, status=202)
    return web.json_response(result, status=200 if wait else 202)


async def submit_batch(request: web.Request) -> web.Response:
    node = _node(request)
    raws = _decode_tx_list(request, await _read_body(request), batch=True)
    if not raws:
        raise ApiProblem(400, "BAD_REQUEST", "a batch holds at least one transaction")
    if len(raws) > node.config.api.max_batch_txs:
        raise ApiProblem(413, "TOO_LARGE", f"a batch holds at most {node.config.api.max_batch_txs} transactions")
    wait = _bool_param(request, "wait")
    timeout_ms = _int_param(request, "timeout_ms", 10_000, 1, node.config.api.max_wait_ms)
    outcomes = await node.submit(raws)
    results = [o.to_json() for o in outcomes]
    if wait:
        accepted = [o.tx_id for o in outcomes if o.accepted and o.tx_id is not None]
        statuses = await node.wait_for_all(accepted, timeout_ms / 1000)
        for item in results:
            if item["accepted"]:
                item.update(statuses[item["tx_id"]])
    return web.json_response({"results": results})


async def get_tx(request: web.Request) -> web.Response:
    node = _node(request)
    return web.json_response(node.tx_status(_hex_id(request.match_info["tx_id"], "tx_id")))


# ---------------------------------------------------------------- blocks and queries


async def get_block(request: web.Request) -> web.Response:
    node = _node(request)
    which = request.match_info["height"]
    if which == "latest":
        height = node.store.position.height
    else:
        try:
            height = int(which)
        except ValueError as exc:
            raise ApiProblem(400, "BAD_REQUEST", "height must be an integer or 'latest'") from exc
    block = node.store.block(height) if 0 <= height <= MAX_HEIGHT else None
    if block is None:
        raise ApiProblem(404, "NOT_FOUND", f"no block at height {which}")
    return web.json_response(block_json(block, with_txs=not _bool_param(request, "headers_only")))


LINEARIZABLE_TIMEOUT_S = 5


async def _barrier(request: web.Request) -> None:
    """With ?linearizable=true, wait until this node reflects every commit acknowledged before."""
    if _bool_param(request, "linearizable") and not await _node(request).consensus.read_barrier(LINEARIZABLE_TIMEOUT_S):
        raise ApiProblem(503, "NOT_READY", "no leader confirmed a read point; retry", {"Retry-After": "1"})


def _address(request: web.Request) -> str:
    address = request.match_info["address"]
    if not is_address(address):
        raise ApiProblem(400, "BAD_ADDRESS", f"{address!r} is not a valid address (checksum or form)")
    return address


async def get_account(request: web.Request) -> web.Response:
    await _barrier(request)
    node = _node(request)
    return web.json_response(safe(queries.account(node.read_context(), _address(request))))


def _history(request: web.Request, subject: str) -> web.Response:
    node = _node(request)
    limit = _int_param(request, "limit", 100, 1, MAX_HISTORY_LIMIT)
    after = None
    if "after" in request.query:
        try:
            after = parse_cursor(request.query["after"])
        except ValueError as exc:
            raise ApiProblem(400, "BAD_REQUEST", f"after: {exc}") from exc
    items = queries.history(node.store, subject, after, limit)
    return web.json_response(safe(items))


async def get_account_history(request: web.Request) -> web.Response:
    return _history(request, _address(request))


def _isin(request: web.Request) -> str:
    isin = request.match_info["isin"]
    if not (isin.isascii() and isin.isalnum() and 0 < len(isin) <= 32):
        raise ApiProblem(400, "BAD_REQUEST", "not a security identifier")
    return isin


async def get_security(request: web.Request) -> web.Response:
    await _barrier(request)
    node = _node(request)
    found = queries.security(node.read_context(), _isin(request))
    if found is None:
        raise ApiProblem(404, "NOT_FOUND", f"no security {request.match_info['isin']}")
    return web.json_response(safe(found))


async def get_security_holders(request: web.Request) -> web.Response:
    await _barrier(request)
    node = _node(request)
    limit = _int_param(request, "limit", 1000, 1, 100_000)
    return web.json_response(safe(queries.holders(node.read_context(), _isin(request), limit)))


async def get_security_history(request: web.Request) -> web.Response:
    return _history(request, _isin(request))


async def get_participant(request: web.Request) -> web.Response:
    await _barrier(request)
    node = _node(request)
    found = queries.participant(node.read_context(), _address(request))
    if found is None:
        raise ApiProblem(404, "NOT_FOUND", f"{request.match_info['address']} is not a participant")
    return web.json_response(safe(found))


async def contract_query(request: web.Request) -> web.Response:
    await _barrier(request)
    node = _node(request)
    contract, name = request.match_info["contract"], request.match_info["name"]
    try:
        params = {k: v for k, v in request.query.items() if k != "linearizable"}  # the API's, not the query's
        result = queries.contract_query(node.registry, node.read_context(), contract, name, params)
    except queries.QueryError as exc:
        raise ApiProblem(exc.status, exc.code, exc.detail) from exc
    return web.json_response(safe(result))


# ---------------------------------------------------------------- operations


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(_node(request).status())


async def healthz_live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def healthz_ready(request: web.Request) -> web.Response:
    ready, why = _node(request).readiness()
    return web.json_response({"ready": ready, "detail": why}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = _node(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(ROUTES, ledger_free=LEDGER_FREE_PATHS,
                                              max_wait_ms=_node(request).config.api.max_wait_ms))


async def events(request: web.Request) -> web.StreamResponse:
    node = _node(request)
    accounts = frozenset(a for a in request.query.get("accounts", "").split(",") if a)
    bad = [a for a in accounts if not is_address(a)]
    if bad or len(accounts) > 100:
        raise ApiProblem(400, "BAD_ADDRESS", f"accounts must be at most 100 valid addresses: {bad[:3]}")
    sub = node.events.subscribe(accounts)
    if sub is None:
        raise ApiProblem(503, "BUSY", "too many event subscribers", {"Retry-After": "5"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        while True:
            try:
                async with asyncio.timeout(SSE_KEEPALIVE_S):
                    event = await sub.queue.get()
            except TimeoutError:
                if not await _sse_write(request, response, b": keepalive\n\n"):
                    break
                continue
            chunk = f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n".encode()
            if not await _sse_write(request, response, chunk) or event.kind in ("overflow", "closing"):
                break
    except ConnectionError:
        pass  # the subscriber went away; a cancellation (server shutdown) propagates
    finally:
        node.events.release(sub)
    return response


async def _sse_write(request: web.Request, response: web.StreamResponse, chunk: bytes) -> bool:
    """Write to a subscriber; a subscriber that takes none of it in SSE_WRITE_TIMEOUT_S is cut off
    (the connection aborted: its buffered events are not worth keeping a socket for)."""
    try:
        async with asyncio.timeout(SSE_WRITE_TIMEOUT_S):
            await response.write(chunk)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        return False
    return True


ROUTES: list[tuple[str, str, Handler, str]] = [
    ("POST", "/v1/transactions", submit_one, "Submit one signed transaction (JSON {tx: hex} or msgpack bytes)"),
    ("POST", "/v1/transactions/batch", submit_batch, "Submit a batch (JSON {txs: [hex]} or msgpack array)"),
    ("GET", "/v1/transactions/{tx_id}", get_tx, "Status and receipt of a transaction"),
    ("GET", "/v1/blocks/{height}", get_block, "A block by height, or 'latest'"),
    ("GET", "/v1/accounts/{address}", get_account, "Balances (free and locked) of an account"),
    ("GET", "/v1/accounts/{address}/history", get_account_history, "Every transaction touching an account"),
    ("GET", "/v1/securities/{isin}", get_security, "An instrument's details"),
    ("GET", "/v1/securities/{isin}/holders", get_security_holders, "The cap table of a security"),
    ("GET", "/v1/securities/{isin}/history", get_security_history, "Every transaction touching a security"),
    ("GET", "/v1/participants/{address}", get_participant, "A participant's roles and status"),
    ("GET", "/v1/query/{contract}/{name}", contract_query, "A contract's named read-only query"),
    ("GET", "/v1/status", get_status, "This node: role, term, leader, height, peers and lag"),
    ("GET", "/v1/events", events, "Server-Sent Events: blocks, and receipts for ?accounts="),
    ("GET", "/v1/openapi.json", openapi, "This document"),
    ("GET", "/healthz", healthz_live, "Liveness"),
    ("GET", "/healthz/ready", healthz_ready, "Readiness: 200 only when caught up with the cluster"),
    ("GET", "/metrics", metrics, "Prometheus metrics"),
]


def make_app(node: Node) -> web.Application:
    app = web.Application(client_max_size=node.config.api.max_body_bytes, middlewares=[problem_middleware])
    app[NODE_KEY] = node
    for method, path, handler, _summary in ROUTES:
        app.router.add_route(method, path, handler)
    return app

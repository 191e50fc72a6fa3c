"""The SDK and the CLI where an answer is missing, late, busy or not what it says, and the
OpenAPI document's promises about status codes.

A client must never be told "refused" for a submission that may have been accepted (it would
sign a new one and pay twice), must honour the node's Retry-After, and must get ApiError, not a
decoder's exception, whatever a proxy in between answers.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from keiretsu_node.api import LEDGER_FREE_PATHS, ROUTES
from keiretsu_node.client import ApiError, Client, KeyPair, build, call
from keiretsu_node.client import http as client_http
from keiretsu_node.openapi import openapi_document
from tests.test_cli import keiretsu
from tests.test_node_api import admit, get, post_tx, solo_node

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def fake_node() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve one handler on 127.0.0.1 for every path; the URL."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


def _tx() -> object:
    key = KeyPair.generate()
    return build("edges-1", call("cash", "transfer", currency="MXN", to=KeyPair.generate().address, amount=1), [key])


async def test_no_answer_to_a_submission_is_outcome_unknown_not_a_refusal(fake_node) -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    url = await fake_node(silent)
    async with Client(url, timeout_s=0.2) as client:
        with pytest.raises(ApiError) as caught:
            await client.submit(_tx(), wait=True)
    assert caught.value.code == client_http.NO_ANSWER and caught.value.outcome_unknown
    assert caught.value.status == 0


async def test_a_node_nobody_can_connect_to_is_unreachable_and_nothing_was_sent() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with Client(f"http://127.0.0.1:{port}", timeout_s=2) as client:
            with pytest.raises(ApiError) as caught:
                await client.submit(_tx())
    assert caught.value.code == client_http.UNREACHABLE and not caught.value.outcome_unknown


async def test_busy_is_retried_after_the_nodes_retry_after(fake_node, monkeypatch) -> None:
    answers = iter([503, 503, 200])

    async def busy_then_fine(request: web.Request) -> web.Response:
        status = next(answers)
        if status == 503:
            return web.json_response({"code": "BUSY", "detail": "full"}, status=503, headers={"Retry-After": "3"})
        return web.json_response({"tx_id": "00", "status": "pending"}, status=202)

    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    url = await fake_node(busy_then_fine)
    monkeypatch.setattr(client_http.asyncio, "sleep", no_wait)
    async with Client(url) as client:
        assert (await client.submit(_tx()))["status"] == "pending"
    assert waits == [3.0, 3.0]  # the node's 3 s, not the client's own 0.2 s and 0.4 s


@pytest.mark.parametrize("status, body, content_type, unknown", [
    (500, b'{"code": "INTERNAL", "detail": "a defect"}', "application/problem+json", True),  # after admission?
    (502, b"<html>bad gateway</html>", "text/html", True),  # a proxy: the node may have taken it
    (504, b"", "text/plain", True),
    (202, b"<html>", "application/json", True),  # a success we cannot read
    (503, b'{"code": "NOT_READY", "detail": "replacing"}', "application/problem+json", False),  # refused first
    (400, b'{"code": "BAD_SIGNATURE", "detail": "no"}', "application/problem+json", False),
])
async def test_a_submission_is_outcome_unknown_unless_a_node_refused_it(fake_node, status, body, content_type,
                                                                        unknown) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    url = await fake_node(answer)
    async with Client(url) as client:
        with pytest.raises(ApiError) as posted:
            await client.submit(_tx())
        assert posted.value.outcome_unknown is unknown
        with pytest.raises(ApiError) as read:
            await client.block(0)
        assert read.value.outcome_unknown is False  # a read changes nothing


async def test_an_answer_that_does_not_decode_is_an_api_error(fake_node) -> None:
    async def proxy_page(request: web.Request) -> web.Response:
        return web.Response(status=502, body=b"<html>bad gateway</html>", content_type="application/json")

    url = await fake_node(proxy_page)
    async with Client(url) as client:
        with pytest.raises(ApiError) as caught:
            await client.block(0)
    assert caught.value.status == 502 and caught.value.code == "HTTP_502"


def test_the_document_names_every_status_a_route_can_answer() -> None:
    document = openapi_document(ROUTES, ledger_free=LEDGER_FREE_PATHS, max_wait_ms=12_345)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"405", "500"} <= codes, (method, path)
            if path not in LEDGER_FREE_PATHS or path in ("/v1/events", "/healthz/ready"):
                assert "503" in codes, (method, path)  # NOT_READY while a snapshot replaces the ledger, BUSY
            if method == "post":
                assert {"408", "413", "503"} <= codes
                (timeout,) = [p for p in operation["parameters"] if p["name"] == "timeout_ms"]
                assert timeout["schema"]["maximum"] == 12_345


async def test_a_cap_table_of_exactly_the_limit_is_not_truncated(tmp_path) -> None:
    async with solo_node(tmp_path) as node:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            issuer = KeyPair.generate()
            await post_tx(http, node, admit(node, issuer, "issuer").raw, wait="true")
            register = build(node.config.chain_id, call("securities", "register", name="Co", kind="equity",
                                                        authorised_supply=100, prospectus_hash=bytes(32),
                                                        prospectus_uri="u"), [issuer])
            status, body, _ = await post_tx(http, node, register.raw, wait="true")
            isin = body["receipt"]["events"][0]["attrs"]["isin"]
            holders = [KeyPair.generate() for _ in range(2)]
            for holder in holders:
                await post_tx(http, node, admit(node, holder).raw, wait="true")
                issue = build(node.config.chain_id, call("securities", "issue", isin=isin, to=holder.address,
                                                         quantity=1), [issuer])
                await post_tx(http, node, issue.raw, wait="true")
            for limit, truncated in ((1, True), (2, False), (3, False)):
                status, table = await get(http, node, f"/v1/securities/{isin}/holders?limit={limit}")
                assert status == 200 and table["truncated"] is truncated and len(table["holders"]) == min(limit, 2)


@pytest.mark.parametrize("answer, code, message", [
    ({"tx_id": "ab", "status": "dropped", "reason": "EXPIRED", "detail": "expired before block time 5"}, 1,
     "error: dropped: EXPIRED"),
    ({"tx_id": "ab", "status": "pending"}, 3, "error: still pending"),
    ({"tx_id": "ab", "status": "unknown"}, 1, "error: not committed (unknown)"),
    ({"tx_id": "ab", "status": "committed", "receipt": {"result": "valid"}}, 0, ""),
    (None, 1, "error: outcome unknown for tx"),
])
async def test_submit_exits_non_zero_unless_the_transaction_committed(tmp_path, fake_node, answer, code,
                                                                      message) -> None:
    """A script that reads the exit status must not take a drop for a success, and must not be
    told 'refused' when the submission may have been accepted (it would sign a new one)."""
    async def node(request: web.Request) -> web.Response:
        if answer is None:
            request.transport.abort()  # the connection dies with the request: no answer
        return web.json_response(answer, status=200)

    url = await fake_node(node)
    key = tmp_path / "k.key"
    KeyPair.generate().save(key)
    result = await asyncio.to_thread(keiretsu, "submit", "cash", "transfer", "--chain-id", "x", "--api", url,
                                     "--key", str(key), "--arg", "currency=MXN", "--arg", "amount=1", "--arg",
                                     f"to={KeyPair.generate().address}")
    assert result.returncode == code and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_an_argument_python_cannot_read_is_one_error_line(tmp_path) -> None:
    key = tmp_path / "k.key"
    KeyPair.generate().save(key)
    long_int = keiretsu("submit", "cash", "transfer", "--chain-id", "x", "--api", "http://127.0.0.1:9",
                        "--key", str(key), "--arg", "amount=" + "9" * 5000)
    assert long_int.returncode == 1 and long_int.stderr.startswith("error: argument amount")
    assert "Traceback" not in long_int.stderr

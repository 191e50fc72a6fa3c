"""The OpenAPI 3.1 document of the HTTP API, generated from the route table itself.

Part of keiretsu_node/. Built from the same table the server registers, so the document and
the routes cannot drift apart; a test checks it against the running router.
"""

from __future__ import annotations

import re
from typing import Any

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "stable code; see docs/REASON_CODES.md and docs/API.md"},
        "detail": {"type": "string"},
    },
}
HEX = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"}
QUERY_PARAMS: dict[str, list[dict[str, Any]]] = {
    "/v1/transactions": [{"name": "wait", "in": "query", "schema": {"type": "boolean"}}],  # + timeout_ms
    "/v1/transactions/batch": [{"name": "wait", "in": "query", "schema": {"type": "boolean"}}],
    "/v1/blocks/{height}": [{"name": "headers_only", "in": "query", "schema": {"type": "boolean"}}],
    "/v1/accounts/{address}/history": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "after", "in": "query", "schema": {"type": "string"}},
    ],
    "/v1/securities/{isin}/history": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "after", "in": "query", "schema": {"type": "string"}},
    ],
    "/v1/securities/{isin}/holders": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000}},
    ],
    "/v1/events": [{"name": "accounts", "in": "query", "schema": {"type": "string"}}],
}
REQUEST_BODIES = {
    "/v1/transactions": {
        "application/json": {"schema": {"type": "object", "required": ["tx"], "properties": {"tx": HEX}}},
        "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
    },
    "/v1/transactions/batch": {
        "application/json": {
            "schema": {"type": "object", "required": ["txs"],
                       "properties": {"txs": {"type": "array", "items": HEX, "minItems": 1, "maxItems": 1000}}}
        },
        "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
    },
}


LINEARIZABLE_PATHS = ("/v1/accounts/{address}", "/v1/securities/{isin}", "/v1/securities/{isin}/holders",
                      "/v1/participants/{address}", "/v1/query/{contract}/{name}")
LINEARIZABLE = {"name": "linearizable", "in": "query", "schema": {"type": "boolean"},
                "description": "wait for a Raft read index so the answer reflects every acknowledged commit"}


# Routes that answer 503 besides those that read the ledger: readiness, and a full event hub.
ALSO_UNAVAILABLE_PATHS = ("/v1/events", "/healthz/ready")


def _operation(method: str, path: str, summary: str, ledger_free: frozenset[str], max_wait_ms: int) -> dict[str, Any]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)}", path)]
    params.extend(QUERY_PARAMS.get(path, []))
    if path in LINEARIZABLE_PATHS:
        params.append(LINEARIZABLE)
    problem = {"description": "problem details",
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": (method.lower() + path.replace("/", "_").replace("{", "").replace("}", "").replace(".", "_")),
        "parameters": params,
        # 405 for another method on the path; 500 INTERNAL for a failure nobody foresaw (docs/API.md).
        "responses": {"200": {"description": "OK"}, "400": problem, "404": problem, "405": problem, "500": problem},
    }
    if path not in ledger_free or path in ALSO_UNAVAILABLE_PATHS:  # NOT_READY while a snapshot replaces it, ...
        op["responses"]["503"] = problem
    if method == "POST":
        params.append({"name": "timeout_ms", "in": "query",
                       "schema": {"type": "integer", "minimum": 1, "maximum": max_wait_ms}})
        op["requestBody"] = {"required": True, "content": REQUEST_BODIES.get(path, {})}
        op["responses"].update({"202": {"description": "accepted, pending"}, "408": problem, "409": problem,
                                "413": problem, "503": problem})
    return op


def openapi_document(routes: list[tuple[str, str, Any, str]], *, ledger_free: frozenset[str] = frozenset(),
                     max_wait_ms: int = 30_000) -> dict[str, Any]:
    """`ledger_free`: the routes that read nothing of the ledger (they answer while a snapshot
    replaces it); `max_wait_ms`: the node's api.max_wait_ms, timeout_ms's largest value."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, _handler, summary in routes:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, summary, ledger_free, max_wait_ms)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Keiretsu node API", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Problem": PROBLEM_SCHEMA}},
    }

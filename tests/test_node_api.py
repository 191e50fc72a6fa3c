"""The HTTP API of one in-process node: every route documented, every bad input a problem JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from keiretsu_node import ledger_app
from keiretsu_node.api import ROUTES
from keiretsu_node.bootstrap import init_network
from keiretsu_node.client import KeyPair, build, call
from keiretsu_node.config import BatchingConfig, ConsensusConfig, MempoolConfig, NetworkSpec, NodeSpec, load_node
from keiretsu_node.node import Node
from ledger.tx import TxBody, sign
from tests.cluster import free_ports


@contextlib.asynccontextmanager
async def solo_node(folder: Path, **settings: Any) -> AsyncIterator[Node]:
    """One node, alone its own network on 127.0.0.1, ready; stopped on the way out.
    `settings`: NetworkSpec's optional sections (api=ApiConfig(...), ...)."""
    p2p, api = free_ports(2)
    spec = NetworkSpec("api-test", (NodeSpec("solo", "127.0.0.1", p2p, api),), ("operator",),
                       batching=BatchingConfig(max_txs=50, timeout_ms=5),
                       mempool=MempoolConfig(max_txs=100),
                       consensus=ConsensusConfig(tick_ms=10, election_ticks=5), **settings)
    made = init_network(spec, folder / "net")
    n = Node(load_node(made.node_configs[0]))
    n.operator = KeyPair.load(made.operator_keys[0])
    n.url = f"http://127.0.0.1:{api}"
    await n.start()
    try:
        for _ in range(500):
            if n.readiness()[0]:
                break
            await asyncio.sleep(0.01)
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def node(tmp_path):
    async with solo_node(tmp_path) as n:
        yield n


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def admit(n: Node, key: KeyPair, role: str = "investor"):
    return build(n.config.chain_id, call("participants", "admit", address=key.address, name=role, roles=[role],
                                         kyc_hash=bytes(32)), [n.operator])


async def post_tx(http, n, raw: bytes, **params):
    async with http.post(f"{n.url}/v1/transactions", data=raw, params=params,
                         headers={"Content-Type": "application/msgpack"}) as resp:
        return resp.status, await resp.json(), resp.headers


async def get(http, n, path):
    async with http.get(n.url + path) as resp:
        return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())


def assert_problem(status: int, body: dict, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert body["code"] == code and body["status"] == expected_status and body["detail"], body


async def test_openapi_documents_every_route_the_server_has(node, http) -> None:
    status, doc = await get(http, node, "/v1/openapi.json")
    assert status == 200
    served = {(m, p) for m, p, _, _ in ROUTES}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    app_routes = set()
    for resource in node._runner.app.router.resources():
        for route in resource:
            if route.method != "HEAD":
                app_routes.add((route.method, resource.canonical))
    assert app_routes == documented


async def test_submit_and_wait_returns_the_committed_receipt(node, http) -> None:
    status, body, _ = await post_tx(http, node, admit(node, KeyPair.generate()).raw, wait="true")
    assert status == 200 and body["status"] == "committed"
    assert body["receipt"]["result"] == "valid" and body["receipt"]["reason"] == "OK"
    status, found = await get(http, node, f"/v1/transactions/{body['tx_id']}")
    assert found["status"] == "committed" and found["height"] == body["height"] and found["proof"] is not None


async def test_json_submission_is_accepted_too(node, http) -> None:
    tx = admit(node, KeyPair.generate())
    async with http.post(f"{node.url}/v1/transactions", json={"tx": tx.raw.hex()}, params={"wait": "1"}) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "committed"


@pytest.mark.parametrize("mutate, code", [
    (lambda raw, n: b"\xc1garbage", "MALFORMED"),
    (lambda raw, n: raw + b"\x00", "MALFORMED"),
    (lambda raw, n: raw[:-1] + bytes([raw[-1] ^ 1]), "BAD_SIGNATURE"),
])
async def test_bad_transactions_are_refused_with_a_stable_code_and_change_nothing(node, http, mutate, code) -> None:
    before = node.store.position
    raw = mutate(admit(node, KeyPair.generate()).raw, node)
    status, body, _ = await post_tx(http, node, raw)
    assert_problem(status, body, 400, code)
    await asyncio.sleep(0.05)
    assert node.store.position == before


async def test_wrong_chain_unknown_contract_and_bad_arguments(node, http) -> None:
    key = KeyPair.generate()
    wrong_chain = build("another-chain", call("participants", "admit", address=key.address, name="x",
                                              roles=["investor"], kyc_hash=bytes(32)), [node.operator])
    status, body, _ = await post_tx(http, node, wrong_chain.raw)
    assert_problem(status, body, 400, "WRONG_CHAIN")
    now = node.store.position.time_ms
    for contract, method, args, code in (("nope", "x", {}, "UNKNOWN_CONTRACT"),
                                         ("cash", "nope", {}, "UNKNOWN_METHOD"),
                                         ("cash", "transfer", {"currency": "MXN", "to": "kx", "amount": 1},
                                          "BAD_ARGUMENTS"),
                                         ("cash", "transfer", {"currency": "MXN", "to": key.address, "amount": -5},
                                          "BAD_ARGUMENTS")):
        body_ = TxBody(node.config.chain_id, contract, method, args, 1, now + 600_000, (key.public_key,))
        status, body, _ = await post_tx(http, node, sign(body_, [key]).raw)
        assert_problem(status, body, 400, code)


async def test_expired_and_duplicate(node, http) -> None:
    key = KeyPair.generate()
    body_ = TxBody(node.config.chain_id, "cash", "transfer", {"currency": "MXN", "to": key.address, "amount": 1},
                   7, 1_000, (key.public_key,))
    status, body, _ = await post_tx(http, node, sign(body_, [key]).raw)
    assert_problem(status, body, 400, "EXPIRED")
    tx = admit(node, KeyPair.generate())
    assert (await post_tx(http, node, tx.raw, wait="true"))[0] == 200
    status, body, _ = await post_tx(http, node, tx.raw)
    assert_problem(status, body, 409, "DUPLICATE")


async def test_an_invalid_transaction_is_committed_as_invalid_and_moves_nothing(node, http) -> None:
    ana, bruno = KeyPair.generate(), KeyPair.generate()
    for key in (ana, bruno):
        await post_tx(http, node, admit(node, key).raw, wait="true")
    before = (await get(http, node, f"/v1/accounts/{ana.address}"))[1]
    tx = build(node.config.chain_id, call("cash", "transfer", currency="MXN", to=bruno.address, amount=10), [ana])
    status, body, _ = await post_tx(http, node, tx.raw, wait="true")
    assert status == 200 and body["receipt"]["result"] == "invalid"
    assert body["receipt"]["reason"] == "UNKNOWN_ASSET"
    assert (await get(http, node, f"/v1/accounts/{ana.address}"))[1] == before


async def test_body_and_batch_bounds(node, http) -> None:
    big = b"\x00" * (node.config.api.max_body_bytes + 1)
    async with http.post(f"{node.url}/v1/transactions", data=big,
                         headers={"Content-Type": "application/msgpack"}) as resp:
        assert_problem(resp.status, await resp.json(), 413, "TOO_LARGE")
    many = [admit(node, KeyPair.generate()).raw for _ in range(node.config.api.max_batch_txs + 1)]
    async with http.post(f"{node.url}/v1/transactions/batch", data=msgpack.packb(many),
                         headers={"Content-Type": "application/msgpack"}) as resp:
        assert_problem(resp.status, await resp.json(), 413, "TOO_LARGE")


async def test_a_full_mempool_answers_busy_with_retry_after(node, http) -> None:
    node.mempool.max_txs = 0
    status, body, headers = await post_tx(http, node, admit(node, KeyPair.generate()).raw)
    assert_problem(status, body, 503, "BUSY")
    assert int(headers["Retry-After"]) >= 1
    node.mempool.max_txs = 100


async def test_batch_submission_reports_each_transaction(node, http) -> None:
    good = admit(node, KeyPair.generate())
    async with http.post(f"{node.url}/v1/transactions/batch", params={"wait": "true"},
                         json={"txs": [good.raw.hex(), "zz", ]}) as resp:
        assert_problem(resp.status, await resp.json(), 400, "MALFORMED")
    async with http.post(f"{node.url}/v1/transactions/batch", params={"wait": "true"},
                         json={"txs": [good.raw.hex(), "c1"]}) as resp:
        results = (await resp.json())["results"]
    assert results[0]["accepted"] and results[0]["status"] == "committed"
    assert not results[1]["accepted"] and results[1]["code"] == "MALFORMED"


async def test_queries_and_their_errors(node, http) -> None:
    status, block = await get(http, node, "/v1/blocks/0")
    assert status == 200 and block["height"] == 0
    assert_problem(*(await get(http, node, "/v1/blocks/99999")), 404, "NOT_FOUND")
    assert_problem(*(await get(http, node, "/v1/blocks/abc")), 400, "BAD_REQUEST")
    assert_problem(*(await get(http, node, "/v1/accounts/kxnotanaddress")), 400, "BAD_ADDRESS")
    assert_problem(*(await get(http, node, "/v1/transactions/zz")), 400, "BAD_REQUEST")
    assert (await get(http, node, "/v1/transactions/" + "00" * 32))[1]["status"] == "unknown"
    assert_problem(*(await get(http, node, "/v1/securities/MX0000000000")), 404, "NOT_FOUND")
    assert_problem(*(await get(http, node, "/v1/no/such/route")), 404, "NOT_FOUND")
    status, st = await get(http, node, "/v1/status")
    assert st["role"] == "leader" and st["leader"] == "solo"


async def test_health_and_metrics(node, http) -> None:
    assert (await get(http, node, "/healthz"))[0] == 200
    assert (await get(http, node, "/healthz/ready"))[0] == 200
    await post_tx(http, node, admit(node, KeyPair.generate()).raw, wait="true")
    status, text = await get(http, node, "/metrics")
    assert status == 200
    for name in ("keiretsu_block_height", "keiretsu_committed_transactions_total", "keiretsu_mempool_txs",
                 "keiretsu_block_apply_seconds_bucket", "keiretsu_peers_connected", "keiretsu_leader_changes_total"):
        assert name in text


async def test_events_stream_blocks_and_receipts_for_an_account(node, http) -> None:
    key = KeyPair.generate()
    seen: list[tuple[str, dict]] = []

    async def listen() -> None:
        async with http.get(f"{node.url}/v1/events", params={"accounts": key.address}) as resp:
            event = None
            async for line in resp.content:
                text = line.decode().strip()
                if text.startswith("event:"):
                    event = text.split(":", 1)[1].strip()
                elif text.startswith("data:"):
                    seen.append((event, json.loads(text.split(":", 1)[1])))
                    if event == "receipt":
                        return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.2)
    await post_tx(http, node, admit(node, key).raw, wait="true")
    await asyncio.wait_for(task, 10)
    kinds = [k for k, _ in seen]
    assert "block" in kinds and kinds[-1] == "receipt"
    assert seen[-1][1]["receipt"]["result"] == "valid"


async def test_a_linearizable_read_sees_what_was_just_committed(node, http) -> None:
    key = KeyPair.generate()
    await post_tx(http, node, admit(node, key).raw, wait="true")
    status, body = await get(http, node, f"/v1/accounts/{key.address}?linearizable=true")
    assert status == 200 and body["participant"]["roles"] == ["investor"]


async def test_while_a_snapshot_replaces_the_ledger_reads_answer_not_ready(node, http, monkeypatch) -> None:
    """The live store is closed on the event loop, where every reader runs, never under a read;
    until the new one is open, routes that read the ledger answer 503 NOT_READY and those that
    do not still answer."""
    key = KeyPair.generate()
    status, body, _ = await post_tx(http, node, admit(node, key).raw, wait="true")
    assert status == 200 and body["status"] == "committed", body
    old_store = node.store
    closed_on: list[threading.Thread] = []
    real_close = old_store.close
    monkeypatch.setattr(old_store, "close", lambda: (closed_on.append(threading.current_thread()), real_close()))
    reached, go_on = threading.Event(), threading.Event()
    real_fsync = ledger_app.fsync_directory

    def held(path) -> None:  # the install's swap, between the old store's close and the new one's open
        reached.set()
        assert go_on.wait(30)
        real_fsync(path)

    monkeypatch.setattr(ledger_app, "fsync_directory", held)
    index, term, chunks = node.app.snapshot()
    install = asyncio.ensure_future(asyncio.to_thread(node.app.install_snapshot, index, term, list(chunks)))
    try:
        for _ in range(3000):
            if reached.is_set():
                break
            await asyncio.sleep(0.01)
        assert reached.is_set(), "the install never reached its swap"
        assert closed_on == [threading.current_thread()]  # the loop's thread, not the install's
        async with http.get(f"{node.url}/v1/accounts/{key.address}") as resp:
            assert resp.headers["Retry-After"] == "1"
            assert_problem(resp.status, await resp.json(), 503, "NOT_READY")
        status, refused, _ = await post_tx(http, node, admit(node, KeyPair.generate()).raw)
        assert_problem(status, refused, 503, "NOT_READY")
        status, body = await get(http, node, "/v1/status")
        assert status == 200 and body["height"] == old_store.position.height
        status, body = await get(http, node, "/healthz/ready")
        assert status == 503 and "snapshot" in body["detail"]
    finally:
        go_on.set()
        await install
    assert node.store is not old_store and not node.ledger_replacing
    status, body = await get(http, node, f"/v1/accounts/{key.address}")
    assert status == 200, body

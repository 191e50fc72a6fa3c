"""Hostile HTTP clients: malformed transactions and oversized bodies. Never a 500; a refused
request never changes the ledger; memory stays bounded.

Hostile input, HTTP side (issue 9). One real node process serves the whole module. The OpenAPI
fuzzing is in test_hostile_openapi.py, slow clients (slow-loris) in test_hostile_slow_clients.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keiretsu_node.client import KeyPair, build, call
from tests.cluster import LocalCluster

REQUEST_TIMEOUT_S = 15
OVERSIZE_BYTES = 9 * 1024 * 1024  # over the default api.max_body_bytes (8 MiB)
OVERSIZED_REQUESTS = 8
MAX_RSS_GROWTH_BYTES = 64 * 1024 * 1024




@dataclass(frozen=True)
class LiveNode:
    url: str
    host: str
    port: int
    pid: int
    chain_id: str
    operator: KeyPair
    valid_tx: bytes  # a correctly signed transaction, never submitted: the seed of mutations


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    yield from serve_one_node(tmp_path_factory)


def serve_one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A one-node network in its own process, with a valid transaction it never saw."""
    cluster = LocalCluster(tmp_path_factory.mktemp("hostile-api"), size=1)
    cluster.start_all()
    try:
        asyncio.run(cluster.wait_ready())
        url = cluster.urls["node1"]
        parts = urlsplit(url)
        newcomer = KeyPair.generate()
        tx = build(cluster.chain_id, call("participants", "admit", address=newcomer.address, name="n",
                                          roles=["investor"], kyc_hash=bytes(32)), [cluster.operator])
        yield LiveNode(url, parts.hostname or "", parts.port or 0, cluster.procs["node1"].pid,
                       cluster.chain_id, cluster.operator, tx.raw)
    finally:
        cluster.stop_all()


def _request(node: LiveNode, method: str, path: str, body: bytes = b"",
             content_type: str = "application/msgpack") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if body else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _ledger(node: LiveNode) -> tuple[int, str, str, int]:
    """What a refused request must leave alone: height, state and block hash, mempool size."""
    status, body = _request(node, "GET", "/v1/status")
    assert status == 200
    doc = json.loads(body)
    return doc["height"], doc["state_hash"], doc["block_hash"], doc["mempool_txs"]


def _assert_refused_cleanly(node: LiveNode, status: int, body: bytes, before: tuple[int, str, str, int]) -> None:
    assert status < 500, body[:500]
    if status >= 400:
        problem = json.loads(body)
        assert isinstance(problem.get("code"), str) and problem["status"] == status, problem
        assert _ledger(node) == before


# ---------------------------------------------------------------- malformed transactions


def _mutations() -> st.SearchStrategy[tuple[str, int, bytes]]:
    """(kind, position, bytes): how a correctly signed transaction is damaged."""
    return st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
        st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(b"")),
        st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    )


def _damage(raw: bytes, kind: str, at: int, data: bytes) -> bytes:
    at %= len(raw)
    if kind == "flip":
        out = bytearray(raw)
        for i, b in enumerate(data):
            out[(at + i) % len(out)] ^= b or 1
        return bytes(out)
    if kind == "truncate":
        return raw[:at]
    if kind == "append":
        return raw + data
    return raw[:at] + data + raw[at:]


@given(mutation=_mutations(), as_json=st.booleans())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_damaged_signed_transaction_is_refused_and_changes_nothing(live: LiveNode, mutation: tuple[str, int, bytes],
                                                                    as_json: bool) -> None:
    damaged = _damage(live.valid_tx, *mutation)
    before = _ledger(live)
    if as_json:
        status, body = _request(live, "POST", "/v1/transactions", json.dumps({"tx": damaged.hex()}).encode(),
                                "application/json")
    else:
        status, body = _request(live, "POST", "/v1/transactions", damaged)
    assert 400 <= status < 500, f"{mutation}: {status} {body[:300]!r}"  # a signature covers every byte
    _assert_refused_cleanly(live, status, body, before)


_MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=30,
)


@given(value=_MSGPACK_VALUES, batch=st.booleans())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_msgpack_value_posted_as_a_transaction_is_refused_and_changes_nothing(live: LiveNode, value: object,
                                                                                 batch: bool) -> None:
    before = _ledger(live)
    path = "/v1/transactions/batch" if batch else "/v1/transactions"
    status, body = _request(live, "POST", path, msgpack.packb(value, use_bin_type=True))
    _assert_refused_cleanly(live, status, body, before)
    if status == 200 and batch:  # a batch answers per item: each one refused
        assert not any(r["accepted"] for r in json.loads(body)["results"]), body[:300]
        assert _ledger(live) == before
    else:
        assert 400 <= status < 500, f"{status} {body[:300]!r}"


@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
       content_type=st.sampled_from(["application/json", "application/msgpack", "text/plain", "",
                                     "application/json; charset=latin-1"]),
       path=st.sampled_from(["/v1/transactions", "/v1/transactions/batch"]))
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_bytes_with_any_content_type_are_refused_and_change_nothing(live: LiveNode, body: bytes,
                                                                       content_type: str, path: str) -> None:
    before = _ledger(live)
    status, answer = _request(live, "POST", path, body, content_type)
    _assert_refused_cleanly(live, status, answer, before)
    if status == 200 and path.endswith("batch"):  # a batch answers per item: each one refused
        assert not any(r["accepted"] for r in json.loads(answer)["results"]), answer[:300]
        assert _ledger(live) == before
    else:
        assert 400 <= status < 500, f"{status} {answer[:300]!r}"


def test_a_transaction_for_another_chain_or_already_expired_is_refused(live: LiveNode) -> None:
    newcomer = KeyPair.generate()
    admit = call("participants", "admit", address=newcomer.address, name="n", roles=["investor"], kyc_hash=bytes(32))
    for tx in (build("some-other-chain", admit, [live.operator]),
               build(live.chain_id, admit, [live.operator], expires_at_ms=1, now_ms=0)):
        before = _ledger(live)
        status, body = _request(live, "POST", "/v1/transactions?wait=true&timeout_ms=2000", tx.raw)
        assert 400 <= status < 500, body
        _assert_refused_cleanly(live, status, body, before)


# ---------------------------------------------------------------- oversized bodies


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _send_oversized(node: LiveNode, chunked: bool) -> int:
    """Stream OVERSIZE_BYTES at the node; the status it answers (0 if it just hung up)."""
    with socket.create_connection((node.host, node.port), timeout=REQUEST_TIMEOUT_S) as sock:
        head = "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {OVERSIZE_BYTES}\r\n\r\n"
        sock.sendall(head.encode())
        piece = b"\x00" * (256 * 1024)
        try:
            for _ in range(OVERSIZE_BYTES // len(piece)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        except OSError:
            pass  # the node stopped reading: that is the point
        try:
            answer = sock.recv(4096)
        except OSError:
            return 0
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else 0


def test_oversized_bodies_are_refused_with_413_and_memory_stays_bounded(live: LiveNode) -> None:
    before_state = _ledger(live)
    before_rss = _rss_bytes(live.pid)
    statuses = [_send_oversized(live, chunked=i % 2 == 1) for i in range(OVERSIZED_REQUESTS)]
    assert all(s in (0, 413) for s in statuses) and 413 in statuses, statuses
    growth = _rss_bytes(live.pid) - before_rss
    assert growth < MAX_RSS_GROWTH_BYTES, f"{OVERSIZED_REQUESTS} oversized requests grew the node by {growth} bytes"
    assert _ledger(live) == before_state
    status, _ = _request(live, "GET", "/healthz")
    assert status == 200

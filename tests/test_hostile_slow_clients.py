"""Slow clients (slow-loris): a connection that trickles its headers or body is cut off in bounded
time, and while many do so the node keeps serving everyone else.

Hostile input, HTTP side (issue 9). The node runs in-process so its two timeouts (the idle cut
that also bounds header time, and the body read) can be shortened from seconds to one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keiretsu_node import api
from keiretsu_node import node as node_module
from keiretsu_node.bootstrap import init_network
from keiretsu_node.client import Client
from keiretsu_node.config import ConsensusConfig, NetworkSpec, NodeSpec, load_node
from keiretsu_node.node import Node
from tests.cluster import free_ports

SHORT_TIMEOUT_S = 1
TRICKLE_PAUSE_S = 0.1
MAX_TRICKLES = 100  # 10 s at most: ten times the timeout under test
SLOW_CLIENTS = 100
READY_POLLS = 200


@pytest.fixture
async def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    monkeypatch.setattr(node_module, "API_IDLE_TIMEOUT_S", SHORT_TIMEOUT_S)
    monkeypatch.setattr(api, "BODY_READ_TIMEOUT_S", SHORT_TIMEOUT_S)
    p2p, port = free_ports(2)
    spec = NetworkSpec("slow-1", (NodeSpec("node1", "127.0.0.1", p2p, port),), ("operator",),
                       consensus=ConsensusConfig(tick_ms=20, election_ticks=10))
    made = init_network(spec, tmp_path / "net")
    running = Node(load_node(made.node_configs[0]))
    await running.start()
    try:
        for _ in range(READY_POLLS):
            if running.readiness()[0]:
                break
            await asyncio.sleep(0.05)
        yield running
    finally:
        await running.stop()


async def _trickle_until_cut(node: Node, head: bytes, drip: bytes) -> bytes:
    """Send head, then one drip at a time, until the node hangs up or answers; the answer.

    After an answer aiohttp's lingering close (10 s) bounds how long the rest of a declared body
    is read and ignored, so the test stops there instead of waiting for it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.config.api_port)
    writer.write(head)
    answer = b""
    try:
        for _ in range(MAX_TRICKLES):
            await asyncio.sleep(TRICKLE_PAUSE_S)
            writer.write(drip)
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.001)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                return answer
        raise AssertionError(f"still connected after {MAX_TRICKLES} trickles; answered {answer[:200]!r}")
    except (ConnectionError, OSError):
        return answer
    finally:
        writer.close()


async def test_a_client_that_never_finishes_its_headers_is_cut_off(node: Node) -> None:
    await _trickle_until_cut(node, b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")


async def test_a_client_that_trickles_its_body_gets_a_408_and_nothing_changes(node: Node) -> None:
    before = node.status()
    head = (b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
            b"Content-Length: 500\r\n\r\n")
    answer = await _trickle_until_cut(node, head, b"\x00")
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["code"] == "TIMEOUT"
    after = node.status()
    assert (after["height"], after["state_hash"], after["mempool_txs"]) == \
        (before["height"], before["state_hash"], before["mempool_txs"])


async def test_many_slow_clients_do_not_keep_others_out_and_are_all_cut_off(node: Node) -> None:
    slow = [asyncio.create_task(_trickle_until_cut(node, b"GET /v1/status HTTP/1.1\r\nX-A: ", b"b"))
            for _ in range(SLOW_CLIENTS)]
    try:
        await asyncio.sleep(TRICKLE_PAUSE_S * 3)
        async with Client(f"http://127.0.0.1:{node.config.api_port}", timeout_s=5) as client:
            assert (await client.status())["node"] == "node1"
        await asyncio.gather(*slow)
    finally:
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
    assert node._runner is not None and node._runner.server is not None
    assert len(node._runner.server.connections) == 0, "every slow connection was closed"

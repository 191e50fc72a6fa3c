"""The fault harness itself: a plan replays from its seed, the proxy does what each fault says,
and the auditor does find a lost, duplicated or wrongly refused transaction when there is one.

Fast and unmarked: a checker that cannot fail would make every slow run's "lost 0" worthless.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cluster import free_ports
from tests.faults.checks import Verdict, _check_chain, _check_history, _supply_from_blocks
from tests.faults.proxy import HEALTHY, Endpoint, FaultNet, LinkFault
from tests.faults.schedule import LEADER, FaultKind, plan
from tests.faults.workload import CURRENCY, History, Outcome

NAMES = ["node1", "node2", "node3", "node4", "node5"]
WAIT_S = 5.0


# ---------------------------------------------------------------- the plan


@given(seed=st.integers(0, 2**32 - 1), nodes=st.sampled_from([3, 5]), duration_ms=st.integers(5_000, 120_000))
@settings(max_examples=200, deadline=None)
def test_a_plan_is_a_function_of_its_seed_and_fits_its_window(seed: int, nodes: int, duration_ms: int) -> None:
    names = NAMES[:nodes]
    faults = plan(seed, names, duration_ms)
    assert faults == plan(seed, names, duration_ms)
    end = 0
    for f in faults:
        assert f.start_ms >= end and f.start_ms + f.duration_ms <= duration_ms  # one at a time
        end = f.start_ms + f.duration_ms
        assert f.target == LEADER or f.target in names
        if f.kind == FaultKind.PARTITION:
            assert 1 + len(f.peers) <= (nodes - 1) // 2  # a minority: the rest can still commit
        if f.kind == FaultKind.ONE_WAY:
            assert f.peers[0] in names and f.peers[0] != f.target


# ---------------------------------------------------------------- the proxy


@pytest.fixture
async def echo_net() -> AsyncIterator[tuple[FaultNet, Endpoint, list[bytes]]]:
    """An echo server as node "b", reached through its proxy; the caller on 127.0.0.1 is "a"."""
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            received.append(data)
            writer.write(data)
        writer.close()

    node_port, proxy_port = free_ports(2)
    server = await asyncio.start_server(echo, "127.0.0.1", node_port)
    ep = Endpoint("b", "127.0.0.1", proxy_port, "127.0.0.1", node_port)
    net = FaultNet([ep], {"127.0.0.1": "a"}, seed=7)
    await net.start()
    yield net, ep, received
    await net.close()
    server.close()
    await server.wait_closed()


async def _roundtrip(ep: Endpoint, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(ep.proxy_host, ep.proxy_port)
    try:
        writer.write(payload)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(4096), 0.5)
        except TimeoutError:
            return b""
    finally:
        writer.close()


async def test_a_healthy_link_relays_both_ways(echo_net) -> None:
    _, ep, _ = echo_net
    assert await _roundtrip(ep, b"ping") == b"ping"


async def test_a_cut_drops_both_ways_and_a_heal_restores(echo_net) -> None:
    net, ep, received = echo_net
    net.set("a", "b", LinkFault(cut=True))
    net.set("b", "a", LinkFault(cut=True))
    assert await _roundtrip(ep, b"lost") == b"" and received == []
    net.heal()
    assert await _roundtrip(ep, b"back") == b"back"


async def test_a_one_way_cut_lets_requests_in_and_drops_answers(echo_net) -> None:
    net, ep, received = echo_net
    net.set("b", "a", LinkFault(cut=True))
    assert await _roundtrip(ep, b"half") == b""
    assert received == [b"half"]
    assert net.counters["chunks_dropped"] == 1


async def test_total_loss_resets_the_connection_and_delay_still_delivers(echo_net) -> None:
    net, ep, _ = echo_net
    net.set("a", "b", LinkFault(loss_per_mille=1000))
    assert await _roundtrip(ep, b"x") == b""
    assert net.counters["connections_reset"] == 1
    net.set("a", "b", LinkFault(delay_ms=50))
    assert await _roundtrip(ep, b"slow") == b"slow"
    assert net.counters["chunks_delayed"] == 1
    net.set("a", "b", HEALTHY)


async def test_duplication_sends_a_chunk_twice(echo_net) -> None:
    net, ep, _ = echo_net
    net.set("a", "b", LinkFault(dup_per_mille=1000))
    reader, writer = await asyncio.open_connection(ep.proxy_host, ep.proxy_port)
    writer.write(b"twice")
    got = b""
    for _ in range(20):
        got += await asyncio.wait_for(reader.read(4096), WAIT_S)
        if len(got) >= 10:
            break
    writer.close()
    assert got == b"twicetwice"


# ---------------------------------------------------------------- the auditor


def _block(height: int, prev: str, txs: list[tuple[str, str, list[dict[str, Any]]]]) -> dict[str, Any]:
    return {"height": height, "hash": f"h{height}", "prev_hash": prev, "transactions": [
        {"receipt": {"tx_id": tx_id, "result": result, "events": events}} for tx_id, result, events in txs]}


def test_the_auditor_finds_lost_duplicated_and_wrongly_applied_transactions() -> None:
    history = History()
    history.record("acked-ok", Outcome.ACKNOWLEDGED, 1)
    history.record("acked-lost", Outcome.ACKNOWLEDGED, 1)
    history.record("refused-but-there", Outcome.REFUSED, "BAD_SIGNATURE")
    history.record("ambiguous-twice", Outcome.AMBIGUOUS, "TIMEOUT")
    seen = Counter({"acked-ok": 1, "refused-but-there": 1, "ambiguous-twice": 2})
    verdict = Verdict(seed=1, nodes=3)
    _check_history(verdict, "node1", history, seen)
    assert (verdict.lost, verdict.duplicated, verdict.refused_applied) == (1, 1, 1)
    assert not verdict.ok and "acked-lost" in verdict.summary()


def test_the_auditor_finds_a_broken_chain_and_counts_supply_from_valid_receipts_only() -> None:
    minted: dict[str, Any] = {"kind": "cash_minted", "attrs": {"currency": CURRENCY, "amount": 500}}
    burned: dict[str, Any] = {"kind": "cash_burned", "attrs": {"currency": CURRENCY, "amount": 200}}
    issued: dict[str, Any] = {"kind": "security_issued", "attrs": {"isin": "KX1", "quantity": 7}}
    blocks = [_block(0, "", []), _block(1, "h0", [("t1", "valid", [minted, issued]), ("t2", "invalid", [burned])]),
              _block(2, "h1", [("t3", "valid", [burned])])]
    assert _supply_from_blocks(blocks, "KX1") == {CURRENCY: 300, "KX1": 7}
    verdict = Verdict(seed=1, nodes=3)
    _check_chain(verdict, "node1", blocks)
    assert verdict.ok
    blocks[2]["prev_hash"] = "elsewhere"
    _check_chain(verdict, "node1", blocks)
    assert not verdict.ok

"""Unauthenticated inbound connections cannot lock genesis peers out of a node's listener.

Pure admission rules (PendingHandshakes, source_of) as properties, then real transports on
127.0.0.1 against silent plain-TCP clients bound to other loopback addresses (127.0.0.2, ...),
so that "another source" is real. Every wait is bounded; every socket and transport is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.config import ConfigError, TransportConfig
from p2p.handshake import RefusalCode
from p2p.pending import PendingHandshakes, source_of
from tests.test_p2p_transport import FAST, Cluster, eventually, read_until_closed

ATTACKER_SOURCES = ("127.0.0.2", "127.0.0.3")
ATTACKER_REOPEN_S = 0.05  # holds slots and re-opens them: a slowloris, not a connection flood
SETTLE_S = 0.2
LINK_WITHIN_S = 1.5  # well below the handshake timeout the old code held every slot for
TOO_MANY = RefusalCode.TOO_MANY_PENDING.value
FIRST_BYTES = RefusalCode.FIRST_BYTES_TIMEOUT.value


# ---- admission rules (sans-IO) ---------------------------------------------------------------


ADMIT, RELEASE, SPEAK = "admit", "release", "speak"


@settings(deadline=None)  # timing under a loaded CI box is not the property
@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
    st.lists(st.tuples(st.sampled_from([ADMIT, ADMIT, RELEASE, SPEAK]), st.integers(min_value=0, max_value=3)),
             max_size=60),
)
def test_admission_is_bounded_and_evicts_the_oldest_silent_one_in_the_full_scope(
    max_total: int, max_per_source: int, ops: list[tuple[str, int]]
) -> None:
    pending: PendingHandshakes[int] = PendingHandshakes(max_total, max_per_source)
    live: list[tuple[int, str]] = []  # the model: (key, source), oldest first
    speaking: set[int] = set()

    def oldest(scope: list[int]) -> int:  # silent first, then any
        return next((k for k in scope if k not in speaking), scope[0])

    for key, (op, n) in enumerate(ops):
        source = f"10.0.0.{n}"
        if op != ADMIT:
            if live:
                chosen = live[n % len(live)][0]
                if op == SPEAK:
                    pending.mark_speaking(chosen)
                    speaking.add(chosen)
                else:
                    live = [(k, s) for k, s in live if k != chosen]
                    pending.release(chosen)
                    pending.release(chosen)  # twice is harmless
            continue
        expected: list[int] = []
        if sum(1 for _, s in live if s == source) >= max_per_source:
            expected.append(oldest([k for k, s in live if s == source]))
            live = [(k, s) for k, s in live if k != expected[-1]]
        if len(live) >= max_total:
            expected.append(oldest([k for k, _ in live]))
            live = [(k, s) for k, s in live if k != expected[-1]]
        assert pending.admit(key, source) == expected  # nothing dropped unless a bound is full
        live.append((key, source))
        assert key in pending  # the newcomer always gets a slot
        assert len(pending) == len(live) <= max_total
        for n_source in range(4):
            count = pending.count_from(f"10.0.0.{n_source}")
            assert count == sum(1 for _, s in live if s == f"10.0.0.{n_source}")
            assert count <= max_per_source
    assert pending.clear() == [k for k, _ in live]
    assert len(pending) == 0


def test_sources_are_addresses_and_ipv6_slash_64s() -> None:
    assert source_of(("192.0.2.7", 4000)) == "192.0.2.7"
    assert source_of(("::ffff:192.0.2.7", 4000, 0, 0)) == "192.0.2.7"
    one_host = {source_of((f"2001:db8:1:2::{i:x}", 4000, 0, 0)) for i in range(1, 50)}
    assert one_host == {"2001:db8:1:2::/64"}
    assert source_of(("2001:db8:1:3::1", 4000, 0, 0)) != "2001:db8:1:2::/64"
    assert source_of(None) == source_of("garbage") == "unknown"


def test_first_bytes_deadline_cannot_exceed_the_handshake_deadline() -> None:
    with pytest.raises(ConfigError, match="first_bytes_timeout_ms"):
        TransportConfig(handshake_timeout_ms=1_000, first_bytes_timeout_ms=2_000).validate(1024)


# ---- real listeners ----------------------------------------------------------------------------


class SilentClients:
    """Plain TCP connections that never send a byte, from chosen loopback source addresses."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        opened = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0)), 5.0
        )
        self.held.append(opened)
        return opened

    def open_count(self) -> int:
        return sum(1 for reader, writer in self.held if not _closed(reader, writer))

    async def keep_open(self, count: int) -> None:
        """Hold `count` connections, re-opening each one the server drops (until cancelled)."""
        for i in range(count):
            await self.open(ATTACKER_SOURCES[i % len(ATTACKER_SOURCES)])
        while True:
            await asyncio.sleep(ATTACKER_REOPEN_S)
            for reader, writer in self.held:
                if _closed(reader, writer):
                    writer.close()
            self.held = [(r, w) for r, w in self.held if not _closed(r, w)]
            for i in range(count - len(self.held)):
                await self.open(ATTACKER_SOURCES[i % len(ATTACKER_SOURCES)])

    def close(self) -> None:
        for _, writer in self.held:
            writer.close()
        self.held.clear()


def _closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    return reader.at_eof() or reader.exception() is not None or writer.is_closing()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    cluster = Cluster(("node1", "node2"))
    try:
        yield cluster
    finally:
        await cluster.stop()


async def test_silent_connections_cannot_lock_a_genesis_peer_out(cluster: Cluster) -> None:
    # Only options the old transport had too: it held all 4 slots for the whole 3 s.
    slots = dataclasses.replace(FAST, handshake_timeout_ms=3_000, max_pending_handshakes=4)
    node2 = cluster.build("node2", slots)
    await node2.start()
    attacker = SilentClients(node2.listen_port)
    attack = asyncio.create_task(attacker.keep_open(4))
    try:
        await eventually(lambda: attacker.open_count() == 4)
        await asyncio.sleep(SETTLE_S)  # every slot is taken before node1 dials
        await cluster.build("node1").start()
        # node2 is the higher name: it never dials, so this link needs its listener.
        await eventually(lambda: node2.connected_peers() == ["node1"], LINK_WITHIN_S)
        assert node2.stats().refusal_count(TOO_MANY) >= 1  # the oldest silent one made room
    finally:
        attack.cancel()
        await asyncio.gather(attack, return_exceptions=True)
        attacker.close()


async def test_a_silent_connection_is_dropped_at_the_first_bytes_deadline(
    cluster: Cluster,
) -> None:
    quick = dataclasses.replace(FAST, handshake_timeout_ms=1_500, first_bytes_timeout_ms=300)
    node2 = cluster.build("node2", quick)
    await node2.start()
    clients = SilentClients(node2.listen_port)
    try:
        loop = asyncio.get_running_loop()
        started_s = loop.time()
        silent_reader, _ = await clients.open(ATTACKER_SOURCES[0])
        stalled_reader, stalled_writer = await clients.open(ATTACKER_SOURCES[1])
        stalled_writer.write(b"\x16\x03\x01")  # the start of a TLS record, then nothing more
        assert await read_until_closed(silent_reader) == b""
        assert loop.time() - started_s < 1.2  # not the 1.5 s handshake deadline
        assert node2.stats().refusal_count(FIRST_BYTES) == 1
        # A connection that started its ClientHello has the whole handshake deadline.
        assert not _closed(stalled_reader, stalled_writer)
        assert await read_until_closed(stalled_reader) == b""
        assert loop.time() - started_s >= 1.4
        await eventually(
            lambda: node2.stats().refusal_count(RefusalCode.HANDSHAKE_TIMEOUT.value) == 1
        )
        assert node2.stats().refusal_count(FIRST_BYTES) == 1
    finally:
        clients.close()


async def test_one_source_cannot_take_every_slot(cluster: Cluster) -> None:
    per_source = dataclasses.replace(
        FAST, handshake_timeout_ms=4_000, first_bytes_timeout_ms=4_000,
        max_pending_handshakes=4, max_pending_handshakes_per_source=2,
    )
    node2 = cluster.build("node2", per_source)
    await node2.start()
    clients = SilentClients(node2.listen_port)
    try:
        opened = []
        for _ in range(4):
            opened.append(await clients.open(ATTACKER_SOURCES[0]))
            await asyncio.sleep(SETTLE_S / 4)  # accepted in this order
        # The two oldest from that source made room for the two newest; the others stay.
        for reader, _ in opened[:2]:
            assert await read_until_closed(reader) == b""
        assert node2.stats().refusal_count(TOO_MANY) == 2
        # Half the slots are still free for everyone else: node1 links without evicting anyone.
        await cluster.build("node1").start()
        await eventually(lambda: node2.connected_peers() == ["node1"], LINK_WITHIN_S)
        assert node2.stats().refusal_count(TOO_MANY) == 2
        assert all(not _closed(reader, writer) for reader, writer in opened[2:])
    finally:
        clients.close()


async def test_stop_closes_pending_handshakes_and_leaves_no_task() -> None:
    cluster = Cluster(("node1", "node2"))
    before = asyncio.all_tasks()
    slow = dataclasses.replace(FAST, handshake_timeout_ms=4_000, first_bytes_timeout_ms=4_000)
    node2 = cluster.build("node2", slow)
    await node2.start()
    clients = SilentClients(node2.listen_port)
    try:
        readers = [(await clients.open(source))[0] for source in ATTACKER_SOURCES * 2]
        await asyncio.sleep(SETTLE_S)
        await cluster.stop()
        for reader in readers:
            assert await read_until_closed(reader) == b""
        assert asyncio.all_tasks() == before
    finally:
        clients.close()
        await cluster.stop()

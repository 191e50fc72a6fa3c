"""Transports on 127.0.0.1: messages flow, strangers and impostors are refused, links recover.

Every wait is bounded (eventually / wait_for); timings are shortened through TransportConfig.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from p2p import tls
from p2p.config import TransportConfig
from p2p.frame import MAX_FRAME_BYTES, Frame, FrameDecoder, encode_frame
from p2p.handshake import PROTOCOL_VERSION, Hello, RefusalCode
from p2p.identity import NodeIdentity, PeerInfo
from p2p.transport import Transport

CHAIN = "keiretsu-test"
CHANNELS = ("raft", "tx", "snapshot")
FAST = TransportConfig(
    ping_interval_ms=100,
    idle_timeout_ms=1_000,
    write_timeout_ms=5_000,  # generous: a loaded CI box must not look like a stalled peer
    handshake_timeout_ms=2_000,
    connect_timeout_ms=1_000,
    close_timeout_ms=200,
    backoff_initial_ms=20,
    backoff_max_ms=200,
)
RNG_SEED = 5  # backoff jitter; timing on real sockets is not reproducible anyway
WAIT_S = 5.0
POLL_S = 0.01


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def eventually(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll a condition, bounded in both iterations and time; fail the test if it never holds."""
    for _ in range(int(timeout_s / POLL_S)):
        if predicate():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError("condition not reached in time")


def _recorder(
    inbox: asyncio.Queue[tuple[str, str, bytes]], channel: str
) -> Callable[[str, bytes], None]:
    def record(peer: str, payload: bytes) -> None:
        inbox.put_nowait((peer, channel, payload))

    return record


class Cluster:
    """Three named nodes sharing one genesis; each records what it receives in a queue."""

    def __init__(self, names: tuple[str, ...] = ("node1", "node2", "node3")) -> None:
        self.identities = {name: NodeIdentity.generate(name) for name in names}
        self.genesis = [
            identity.peer_info("127.0.0.1", free_port()) for identity in self.identities.values()
        ]
        self.transports: dict[str, Transport] = {}
        self.inbox: dict[str, asyncio.Queue[tuple[str, str, bytes]]] = {}

    def build(
        self, name: str, config: TransportConfig = FAST, max_frame_bytes: int = MAX_FRAME_BYTES
    ) -> Transport:
        transport = Transport(
            self.identities[name], self.genesis, "127.0.0.1", self.info(name).port,
            chain_id=CHAIN, max_frame_bytes=max_frame_bytes, config=config,
            rng=random.Random(RNG_SEED),
        )
        inbox: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(maxsize=10_000)
        for channel in CHANNELS:
            transport.register(channel, _recorder(inbox, channel))
        self.transports[name], self.inbox[name] = transport, inbox
        return transport

    async def start(self, *names: str) -> None:
        for name in names:
            await self.build(name).start()

    async def stop(self) -> None:
        for transport in self.transports.values():
            await transport.stop()

    def info(self, name: str) -> PeerInfo:
        return next(info for info in self.genesis if info.name == name)

    async def all_linked(self) -> None:
        names = set(self.transports)
        await eventually(
            lambda: all(
                set(t.connected_peers()) == names - {n} for n, t in self.transports.items()
            )
        )


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    cluster = Cluster()
    try:
        yield cluster
    finally:
        await cluster.stop()


async def receive(cluster: Cluster, name: str, count: int) -> list[tuple[str, str, bytes]]:
    return [await asyncio.wait_for(cluster.inbox[name].get(), WAIT_S) for _ in range(count)]


async def open_raw_tls(
    identity: NodeIdentity, genesis: list[PeerInfo], target: PeerInfo
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven client holding identity's key, for playing a misbehaving peer."""
    return await asyncio.wait_for(
        asyncio.open_connection(
            target.host, target.port, ssl=tls.client_context(identity, genesis),
            server_hostname="",
        ),
        WAIT_S,
    )


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the other side sends before it closes (bounded by time and by size)."""
    received = b""
    for _ in range(100):
        try:
            chunk = await asyncio.wait_for(reader.read(65536), WAIT_S)
        except (ConnectionError, OSError):
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError("peer kept the refused connection open")


async def read_hello(reader: asyncio.StreamReader) -> Hello | None:
    decoder = FrameDecoder()
    for _ in range(100):
        frames = decoder.feed(await asyncio.wait_for(reader.read(65536), WAIT_S))
        if frames:
            return Hello.from_frame(frames[0])
    raise AssertionError("no hello from the acceptor")


def hello_bytes(name: str, chain: str = CHAIN) -> bytes:
    return encode_frame(Hello(PROTOCOL_VERSION, name, chain).to_frame())


# ---- messages flow -------------------------------------------------------------------------


async def test_three_nodes_exchange_messages_on_every_channel(cluster: Cluster) -> None:
    await cluster.start("node1", "node2", "node3")
    await cluster.all_linked()
    big = os.urandom(1024 * 1024)  # spans many TLS records and read chunks
    for sender, transport in cluster.transports.items():
        for receiver in cluster.transports:
            if receiver != sender:
                for channel in CHANNELS:
                    payload = big if channel == "snapshot" else f"{sender}:{channel}".encode()
                    assert transport.send(receiver, channel, payload)
    for receiver in cluster.transports:
        got = await receive(cluster, receiver, 2 * len(CHANNELS))
        senders = set(cluster.transports) - {receiver}
        expected = {
            (s, c, big if c == "snapshot" else f"{s}:{c}".encode())
            for s in senders
            for c in CHANNELS
        }
        assert set(got) == expected
    stats = cluster.transports["node1"].stats()
    assert stats.auth_failures == 0
    assert all(peer.connected and peer.bad_frames == 0 for peer in stats.peers)


async def test_messages_on_one_link_arrive_in_order(cluster: Cluster) -> None:
    await cluster.start("node1", "node2")
    for i in range(200):
        assert cluster.transports["node2"].send("node1", "raft", i.to_bytes(4, "big"))
    got = await receive(cluster, "node1", 200)
    assert [int.from_bytes(payload, "big") for _, _, payload in got] == list(range(200))


async def test_unknown_peer_or_oversize_payload_is_refused_by_send(cluster: Cluster) -> None:
    transport = cluster.build("node1")
    assert not transport.send("node9", "raft", b"x")
    assert not transport.send("node1", "raft", b"x")  # no link to oneself
    small = Transport(
        cluster.identities["node2"], cluster.genesis, "127.0.0.1", 0,
        chain_id=CHAIN, max_frame_bytes=1024, config=FAST,
    )
    assert not small.send("node1", "raft", bytes(2048))
    assert small.stats().peer("node1").dropped_frames == 1
    with pytest.raises(ValueError):
        transport.register("p2p.ping", lambda peer, payload: None)
    with pytest.raises(ValueError):
        transport.send("node2", "", b"x")
    with pytest.raises(ValueError):
        transport.send("node2", "c" * 40, b"x")


async def test_a_failing_handler_or_unknown_channel_keeps_the_link(cluster: Cluster) -> None:
    await cluster.start("node1", "node2")
    await cluster.all_linked()
    node1 = cluster.transports["node1"]

    def broken(peer: str, payload: bytes) -> None:
        raise RuntimeError("bug in a handler")

    node1.register("gossip", broken)
    node2 = cluster.transports["node2"]
    assert node2.send("node1", "gossip", b"boom")
    assert node2.send("node1", "nobody-listens", b"lost")
    assert node2.send("node1", "raft", b"fine")
    assert await receive(cluster, "node1", 1) == [("node2", "raft", b"fine")]
    peer = node1.stats().peer("node2")
    assert (peer.handler_errors, peer.unhandled_frames, peer.links_established) == (1, 1, 1)


async def test_a_one_node_network_starts_and_stops() -> None:
    solo = Cluster(("solo",))
    transport = solo.build("solo")
    await transport.start()
    assert transport.connected_peers() == []
    await transport.stop()


# ---- refusals ------------------------------------------------------------------------------


async def test_a_node_whose_certificate_is_not_in_genesis_is_refused(cluster: Cluster) -> None:
    await cluster.start("node2")
    node2 = cluster.transports["node2"]
    # An outsider with its own key, calling itself node1, even handed the real certificates.
    outsider = NodeIdentity.generate("node1")
    reader, writer = await open_raw_tls(outsider, cluster.genesis, cluster.info("node2"))
    writer.write(hello_bytes("node1"))
    assert await read_until_closed(reader) == b""  # not even node2's hello comes back
    writer.close()
    await eventually(lambda: node2.stats().refusal_count(RefusalCode.TLS_HANDSHAKE.value) == 1)
    assert node2.connected_peers() == []
    assert cluster.inbox["node2"].empty()


@pytest.mark.parametrize("impostor_name", ["outsider", "node3"])
async def test_a_dialer_refuses_an_impostor_at_its_peers_address(
    cluster: Cluster, impostor_name: str
) -> None:
    # Something else listens where genesis says node2 is: a stranger with its own key, or
    # node3 (a member, so TLS passes) answering at node2's address.
    impostor = cluster.identities.get(impostor_name) or NodeIdentity.generate("node2")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(hello_bytes("node2"))  # even claiming to be node2
        await read_until_closed(reader)
        writer.close()

    context = tls.server_context(impostor, cluster.genesis)
    server = await asyncio.start_server(
        answer, "127.0.0.1", cluster.info("node2").port, ssl=context
    )
    try:
        await cluster.start("node1")
        node1 = cluster.transports["node1"]
        expected = RefusalCode.CERT_NOT_PINNED if impostor_name == "node3" else (
            RefusalCode.TLS_HANDSHAKE
        )
        await eventually(lambda: node1.stats().refusal_count(expected.value) >= 1)
        assert node1.connected_peers() == []
        assert node1.stats().peer("node2").links_established == 0
    finally:
        server.close()
        await cluster.stop()
        await server.wait_closed()


async def test_a_member_claiming_another_members_name_is_refused(cluster: Cluster) -> None:
    await cluster.start("node1", "node2")
    await cluster.all_linked()
    node2 = cluster.transports["node2"]
    # node3 is in genesis, but it tells node2 it is node1 while presenting its own certificate.
    reader, writer = await open_raw_tls(
        cluster.identities["node3"], cluster.genesis, cluster.info("node2")
    )
    writer.write(hello_bytes("node1"))
    writer.write(encode_frame(Frame("raft", b"forged vote")))
    assert await read_until_closed(reader) == b""
    writer.close()
    assert node2.stats().refusal_count(RefusalCode.NAME_MISMATCH.value) == 1
    assert node2.connected_peers() == ["node1"]  # the real node1 keeps its link
    assert cluster.inbox["node2"].empty()


async def test_a_node_of_another_chain_is_refused(cluster: Cluster) -> None:
    await cluster.start("node2")
    node2 = cluster.transports["node2"]
    reader, writer = await open_raw_tls(
        cluster.identities["node1"], cluster.genesis, cluster.info("node2")
    )
    writer.write(hello_bytes("node1", chain="another-network"))
    assert await read_until_closed(reader) == b""
    writer.close()
    assert node2.stats().refusal_count(RefusalCode.CHAIN_MISMATCH.value) == 1


async def test_plain_tcp_garbage_is_refused_and_the_node_keeps_serving(cluster: Cluster) -> None:
    await cluster.start("node1", "node2")
    await cluster.all_linked()
    node2 = cluster.transports["node2"]
    target = cluster.info("node2")
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(4096))
    await read_until_closed(reader)
    writer.close()
    await eventually(lambda: node2.stats().refusal_count(RefusalCode.TLS_HANDSHAKE.value) == 1)
    assert cluster.transports["node1"].send("node2", "tx", b"still here")
    assert await receive(cluster, "node2", 1) == [("node1", "tx", b"still here")]


async def test_a_bad_frame_from_a_member_closes_only_its_link(cluster: Cluster) -> None:
    await cluster.start("node1", "node2", "node3")
    await cluster.all_linked()
    node3 = cluster.transports["node3"]
    # A process holding node1's key (say, a buggy build of it) sends a frame that is not msgpack.
    reader, writer = await open_raw_tls(
        cluster.identities["node1"], cluster.genesis, cluster.info("node3")
    )
    writer.write(hello_bytes("node1"))
    await read_hello(reader)  # as a real dialer does, wait to be accepted before sending
    writer.write((8).to_bytes(4, "big") + b"\xc1" * 8)
    await read_until_closed(reader)
    writer.close()
    await eventually(lambda: node3.stats().peer("node1").bad_frames == 1)
    # node3's other link never dropped, and the genuine node1 redials and is heard again.
    assert node3.stats().peer("node2").links_established == 1
    await cluster.all_linked()
    assert cluster.transports["node1"].send("node3", "raft", b"after")
    assert cluster.transports["node2"].send("node3", "raft", b"other")
    assert set(await receive(cluster, "node3", 2)) == {
        ("node1", "raft", b"after"),
        ("node2", "raft", b"other"),
    }


async def test_a_silent_peer_is_detected_as_dead(cluster: Cluster) -> None:
    await cluster.start("node2")
    node2 = cluster.transports["node2"]
    reader, writer = await open_raw_tls(
        cluster.identities["node1"], cluster.genesis, cluster.info("node2")
    )
    writer.write(hello_bytes("node1"))
    await eventually(lambda: node2.connected_peers() == ["node1"])
    # We never ping: node2 must give up on the link after its idle timeout.
    await read_until_closed(reader)
    writer.close()
    await eventually(lambda: node2.connected_peers() == [])


async def test_unauthenticated_connections_are_bounded(cluster: Cluster) -> None:
    few = TransportConfig(
        ping_interval_ms=100, idle_timeout_ms=1_000, handshake_timeout_ms=2_000,
        max_pending_handshakes=2,
    )
    await cluster.build("node2", few).start()
    node2 = cluster.transports["node2"]
    target = cluster.info("node2")
    silent = [await asyncio.open_connection(target.host, target.port) for _ in range(2)]
    await asyncio.sleep(0.1)  # both accepted, in this order
    _, writer = await asyncio.open_connection(target.host, target.port)
    # The third takes the slot of the oldest, which is dropped at once (so silent connections
    # cannot hold every slot and lock genuine peers out; tests/test_p2p_handshake_slots.py).
    assert await read_until_closed(silent[0][0]) == b""
    writer.close()
    assert node2.stats().refusal_count(RefusalCode.TOO_MANY_PENDING.value) == 1
    for _, silent_writer in silent:
        silent_writer.close()


# ---- recovery and bounds -------------------------------------------------------------------


async def test_link_comes_back_after_a_peer_restarts(cluster: Cluster) -> None:
    await cluster.start("node1", "node2")
    await cluster.all_linked()
    await cluster.transports["node2"].stop()
    node1 = cluster.transports["node1"]
    await eventually(lambda: node1.connected_peers() == [])
    assert node1.send("node2", "raft", b"sent while node2 was down")
    await cluster.build("node2").start()  # same identity, same port, fresh process state
    assert await receive(cluster, "node2", 1) == [("node1", "raft", b"sent while node2 was down")]
    assert cluster.transports["node2"].send("node1", "raft", b"back")
    assert await receive(cluster, "node1", 1) == [("node2", "raft", b"back")]
    assert node1.stats().peer("node2").links_established == 2


async def test_a_dead_peer_costs_bounded_memory_and_drops_are_counted(cluster: Cluster) -> None:
    bounded = TransportConfig(
        ping_interval_ms=100, idle_timeout_ms=1_000, backoff_initial_ms=20, backoff_max_ms=200,
        max_peer_queue_frames=10, max_peer_queue_bytes=20_000,
    )
    node1 = cluster.build("node1", bounded, max_frame_bytes=16_000)
    await node1.start()  # node2 never starts
    sent = [node1.send("node2", "raft", i.to_bytes(4, "big")) for i in range(100)]
    assert sent == [True] * 10 + [False] * 90  # drop-newest: the caller learns at once
    peer = node1.stats().peer("node2")
    assert (peer.queued_frames, peer.dropped_frames) == (10, 90)
    node1_bytes = TransportConfig(
        ping_interval_ms=100, idle_timeout_ms=1_000, max_peer_queue_frames=1_000,
        max_peer_queue_bytes=20_000,
    )
    node3 = cluster.build("node3", node1_bytes, max_frame_bytes=16_000)
    results = [node3.send("node1", "snapshot", bytes(5_000)) for _ in range(10)]
    assert results.count(True) == 3  # 3 x ~5 KB fit in 20 KB
    assert node3.stats().peer("node1").queued_bytes <= 20_000
    assert node3.stats().peer("node1").dropped_frames == 7


async def test_a_peer_that_stops_reading_costs_bounded_memory(cluster: Cluster) -> None:
    bounded = TransportConfig(
        ping_interval_ms=100, idle_timeout_ms=1_000, write_timeout_ms=300,
        backoff_initial_ms=20, backoff_max_ms=200,
        max_peer_queue_frames=64, max_peer_queue_bytes=4 * 1024 * 1024,
    )
    node1 = cluster.build("node1", bounded, max_frame_bytes=1024 * 1024)
    await node1.start()
    stalled, release = asyncio.Event(), asyncio.Event()

    async def accept_then_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Plays node2: completes the handshake, then never reads again until released.
        decoder = FrameDecoder()
        for _ in range(100):
            if decoder.feed(await reader.read(65536)):
                break
        writer.write(hello_bytes("node2"))
        await writer.drain()
        stalled.set()
        await asyncio.wait_for(release.wait(), WAIT_S)
        writer.transport.abort()

    context = tls.server_context(cluster.identities["node2"], cluster.genesis)
    server = await asyncio.start_server(
        accept_then_stall, "127.0.0.1", cluster.info("node2").port, ssl=context
    )
    try:
        await asyncio.wait_for(stalled.wait(), WAIT_S)
        chunk = bytes(256 * 1024)
        for _ in range(200):  # 50 MiB offered to a peer that reads nothing
            node1.send("node2", "snapshot", chunk)
            assert node1.stats().peer("node2").queued_bytes <= 4 * 1024 * 1024
            await asyncio.sleep(0)  # let the writer fill the socket buffers meanwhile
        assert node1.stats().peer("node2").dropped_frames > 0
        # The stuck writer times out and the link is dropped rather than held forever.
        await eventually(lambda: "node2" not in node1.connected_peers())
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)


async def test_stop_leaves_no_tasks_behind_and_is_idempotent() -> None:
    cluster = Cluster()
    before = asyncio.all_tasks()
    await cluster.start("node1", "node2", "node3")
    await cluster.all_linked()
    # Also leave a connection mid-handshake: stop() must not wait for it or leak its task.
    target = cluster.info("node3")
    _, silent_writer = await asyncio.open_connection(target.host, target.port)
    assert cluster.transports["node1"].send("node2", "raft", b"in flight")
    await cluster.stop()
    await cluster.stop()
    assert asyncio.all_tasks() == before
    assert all(t.connected_peers() == [] for t in cluster.transports.values())
    assert not cluster.transports["node1"].send("node2", "raft", b"after stop")
    silent_writer.close()

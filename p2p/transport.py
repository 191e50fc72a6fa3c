"""The p2p transport a node runs: authenticated links to every genesis peer, one per pair.

Used by the consensus driver (channel "raft") and the mempool (channel "tx"); it moves opaque
payloads and knows nothing of Raft. Protocol and decisions: docs/P2P.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from p2p import tls
from p2p.backoff import Backoff
from p2p.config import MAX_HELLO_BYTES, READ_CHUNK_BYTES, TransportConfig
from p2p.frame import (
    MAX_CHANNEL_BYTES,
    MAX_FRAME_BYTES,
    Frame,
    FrameDecoder,
    FrameError,
    check_channel,
    encode_frame,
)
from p2p.handshake import (
    PROTOCOL_VERSION,
    RESERVED_CHANNEL_PREFIX,
    Hello,
    PinSet,
    RefusalCode,
    check_hello,
    dials,
)
from p2p.identity import IdentityError, NodeIdentity, PeerInfo
from p2p.link import Link, close_stream
from p2p.pending import PendingHandshakes, source_of
from p2p.send_queue import SendQueue
from p2p.stats import PeerCounters, PeerStats, TransportStats

log = logging.getLogger("keiretsu.p2p")

Handler = Callable[[str, bytes], None]
MAX_LOGGED_NAME_CHARS = 64
STOP_ROUNDS = 3


@dataclass
class _Peer:
    info: PeerInfo
    queue: SendQueue
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    counters: PeerCounters = field(default_factory=PeerCounters)
    link: Link | None = None


@dataclass(eq=False)
class _Pending:
    """One inbound connection between accept and authentication, with its deadlines.

    The deadline starts at the first-bytes bound and is extended to the handshake bound once the
    ClientHello starts arriving; an eviction moves it to now. Both are measured from accept."""

    transport: asyncio.WriteTransport
    first_bytes_by_s: float  # loop time
    handshake_by_s: float  # loop time
    deadline: asyncio.Timeout | None = None  # set once the handshake task runs
    sent_first_bytes: bool = False
    evicted: bool = False

    def evict(self) -> None:
        """End this handshake now: another connection needs its slot."""
        self.evicted = True
        if self.deadline is not None and not self.deadline.expired():
            self.deadline.reschedule(asyncio.get_running_loop().time())

    def extend_to_handshake_deadline(self) -> None:
        self.sent_first_bytes = True
        if self.deadline is not None and not self.evicted:
            # Not after an eviction: that would cancel the eviction's pending timeout.
            self.deadline.reschedule(self.handshake_by_s)

    def expiry(self) -> RefusalCode:
        """Why the deadline fired."""
        if self.evicted:
            return RefusalCode.TOO_MANY_PENDING
        if not self.sent_first_bytes:
            return RefusalCode.FIRST_BYTES_TIMEOUT
        return RefusalCode.HANDSHAKE_TIMEOUT


# Refused before saying anything worth a polite TLS close: the socket is aborted at once, so an
# attacker churning connections cannot make us hold closing sockets for close_timeout_ms.
_ABORTED_REFUSALS = frozenset({RefusalCode.TOO_MANY_PENDING, RefusalCode.FIRST_BYTES_TIMEOUT})


@dataclass(frozen=True)
class _Accepted:
    """A handshake that succeeded: the peer, and frames that arrived right behind its hello."""

    peer: _Peer
    decoder: FrameDecoder
    frames: list[Frame]


class Transport:
    def __init__(
        self,
        identity: NodeIdentity,
        peers: list[PeerInfo],
        listen_host: str,
        listen_port: int,
        *,
        chain_id: str,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        config: TransportConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config or TransportConfig()
        self._config.validate(max_frame_bytes)
        if not chain_id:
            raise ValueError("chain_id must not be empty")
        self._identity = identity
        self._chain_id = chain_id
        self._max_frame_bytes = max_frame_bytes
        self._listen = (listen_host, listen_port)
        self._rng = rng or random.Random()
        others = _other_peers(identity, peers)
        self._pins = PinSet(others)
        self._peers = {
            info.name: _Peer(
                info,
                SendQueue(self._config.max_peer_queue_frames, self._config.max_peer_queue_bytes),
            )
            for info in others
        }
        self._server_ssl = tls.server_context(identity, others)
        self._client_ssl = tls.client_context(identity, others)
        self._handlers: dict[str, Handler] = {}
        self._refusals: Counter[RefusalCode] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._pending: PendingHandshakes[_Pending] = PendingHandshakes(
            self._config.max_pending_handshakes, self._config.max_pending_handshakes_per_source
        )
        self._started = False
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("transport already started")
        self._started = True
        self._server = await asyncio.start_server(self._on_connect, *self._listen)
        for peer in self._peers.values():
            if dials(self._identity.name, peer.info.name):
                self._spawn(self._dial_loop(peer), f"p2p-dial-{peer.info.name}")

    async def stop(self) -> None:
        """Close the listener and every link, cancel every task; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        for peer in self._peers.values():
            if peer.link is not None:
                peer.link.close()
        await _cancel_all(self._tasks, self._config.close_timeout_ms)
        for pending in self._pending.clear():
            pending.transport.abort()  # a task cancelled before it ran never closed its socket
        if self._server is not None:
            await self._server.wait_closed()
        for peer in self._peers.values():
            peer.queue.clear()

    @property
    def listen_port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("transport is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    # ---- API for the node ------------------------------------------------------------------

    def register(self, channel: str, handler: Handler) -> None:
        """handler(peer_id, payload) runs in the event loop for each frame on channel."""
        _check_user_channel(channel)
        if channel in self._handlers:
            raise ValueError(f"channel {channel!r} already has a handler")
        self._handlers[channel] = handler

    def send(self, peer_id: str, channel: str, payload: bytes) -> bool:
        """Queue one frame; never blocks. False (frame not queued) for an unknown peer, after
        stop(), when the peer's queue is full, or when the frame exceeds max_frame_bytes.
        True means queued, not delivered: frames in flight die with a broken link.
        An invalid or reserved channel name is a programming error and raises ValueError."""
        _check_user_channel(channel)
        peer = self._peers.get(peer_id)
        if peer is None or self._stopped:
            return False
        try:
            encoded = encode_frame(Frame(channel, payload), self._max_frame_bytes)
        except FrameError as exc:
            peer.queue.dropped_frames += 1
            log.warning("p2p send to %s refused: %s", peer_id, exc.code.value)
            return False
        if not peer.queue.push(encoded):
            return False
        peer.wake.set()
        return True

    def connected_peers(self) -> list[str]:
        return sorted(name for name, peer in self._peers.items() if peer.link is not None)

    def stats(self) -> TransportStats:
        peers = tuple(self._peer_stats(peer) for _, peer in sorted(self._peers.items()))
        refusals = tuple(sorted((code.value, count) for code, count in self._refusals.items()))
        return TransportStats(
            node=self._identity.name,
            peers=peers,
            auth_failures=sum(self._refusals.values()),
            refusals=refusals,
        )

    @staticmethod
    def _peer_stats(peer: _Peer) -> PeerStats:
        c = peer.counters
        return PeerStats(
            name=peer.info.name,
            connected=peer.link is not None,
            queued_frames=len(peer.queue),
            queued_bytes=peer.queue.queued_bytes,
            dropped_frames=peer.queue.dropped_frames,
            frames_in=c.frames_in,
            frames_out=c.frames_out,
            bytes_in=c.bytes_in,
            bytes_out=c.bytes_out,
            bad_frames=c.bad_frames,
            unhandled_frames=c.unhandled_frames,
            handler_errors=c.handler_errors,
            links_established=c.links_established,
            dial_failures=c.dial_failures,
        )

    # ---- inbound ---------------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback rather than a coroutine: the task is tracked before this returns, so
        # stop() can never miss a connection that arrived just before the listener closed.
        if self._stopped:
            writer.transport.abort()
            return
        # Nothing may be read in plain text before start_tls takes over the socket: bytes of the
        # ClientHello buffered by the plain StreamReader would be lost and the handshake hang.
        writer.transport.pause_reading()  # type: ignore[attr-defined]
        now_s = asyncio.get_running_loop().time()
        pending = _Pending(
            writer.transport,
            first_bytes_by_s=now_s + self._config.first_bytes_timeout_ms / 1000,
            handshake_by_s=now_s + self._config.handshake_timeout_ms / 1000,
        )
        # Admitted here, not in the task, so a burst of connections is counted before the first
        # task runs. The newcomer always gets a slot; the oldest pending one makes room for it.
        for evicted in self._pending.admit(pending, source_of(writer.get_extra_info("peername"))):
            evicted.evict()
        self._spawn(self._serve_inbound(pending, reader, writer), "p2p-inbound")

    async def _serve_inbound(
        self, pending: _Pending, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            outcome = await self._accept_in_time(pending, reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        finally:
            self._pending.release(pending)
        if isinstance(outcome, RefusalCode):
            self._refuse(outcome, writer, None)
            if outcome in _ABORTED_REFUSALS:
                writer.transport.abort()
            else:
                await close_stream(writer, self._config.close_timeout_ms)
            return
        await self._run_link(outcome, reader, writer)

    async def _accept_in_time(
        self, pending: _Pending, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Accepted | RefusalCode:
        """_accept within the deadlines: first TLS bytes soon after accept, the whole handshake
        within handshake_timeout_ms of accept; evict() ends it at once."""
        if pending.evicted:  # evicted by a burst before this task first ran
            return RefusalCode.TOO_MANY_PENDING
        try:
            async with asyncio.timeout_at(pending.first_bytes_by_s) as deadline:
                pending.deadline = deadline
                await _first_bytes(writer)
                self._pending.mark_speaking(pending)  # evicted after every silent connection
                pending.extend_to_handshake_deadline()
                return await self._accept(reader, writer)
        except TimeoutError:
            return pending.expiry()
        except OSError:  # the socket died before we could watch it, or no descriptor was left
            return RefusalCode.CONNECTION_LOST

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Accepted | RefusalCode:
        try:
            await writer.start_tls(self._server_ssl)
        except (ssl.SSLError, OSError, EOFError) as exc:
            log.info("p2p inbound TLS handshake failed: %s", type(exc).__name__)
            return RefusalCode.TLS_HANDSHAKE
        peer_der = tls.peer_certificate_der(writer.get_extra_info("ssl_object"))
        if peer_der is None:
            return RefusalCode.TLS_HANDSHAKE
        decoder = FrameDecoder(self._max_frame_bytes)
        try:
            hello, frames = await _read_hello(reader, decoder)
        except (ssl.SSLError, OSError, EOFError):
            return RefusalCode.CONNECTION_LOST
        refusal = check_hello(hello, peer_der, None, self._chain_id, self._pins)
        if refusal is not None:
            self._log_claim(refusal, writer, hello)
            return refusal
        assert hello is not None  # check_hello refuses a missing hello
        if not dials(hello.node_name, self._identity.name):
            return RefusalCode.WRONG_DIALER
        writer.write(encode_frame(self._own_hello().to_frame()))
        try:
            await writer.drain()
        except (ssl.SSLError, OSError):
            return RefusalCode.CONNECTION_LOST
        return _Accepted(self._peers[hello.node_name], decoder, frames)

    # ---- outbound --------------------------------------------------------------------------

    async def _dial_loop(self, peer: _Peer) -> None:
        backoff = Backoff(self._rng, self._config.backoff_initial_ms, self._config.backoff_max_ms)
        while not self._stopped:
            try:
                opened = await self._dial(peer)
            # A bug in a dial must not silently end this loop: the peer would never be
            # reconnected. It is logged with its traceback and the dial retried after backoff.
            except Exception:
                log.exception("p2p dial %s failed unexpectedly", peer.info.name)
                opened = None
            if opened is not None:
                backoff.reset()
                accepted, reader, writer = opened
                await self._run_link(accepted, reader, writer)
            else:
                peer.counters.dial_failures += 1
            await asyncio.sleep(backoff.next_delay_ms() / 1000)

    async def _dial(
        self, peer: _Peer
    ) -> tuple[_Accepted, asyncio.StreamReader, asyncio.StreamWriter] | None:
        timeout_s = self._config.connect_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    peer.info.host, peer.info.port, ssl=self._client_ssl, server_hostname=""
                )
        except ssl.SSLError as exc:
            # The listener at that address did not prove it holds a genesis certificate.
            log.warning("p2p dial %s refused: TLS failed (%s)", peer.info.name, exc.reason)
            self._refusals[RefusalCode.TLS_HANDSHAKE] += 1
            return None
        except (OSError, EOFError, TimeoutError) as exc:
            log.debug("p2p dial %s failed: %r", peer.info.name, exc)
            return None
        try:
            async with asyncio.timeout(self._config.handshake_timeout_ms / 1000):
                outcome = await self._greet(peer, reader, writer)
        except TimeoutError:
            outcome = RefusalCode.HANDSHAKE_TIMEOUT
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        if isinstance(outcome, RefusalCode):
            self._refuse(outcome, writer, peer.info.name)
            await close_stream(writer, self._config.close_timeout_ms)
            return None
        return outcome, reader, writer

    async def _greet(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Accepted | RefusalCode:
        peer_der = tls.peer_certificate_der(writer.get_extra_info("ssl_object"))
        if peer_der is None or peer_der != self._pins.der_of(peer.info.name):
            # Whoever listens at that address is not the node genesis names there.
            return RefusalCode.CERT_NOT_PINNED
        decoder = FrameDecoder(self._max_frame_bytes)
        try:
            writer.write(encode_frame(self._own_hello().to_frame()))
            await writer.drain()
            hello, frames = await _read_hello(reader, decoder)
        except ssl.SSLError:
            # With TLS 1.3 the acceptor checks our certificate after our handshake completes,
            # so its refusal of us shows up here, as an alert on the session.
            return RefusalCode.TLS_HANDSHAKE
        except (OSError, EOFError):
            return RefusalCode.CONNECTION_LOST
        refusal = check_hello(hello, peer_der, peer.info.name, self._chain_id, self._pins)
        if refusal is not None:
            self._log_claim(refusal, writer, hello)
            return refusal
        return _Accepted(peer, decoder, frames)

    # ---- links -----------------------------------------------------------------------------

    async def _run_link(
        self, accepted: _Accepted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = accepted.peer
        name = peer.info.name
        if peer.link is not None:
            # The dialer only redials when it believes the old link dead: newest link wins.
            peer.link.close()
        link = Link(
            name, reader, writer, accepted.decoder, peer.queue, peer.wake, peer.counters,
            lambda frame: self._dispatch(name, frame), self._config,
        )
        peer.link = link
        peer.counters.links_established += 1
        log.info("p2p link to %s up", name)
        try:
            end = await link.run(accepted.frames)
        finally:
            if peer.link is link:
                peer.link = None
        log.info("p2p link to %s down: %s", name, end.value)

    def _dispatch(self, peer_name: str, frame: Frame) -> None:
        handler = self._handlers.get(frame.channel)
        peer = self._peers[peer_name]
        if handler is None:
            peer.counters.unhandled_frames += 1
            return
        try:
            handler(peer_name, frame.payload)
        # A failing handler is the node's bug, not the peer's fault: log it loudly but keep the
        # link, so one bad message handler cannot partition the cluster.
        except Exception:
            peer.counters.handler_errors += 1
            log.exception("p2p handler for channel %r failed", frame.channel)

    # ---- helpers ---------------------------------------------------------------------------

    def _own_hello(self) -> Hello:
        return Hello(PROTOCOL_VERSION, self._identity.name, self._chain_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, code: RefusalCode, writer: asyncio.StreamWriter, peer: str | None) -> None:
        self._refusals[code] += 1
        log.warning(
            "p2p connection refused: %s (remote %s, dialled peer %s)",
            code.value, writer.get_extra_info("peername"), peer,
        )

    @staticmethod
    def _log_claim(code: RefusalCode, writer: asyncio.StreamWriter, hello: Hello | None) -> None:
        claimed = None if hello is None else hello.node_name[:MAX_LOGGED_NAME_CHARS]
        log.info("p2p hello from %s refused (%s): claimed node %r",
                 writer.get_extra_info("peername"), code.value, claimed)


def _check_user_channel(channel: str) -> None:
    try:
        check_channel(channel)
    except FrameError as exc:
        raise ValueError(f"invalid channel name {channel[:MAX_CHANNEL_BYTES]!r}") from exc
    if channel.startswith(RESERVED_CHANNEL_PREFIX):
        raise ValueError(f"channel {channel!r} is reserved for the transport")


async def _cancel_all(tasks: set[asyncio.Task[None]], close_timeout_ms: int) -> None:
    """Cancel and await every task. Bounded: each round waits at most a close timeout (links
    close their streams within it), and a task that survives every round is reported loudly
    rather than awaited forever."""
    for _ in range(STOP_ROUNDS):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=2 * close_timeout_ms / 1000)
    survivors = [task.get_name() for task in tasks if not task.done()]
    if survivors:
        log.error("p2p stop: tasks still running after cancellation: %s", survivors)


async def _read_hello(
    reader: asyncio.StreamReader, decoder: FrameDecoder
) -> tuple[Hello | None, list[Frame]]:
    """The peer's hello and any frames already behind it; (None, []) if it is not a hello,
    EOFError if the peer closed first (often: it refused us).

    Bounded: the caller's handshake timeout bounds the time, and MAX_HELLO_BYTES bounds what an
    authenticated-but-not-yet-named peer can make us buffer.
    """
    frames: list[Frame] = []
    while not frames:
        data = await reader.read(READ_CHUNK_BYTES)
        if not data:
            raise EOFError("closed before its hello")
        try:
            frames = decoder.feed(data)
        except FrameError:
            return None, []
        if not frames and decoder.buffered_bytes > MAX_HELLO_BYTES:
            return None, []
    return Hello.from_frame(frames[0]), frames[1:]


async def _first_bytes(writer: asyncio.StreamWriter) -> None:
    """Return once the peer has sent something (or closed), without reading any of it;
    OSError if the socket cannot be watched.

    Reading is paused so that start_tls gets every byte of the ClientHello, and asyncio refuses
    a second reader on a transport's descriptor, so a duplicate of it is watched instead. Linux
    and macOS selector loops only (add_reader)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    sock = writer.get_extra_info("socket")
    if sock is None:
        raise OSError("connection has no socket")
    watched_fd = os.dup(sock.fileno())
    try:
        loop.add_reader(watched_fd, _resolve, readable)
        await readable
    finally:
        # Unwatch before closing: epoll would otherwise keep the registration of a closed fd.
        loop.remove_reader(watched_fd)
        os.close(watched_fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _other_peers(identity: NodeIdentity, peers: list[PeerInfo]) -> list[PeerInfo]:
    """Genesis lists every node, this one included; check our entry and keep the others."""
    others = []
    for info in peers:
        if info.name != identity.name:
            others.append(info)
        elif info.cert_der != identity.certificate_der:
            raise IdentityError(f"genesis pins another certificate for this node {info.name!r}")
    return others

"""A fault-injecting TCP proxy in front of every node's p2p port, controlled per directed link.

Part of tests/faults. The kernel here has no netem, so delay, loss, duplication and one-way
cuts happen in this proxy. Peers reach a node only through it; it tells who is calling by the
caller's namespace address, so each directed link (src -> dst) has its own faults.

What a fault means on a TLS-over-TCP link: a cut direction silently drops its bytes (the link
goes quiet, then the transport's idle timeout closes it and redials fail the handshake); loss
resets the connection (a TCP stream cannot lose a byte and stay readable); duplication sends a
chunk twice, which the receiver's TLS layer must detect and close the link on.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

READ_CHUNK_BYTES = 64 * 1024
MAX_QUEUED_CHUNKS = 1024
CONNECT_TIMEOUT_S = 3.0
PER_MILLE = 1000


@dataclass(frozen=True)
class LinkFault:
    """Faults on one direction of one link; the default is a healthy link."""

    cut: bool = False
    delay_ms: int = 0
    loss_per_mille: int = 0  # chance per chunk that the connection is reset
    dup_per_mille: int = 0  # chance per chunk that it is delivered twice

    @property
    def healthy(self) -> bool:
        return self == LinkFault()


HEALTHY = LinkFault()


@dataclass(frozen=True)
class Endpoint:
    """Where peers dial a node (the proxy) and where the node itself listens."""

    name: str
    proxy_host: str
    proxy_port: int
    node_host: str
    node_port: int


@dataclass(eq=False)  # identity, not value: a set holds the live connections
class _Conn:
    src: str
    dst: str
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def abort(self) -> None:
        for w in self.writers:
            w.transport.abort()


class FaultNet:
    """Every proxy of one cluster and the faults of every directed link between its nodes."""

    def __init__(self, endpoints: list[Endpoint], name_of_ip: dict[str, str], seed: int) -> None:
        self.endpoints = endpoints
        self.name_of_ip = name_of_ip
        self.rng = random.Random(seed)
        self.faults: dict[tuple[str, str], LinkFault] = {}
        self.counters: Counter[str] = Counter()
        self._servers: list[asyncio.Server] = []
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for ep in self.endpoints:
            server = await asyncio.start_server(functools.partial(self._accept, ep=ep), ep.proxy_host, ep.proxy_port)
            self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    # ---- control -------------------------------------------------------------------------

    def set(self, src: str, dst: str, fault: LinkFault) -> None:
        before = self.faults.get((src, dst), HEALTHY)
        self.faults[(src, dst)] = fault
        if (before.cut or before.dup_per_mille) and not (fault.cut or fault.dup_per_mille):
            # Bytes were dropped or doubled mid-stream: that TLS session is garbage; start afresh.
            self.reset_between(src, dst)

    def heal(self) -> None:
        for (src, dst) in list(self.faults):
            self.set(src, dst, HEALTHY)
        self.faults.clear()

    def reset_between(self, a: str, b: str) -> None:
        for conn in list(self._conns):
            if {conn.src, conn.dst} == {a, b}:
                conn.abort()

    def fault(self, src: str, dst: str) -> LinkFault:
        return self.faults.get((src, dst), HEALTHY)

    # ---- relaying ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ep: Endpoint) -> None:
        peer = writer.get_extra_info("peername")
        src = self.name_of_ip.get(peer[0] if peer else "", "?")
        conn = _Conn(src, ep.name, [writer])
        self._conns.add(conn)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(ep.node_host, ep.node_port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            self._conns.discard(conn)
            writer.transport.abort()
            return
        conn.writers.append(up_writer)
        self.counters["connections"] += 1
        forward = self._spawn(self._pipe(conn, reader, up_writer, src, ep.name))
        backward = self._spawn(self._pipe(conn, up_reader, writer, ep.name, src))
        await asyncio.gather(forward, backward, return_exceptions=True)
        conn.abort()
        self._conns.discard(conn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pipe(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    src: str, dst: str) -> None:
        """Bytes src -> dst, each chunk judged by the link's fault at the moment it arrives."""
        queue: asyncio.Queue[tuple[float, bytes, int] | None] = asyncio.Queue(MAX_QUEUED_CHUNKS)
        sender = self._spawn(self._send(queue, writer))
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await reader.read(READ_CHUNK_BYTES)
                if not chunk:
                    break
                fault = self.fault(src, dst)
                if fault.cut:
                    self.counters["chunks_dropped"] += 1
                    continue
                if fault.loss_per_mille and self.rng.randrange(PER_MILLE) < fault.loss_per_mille:
                    self.counters["connections_reset"] += 1
                    conn.abort()
                    break
                copies = 1
                if fault.dup_per_mille and self.rng.randrange(PER_MILLE) < fault.dup_per_mille:
                    self.counters["chunks_duplicated"] += 1
                    copies = 2
                if fault.delay_ms:
                    self.counters["chunks_delayed"] += 1
                await queue.put((loop.time() + fault.delay_ms / 1000, chunk, copies))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            conn.abort()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes, int] | None],
                    writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                due, chunk, copies = item
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                for _ in range(copies):
                    writer.write(chunk)
                await writer.drain()
                self.counters["bytes_forwarded"] += len(chunk)
        except OSError:
            pass

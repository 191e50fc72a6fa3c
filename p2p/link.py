"""One authenticated p2p link: a reader and a writer task over a TLS stream to one peer.

Built by Transport after the handshake; ends on EOF, a bad frame, an idle or write timeout,
or close(). The peer's SendQueue outlives the link, so frames wait for the next one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from p2p.config import READ_CHUNK_BYTES, WRITE_BATCH_BYTES, TransportConfig
from p2p.frame import Frame, FrameDecoder, FrameError, FrameErrorCode, encode_frame
from p2p.handshake import PING_CHANNEL, RESERVED_CHANNEL_PREFIX
from p2p.send_queue import SendQueue
from p2p.stats import PeerCounters

log = logging.getLogger("keiretsu.p2p")

PING_FRAME = encode_frame(Frame(PING_CHANNEL, b""))


class LinkEnd(enum.Enum):
    """Why a link ended; stable values for logs."""

    EOF = "eof"
    IDLE_TIMEOUT = "idle_timeout"
    WRITE_TIMEOUT = "write_timeout"
    BAD_FRAME = "bad_frame"
    IO_ERROR = "io_error"
    CLOSED = "closed"  # replaced by a newer link, or the transport is stopping


class Link:
    def __init__(
        self,
        peer: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
        queue: SendQueue,
        wake: asyncio.Event,
        counters: PeerCounters,
        on_frame: Callable[[Frame], None],
        config: TransportConfig,
    ) -> None:
        self.peer = peer
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._queue = queue
        self._wake = wake
        self._counters = counters
        self._on_frame = on_frame
        self._config = config
        self._tasks: list[asyncio.Task[LinkEnd]] = []
        self._closed = False
        # Loop times of the last bytes received and sent. One watch task per direction compares
        # them with the idle timeout and the ping interval, instead of an asyncio.timeout (a
        # timer scheduled and cancelled) around every read and every wait: those timers were a
        # visible share of a node's CPU per Raft message (py-spy).
        self._last_in_s = 0.0
        self._last_out_s = 0.0
        self._ping_due = False

    def close(self) -> None:
        """Ask the link to end; run() returns once its tasks are done and the stream closed."""
        self._closed = True
        for task in self._tasks:
            task.cancel()

    async def run(self, initial_frames: list[Frame]) -> LinkEnd:
        """Serve the link until it ends, then close the stream. Never raises for peer faults."""
        if self._closed:
            await close_stream(self._writer, self._config.close_timeout_ms)
            return LinkEnd.CLOSED
        now = asyncio.get_running_loop().time()
        self._last_in_s = self._last_out_s = now
        self._tasks = [
            asyncio.create_task(self._read_loop(initial_frames), name=f"p2p-read-{self.peer}"),
            asyncio.create_task(self._write_loop(), name=f"p2p-write-{self.peer}"),
            asyncio.create_task(self._idle_watch(), name=f"p2p-idle-{self.peer}"),
            asyncio.create_task(self._ping_watch(), name=f"p2p-ping-{self.peer}"),
        ]
        try:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in self._tasks:
                task.cancel()
            try:
                results = await asyncio.gather(*self._tasks, return_exceptions=True)
            finally:
                await close_stream(self._writer, self._config.close_timeout_ms)
        return self._end_reason(results)

    def _end_reason(self, results: list[LinkEnd | BaseException]) -> LinkEnd:
        for result in results:
            if isinstance(result, LinkEnd):
                return result
            if isinstance(result, FrameError):
                self._counters.bad_frames += 1
                log.warning("p2p link to %s: bad frame (%s), closing", self.peer, result.code.value)
                return LinkEnd.BAD_FRAME
            if isinstance(result, (OSError, EOFError)):
                return LinkEnd.IO_ERROR
            if isinstance(result, Exception):
                # A bug of ours (e.g. in a frame callback that is not a handler); surface it.
                log.error("p2p link to %s failed", self.peer, exc_info=result)
                return LinkEnd.IO_ERROR
        return LinkEnd.CLOSED

    async def _read_loop(self, initial_frames: list[Frame]) -> LinkEnd:
        for frame in initial_frames:
            self._receive(frame)
        loop = asyncio.get_running_loop()
        while True:
            data = await self._reader.read(READ_CHUNK_BYTES)  # _idle_watch bounds the wait
            if not data:
                return LinkEnd.EOF
            self._last_in_s = loop.time()
            self._counters.bytes_in += len(data)
            for frame in self._decoder.feed(data):
                self._receive(frame)

    async def _idle_watch(self) -> LinkEnd:
        """Ends the link once nothing arrived for idle_timeout (the peer pings when quiet)."""
        loop = asyncio.get_running_loop()
        idle_timeout_s = self._config.idle_timeout_ms / 1000
        while True:
            silent_s = loop.time() - self._last_in_s
            if silent_s >= idle_timeout_s:
                return LinkEnd.IDLE_TIMEOUT
            await asyncio.sleep(idle_timeout_s - silent_s)

    async def _ping_watch(self) -> LinkEnd:
        """Asks the writer for a ping once nothing was sent for ping_interval."""
        loop = asyncio.get_running_loop()
        ping_interval_s = self._config.ping_interval_ms / 1000
        while True:
            quiet_s = loop.time() - self._last_out_s
            if quiet_s >= ping_interval_s:
                self._ping_due = True
                self._wake.set()
                quiet_s = 0.0
            await asyncio.sleep(ping_interval_s - quiet_s)

    def _receive(self, frame: Frame) -> None:
        if frame.channel == PING_CHANNEL:
            return  # its arrival already reset the idle timer
        if frame.channel.startswith(RESERVED_CHANNEL_PREFIX):
            # A second hello, or a control frame this version does not know: the peer is not
            # speaking our protocol, so the link ends like on any other bad frame.
            raise FrameError(FrameErrorCode.BAD_CHANNEL, "reserved channel after handshake")
        self._counters.frames_in += 1
        self._on_frame(frame)

    async def _write_loop(self) -> LinkEnd:
        loop = asyncio.get_running_loop()
        write_timeout_s = self._config.write_timeout_ms / 1000
        while True:
            batch = self._queue.pop_batch(WRITE_BATCH_BYTES)
            if not batch:
                if not self._ping_due:
                    self._wake.clear()
                    await self._wake.wait()  # woken by a send, or by _ping_watch
                    continue
                batch = [PING_FRAME]  # quiet for a whole interval: prove we are alive
            self._ping_due = False
            # One write per batch, not per frame: asyncio's TLS layer makes a record and a send
            # syscall per write, which capped small-frame throughput near 18k frames/s.
            self._writer.write(b"".join(batch))
            self._last_out_s = loop.time()
            if self._writer.transport.get_write_buffer_size():
                # The socket did not take it all: wait for room, bounded (a stalled peer).
                try:
                    async with asyncio.timeout(write_timeout_s):
                        await self._writer.drain()
                except TimeoutError:
                    return LinkEnd.WRITE_TIMEOUT
            else:
                await self._writer.drain()  # nothing buffered: returns at once (or raises if lost)
            self._counters.bytes_out += sum(len(encoded) for encoded in batch)
            if batch[0] is not PING_FRAME:
                self._counters.frames_out += len(batch)


async def close_stream(writer: asyncio.StreamWriter, close_timeout_ms: int) -> None:
    """Close politely within the bound, else abort: a dead peer never holds a close open."""
    try:
        writer.close()
        async with asyncio.timeout(close_timeout_ms / 1000):
            await writer.wait_closed()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except Exception:  # noqa: BLE001 - timed out, or already broken: either way, drop it now
        writer.transport.abort()

"""Signature checks in worker processes, so they run beside the executor instead of under its GIL.

Part of ledger/. The executor's thread holds the GIL while it runs contracts, so checks on a
thread pool overlapped execution only in part (docs/PERFORMANCE.md). Here each worker is a
process with its own interpreter (`python -m ledger.sigpool`); the executor's thread alone
feeds it, over a pipe pair per worker, a window of chunks ahead of the transaction it executes:
no helper thread of this process must win the GIL for a worker to get work or hand back verdicts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ledger.tx import SignedTx, signatures_verify

# Transactions per message to a worker: ~2 ms of checks, so a message's cost (~20 µs of pickling
# and a write on the executor's thread) stays small next to it.
CHUNK_TXS = 32
# Chunks sent ahead per worker: the work queued beyond the transaction being executed
# (4 x 32 x ~60 µs = ~8 ms per worker). For single-signer transactions (~140 bytes a check) that
# stays under a pipe's 64 KiB buffer, so the executor's thread does not block on a send; chunks
# of many-signer transactions may make it wait for the worker to read, never deadlock (answers
# are a few bytes, always read in order).
WINDOW_CHUNKS = 4
# How long a worker may take to answer one chunk (or start) before it is treated as broken.
REPLY_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 2.0
MAX_WORKERS = 64

# One transaction's check: (chain id, body bytes, public keys, signatures), keys and signatures
# paired. The worker hashes the signing message: that is CPU off the executor's thread too.
Check = tuple[str, bytes, tuple[bytes, ...], tuple[bytes, ...]]
_CPU_REQUEST = "cpu"


def check_of(tx: SignedTx) -> Check:
    body = tx.body
    return body.chain_id, tx.body_bytes, body.signers, tx.signatures


def verify_checks(checks: list[Check]) -> bytes:
    """One byte per check, 1 if every signature of it verifies (SignedTx.verify_signatures's rule)."""
    return bytes(signatures_verify(*check) for check in checks)


def _serve(requests: Connection, replies: Connection) -> None:
    """A worker's loop: a list of checks gets its verdicts, "cpu" this process's CPU seconds;
    None or a closed pipe ends it. Bounded by the parent, which closes the pipe when it stops."""
    while True:
        try:
            request: Any = requests.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        replies.send(time.process_time() if request == _CPU_REQUEST else verify_checks(request))


def _worker_env() -> dict[str, str]:
    """This process's environment, with the directory this `ledger` package was imported from
    first on the path: the workers run the same code as the executor that feeds them."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(part for part in (root, env.get("PYTHONPATH")) if part)
    return env


class PoolBroken(Exception):
    """A worker died, hung or could not start; the caller checks in-process instead."""


class SignaturePool:
    """Worker processes that verify signatures; started once, reused for every batch, closed once.

    Not thread-safe: one thread (the executor's) uses it. If a worker cannot start or fails, the
    pool closes itself and `verify_stream` checks the rest in this process: the verdicts are the
    same either way, only where the CPU is spent differs.
    """

    def __init__(self, workers: int | None = None) -> None:
        count = workers if workers is not None else (os.cpu_count() or 1)
        if not 0 < count <= MAX_WORKERS:
            raise ValueError(f"workers 1..{MAX_WORKERS}")
        self.workers = count
        self._procs: list[subprocess.Popen[bytes]] = []
        self._requests: list[Connection] = []  # ours to write, one per worker
        self._replies: list[Connection] = []  # ours to read, one per worker

    @property
    def running(self) -> bool:
        return bool(self._requests)

    def start(self) -> bool:
        """Start the workers; False, and a closed pool, if they cannot start or do not answer
        within START_TIMEOUT_S.

        A fresh interpreter, not multiprocessing: forking would copy this process's threads'
        locks (LevelDB's, asyncio's) mid-use, and multiprocessing's spawn re-runs the main
        script in the child, which an unguarded script (a test runner, `python -c`) breaks on.
        """
        if self.running:
            return True
        try:
            for _ in range(self.workers):
                self._start_one()
            for replies, requests in zip(self._replies, self._requests, strict=True):
                requests.send(_CPU_REQUEST)  # each answers once it has imported its code
                self._receive(replies, START_TIMEOUT_S)
        except (OSError, PoolBroken, ValueError):
            self.close()
            return False
        return True

    def _start_one(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ledger.sigpool", str(request_read), str(reply_write)],
                pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL, close_fds=True, env=_worker_env(),
            )
        except BaseException:
            for fd in (request_read, request_write, reply_read, reply_write):
                os.close(fd)
            raise
        os.close(request_read)  # the worker's ends, now open in the worker
        os.close(reply_write)
        self._procs.append(proc)
        self._requests.append(Connection(request_write, readable=False))
        self._replies.append(Connection(reply_read, writable=False))

    def close(self) -> None:
        """Stop the workers: ask, then wait a little, then kill the ones that stay."""
        for requests in self._requests:
            try:
                requests.send(None)
            except OSError:
                pass
            requests.close()
        for replies in self._replies:
            replies.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._requests = []
        self._replies = []
        self._procs = []

    def __enter__(self) -> SignaturePool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def worker_cpu_seconds(self) -> float:
        """CPU seconds the workers have used since they started (0.0 if none run)."""
        total = 0.0
        try:
            for requests, replies in zip(self._requests, self._replies, strict=True):
                requests.send(_CPU_REQUEST)
                total += self._receive(replies, REPLY_TIMEOUT_S)
        except (OSError, PoolBroken):
            self.close()
        return total

    def verify_stream(self, txs: list[SignedTx]) -> Iterator[bool]:
        """Each transaction's verdict, in order, as soon as its chunk is answered.

        Chunk k goes to worker k mod n, and each worker answers in the order it was sent;
        WINDOW_CHUNKS chunks per worker stay in flight ahead of the one the caller waits for.
        If the pool breaks, the chunks not yet answered are checked here, in this process.
        """
        chunks = [txs[i:i + CHUNK_TXS] for i in range(0, len(txs), CHUNK_TXS)]
        sent = answered = 0  # chunks sent to the workers, and answered by them, so far
        try:
            for index, chunk in enumerate(chunks):
                verdicts: bytes | None = None
                if self.running:
                    try:
                        while sent < len(chunks) and sent < index + WINDOW_CHUNKS * self.workers:
                            self._send(sent, chunks[sent])
                            sent += 1
                        verdicts = self._receive(self._replies[index % self.workers], REPLY_TIMEOUT_S)
                        answered += 1
                        if len(verdicts) != len(chunk):
                            raise PoolBroken("a worker answered for another number of transactions")
                    except PoolBroken:
                        self.close()  # the chunks in flight are lost with it: checked here below
                        verdicts = None
                if verdicts is None:
                    yield from (tx.verify_signatures() for tx in chunk)
                else:
                    yield from (verdict == 1 for verdict in verdicts)
        finally:
            self._drain(answered, sent)

    def _drain(self, first: int, end: int) -> None:
        """Read and drop the answers to chunks first..end-1 (the caller stopped early), so the
        next batch's answers are its own; a pool that cannot answer them is closed."""
        if not self.running:
            return
        try:
            for index in range(first, end):
                self._receive(self._replies[index % self.workers], REPLY_TIMEOUT_S)
        except PoolBroken:
            self.close()

    def _send(self, index: int, chunk: list[SignedTx]) -> None:
        try:
            self._requests[index % self.workers].send([check_of(tx) for tx in chunk])
        except OSError as exc:
            raise PoolBroken(f"a worker's pipe failed: {exc}") from exc

    def _receive(self, replies: Connection, timeout_s: float) -> Any:
        try:
            if not replies.poll(timeout_s):
                raise PoolBroken(f"a worker did not answer within {timeout_s} s")
            return replies.recv()
        except (EOFError, OSError) as exc:
            raise PoolBroken(f"a worker's pipe failed: {exc}") from exc


def _worker_main(argv: list[str]) -> int:
    """`python -m ledger.sigpool <request fd> <reply fd>`: what SignaturePool starts.

    Ctrl-C reaches the whole process group; the worker leaves stopping to its parent, which
    closes the pipe (a parent that dies closes it too).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, replies = (Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False))
    _serve(requests, replies)
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))

"""A real local cluster for tests: N node processes on 127.0.0.1 with fresh ports and data.

Shared by the node, CLI and fault-injection tests. Every process it starts it also stops
(SIGKILL as the last resort), and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from keiretsu_node.bootstrap import KEYS_DIR, init_network
from keiretsu_node.client import Client
from keiretsu_node.config import BatchingConfig, ConsensusConfig, NetworkSpec, NodeSpec
from ledger.genesis import Genesis
from ledger.keys import KeyPair

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out for 127.0.0.1 (released again for the nodes to take)."""
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class LocalCluster:
    root: Path
    size: int = 3
    chain_id: str = "keiretsu-test-1"
    consensus: ConsensusConfig = field(default_factory=lambda: ConsensusConfig(tick_ms=20, election_ticks=10))
    batching: BatchingConfig = field(default_factory=lambda: BatchingConfig(timeout_ms=5))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        nodes = tuple(NodeSpec(f"node{i + 1}", "127.0.0.1", ports[2 * i], ports[2 * i + 1]) for i in range(self.size))
        spec = NetworkSpec(self.chain_id, nodes, ("operator",), batching=self.batching, consensus=self.consensus)
        made = init_network(spec, self.root / "network")
        self.genesis: Genesis = made.genesis
        self.configs = {n.name: c for n, c in zip(self.genesis.nodes, made.node_configs, strict=True)}
        self.operator = KeyPair.load(self.root / "network" / KEYS_DIR / "operator.key")
        self.urls = {n.name: f"http://127.0.0.1:{n.api_port}" for n in self.genesis.nodes}

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.genesis.nodes]

    def command(self, name: str) -> list[str]:
        """The argv that runs one node; the fault suite prefixes it to enter a network namespace."""
        return [sys.executable, "-m", "cli.main", "node", "start", "--config", str(self.configs[name])]

    def start(self, name: str) -> None:
        log = open(self.configs[name].parent / "node.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            self.command(name),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        log.close()

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(30)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets and memory but runs nothing, like a long GC pause."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.configs[name].parent / "node.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def client(self, name: str) -> Client:
        return Client(self.urls[name], timeout_s=10)

    async def wait_ready(self, names: list[str] | None = None, timeout_s: float = READY_TIMEOUT_S) -> None:
        names = names or list(self.procs)
        deadline = time.monotonic() + timeout_s
        clients = {n: self.client(n) for n in names}
        try:
            while True:
                for n in names:
                    proc = self.procs.get(n)
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"{n} exited with {proc.returncode}:\n{self.log_tail(n)}")
                ready = await asyncio.gather(*(c.ready() for c in clients.values()))
                if all(ready):
                    return
                if time.monotonic() > deadline:
                    waiting = [n for n, r in zip(names, ready, strict=True) if not r]
                    raise TimeoutError(f"not ready in {timeout_s}s: {waiting}")
                await asyncio.sleep(0.1)
        finally:
            for c in clients.values():
                await c.close()

    async def leader(self, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name in list(self.procs):
                async with self.client(name) as c:
                    try:
                        status = await c.status()
                    except Exception:  # a node that is down or starting: ask the next
                        continue
                    if status["role"] == "leader":
                        return name
            await asyncio.sleep(0.1)
        raise TimeoutError("no leader elected")

    async def wait_height(self, height: int, names: list[str] | None = None, timeout_s: float = 30) -> None:
        names = names or list(self.procs)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            heights = []
            for name in names:
                async with self.client(name) as c:
                    try:
                        heights.append((await c.status())["height"])
                    except Exception:  # not answering yet
                        heights.append(-1)
            if min(heights) >= height:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"height {height} not reached by {names}")

    async def block_hashes(self, name: str, up_to: int) -> list[tuple[str, str]]:
        async with self.client(name) as c:
            out = []
            for h in range(up_to + 1):
                block = await c.block(h, headers_only=True)
                out.append((block["hash"], block["state_hash"]))
            return out

"""A real local cluster for tests: N node processes on 127.0.0.1 with fresh ports and data.

Shared by the node, CLI and fault-injection tests. Every process it starts it also stops
(SIGKILL as the last resort), and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from keiretsu_node.bootstrap import KEYS_DIR, init_network
from keiretsu_node.client import Client
from keiretsu_node.config import BatchingConfig, ConsensusConfig, NetworkSpec, NodeSpec
from keiretsu_node.localnet import NodeProcesses, free_ports
from ledger.genesis import Genesis
from ledger.keys import KeyPair

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0


@dataclass
class LocalCluster(NodeProcesses):
    """A fresh network of `size` nodes under `root`, with the waits tests need beside the processes."""

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

    def client(self, name: str) -> Client:
        return Client(self.urls[name], timeout_s=10)

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

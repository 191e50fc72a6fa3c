"""A LocalCluster whose nodes each run in their own network namespace, peers dialing via proxies.

Part of tests/faults. The genesis names each node by its proxy's host-side address, so every
p2p byte between nodes passes through FaultNet; clients reach each node's API directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from keiretsu_node.bootstrap import KEYS_DIR, init_network
from keiretsu_node.config import NetworkSpec, NodeSpec
from ledger.keys import KeyPair
from tests.cluster import LocalCluster
from tests.faults.netns import Topology
from tests.faults.proxy import Endpoint, FaultNet

NODE_P2P_PORT = 7000  # inside each namespace: ports cannot collide with anything else
NODE_API_PORT = 8000
PROXY_PORT = 7000  # on the node's own host-side address


@dataclass
class NetnsCluster(LocalCluster):
    topology: Topology | None = None
    net: FaultNet | None = None
    proxy_seed: int = 0
    down: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        names = [f"node{i + 1}" for i in range(self.size)]
        self.topology = Topology(names)
        try:
            self._bootstrap(names)
        except Exception:
            self.topology.close()
            raise

    def _bootstrap(self, names: list[str]) -> None:
        assert self.topology is not None
        links = self.topology.links
        nodes = tuple(NodeSpec(n, links[n].host_ip, PROXY_PORT, NODE_API_PORT) for n in names)
        spec = NetworkSpec(self.chain_id, nodes, ("operator",), batching=self.batching, consensus=self.consensus)
        made = init_network(spec, self.root / "network")
        self.genesis = made.genesis
        self.configs = {n.name: c for n, c in zip(self.genesis.nodes, made.node_configs, strict=True)}
        for name, path in self.configs.items():
            _listen_inside(path, links[name].node_ip)
        self.operator = KeyPair.load(self.root / "network" / KEYS_DIR / "operator.key")
        self.urls = {n: f"http://{links[n].node_ip}:{NODE_API_PORT}" for n in names}
        endpoints = [Endpoint(n, links[n].host_ip, PROXY_PORT, links[n].node_ip, NODE_P2P_PORT) for n in names]
        self.net = FaultNet(endpoints, {links[n].node_ip: n for n in names}, self.proxy_seed)

    def command(self, name: str) -> list[str]:
        assert self.topology is not None
        return [*self.topology.links[name].exec_prefix(), *super().command(name)]

    def set_link_up(self, name: str, up: bool) -> None:
        assert self.topology is not None
        self.topology.set_up(name, up)
        (self.down.discard if up else self.down.add)(name)

    async def open(self) -> None:
        assert self.net is not None
        await self.net.start()

    async def close(self) -> None:
        self.stop_all()
        if self.net is not None:
            await self.net.close()
        if self.topology is not None:
            self.topology.close()


def _listen_inside(config: Path, node_ip: str) -> None:
    """The node listens on its namespace address; genesis keeps the proxy's address for peers."""
    text = config.read_text()
    for key, value in (("p2p_host", f'"{node_ip}"'), ("api_host", f'"{node_ip}"'),
                       ("p2p_port", str(NODE_P2P_PORT)), ("api_port", str(NODE_API_PORT))):
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
        assert count == 1, f"{config} has no single {key} line"
    config.write_text(text)

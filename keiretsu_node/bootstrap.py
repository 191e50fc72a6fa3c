"""Network bootstrap: node identities, operator keys, the genesis and one folder per node.

Part of keiretsu_node/; `keiretsu network init` and `keiretsu up` call it. Like `cometbft
testnet`, it writes a ready N-node network: run each node with its folder's node.toml.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from keiretsu_node.config import ConfigError, NetworkSpec, node_toml
from ledger.genesis import Genesis, GenesisNode
from ledger.keys import KeyPair
from p2p.identity import NodeIdentity

GENESIS_FILE = "genesis.json"
NODE_CONFIG_FILE = "node.toml"
KEYS_DIR = "keys"


@dataclass(frozen=True)
class BootstrappedNetwork:
    root: Path
    genesis: Genesis
    node_configs: tuple[Path, ...]
    operator_keys: tuple[Path, ...]


def init_network(spec: NetworkSpec, out: Path, *, genesis_time_ms: int | None = None) -> BootstrappedNetwork:
    """Write keys, genesis and node folders under `out`, which must be empty or absent."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose a new folder (nothing was overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    keys_dir = out / KEYS_DIR
    keys_dir.mkdir(mode=0o700)
    operator_paths = []
    operator_addresses = []
    for name in spec.operators:
        key = KeyPair.generate()
        path = keys_dir / f"{name}.key"
        key.save(path)
        operator_paths.append(path)
        operator_addresses.append(key.address)
    genesis_nodes = []
    identities = []
    for node in spec.nodes:
        identity = NodeIdentity.generate(node.name)
        identities.append(identity)
        genesis_nodes.append(GenesisNode(node.name, node.host, node.p2p_port, node.api_port,
                                         identity.public_key_hex, identity.certificate_pem))
    genesis = Genesis(spec.chain_id, genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
                      tuple(genesis_nodes), {"operators": operator_addresses})
    genesis.dump(out / GENESIS_FILE)
    configs = []
    for node, identity in zip(spec.nodes, identities, strict=True):
        folder = out / node.name
        folder.mkdir()
        identity.save(folder / "identity")
        values = {
            "name": node.name,
            "chain_id": spec.chain_id,
            "genesis": f"../{GENESIS_FILE}",
            "data_dir": "data",
            "identity_dir": "identity",
            "p2p_host": node.host,
            "p2p_port": node.p2p_port,
            "api_host": node.host,
            "api_port": node.api_port,
            "fsync": True,
        }
        sections = {"batching": spec.batching, "mempool": spec.mempool, "consensus": spec.consensus,
                    "api": spec.api}
        path = folder / NODE_CONFIG_FILE
        path.write_text(f"# Keiretsu node {node.name}: start with `keiretsu node start --config {path.name}`\n"
                        + node_toml(values, sections))
        configs.append(path)
    return BootstrappedNetwork(out, genesis, tuple(configs), tuple(operator_paths))

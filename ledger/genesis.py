"""Genesis: the document every node of a network starts from, and its hash.

Part of ledger/. It names the chain, its start time, the consensus nodes (name, address and
pinned identity, read by the node layer) and the initial application state (operators,
participants, currencies). Its hash is stored with the data so a node never runs on another
network's data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import codec

GENESIS_DOMAIN = b"keiretsu/genesis/v1\x00"
MAX_GENESIS_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class GenesisNode:
    name: str
    host: str
    p2p_port: int
    api_port: int
    node_public_key: str  # hex Ed25519
    certificate_pem: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "p2p_port": self.p2p_port,
            "api_port": self.api_port,
            "node_public_key": self.node_public_key,
            "certificate_pem": self.certificate_pem,
        }


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    nodes: tuple[GenesisNode, ...]
    app_state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "nodes": [n.to_json() for n in self.nodes],
            "app_state": self.app_state,
        }

    def hash(self) -> bytes:
        # encode_document: a network may start with more participants than one decoded array holds.
        return hashlib.sha256(GENESIS_DOMAIN + codec.encode_document(self.to_json())).digest()

    def dump(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Genesis:
        try:
            nodes = tuple(GenesisNode(**n) for n in data["nodes"])
            genesis = cls(str(data["chain_id"]), int(data["genesis_time_ms"]), nodes, dict(data.get("app_state", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"genesis is malformed: {exc}") from exc
        codec.encode_document(genesis.to_json())  # rejects floats and other non-canonical values
        return genesis

    @classmethod
    def load(cls, path: Path) -> Genesis:
        raw = Path(path).read_bytes()
        if len(raw) > MAX_GENESIS_BYTES:
            raise ValueError(f"{path}: genesis larger than {MAX_GENESIS_BYTES} bytes")
        try:
            return cls.from_json(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON: {exc}") from exc

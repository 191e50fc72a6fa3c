"""Network and node configuration: read from TOML once, validated at the door.

Part of keiretsu_node/. `NetworkSpec` is what an operator writes (network.example.toml);
`NodeConfig` is one node's file written by `keiretsu network init`. Every error names its field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from consensus.raft import MAX_ENTRY_BYTES

MAX_NODES = 15
MAX_BATCH_TXS_LIMIT = 10_000
# A batch is one Raft entry: its transactions (at most batching.preferred_bytes of them, or a
# single one), each framed in at most 5 bytes, and a header. Past this bound the entry could
# exceed MAX_ENTRY_BYTES, and Raft would refuse every proposal of it, which the leader retries.
MAX_PREFERRED_BATCH_BYTES = MAX_ENTRY_BYTES - 5 * MAX_BATCH_TXS_LIMIT - 1024
# The leader discards, whole, a forwarded-transactions frame holding more than this: a follower
# forwarding larger frames would never have anything it admitted ordered.
MAX_FORWARDED_TXS_PER_FRAME = 2_000
# Without mempool.max_txs_per_signer in the TOML, one signer may hold this share of max_txs.
SIGNER_SHARE_DIVISOR = 4
DEFAULT_MEMPOOL_TXS = 100_000


def signer_share(max_txs: int) -> int:
    """The entries one first signer may hold in a pool of max_txs, unless configured."""
    return max(1, max_txs // SIGNER_SHARE_DIVISOR)


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the file and field."""


@dataclass(frozen=True)
class BatchingConfig:
    """When the leader cuts a batch (Fabric's MaxMessageCount, PreferredMaxBytes, BatchTimeout)."""

    max_txs: int = 2_000
    preferred_bytes: int = 2 * 1024 * 1024
    timeout_ms: int = 100
    max_inflight_batches: int = 4
    # Block time is the leader's clock, and it never goes backwards: a node warns (rate-limited,
    # and the keiretsu_block_time_ahead_seconds gauge shows it) when an applied block's time is
    # ahead of its own clock by more than this (docs/NODE.md, "Clocks").
    clock_ahead_warn_ms: int = 60_000


@dataclass(frozen=True)
class MempoolConfig:
    max_txs: int = DEFAULT_MEMPOOL_TXS
    max_bytes: int = 128 * 1024 * 1024
    forward_batch_txs: int = 500
    # Entries one first signer may hold: signer_share(max_txs) unless the TOML says otherwise
    # (_mempool_section); above max_txs it bounds nothing the pool's bound does not.
    max_txs_per_signer: int = signer_share(DEFAULT_MEMPOOL_TXS)


@dataclass(frozen=True)
class ConsensusConfig:
    tick_ms: int = 50
    election_ticks: int = 10
    # A follower hears the leader at least every 100 ms (a heartbeat after 2 silent ticks; an
    # APPEND counts), five to ten times per election timeout. Each heartbeat round (a message
    # to each follower and its answer) cost ~1.9 ms of the three nodes' CPU on this box (idle
    # network: 0.052-0.064 cores with one a tick, 0.026 with one every five ticks).
    heartbeat_ticks: int = 2
    # The Raft log is held in memory until compacted: compact once this many applied entries
    # (or bytes of them) are kept, keeping a tail within both keep bounds so a follower briefly
    # behind needs no snapshot. The byte bound is what holds memory when entries are large
    # (seeding writes ~268 KB batches); the count bound when they are small.
    compact_after_entries: int = 1_000
    compact_keep_entries: int = 200
    compact_after_bytes: int = 16 * 1024 * 1024
    compact_keep_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class ApiConfig:
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_txs: int = 1_000
    max_wait_ms: int = 30_000
    max_event_subscribers: int = 256


@dataclass(frozen=True)
class NodeSpec:
    name: str
    host: str
    p2p_port: int
    api_port: int


@dataclass(frozen=True)
class NetworkSpec:
    chain_id: str
    nodes: tuple[NodeSpec, ...]
    operators: tuple[str, ...]
    batching: BatchingConfig = BatchingConfig()
    mempool: MempoolConfig = MempoolConfig()
    consensus: ConsensusConfig = ConsensusConfig()
    api: ApiConfig = ApiConfig()


@dataclass(frozen=True)
class NodeConfig:
    name: str
    chain_id: str
    genesis_path: Path
    data_dir: Path
    identity_dir: Path
    p2p_host: str
    p2p_port: int
    api_host: str
    api_port: int
    batching: BatchingConfig = BatchingConfig()
    mempool: MempoolConfig = MempoolConfig()
    consensus: ConsensusConfig = ConsensusConfig()
    api: ApiConfig = ApiConfig()
    fsync: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _positive_ints(section: Any, where: str) -> None:
    for f in fields(section):
        value = getattr(section, f.name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}.{f.name} must be a positive integer, got {value!r}")


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"[{where}] has unknown key(s) {unknown}; known: {sorted(known)}")
    value = replace(cls(), **raw)
    _positive_ints(value, where)
    return value


def _mempool_section(raw: Any, where: str) -> MempoolConfig:
    """[mempool], with max_txs_per_signer signer_share(max_txs) when the TOML does not set it."""
    value: MempoolConfig = _section(MempoolConfig, raw, where)
    if not isinstance(raw, dict) or "max_txs_per_signer" not in raw:
        value = replace(value, max_txs_per_signer=signer_share(value.max_txs))
    return value


def _validate_limits(batching: BatchingConfig, mempool: MempoolConfig, consensus: ConsensusConfig) -> None:
    if batching.max_txs > MAX_BATCH_TXS_LIMIT:
        raise ConfigError(f"batching.max_txs must be at most {MAX_BATCH_TXS_LIMIT}")
    if mempool.forward_batch_txs > MAX_FORWARDED_TXS_PER_FRAME:
        raise ConfigError(f"mempool.forward_batch_txs must be at most {MAX_FORWARDED_TXS_PER_FRAME} "
                          "(the leader discards a larger forwarded frame)")
    if batching.preferred_bytes > MAX_PREFERRED_BATCH_BYTES:
        raise ConfigError(f"batching.preferred_bytes must be at most {MAX_PREFERRED_BATCH_BYTES} "
                          f"(a batch is one consensus entry, at most {MAX_ENTRY_BYTES} bytes)")
    if mempool.max_txs < batching.max_txs:
        raise ConfigError("mempool.max_txs must be at least batching.max_txs")
    if consensus.election_ticks <= 2 * consensus.heartbeat_ticks:
        raise ConfigError("consensus.election_ticks must exceed twice consensus.heartbeat_ticks")
    if consensus.compact_keep_bytes >= consensus.compact_after_bytes:
        raise ConfigError("consensus.compact_keep_bytes must be below consensus.compact_after_bytes")


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(f"{where} must be a port number 0..65535, got {value!r}")
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {value!r}")
    return value


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigError(f"{where}{key} must be a non-empty string")
    return value


def _flag(raw: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):  # "false" would be truthy: a quoted flag is refused, not guessed
        raise ConfigError(f"{where}{key} must be true or false (unquoted), got {value!r}")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8 text
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def parse_network(raw: dict[str, Any], source: str = "network") -> NetworkSpec:
    chain_id = _text(raw, "chain_id", f"{source}: ")
    if len(chain_id) > 64 or not chain_id.isascii():
        raise ConfigError(f"{source}: chain_id must be at most 64 ASCII characters")
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, list) or not 1 <= len(raw_nodes) <= MAX_NODES:
        raise ConfigError(f"{source}: [[nodes]] must list 1..{MAX_NODES} nodes")
    nodes = []
    for i, entry in enumerate(raw_nodes):
        where = f"{source}: nodes[{i}]."
        node = _table(entry, f"{source}: nodes[{i}]")
        nodes.append(NodeSpec(_text(node, "name", where), _text(node, "host", where),
                              _port(node.get("p2p_port"), where + "p2p_port"),
                              _port(node.get("api_port"), where + "api_port")))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: node names must be unique")
    operators = raw.get("operators", ["operator"])
    names_ok = isinstance(operators, list) and all(isinstance(o, str) and o.isidentifier() for o in operators)
    if not operators or not names_ok:
        raise ConfigError(f"{source}: operators must be a non-empty list of key names")
    spec = NetworkSpec(
        chain_id, tuple(nodes), tuple(operators),
        _section(BatchingConfig, raw.get("batching"), "batching"),
        _mempool_section(raw.get("mempool"), "mempool"),
        _section(ConsensusConfig, raw.get("consensus"), "consensus"),
        _section(ApiConfig, raw.get("api"), "api"),
    )
    _validate_limits(spec.batching, spec.mempool, spec.consensus)
    unknown = sorted(set(raw) - {"chain_id", "nodes", "operators", "batching", "mempool", "consensus", "api"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}")
    return spec


def load_network(path: Path) -> NetworkSpec:
    return parse_network(_read_toml(Path(path)), str(path))


def load_node(path: Path) -> NodeConfig:
    path = Path(path)
    raw = _read_toml(path)
    where = f"{path}: "
    base = path.parent

    def rel(key: str) -> Path:
        return (base / _text(raw, key, where)).resolve()

    config = NodeConfig(
        name=_text(raw, "name", where),
        chain_id=_text(raw, "chain_id", where),
        genesis_path=rel("genesis"),
        data_dir=rel("data_dir"),
        identity_dir=rel("identity_dir"),
        p2p_host=_text(raw, "p2p_host", where),
        p2p_port=_port(raw.get("p2p_port"), where + "p2p_port"),
        api_host=_text(raw, "api_host", where),
        api_port=_port(raw.get("api_port"), where + "api_port"),
        batching=_section(BatchingConfig, raw.get("batching"), "batching"),
        mempool=_mempool_section(raw.get("mempool"), "mempool"),
        consensus=_section(ConsensusConfig, raw.get("consensus"), "consensus"),
        api=_section(ApiConfig, raw.get("api"), "api"),
        fsync=_flag(raw, "fsync", True, where),
    )
    _validate_limits(config.batching, config.mempool, config.consensus)
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def node_toml(values: dict[str, Any], sections: dict[str, Any]) -> str:
    """A node config file: top-level values, then one table per config section."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    for name, section in sections.items():
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{f.name} = {_toml_value(getattr(section, f.name))}" for f in fields(section))
    return "\n".join(lines) + "\n"

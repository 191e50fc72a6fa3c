"""Limits and timings of the p2p transport, validated once when the Transport is built.

The node maps its TOML onto TransportConfig; every bound carries its unit in its name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from p2p.backoff import BACKOFF_INITIAL_MS, BACKOFF_MAX_MS
from p2p.send_queue import MAX_PEER_QUEUE_BYTES, MAX_PEER_QUEUE_FRAMES

PING_INTERVAL_MS = 1_000
IDLE_TIMEOUT_MS = 5_000
WRITE_TIMEOUT_MS = 5_000
HANDSHAKE_TIMEOUT_MS = 5_000
FIRST_BYTES_TIMEOUT_MS = 1_000
CONNECT_TIMEOUT_MS = 3_000
CLOSE_TIMEOUT_MS = 1_000
MAX_PENDING_HANDSHAKES = 64
# At least the most peers one node may have (keiretsu_node.config.MAX_NODES, 15, less itself):
# a local network runs every node on one host, all dialling from 127.0.0.1.
MAX_PENDING_HANDSHAKES_PER_SOURCE = 16
READ_CHUNK_BYTES = 64 * 1024
WRITE_BATCH_BYTES = 256 * 1024
MAX_HELLO_BYTES = 1024


class ConfigError(ValueError):
    """A transport setting that cannot work; the message names the field."""


@dataclass(frozen=True)
class TransportConfig:
    max_peer_queue_frames: int = MAX_PEER_QUEUE_FRAMES
    max_peer_queue_bytes: int = MAX_PEER_QUEUE_BYTES
    ping_interval_ms: int = PING_INTERVAL_MS
    idle_timeout_ms: int = IDLE_TIMEOUT_MS
    write_timeout_ms: int = WRITE_TIMEOUT_MS
    handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS
    # An inbound connection must send its first TLS bytes this soon after accept; a genuine
    # dialer sends its ClientHello at once, so only silent connections wait this long.
    first_bytes_timeout_ms: int = FIRST_BYTES_TIMEOUT_MS
    connect_timeout_ms: int = CONNECT_TIMEOUT_MS
    close_timeout_ms: int = CLOSE_TIMEOUT_MS
    backoff_initial_ms: int = BACKOFF_INITIAL_MS
    backoff_max_ms: int = BACKOFF_MAX_MS
    max_pending_handshakes: int = MAX_PENDING_HANDSHAKES
    # Per IPv4 address or IPv6 /64; no effect when not below max_pending_handshakes.
    max_pending_handshakes_per_source: int = MAX_PENDING_HANDSHAKES_PER_SOURCE

    def validate(self, max_frame_bytes: int) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{field.name} must be a positive integer, got {value!r}")
        if self.idle_timeout_ms <= self.ping_interval_ms:
            # The peer pings only after ping_interval of silence; a shorter idle timeout would
            # declare every quiet but healthy link dead.
            raise ConfigError("idle_timeout_ms must exceed ping_interval_ms")
        if self.first_bytes_timeout_ms > self.handshake_timeout_ms:
            raise ConfigError("first_bytes_timeout_ms must not exceed handshake_timeout_ms")
        if self.backoff_initial_ms > self.backoff_max_ms:
            raise ConfigError("backoff_initial_ms must not exceed backoff_max_ms")
        if self.max_peer_queue_bytes < max_frame_bytes:
            raise ConfigError("max_peer_queue_bytes must hold at least one max_frame_bytes frame")

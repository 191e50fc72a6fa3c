"""Admission of inbound connections that have not yet authenticated: bounded, oldest evicted.

Sans-IO bookkeeping for Transport's listener: a bound on pending handshakes in all and per
source address; a full bound makes room by dropping its oldest entry, never the newcomer.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

# Every IPv6 address in one /64 is one source: a single host is routinely given a whole /64,
# so bounding per address would bound nothing.
IPV6_SOURCE_PREFIX_BITS = 64

K = TypeVar("K", bound=Hashable)


def source_of(peername: Any) -> str:
    """The source an inbound connection is counted against: its IPv4 address, or its IPv6 /64.

    peername is what asyncio reports for the socket (a tuple whose first item is the host);
    anything unexpected is one shared source, so it is still bounded."""
    host = peername[0] if isinstance(peername, tuple) and peername else None
    if not isinstance(host, str):
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_SOURCE_PREFIX_BITS), strict=False)
        return str(network)
    return str(address)


class PendingHandshakes(Generic[K]):
    """Pending inbound handshakes in arrival order, at most max_total in all and max_per_source
    from one source. admit() always takes the newcomer: an attacker holding every slot with
    silent connections would otherwise lock genuine peers out for as long as it likes."""

    def __init__(self, max_total: int, max_per_source: int) -> None:
        if max_total <= 0 or max_per_source <= 0:
            raise ValueError("pending handshake bounds must be positive")
        self._max_total = max_total
        self._max_per_source = max_per_source
        self._source_of: dict[K, str] = {}  # insertion order is arrival order
        self._count_by_source: Counter[str] = Counter()
        self._speaking: set[K] = set()  # entries that have sent their first bytes

    def __len__(self) -> int:
        return len(self._source_of)

    def __contains__(self, key: object) -> bool:
        return key in self._source_of

    def count_from(self, source: str) -> int:
        return self._count_by_source[source]

    def admit(self, key: K, source: str) -> list[K]:
        """Record key as pending from source; return the entries dropped to make room (already
        forgotten here; the caller ends their handshakes): from the same source when that source
        is at its bound, then from all when every slot is taken; in each case the oldest silent
        entry, or the oldest at all if every one has spoken (a genuine dialer speaks at once, so
        silent sockets go first and a handshake in progress goes last)."""
        if key in self._source_of:
            raise AssertionError("a connection is admitted once")
        evicted: list[K] = []
        if self._count_by_source[source] >= self._max_per_source:
            evicted.append(self._oldest(lambda s: s == source))
            self.release(evicted[-1])
        if len(self._source_of) >= self._max_total:
            evicted.append(self._oldest(lambda s: True))
            self.release(evicted[-1])
        self._source_of[key] = source
        self._count_by_source[source] += 1
        if len(self._source_of) > self._max_total or (
            self._count_by_source[source] > self._max_per_source
        ):
            raise AssertionError("pending handshakes exceed their bound")
        return evicted

    def mark_speaking(self, key: K) -> None:
        """key has sent its first bytes: evicted only after every silent entry."""
        if key in self._source_of:
            self._speaking.add(key)

    def _oldest(self, of_source: Callable[[str], bool]) -> K:
        """The oldest silent entry whose source passes, else the oldest that passes."""
        fallback: K | None = None
        for k, s in self._source_of.items():
            if of_source(s):
                if k not in self._speaking:
                    return k
                if fallback is None:
                    fallback = k
        if fallback is None:
            raise AssertionError("no pending handshake to evict")
        return fallback

    def release(self, key: K) -> None:
        """Forget key (its handshake ended or it was evicted); releasing twice is harmless."""
        source = self._source_of.pop(key, None)
        if source is None:
            return
        self._speaking.discard(key)
        self._count_by_source[source] -= 1
        if self._count_by_source[source] == 0:
            del self._count_by_source[source]  # keeps the tally as small as the pending set

    def clear(self) -> list[K]:
        """Forget every entry and return them, oldest first (for stop())."""
        keys = list(self._source_of)
        self._source_of.clear()
        self._count_by_source.clear()
        self._speaking.clear()
        return keys

"""State views: a read interface over sorted keys, and overlays that stage writes.

Part of ledger/. A transaction runs on its own Overlay over the block's Overlay over the store;
a failing transaction's overlay is dropped alone, a passing one merges into the block's.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Iterator
from typing import Protocol

KEY_SEPARATOR = b"\x1f"
MAX_KEY_PART_CHARS = 128
# Contracts compose the same few keys (a balance, a participant) over and over. Sized for the
# accounts active at a time, not for the whole state: at 1,000,000 random accounts a per-account
# key cache misses whatever its size, and each per-account cache using this bound costs ~20 MiB
# full at 65,536 entries (tracemalloc), ~2.4 MiB at 8,192 (docs/PERFORMANCE.md, Scale).
KEY_CACHE_ENTRIES = 8_192


def state_key(*parts: str | bytes | int) -> bytes:
    """Compose a key from parts; ints are 8-byte big-endian so they sort numerically."""
    try:
        return _cached_key(*parts)
    except TypeError:
        # An unhashable part (a bytearray) cannot be cached; a bool is refused either way.
        return _compose_key(*parts)


def _compose_key(*parts: str | bytes | int) -> bytes:
    out = []
    for part in parts:
        # Exact type checks (not isinstance) keep bools and subclasses off this hot path.
        kind = type(part)
        if kind is str:
            encoded = part.encode("utf-8")  # type: ignore[union-attr]
            if len(part) > MAX_KEY_PART_CHARS or KEY_SEPARATOR in encoded:  # type: ignore[arg-type]
                raise ValueError(f"key part {part!r} is not allowed")
            out.append(encoded)
        elif kind is bytes:
            out.append(part)  # type: ignore[arg-type]
        elif kind is int:
            out.append(part.to_bytes(8, "big", signed=False))  # type: ignore[union-attr]
        else:
            out.append(_odd_part(part))
    return KEY_SEPARATOR.join(out)


def _odd_part(part: object) -> bytes:
    """Key parts of subclassed or other types (StrEnum, bytearray), kept off the hot path."""
    if isinstance(part, bool):
        raise TypeError("a key part is not a bool")
    if isinstance(part, int):
        return part.to_bytes(8, "big", signed=False)
    if isinstance(part, str):
        return _compose_key(str(part))
    return bytes(part)  # type: ignore[call-overload]


# typed=True keeps 1 and True apart (True is refused as a key part).
_cached_key = functools.lru_cache(maxsize=KEY_CACHE_ENTRIES, typed=True)(_compose_key)


def prefix_of(*parts: str | bytes | int) -> bytes:
    """The prefix matching every key whose first parts are these."""
    return state_key(*parts) + KEY_SEPARATOR


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iter_prefix(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with prefix, in ascending key order.

        With `start`, only keys >= start: a chunked walk resumes in O(chunk), not O(skipped).
        """
        ...


_UNSTAGED = object()


def scan_family(key: bytes) -> bytes:
    """A key's first two parts with their separators (the whole key if it has fewer): every key
    under a prefix of two or more parts has that prefix's family, so a scan of it needs only
    the staged keys of one family (a book side's levels, not the block's balances and orders)."""
    first = key.find(KEY_SEPARATOR)
    if first < 0:
        return key
    second = key.find(KEY_SEPARATOR, first + 1)
    return key if second < 0 else key[:second + 1]


_new_overlay = object.__new__
# A family's new staged keys are inserted one by one while they are under 1/INSORT_MAX_SHARE of
# its sorted ones; beyond that one sort of the whole list is cheaper.
INSORT_MAX_SHARE = 8


class Overlay:
    """Staged writes over a parent reader; None marks a deletion.

    `writes` only ever gains keys (a deletion stages None), and a dict keeps insertion order, so
    the keys staged since a scan last looked are the dict's tail past the count it had seen: a
    write is one dict store, with no list of new keys to keep beside it.
    """

    def __init__(self, parent: StateReader) -> None:
        self.parent = parent
        self.writes: dict[bytes, bytes | None] = {}
        # Staged keys sorted per scan family, built at the first scan and kept up to date
        # from the tail of `writes` at each later one (see _family_keys).
        self._families: dict[bytes, list[bytes]] | None = None
        self._seen = 0  # keys of `writes` already filed into _families
        # get() is the hottest call of a block: look through the staged writes of this overlay
        # and every overlay under it in one loop, then ask the reader at the bottom once.
        if isinstance(parent, Overlay):
            self._layers: tuple[dict[bytes, bytes | None], ...] = (self.writes, *parent._layers)
            self._bottom_get = parent._bottom_get
        elif isinstance(parent, ReadCache):
            # The cache's young generation is one more layer (None: absent in the store too), so
            # a read it holds costs no call; only the others go through ReadCache.get.
            self._layers = (self.writes, parent.young)
            self._bottom_get = parent.get
        else:
            self._layers = (self.writes,)
            self._bottom_get = parent.get

    def child(self) -> Overlay:
        """Overlay(self), built without the constructor's call and type tests (an Overlay per
        transaction): the same attributes, this overlay's layers under the child's writes."""
        child = _new_overlay(Overlay)
        child.parent = self
        child.writes = writes = {}
        child._families = None
        child._seen = 0
        child._layers = (writes, *self._layers)
        child._bottom_get = self._bottom_get
        return child

    def get(self, key: bytes) -> bytes | None:
        for writes in self._layers:
            if key in writes:  # an operator, where writes.get(key, marker) is a method call
                return writes[key]
        return self._bottom_get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def _family_keys(self, family: bytes) -> list[bytes]:
        """The staged keys of one scan family, sorted: keys staged since the last scan are filed
        by family first, and only this family's list takes its new keys in order (a few into
        many by binary search, many by one sort: Timsort merges a sorted run and a short tail)."""
        families = self._families
        if families is None:
            families = self._families = {}
        fresh: dict[bytes, list[bytes]] = {}
        writes = self.writes
        if len(writes) > self._seen:
            for key in itertools.islice(writes, self._seen, None):
                fresh.setdefault(scan_family(key), []).append(key)
            self._seen = len(writes)
            for name, keys in fresh.items():
                known = families.get(name)
                if known is None:
                    keys.sort()
                    families[name] = keys
                elif len(keys) * INSORT_MAX_SHARE < len(known):
                    for key in keys:
                        bisect.insort(known, key)
                else:
                    known.extend(keys)
                    known.sort()
        return families.get(family, [])

    def _staged_under(self, prefix: bytes, lowest: bytes) -> list[tuple[bytes, bytes | None]]:
        """(key, staged value) of this overlay's keys under prefix from `lowest`, in key order."""
        if prefix.count(KEY_SEPARATOR) >= 2:  # every key under it is of the prefix's family
            keys = self._family_keys(scan_family(prefix))
            found = []
            for index in range(bisect.bisect_left(keys, lowest), len(keys)):
                key = keys[index]
                if not key.startswith(prefix):
                    break
                found.append((key, self.writes[key]))
            return found
        # A prefix of fewer than two whole parts spans families: the rare scan, done directly.
        writes = self.writes
        return sorted((key, writes[key]) for key in writes if key.startswith(prefix) and key >= lowest)

    def iter_prefix(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Merge the parent's keys with staged ones; staged values win, deletions hide.

        Take what you need before writing: a write during iteration is not seen by it.
        """
        lowest = prefix if start is None or start < prefix else start
        mine = self._staged_under(prefix, lowest)
        parent = self.parent.iter_prefix(prefix, start)
        yield from _merge(parent, mine)

    def merge_into(self, target: Overlay) -> None:
        """target.put / target.delete of every staged write.

        Into a plain Overlay in one dict update (once per transaction); a subclass may refuse
        writes (ReadOnlyState), so it gets its own put and delete.
        """
        if type(target) is Overlay:
            target.writes.update(self.writes)
            return
        for key, value in self.writes.items():
            if value is None:
                target.delete(key)
            else:
                target.put(key, value)


def _merge(
    parent: Iterator[tuple[bytes, bytes]], mine: list[tuple[bytes, bytes | None]]
) -> Iterator[tuple[bytes, bytes]]:
    index = 0
    for key, value in parent:
        while index < len(mine) and mine[index][0] < key:
            staged_key, staged = mine[index]
            index += 1
            if staged is not None:
                yield staged_key, staged
        if index < len(mine) and mine[index][0] == key:
            staged = mine[index][1]
            index += 1
            if staged is not None:
                yield key, staged
            continue
        yield key, value
    for staged_key, staged in mine[index:]:
        if staged is not None:
            yield staged_key, staged


class MemoryState:
    """A plain in-memory reader, for tests and for contracts exercised without a store."""

    def __init__(self, items: dict[bytes, bytes] | None = None) -> None:
        self.items = dict(items or {})

    def get(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def iter_prefix(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        lowest = prefix if start is None else start
        for key in sorted(k for k in self.items if k.startswith(prefix) and k >= lowest):
            yield key, self.items[key]


# Values ReadCache keeps, across its two generations. An entry (key, value, dict slot) costs
# ~210 bytes measured with tracemalloc, so 16,384 entries hold ~3.4 MiB at most. It is there for
# the keys every block reads (currencies, operators, the accounts trading now): ~10 per account
# active in a block. At 1,000,000 random accounts no affordable size holds the per-account keys:
# 120,000 entries (~25 MiB) and 16,384 left the same 3.96-3.98 present LevelDB reads per
# transfer (docs/PERFORMANCE.md, fifth session), so the memory goes to LevelDB's open tables.
READ_CACHE_ENTRIES = 16_384


class ReadCache:
    """Committed values the executor read recently, absent keys included; bounded.

    Most reads of a block miss the overlays (a balance, a participant, a freeze flag that does
    not exist) and a LevelDB lookup costs more than the contract logic around it. Only the
    executor writes the store, so it keeps the cache current by passing each committed write
    set to `committed`, and drops it whole if a commit fails.

    Two generations instead of one dict that empties itself when full: new entries go to the
    young one; when it holds half the bound it becomes the old one and the previous old one is
    dropped, and a hit in the old generation moves the entry back to the young. Keys read in
    every block (currencies, operators, the treasury) so survive a turnover, where clearing
    everything left the next blocks cold. A lookup checks young first, so a value committed
    into young shadows any older copy of the key until that copy is dropped with its generation.

    `young` stays the same dict object for the cache's life (a turnover copies it into old and
    empties it), so an Overlay over the cache keeps it as a layer of its own lookups.
    """

    def __init__(self, parent: StateReader, max_entries: int = READ_CACHE_ENTRIES) -> None:
        self.parent = parent
        self.max_entries = max_entries
        self._generation_entries = max(1, max_entries // 2)
        self.young: dict[bytes, bytes | None] = {}
        self._old: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self.young.get(key, _UNSTAGED)
        if value is _UNSTAGED:
            value = self._old.get(key, _UNSTAGED)
            if value is _UNSTAGED:
                value = self.parent.get(key)
            if len(self.young) >= self._generation_entries:
                self._turn_over()
            self.young[key] = value
        return value  # type: ignore[return-value]

    def _turn_over(self) -> None:
        # A copy, not a swap: `young` keeps its identity (Overlays hold it); once per
        # generation of misses, so the copy costs far less than the LevelDB reads that filled it.
        self._old = self.young.copy()
        self.young.clear()

    def iter_prefix(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.parent.iter_prefix(prefix, start)

    def presence(self, key: bytes) -> bool | None:
        """Whether the store holds `key`, as far as the cache knows: None if it does not know.

        `LedgerStore.commit` trusts a False and leaves that key's deletion out of its batch, so a
        stale "absent" here would leave a deleted record on disk: the cache must hear of every
        commit (`committed`) and be dropped when one fails or the store is replaced.
        """
        value = self.young.get(key, _UNSTAGED)
        if value is _UNSTAGED:
            value = self._old.get(key, _UNSTAGED)
            if value is _UNSTAGED:
                return None
        return value is not None

    def committed(self, writes: dict[bytes, bytes | None]) -> None:
        """The store now holds these writes (None: deleted)."""
        if len(writes) > self._generation_entries:
            self.clear()  # more than a generation: nothing it held is worth the copying
            return
        if len(self.young) + len(writes) > self._generation_entries:
            self._turn_over()
        self.young.update(writes)

    def __len__(self) -> int:
        return len(self.young) + len(self._old)

    def clear(self) -> None:
        self.young.clear()
        self._old.clear()

"""The contract interface: typed arguments, method tables and the context a method runs in.

Part of contracts/. A contract is a module of pure functions over a state view and the block
context; it never does IO, reads a clock, draws randomness or uses a float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

from ledger import codec
from ledger.block import Event
from ledger.frozen import check_buildable, new_record, set_fields
from ledger.keys import is_address
from ledger.reasons import ContractError, InvariantViolation, Reason
from ledger.state import Overlay

MAX_AMOUNT = 2**63 - 1
MAX_TEXT_CHARS = 256
MAX_EVENTS_PER_TX = 10_000
MAX_STATE_VALUE_BYTES = 1024 * 1024
# Decoded state values kept by their encoded bytes (see Context.record); cleared whole when full.
# Sized for the records one block re-reads (a few MB), not for the whole state.
MAX_DECODED_RECORDS = 16_384
_NOT_DECODED = object()
_DECODED: dict[bytes, Any] = {}
check_buildable(Event)


@dataclass(frozen=True)
class BlockContext:
    """All a contract may know of the world outside the state: the block it runs in."""

    chain_id: str
    height: int
    time_ms: int


# ---------------------------------------------------------------- argument types


# Texts each argument type accepted, kept so a text seen before (an address, a currency code)
# passes without its check's calls; per type, and it stops growing when full.
MAX_PASSED_TEXTS = 4096


@dataclass(frozen=True)
class ArgType:
    """`check` must be a pure function of the value: the texts it accepted are remembered.

    `int_bounds` (low, high), for the integer types only: an exact int is accepted iff it lies
    within them, so check_args tests it inline instead of calling `check` (see _int_type).
    """

    name: str
    check: Callable[[Any], bool]
    passed: set[str] = field(default_factory=set, compare=False, repr=False)
    int_bounds: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    def __call__(self, value: Any) -> bool:
        return self.check(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(max_chars: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= max_chars and v.isprintable()


def _int_type(name: str, low: int, high: int) -> ArgType:
    """An integer type from low to high: its check and its int_bounds from the same numbers."""
    # `type(v) is int or _is_int(v)`: decoded arguments are exact ints, answered without _is_int's call.
    return ArgType(name, lambda v: (type(v) is int or _is_int(v)) and low <= v <= high, int_bounds=(low, high))


UINT = _int_type("uint", 0, MAX_AMOUNT)
AMOUNT = _int_type("amount", 1, MAX_AMOUNT)
INT = _int_type("int", -MAX_AMOUNT, MAX_AMOUNT)
BOOL = ArgType("bool", lambda v: isinstance(v, bool))
TEXT = ArgType("text", _text(MAX_TEXT_CHARS))
NAME = ArgType("name", lambda v: isinstance(v, str) and 0 < len(v) <= 64 and v.isascii() and v.isprintable())
ADDRESS = ArgType("address", is_address)
HASH32 = ArgType("hash32", lambda v: isinstance(v, bytes) and len(v) == 32)
BYTES32 = HASH32
ASSET_ID = ArgType(
    "asset", lambda v: isinstance(v, str) and 0 < len(v) <= 32 and v.isascii() and v.isalnum() and v.isupper()
)


def list_of(item: ArgType, max_items: int) -> ArgType:
    return ArgType(
        f"list[{item.name}]",
        lambda v: isinstance(v, list) and len(v) <= max_items and all(item(x) for x in v),
    )


def one_of(*choices: str) -> ArgType:
    return ArgType("one of " + "|".join(choices), lambda v: v in choices and isinstance(v, str))


def map_of(fields: dict[str, ArgType], optional: frozenset[str] = frozenset()) -> ArgType:
    def check(value: Any) -> bool:
        if not isinstance(value, dict) or not set(value) <= set(fields):
            return False
        if not set(fields) - optional <= set(value):
            return False
        return all(fields[k](v) for k, v in value.items())

    return ArgType("map{" + ",".join(sorted(fields)) + "}", check)


# ---------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[..., None]
    params: dict[str, ArgType]
    optional: frozenset[str]
    # The names every call must give (params less optional), for one set comparison per call.
    required: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", frozenset(self.params.keys() - self.optional))

    def check_args(self, args: dict[str, Any]) -> None:
        """BAD_ARGUMENTS naming the first wrong field in declaration order; a pure function of
        the arguments.

        Valid arguments (nearly all) are checked in the order given, only those given: a venue
        order names 6 of 9 parameters. At the first failure the declaration is walked in order
        by _name_first_error, so a refusal names what it always named.
        """
        params = self.params
        if not args.keys() <= params.keys() or (len(args) < len(params) and not self.required <= args.keys()):
            self._name_first_error(args)  # (with every parameter given, none can be missing)
        for name, value in args.items():
            arg_type = params[name]
            if type(value) is str:
                if value in arg_type.passed:
                    continue
                if not arg_type.check(value):
                    self._name_first_error(args)
                if len(arg_type.passed) < MAX_PASSED_TEXTS:
                    arg_type.passed.add(value)
            elif type(value) is int and arg_type.int_bounds is not None:  # the bounds inline, no call
                low, high = arg_type.int_bounds
                if not low <= value <= high:
                    self._name_first_error(args)
            elif not arg_type.check(value):  # .check, not the call wrapper: once per argument
                self._name_first_error(args)

    def _name_first_error(self, args: dict[str, Any]) -> NoReturn:
        """BAD_ARGUMENTS for the first wrong field, walking the declaration in order."""
        if not args.keys() <= self.params.keys():
            unknown = sorted(set(args) - set(self.params))
            raise ContractError(Reason.BAD_ARGUMENTS, f"unknown argument(s) {unknown}")
        for name, arg_type in self.params.items():
            if name not in args:
                if name in self.optional:
                    continue
                raise ContractError(Reason.BAD_ARGUMENTS, f"missing argument {name!r}")
            if not arg_type.check(args[name]):
                raise ContractError(Reason.BAD_ARGUMENTS, f"argument {name!r} must be {arg_type.name}")
        # check_args saw a failure this walk does not: an argument type's check is not pure.
        raise InvariantViolation(f"{self.name}: an argument check gave two answers")


class MethodTable:
    """A contract's public methods, declared with their argument types beside the code."""

    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def method(self, *, optional: tuple[str, ...] = (),
               **params: ArgType) -> Callable[[Callable[..., None]], Callable[..., None]]:
        def register(fn: Callable[..., None]) -> Callable[..., None]:
            name = fn.__name__.rstrip("_")
            if name in self.methods:
                raise ValueError(f"method {name} declared twice")
            self.methods[name] = Method(name, fn, dict(params), frozenset(optional))
            return fn

        return register

    def get(self, name: str) -> Method | None:
        return self.methods.get(name)


# ---------------------------------------------------------------- context


_new_context = object.__new__


@dataclass
class Context:
    """What a method sees: staged state, the block, who signed; it reports events and subjects.

    `signers` are account addresses (keys already resolved through any recovery), in the
    transaction's order; a system context (scheduled work at block start) has none.
    """

    state: Overlay
    block: BlockContext
    tx_id: bytes | None
    signers: tuple[str, ...]
    events: list[Event] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    event_subjects: list[list[str]] = field(default_factory=list)

    @classmethod
    def for_transaction(cls, state: Overlay, block: BlockContext, tx_id: bytes, signers: tuple[str, ...]) -> Context:
        """Context(state, block, tx_id, signers), once per transaction: the same attributes, set
        without the call from C into the generated __init__ (and its default factories)."""
        ctx = _new_context(cls)
        ctx.state = state
        ctx.block = block
        ctx.tx_id = tx_id
        ctx.signers = signers
        ctx.events = []
        ctx.touched = []
        ctx.event_subjects = []
        return ctx

    @property
    def is_system(self) -> bool:
        return self.tx_id is None

    def child(self) -> Context:
        """A context on a staged overlay of this one: its writes and events reach this context
        only through merge_child, so a failed attempt can be dropped whole."""
        return Context(Overlay(self.state), self.block, self.tx_id, self.signers)

    def merge_child(self, child: Context) -> None:
        """Keep everything a child context did: state writes, events and the subjects touched."""
        child.state.merge_into(self.state)
        self.events.extend(child.events)
        self.event_subjects.extend(child.event_subjects)
        self.touched.extend(child.touched)

    @property
    def sender(self) -> str:
        if not self.signers:
            raise ContractError(Reason.SIGNATURE_REQUIRED, "this call needs a signer")
        return self.signers[0]

    def require_signer(self, address: str) -> None:
        if address not in self.signers:
            raise ContractError(Reason.SIGNATURE_REQUIRED, f"{address} must sign")

    # state access (bytes keys, canonical msgpack values)
    def get(self, key: bytes) -> Any:
        raw = self.state.get(key)
        return None if raw is None else codec.decode(raw, max_bytes=MAX_STATE_VALUE_BYTES)

    def record(self, key: bytes) -> Any:
        """Like get, for a value the caller only reads: the decoded value is shared, never mutate it.

        Decoding is a pure function of the bytes, so a value kept by its encoding can never be
        stale: a write stores other bytes, and an overlay dropped on a rollback leaves the old
        ones. That makes the memo safe across transactions, overlays and rollbacks alike, and
        spares the hot path (a transfer reads the same participant and balance records several
        times) the codec's canonical-form check on every read.
        """
        raw = self.state.get(key)
        if raw is None:
            return None
        value = _DECODED.get(raw, _NOT_DECODED)
        if value is _NOT_DECODED:
            value = codec.decode(raw, max_bytes=MAX_STATE_VALUE_BYTES)
            if len(_DECODED) >= MAX_DECODED_RECORDS:
                _DECODED.clear()
            _DECODED[raw] = value
        return value

    def put(self, key: bytes, value: Any) -> None:
        self.state.put(key, codec.encode(value))

    def delete(self, key: bytes) -> None:
        self.state.delete(key)

    def exists(self, key: bytes) -> bool:
        return self.state.get(key) is not None

    def scan(self, prefix: bytes, limit: int, start: bytes | None = None) -> Iterator[tuple[bytes, Any]]:
        """At most `limit` entries under prefix (from key `start`, if given), in key order;
        bounded so no call is unbounded."""
        for count, (key, raw) in enumerate(self.state.iter_prefix(prefix, start)):
            if count >= limit:
                return
            yield key, codec.decode(raw, max_bytes=MAX_STATE_VALUE_BYTES)

    # what happened
    def touch(self, subject: str) -> None:
        """Record that this call concerns an account or asset (its history will list it)."""
        self.touched.append(subject)

    def emit(self, kind: str, **attrs: Any) -> None:
        if len(self.events) >= MAX_EVENTS_PER_TX:
            raise ContractError(Reason.LIMIT_EXCEEDED, "too many events in one call")
        # Event(kind, attrs) without its generated __init__ (frozen: a call per field); the
        # same object (ledger/frozen.py), once per event of every transaction.
        event = new_record(Event)
        set_fields(event, "__dict__", {"kind": kind, "attrs": attrs})
        self.events.append(event)
        # In a system context, subjects touched since the previous event belong to this one.
        self.event_subjects.append(self.touched)
        self.touched = []


Built = TypeVar("Built")


class BuiltFromRecord(Generic[Built]):
    """Objects built from one kind of record (a participant, a currency, an instrument), kept by
    (name, encoded record): a pure function of the bytes, so never stale (see Context.record).

    Bounded: cleared whole when full, which costs one rebuild per name afterwards.
    """

    def __init__(self, max_entries: int, build: Callable[[str, Any], Built]) -> None:
        self.max_entries = max_entries
        self._build = build
        self._kept: dict[tuple[str, bytes], Built] = {}

    def get(self, ctx: Context, key: bytes, name: str) -> Built | None:
        """The object for the record at key (None if there is none), built at most once per bytes."""
        encoded = ctx.state.get(key)
        if encoded is None:
            return None
        found = self._kept.get((name, encoded))
        if found is None:
            found = self._build(name, ctx.record(key))
            if len(self._kept) >= self.max_entries:
                self._kept.clear()
            self._kept[(name, encoded)] = found
        return found

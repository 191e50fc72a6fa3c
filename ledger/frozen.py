"""Building frozen dataclass instances on the hot path, one dict assignment instead of a call per field.

Part of ledger/. A frozen dataclass's generated __init__ sets each field through
object.__setattr__ (its own __setattr__ refuses), one Python-level call per field: a transfer
builds three such records (TxBody, SignedTx, Receipt), 16 fields. `built` gives the same object
for fields the caller has already checked, as the generated __init__ would (no __post_init__,
no defaults to fill in: callers pass every field, in the class's order).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

Record = TypeVar("Record")

# The two C calls `built` makes. A loop that builds a record per transaction (decoding, receipts,
# events) calls them itself, `record = new_record(cls); set_fields(record, "__dict__", fields)`,
# which is built(cls, fields) without built's own Python call.
new_record = object.__new__
set_fields = object.__setattr__


def built(cls: type[Record], fields: dict[str, Any]) -> Record:
    """cls(**fields) for a frozen dataclass without __post_init__, given every field."""
    record = new_record(cls)
    set_fields(record, "__dict__", fields)
    return record


def check_buildable(cls: type) -> None:
    """Refuse at import a class `built` would build wrongly (a bug of ours, so it stops loudly)."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
        raise TypeError(f"{cls.__name__}: built() needs a dataclass with a __dict__ and no __post_init__")

"""Records built on the hot path are the records their classes' constructors build."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from ledger.block import Event, Receipt
from ledger.frozen import built, check_buildable
from ledger.reasons import Reason


def test_built_equals_constructed_and_stays_frozen() -> None:
    event = built(Event, {"kind": "paid", "attrs": {"amount": 1}})
    assert event == Event("paid", {"amount": 1}) and repr(event) == repr(Event("paid", {"amount": 1}))
    receipt = built(Receipt, {"tx_id": b"\x01" * 32, "reason": Reason.OK, "detail": "", "events": (event,)})
    same = Receipt(b"\x01" * 32, Reason.OK, "", (Event("paid", {"amount": 1}),))
    assert receipt == same and receipt.encoded == same.encoded and receipt.valid
    assert pickle.loads(pickle.dumps(receipt)) == same
    assert dataclasses.replace(receipt, detail="x").detail == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt.detail = "changed"  # type: ignore[misc]


def test_classes_that_built_would_get_wrong_are_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError):
        check_buildable(Checked)
    with pytest.raises(TypeError):
        check_buildable(int)

"""ISINs the ledger assigns: ISO 6166 check digits, the MX form, determinism."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import isin
from contracts.base import BlockContext, Context
from ledger.state import MemoryState, Overlay


def _ctx(chain_id: str = "chain-a") -> Context:
    return Context(Overlay(MemoryState()), BlockContext(chain_id, 1, 0), b"\x00" * 32, ())


def test_check_digit_matches_published_isins() -> None:
    for known in ("US0378331005", "AU0000XVGZA3", "GB0002634946", "DE000BAY0017", "MXP370711014"):
        assert isin.check_digit(known[:-1]) == known[-1]
        assert isin.is_valid(known)


def test_a_wrong_check_digit_or_shape_is_invalid() -> None:
    assert not isin.is_valid("US0378331004")
    assert not isin.is_valid("US037833100")
    assert not isin.is_valid("us0378331005")
    assert not isin.is_valid("120378331005")
    assert not isin.is_valid(None)


def test_assigned_isins_are_mexican_valid_distinct_and_deterministic() -> None:
    first, second = _ctx(), _ctx()
    a = [isin.next_isin(first) for _ in range(200)]
    b = [isin.next_isin(second) for _ in range(200)]
    assert a == b  # same chain, same state: every node assigns the same
    assert len(set(a)) == len(a)
    for code in a:
        assert code.startswith("MX") and len(code) == 12 and isin.is_valid(code)


def test_another_network_assigns_other_isins() -> None:
    assert isin.next_isin(_ctx("chain-a")) != isin.next_isin(_ctx("chain-b"))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=isin.ALPHABET, min_size=9, max_size=9), st.integers(0, 9))
def test_any_single_digit_change_of_the_check_digit_is_caught(nsin: str, wrong: int) -> None:
    body = "MX" + nsin
    digit = isin.check_digit(body)
    assert isin.is_valid(body + digit)
    if str(wrong) != digit:
        assert not isin.is_valid(body + str(wrong))

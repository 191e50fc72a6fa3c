"""Queries: an account's balances, a security's cap table and details, a participant's record."""

from __future__ import annotations

import pytest

from contracts import balances, queries
from contracts.registry import default_registry
from tests.contracts_world import addr, market


def test_balances_of_an_account_show_free_locked_and_freezes_per_asset() -> None:
    world, isin = market()
    ctx = world.context(())
    balances.lock(ctx, "MXN", addr("alice"), 100)
    ctx.state.merge_into(world.state)
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset="MXN", amount=50, reason="x")
    rows = {row.asset: row for row in queries.balances_of(world.view(), addr("alice"))}
    assert set(rows) == {"MXN", isin}
    assert (rows["MXN"].free, rows["MXN"].locked, rows["MXN"].frozen_amount, rows["MXN"].spendable) == (
        999_900, 100, 50, 999_850)
    assert rows[isin].free == 1000 and not rows[isin].frozen
    assert queries.balances_of(world.view(), addr("stranger")) == ()


def test_the_cap_table_lists_holders_in_address_order_with_supply() -> None:
    world, isin = market()
    world.ok("alice", "securities", "transfer", isin=isin, to=addr("bob"), quantity=400)
    table = queries.cap_table(world.view(), isin)
    assert table is not None
    assert {h.account: h.free for h in table.holders} == {addr("alice"): 600, addr("bob"): 400}
    assert [h.account for h in table.holders] == sorted(h.account for h in table.holders)
    assert (table.issued, table.retired, table.outstanding, table.holder_count, table.truncated) == (
        1000, 0, 1000, 2, False)
    page = queries.cap_table(world.view(), isin, limit=1)
    assert page is not None and len(page.holders) == 1 and page.truncated
    assert queries.cap_table(world.view(), "MXN") is None


def test_instrument_and_participant_views() -> None:
    world, isin = market()
    view = queries.instrument(world.view(), isin)
    assert view is not None and view.instrument.isin == isin and view.outstanding == 1000
    assert queries.instrument(world.view(), "MX0") is None
    person = queries.participant(world.view(), addr("alice"))
    assert person is not None and person.participant.roles == ("investor",)
    assert person.current_key is None and person.recoveries == () and person.freezes == ()
    assert queries.participant(world.view(), addr("stranger")) is None


def test_the_api_serves_them_by_name_with_string_parameters() -> None:
    world, isin = market()
    table = default_registry().contracts["queries"].queries
    assert set(table) == {"balances", "cap_table", "instrument", "participant"}
    assert table["cap_table"](world.view(), isin=isin, limit="1").holder_count == 1
    assert len(table["balances"](world.view(), account=addr("alice"))) == 2
    with pytest.raises(ValueError):
        table["balances"](world.view(), account="nope")
    with pytest.raises(ValueError):
        table["cap_table"](world.view(), isin=isin, limit="-1")

"""Negotiated trades as the two parties rely on them: locked terms, atomic DvP on acceptance,
withdrawal, rejection and expiry that release the lock, and nothing accepted after expiry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import market, negotiated
from contracts.base import Context
from ledger.reasons import Reason
from tests.market_world import CURRENCY, Outcome, World

LIFETIME_MS = 60_000


def _propose(w: World, proposer: str, counterparty: str, side: str = "sell", quantity: int = 50,
             price: int = 1_200, **extra: object) -> Outcome:
    return w.call(proposer, "negotiated", "propose", counterparty=counterparty, side=side, isin=w.isin,
                  currency=CURRENCY, quantity=quantity, price=price, expires_at_ms=w.time_ms + LIFETIME_MS, **extra)


def _id(outcome: Outcome) -> int:
    return outcome.of_kind("proposal_made")[0]["proposal_id"]


def test_acceptance_settles_both_legs_and_is_on_the_tape() -> None:
    w = World(investors=2, open_book=False)
    seller, buyer = w.investors
    made = _propose(w, seller, buyer)
    assert made.ok and w.balance(w.isin, seller).locked == 50
    before = {a: (w.balance(w.isin, a).total, w.balance(CURRENCY, a).total) for a in (seller, buyer)}
    done = w.must(buyer, "negotiated", "accept", proposal_id=_id(made))
    assert done.of_kind("negotiated_trade")[0]["amount"] == 60_000
    assert w.balance(w.isin, seller).total == before[seller][0] - 50
    assert w.balance(CURRENCY, seller).total == before[seller][1] + 60_000
    assert w.balance(w.isin, buyer).total == before[buyer][0] + 50
    assert w.balance(CURRENCY, buyer).total == before[buyer][1] - 60_000
    assert w.balance(w.isin, seller).locked == 0
    tape = market.trades(w.query_ctx(), w.isin, CURRENCY)
    assert [(t.venue, t.price, t.quantity) for t in tape] == [("negotiated", 1_200, 50)]
    assert market.last_price(w.query_ctx(), w.isin, CURRENCY) is None  # the book's price is the book's
    assert w.call(buyer, "negotiated", "accept", proposal_id=_id(made)).reason == Reason.INVALID_STATE


def test_a_buy_proposal_locks_the_cash_and_only_the_named_counterparty_may_accept() -> None:
    w = World(investors=3, open_book=False)
    buyer, seller, outsider = w.investors
    made = _propose(w, buyer, seller, side="buy", quantity=10, price=300)
    assert w.balance(CURRENCY, buyer).locked == 3_000
    assert w.call(outsider, "negotiated", "accept", proposal_id=_id(made)).reason == Reason.SIGNATURE_REQUIRED
    assert w.call(buyer, "negotiated", "accept", proposal_id=_id(made)).reason == Reason.SIGNATURE_REQUIRED
    w.must(seller, "negotiated", "accept", proposal_id=_id(made))
    assert w.balance(CURRENCY, buyer).locked == 0


def test_an_authority_ends_an_accounts_open_proposals_so_a_forced_transfer_finds_the_units_free() -> None:
    """Before, nothing but the proposer, the counterparty or expiry (up to 30 days) ended a
    proposal, so the units it locked stayed out of a court-ordered forced transfer's reach."""
    w = World(investors=3, open_book=False)
    a, b, c = w.investors
    selling = _id(_propose(w, a, b, quantity=40))
    buying = _id(_propose(w, a, c, side="buy", quantity=5, price=100))
    accepted = _id(_propose(w, a, b, quantity=10))
    w.must(b, "negotiated", "accept", proposal_id=accepted)
    theirs = _id(_propose(w, b, a, quantity=7))  # a is only the counterparty: not a's to end
    assert w.balance(w.isin, a).locked == 40 and w.balance(CURRENCY, a).locked == 500
    assert w.call(b, "negotiated", "cancel_account_proposals", account=a, reason="x").reason == Reason.UNAUTHORIZED
    done = w.must(w.regulator, "negotiated", "cancel_account_proposals", account=a, reason="court order")
    assert done.of_kind("account_proposals_cancelled")[0]["count"] == 2
    assert sorted(e["proposal_id"] for e in done.of_kind("proposal_cancelled")) == [selling, buying]
    assert w.balance(w.isin, a).locked == 0 and w.balance(CURRENCY, a).locked == 0
    statuses = {p.proposal_id: p.status for p in negotiated.proposals_of(w.query_ctx(), a)}
    assert statuses == {selling: "cancelled", buying: "cancelled", accepted: "accepted", theirs: "proposed"}
    assert w.call(b, "negotiated", "accept", proposal_id=selling).reason == Reason.INVALID_STATE
    again = w.must(w.operator, "negotiated", "cancel_account_proposals", account=a, reason="court order")
    assert again.of_kind("account_proposals_cancelled")[0]["count"] == 0


def test_withdraw_and_reject_release_the_lock_and_end_the_proposal() -> None:
    w = World(investors=2, open_book=False)
    a, b = w.investors
    first, second = _id(_propose(w, a, b)), _id(_propose(w, a, b))
    assert w.balance(w.isin, a).locked == 100
    assert w.call(b, "negotiated", "withdraw", proposal_id=first).reason == Reason.SIGNATURE_REQUIRED
    w.must(a, "negotiated", "withdraw", proposal_id=first)
    w.must(b, "negotiated", "reject", proposal_id=second)
    assert w.balance(w.isin, a).locked == 0
    assert w.call(b, "negotiated", "accept", proposal_id=first).reason == Reason.INVALID_STATE
    assert [p.status for p in negotiated.proposals_of(w.query_ctx(), b)] == ["withdrawn", "rejected"]


def test_an_expired_proposal_cannot_be_accepted_and_its_lock_is_released_at_block_start() -> None:
    w = World(investors=2, open_book=False)
    a, b = w.investors
    pid = _id(_propose(w, a, b))
    due = w.time_ms + LIFETIME_MS
    assert negotiated.next_due_ms(w.query_ctx()) == due
    w.time_ms = due  # a block at the expiry time whose sweep has not run yet
    assert w.call(b, "negotiated", "accept", proposal_id=pid).reason == Reason.INVALID_STATE
    events = w.begin_block(due)
    assert [e.kind for e in events] == ["proposal_expired"]
    assert w.balance(w.isin, a).locked == 0
    assert negotiated.require_proposal(w.query_ctx(), pid).status == "expired"
    assert negotiated.next_due_ms(w.query_ctx()) is None


def test_refusals_at_proposal_and_at_acceptance_change_nothing() -> None:
    w = World(investors=3, open_book=False, cash_each=1_000)
    a, b, c = w.investors
    assert _propose(w, a, a).reason == Reason.SELF_TRANSFER
    assert _propose(w, a, b, quantity=20_000).reason == Reason.INSUFFICIENT_FREE_BALANCE
    assert _propose(w, a, b, side="buy", quantity=10, price=101).reason == Reason.INSUFFICIENT_FREE_BALANCE
    pid = _id(_propose(w, a, b, quantity=10, price=500))  # b would pay 5,000 but holds 1,000
    assert w.call(b, "negotiated", "accept", proposal_id=pid).reason == Reason.INSUFFICIENT_FREE_BALANCE
    assert w.balance(w.isin, a).locked == 10 and w.balance(CURRENCY, b).free == 1_000
    w.must(w.regulator, "market", "halt_trading", isin=w.isin, reason="halt")
    assert _propose(w, a, c).reason == Reason.TRADING_HALTED
    w.must(w.agent, "cash", "mint", currency=CURRENCY, to=b, amount=10_000, deposit_ref="top up")
    assert w.call(b, "negotiated", "accept", proposal_id=pid).reason == Reason.TRADING_HALTED
    w.must(w.regulator, "market", "resume_trading", isin=w.isin, reason="resumed")
    assert w.call(b, "negotiated", "accept", proposal_id=pid).ok


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["propose", "accept", "reject", "withdraw", "block"]),
                                st.integers(0, 2), st.integers(0, 2), st.integers(1, 30)), max_size=25))
def test_any_sequence_conserves_balances_and_locks_only_open_proposals(
        steps: list[tuple[str, int, int, int]]) -> None:
    w = World(investors=3, open_book=False, cash_each=50_000, shares_each=100)
    ids: list[int] = []
    for action, i, j, n in steps:
        a, b = w.investors[i], w.investors[j]
        if action == "propose":
            done = _propose(w, a, b, side="sell" if n % 2 else "buy", quantity=n, price=100)
            if done.ok:
                ids.append(_id(done))
        elif action == "block":
            w.begin_block(w.time_ms + n * 5_000)
        elif ids:
            w.call(a if action == "withdraw" else b, "negotiated", action, proposal_id=ids[n % len(ids)])
    ctx = w.query_ctx()
    open_ = [p for p in {p.proposal_id: p for acct in w.investors
                         for p in negotiated.proposals_of(ctx, acct)}.values() if p.status == "proposed"]
    for account in w.investors:
        want_shares = sum(p.quantity for p in open_ if p.proposer == account and p.side == "sell")
        want_cash = sum(p.amount for p in open_ if p.proposer == account and p.side == "buy")
        assert w.balance(w.isin, account).locked == want_shares
        assert w.balance(CURRENCY, account).locked == want_cash
    assert sum(w.balance(w.isin, a).total for a in w.investors) == 300
    assert sum(w.balance(CURRENCY, a).total for a in w.investors) == 150_000


def test_a_corporate_action_can_end_every_open_proposal_on_the_security() -> None:
    w = World(investors=2, open_book=False)
    a, b = w.investors
    for _ in range(3):
        _propose(w, a, b)
    _propose(w, b, a, side="buy", quantity=5, price=100)

    def withdraw(ctx: Context) -> bool:
        return negotiated.withdraw_security_proposals(ctx, w.isin, "redemption", limit=3)

    assert w.system(withdraw)[0] is False
    assert w.system(withdraw)[0] is True
    assert w.balance(w.isin, a).locked == 0 and w.balance(CURRENCY, b).locked == 0
    assert {p.status for p in negotiated.proposals_of(w.query_ctx(), a)} == {"cancelled"}

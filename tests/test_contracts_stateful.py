"""Random sequences of every contract call, valid and invalid, with the ledger's invariants after each.

After every step, per asset: sum(free + locked) == issued - retired, holder counts match, no
negative balance; every holder is an admitted participant and every security holder but the
issuer's treasury an investor (qualified where required, within the maximum holders); a
suspended or wholly frozen account's balances change only by a regulator's forced transfer;
spending never dips into a partially frozen part; a refused call (a failed DvP among them)
changed nothing. One machine runs contracts over an in-memory state, the other the same rules
through the real Executor and LevelDB, with real keys (re-bound by lost-key recoveries), and at
the end replays every batch on a second store from genesis and requires the same block and
state hashes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts import balances, compliance, participants, securities, settlement
from contracts.base import Context
from ledger.reasons import ContractError, Reason
from ledger.state import prefix_of
from tests.contracts_world import KYC, PROSPECTUS, ExecWorld, World, addr, key

# dave: not an investor; stranger: never admitted; erin: admitted (with random roles) by a rule.
PEOPLE = ("alice", "bob", "carol", "dave", "stranger", "erin")
INVESTORS = ("alice", "bob", "carol")
MAX_INSTRUMENTS = 6
CURRENCY = "MXN"
QUANTITY = st.integers(1, 120)
# Mostly investors, so that most calls could succeed; sometimes someone who may not hold.
PARTY = st.sampled_from(INVESTORS * 4 + ("dave", "stranger", "erin"))
# Two parties: usually two different investors, sometimes any two (the same, or ineligible).
PAIR = st.one_of(st.permutations(INVESTORS).map(lambda p: (p[0], p[1])),
                 st.permutations(INVESTORS).map(lambda p: (p[1], p[2])),
                 st.tuples(PARTY, PARTY))
SNAPSHOT_PREFIXES = ("bal", "supply", "holders", "freeze", "instr", "part", "recovery")
FORCED = "forced_transfer"


class Driver:
    """What a machine needs of a ledger: signed calls by name, a read view, a clock."""

    direct_state = False

    def call(self, signers: tuple[str, ...], contract: str, method: str, args: dict[str, Any]) -> Reason:
        raise NotImplementedError

    def view(self) -> Context:
        raise NotImplementedError

    def advance(self, ms: int) -> None:
        raise NotImplementedError

    def rebind(self, name: str, key_name: str) -> None:
        """After a recovery: `name` signs with key(key_name) from now on."""

    def close(self) -> None:
        pass


class MemoryDriver(Driver):
    direct_state = True

    def __init__(self) -> None:
        self.world = World()

    def call(self, signers: tuple[str, ...], contract: str, method: str, args: dict[str, Any]) -> Reason:
        return self.world.call(signers, contract, method, **args).reason

    def view(self) -> Context:
        return self.world.view()

    def advance(self, ms: int) -> None:
        self.world.time_ms += ms


class ExecutorDriver(Driver):
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="keiretsu-contracts-")
        self.app_state: dict[str, Any] = {"operators": [addr("operator")]}
        self.chain = ExecWorld(Path(self.tmp) / "ledger", self.app_state)
        self.keys: dict[str, str] = {}

    def call(self, signers: tuple[str, ...], contract: str, method: str, args: dict[str, Any]) -> Reason:
        keys = [key(self.keys.get(s, s)) for s in signers]
        return self.chain.submit(keys, contract, method, **args).reason

    def rebind(self, name: str, key_name: str) -> None:
        self.keys[name] = key_name

    def replay_matches(self) -> bool:
        """A second node replaying the same batches from genesis reaches the same hashes."""
        replica = ExecWorld(Path(self.tmp) / "replica", self.app_state)
        try:
            for index, batch in enumerate(self.chain.batches, start=1):
                replica.executor.apply(batch, index, 1)
            return replica.store.position == self.chain.store.position
        finally:
            replica.close()

    def view(self) -> Context:
        return self.chain.view()

    def advance(self, ms: int) -> None:
        self.chain.time_ms += ms

    def close(self) -> None:
        self.chain.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def snapshot(ctx: Context) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for name in SNAPSHOT_PREFIXES:
        out.update(ctx.scan(prefix_of(name), 100_000))
    return out


class LedgerMachine(RuleBasedStateMachine):
    driver_class: type[Driver] = MemoryDriver

    def __init__(self) -> None:
        super().__init__()
        self.driver = self.driver_class()
        self.assets: list[str] = [CURRENCY]
        self.isins: list[str] = []
        self.last_method = ""

    def teardown(self) -> None:
        try:
            if isinstance(self.driver, ExecutorDriver):
                assert self.driver.replay_matches(), "a replay from genesis reached another state"
        finally:
            self.driver.close()

    # ------------------------------------------------------------ driving

    def do(self, signers: tuple[str, ...], contract: str, method: str, **args: Any) -> Reason:
        """One call; if refused, the state must be exactly as before."""
        before = snapshot(self.driver.view())
        self.before = before
        reason = self.driver.call(signers, contract, method, {k: v for k, v in args.items() if v is not None})
        self.last_method = method if reason == Reason.OK else ""
        if reason != Reason.OK:
            assert snapshot(self.driver.view()) == before, f"refused {contract}.{method} ({reason}) changed state"
        return reason

    @initialize()
    def setup(self) -> None:
        for name, roles, qualified in (("regulator", ["regulator"], False), ("bank", ["cash_agent"], False),
                                       ("issuer", ["issuer"], False), ("alice", ["investor"], False),
                                       ("bob", ["investor"], False), ("carol", ["investor"], True),
                                       ("dave", ["issuer"], False)):
            assert self.do(("operator",), "participants", "admit", address=addr(name), name=name, roles=roles,
                           kyc_hash=KYC, qualified=qualified) == Reason.OK
        assert self.do(("operator",), "cash", "register_currency", currency=CURRENCY, decimals=2,
                       agent=addr("bank")) == Reason.OK
        for rules in ({"max_holders": 2}, {"qualified_only": True, "lockup_until_ms": 0}, {}):
            self._register(rules)
        for name in ("issuer",) + INVESTORS:
            assert self.do(("bank",), "cash", "mint", currency=CURRENCY, to=addr(name), amount=20_000,
                           deposit_ref="seed") == Reason.OK
        for isin, holders in zip(self.isins, (("alice", "bob"), ("carol",), INVESTORS), strict=True):
            for name in holders:
                assert self.do(("issuer",), "securities", "issue", isin=isin, to=addr(name), quantity=300) == Reason.OK

    def _register(self, rules: dict[str, Any], kind: str = "equity") -> None:
        before = {k for k, _ in self.driver.view().scan(prefix_of("instr"), 1000)}
        reason = self.do(("issuer",), "securities", "register", name="Co", kind=kind, authorised_supply=2000,
                         prospectus_hash=PROSPECTUS, prospectus_uri="u", **rules)
        assert reason == Reason.OK
        new = [k for k, _ in self.driver.view().scan(prefix_of("instr"), 1000) if k not in before]
        isin = new[0].rsplit(b"\x1f", 1)[1].decode("ascii")
        self.isins.append(isin)
        self.assets.append(isin)

    # ------------------------------------------------------------ participants

    @rule(roles=st.lists(st.sampled_from(participants.ROLES), max_size=2), qualified=st.booleans(),
          signer=st.sampled_from(("operator", "operator", "alice")))
    def admit(self, roles: list[str], qualified: bool, signer: str) -> None:
        self.do((signer,), "participants", "admit", address=addr("erin"), name="erin", roles=roles,
                kyc_hash=KYC, qualified=qualified)

    @rule(account=st.sampled_from(INVESTORS), generation=st.integers(1, 3),
          signers=st.sampled_from((("operator", "regulator"),) * 3 + (("operator",), ("regulator",))))
    def recover_key(self, account: str, generation: int, signers: tuple[str, ...]) -> None:
        """Lost keys: from a successful recovery on, the account signs with its new key."""
        new_key = f"{account}-key{generation}"
        reason = self.do(signers, "participants", "recover_key", address=addr(account),
                         new_public_key=key(new_key).public_key, reason="lost phone")
        if reason == Reason.OK:
            self.driver.rebind(account, new_key)

    @precondition(lambda self: len(self.isins) < MAX_INSTRUMENTS)
    @rule(kind=st.sampled_from(("equity", "bond")), max_holders=st.none() | st.integers(1, 3),
          qualified_only=st.booleans(), lockup_ms=st.integers(0, 20_000))
    def register(self, kind: str, max_holders: int | None, qualified_only: bool, lockup_ms: int) -> None:
        now = self.driver.view().block.time_ms
        rules: dict[str, Any] = {"qualified_only": qualified_only, "lockup_until_ms": now + lockup_ms}
        if max_holders is not None:
            rules["max_holders"] = max_holders
        if kind == "bond":
            rules.update(face_value_minor=1000, currency=CURRENCY, coupon_rate_bps=500,
                         coupon_schedule_ms=[now + 10**8], maturity_ms=now + 10**9)
        self._register(rules, kind)

    # ------------------------------------------------------------ cash

    @rule(to=st.sampled_from(PEOPLE + ("issuer",)), amount=st.integers(1, 5000),
          signer=st.sampled_from(("bank", "bank", "alice")))
    def mint(self, to: str, amount: int, signer: str) -> None:
        self.do((signer,), "cash", "mint", currency=CURRENCY, to=addr(to), amount=amount, deposit_ref="d")

    @rule(amount=st.integers(1, 3000))
    def burn(self, amount: int) -> None:
        self.do(("bank",), "cash", "burn", currency=CURRENCY, amount=amount, withdrawal_ref="w")

    @rule(pair=PAIR, amount=st.integers(1, 3000))
    def pay(self, pair: tuple[str, str], amount: int) -> None:
        source, to = pair
        self.do((source,), "cash", "transfer", currency=CURRENCY, to=addr(to), amount=amount)

    # ------------------------------------------------------------ securities

    @rule(data=st.data(), to=PARTY, quantity=QUANTITY, signer=st.sampled_from(("issuer", "issuer", "dave")))
    def issue(self, data: st.DataObject, to: str, quantity: int, signer: str) -> None:
        isin = data.draw(st.sampled_from(self.isins))
        self.do((signer,), "securities", "issue", isin=isin, to=addr(to), quantity=quantity)

    @rule(data=st.data(), holder=st.sampled_from(INVESTORS), quantity=QUANTITY, pay=st.booleans())
    def redeem(self, data: st.DataObject, holder: str, quantity: int, pay: bool) -> None:
        isin = data.draw(st.sampled_from(self.isins))
        self.do(("issuer", holder), "securities", "redeem", isin=isin, holder=addr(holder), quantity=quantity,
                currency=CURRENCY if pay else None, amount=quantity * 10 if pay else None)

    @rule(data=st.data(), pair=PAIR, quantity=QUANTITY)
    def transfer(self, data: st.DataObject, pair: tuple[str, str], quantity: int) -> None:
        source, to = pair
        isin = data.draw(st.sampled_from(self.isins))
        self.do((source,), "securities", "transfer", isin=isin, to=addr(to), quantity=quantity)

    # ------------------------------------------------------------ settlement

    @rule(data=st.data(), pair=PAIR, quantity=QUANTITY, amount=st.integers(1, 4000),
          signed=st.sampled_from(("both", "both", "both", "seller", "buyer")))
    def dvp(self, data: st.DataObject, pair: tuple[str, str], quantity: int, amount: int, signed: str) -> None:
        seller, buyer = pair
        isin = data.draw(st.sampled_from(self.isins))
        signers = {"both": (seller, buyer), "seller": (seller,), "buyer": (buyer,)}[signed]
        if seller == buyer:
            signers = (seller,)
        self.do(signers, "settlement", "dvp", seller=addr(seller), buyer=addr(buyer), isin=isin, quantity=quantity,
                currency=CURRENCY, amount=amount)

    @rule(data=st.data(), count=st.integers(1, 4), all_sign=st.sampled_from((True, True, True, False)))
    def batch(self, data: st.DataObject, count: int, all_sign: bool) -> None:
        legs = []
        for _ in range(count):
            source, target = data.draw(PAIR)
            legs.append({"asset": data.draw(st.sampled_from(self.assets)), "source": addr(source),
                         "target": addr(target), "quantity": data.draw(st.integers(1, 300)), "_s": source})
        signers = tuple(dict.fromkeys(leg.pop("_s") for leg in legs))
        if not all_sign and len(signers) > 1:
            signers = signers[:-1]
        self.do(signers, "settlement", "batch", legs=legs)

    @precondition(lambda self: self.driver.direct_state)
    @rule(data=st.data(), account=st.sampled_from(INVESTORS), quantity=QUANTITY, settle=st.booleans(),
          to=PARTY)
    def lock_then_settle(self, data: st.DataObject, account: str, quantity: int, settle: bool, to: str) -> None:
        """What the market does: lock spendable units for an order, later settle them from locked."""
        asset = data.draw(st.sampled_from(self.assets))
        world = self.driver.world  # type: ignore[attr-defined]
        ctx = world.context(())
        self.before = snapshot(world.view())
        try:
            participants.require_eligible(ctx, addr(account), Reason.SENDER_NOT_ELIGIBLE)
            compliance.check_spendable(ctx, addr(account), asset, quantity)
            balances.lock(ctx, asset, addr(account), quantity)
            if settle:
                settlement.settle_legs(ctx, [settlement.Leg(asset, addr(account), addr(to), quantity, True)])
        except ContractError:
            self.last_method = ""
            return
        ctx.state.merge_into(world.state)
        self.last_method = "lock"

    # ------------------------------------------------------------ controls

    @rule(data=st.data(), account=st.sampled_from(PEOPLE), scope=st.sampled_from(("account", "asset", "part")),
          amount=st.integers(1, 500), signer=st.sampled_from(("regulator", "regulator", "issuer")))
    def freeze(self, data: st.DataObject, account: str, scope: str, amount: int, signer: str) -> None:
        asset = None if scope == "account" else data.draw(st.sampled_from(self.assets))
        self.do((signer,), "compliance", "freeze", account=addr(account), reason="r", asset=asset,
                amount=amount if scope == "part" else None)

    @rule(data=st.data(), account=PARTY, guess=st.booleans())
    def unfreeze(self, data: st.DataObject, account: str, guess: bool) -> None:
        """Usually lifts a freeze that exists; sometimes guesses a scope (likely NOT_FOUND)."""
        existing = compliance.freezes(self.driver.view(), addr(account))
        if existing and not guess:
            asset = data.draw(st.sampled_from(existing)).asset
        else:
            asset = data.draw(st.sampled_from([None, *self.assets]))
        self.do(("regulator",), "compliance", "unfreeze", account=addr(account), reason="r", asset=asset)

    @rule(data=st.data(), pair=PAIR, quantity=QUANTITY, signer=st.sampled_from(("regulator", "regulator", "alice")))
    def forced_transfer(self, data: st.DataObject, pair: tuple[str, str], quantity: int, signer: str) -> None:
        source, dest = pair
        asset = data.draw(st.sampled_from(self.assets))
        self.do((signer,), "compliance", FORCED, asset=asset, source=addr(source), target=addr(dest),
                quantity=quantity, reason="court order")

    @rule(data=st.data(), method=st.sampled_from(("pause", "resume")))
    def pause(self, data: st.DataObject, method: str) -> None:
        self.do(("regulator",), "compliance", method, isin=data.draw(st.sampled_from(self.isins)), reason="r")

    @rule(account=st.sampled_from(INVESTORS + ("dave",)), method=st.sampled_from(("suspend", "reinstate")))
    def suspend(self, account: str, method: str) -> None:
        self.do(("operator",), "participants", method, address=addr(account), reason="r")

    @rule(ms=st.integers(0, 10_000))
    def advance(self, ms: int) -> None:
        self.driver.advance(ms)
        self.last_method = ""

    # ------------------------------------------------------------ invariants

    @invariant()
    def conservation_and_eligibility(self) -> None:
        ctx = self.driver.view()
        for asset in self.assets:
            issued, retired = balances.supply(ctx, asset)
            rows = list(balances.holders(ctx, asset))
            assert all(b.free >= 0 and b.locked >= 0 and b.total > 0 for _, b in rows)
            assert sum(b.total for _, b in rows) == issued - retired, f"{asset} is not conserved"
            assert balances.holder_count(ctx, asset) == len(rows)
            instrument = securities.get_instrument(ctx, asset)
            for account, _ in rows:
                found = participants.get(ctx, account)
                assert found is not None, f"{asset} held by a non-participant"
                if instrument is not None and account != instrument.issuer:  # the treasury is exempt
                    assert found.has_role(participants.INVESTOR), f"{asset} held by a non-investor"
                    assert found.qualified or not instrument.qualified_only
            if instrument is not None and instrument.max_holders is not None:
                counted = [account for account, _ in rows if account != instrument.issuer]
                assert len(counted) == securities.counted_holders(ctx, instrument) <= instrument.max_holders

    @invariant()
    def controls_hold(self) -> None:
        """Suspended or wholly frozen accounts moved only by a forced transfer; partial freezes respected."""
        before = getattr(self, "before", None)
        if before is None or self.last_method in ("", FORCED):
            return
        ctx = self.driver.view()
        for asset in self.assets:
            for name in PEOPLE:
                account = addr(name)
                old = before.get(balances.balance_key(asset, account)) or [0, 0]
                new = balances.get(ctx, asset, account)
                found = participants.get(ctx, account)
                blocked = (found is not None and not found.active) or compliance.is_frozen(ctx, account, asset)
                if blocked:
                    assert [new.free, new.locked] == list(old), f"{name}'s {asset} moved while blocked"
                if new.free < old[0]:
                    assert new.free >= compliance.frozen_amount(ctx, account, asset), "spent a frozen part"


LedgerMachine.TestCase.settings = settings(max_examples=70, stateful_step_count=40, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestContractsInMemory = LedgerMachine.TestCase


class ExecutorLedgerMachine(LedgerMachine):
    driver_class = ExecutorDriver


ExecutorLedgerMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=30, deadline=None,
                                                   suppress_health_check=[HealthCheck.too_slow])
TestContractsThroughExecutor = ExecutorLedgerMachine.TestCase

"""The order path's events name their attributes in key order, so receipts pack them as they are.

An event whose attributes are out of key order encodes to the same bytes, but only after a
sorted copy (ledger/codec.py: is_leaf_map_sorted); on the venue's path that copy cost ~2% of an
order's instructions (docs/PERFORMANCE.md, sixth session). An attribute added out of order would
keep every hash and silently bring the copy back; this test names it.
"""

from __future__ import annotations

from ledger import codec
from ledger.block import Event
from tests.contracts_world import addr
from tests.contracts_world import market as settlement_market
from tests.market_world import World


def _out_of_order(events: list[Event]) -> list[tuple[str, list[str]]]:
    return [(e.kind, list(e.attrs)) for e in events if not codec.is_leaf_map_sorted(e.attrs)]


def test_every_event_of_an_order_s_life_is_in_key_order() -> None:
    w = World()
    a, b = w.investors[0], w.investors[1]
    seen: list[Event] = []

    def run(signer: str, side: str, quantity: int, price: int, **extra: object) -> int:
        done = w.order(signer, side, quantity, price, **extra)
        assert done.ok, done
        seen.extend(done.events)
        return int(done.of_kind("order_placed")[0]["order_id"])

    run(a, "sell", 10, 100)                                            # placed, rested
    run(b, "buy", 4, 100)                                              # trade, filled
    run(b, "buy", 20, 100, time_in_force="ioc")                        # trade, cancelled (not resting)
    run(b, "buy", 50, 90, time_in_force="fok")                         # killed
    seen.extend(w.must(a, "market", "cancel_order", order_id=run(a, "sell", 5, 120)).events)
    expires = w.time_ms + 1_000
    run(a, "buy", 1, 80, time_in_force="gtt", expires_at_ms=expires)
    seen.extend(w.begin_block(expires))                                # expired
    kinds = {e.kind for e in seen}
    assert {"order_placed", "order_rested", "trade", "order_filled", "order_cancelled", "order_killed",
            "order_expired"} <= kinds, kinds
    assert _out_of_order(seen) == []


def test_a_settled_dvp_event_is_in_key_order() -> None:
    world, isin = settlement_market()
    done = world.ok(("alice", "bob"), "settlement", "dvp", seller=addr("alice"), buyer=addr("bob"), isin=isin,
                    quantity=10, currency="MXN", amount=25_000, reference="trade-1")
    assert done.kinds() == ["dvp_settled"]
    assert _out_of_order(list(done.events)) == []

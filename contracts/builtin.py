"""The built-in contract modules a Keiretsu network runs, in hook order.

Part of contracts/. Participants first (others ask it who may act), then assets, then the
modules that move them.
"""

from __future__ import annotations

from contracts import (  # the venue (docs/MARKET.md)
    cash,
    compliance,
    corporate_actions,
    market,
    negotiated,
    offerings,
    participants,
    queries,
    securities,
    settlement,
)

# Modules that move assets by others' rules (market, offerings, corporate actions) go after
# settlement; queries has no methods or hooks (it serves read-only QUERIES), so its place is free.
MODULES = [participants, cash, securities, compliance, settlement, queries, offerings, corporate_actions]
MODULES += [market, negotiated]

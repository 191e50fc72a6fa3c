"""The built-in contract modules a Keiretsu network runs, in hook order.

Part of contracts/. Participants first (others ask it who may act), then assets, then the
modules that move them.
"""

from __future__ import annotations

from contracts import cash, compliance, participants, securities, settlement

# Others append theirs (market, offerings, corporate actions) after these: the movers come last.
MODULES = [participants, cash, securities, compliance, settlement]

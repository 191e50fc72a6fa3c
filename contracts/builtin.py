"""The built-in contract modules a Keiretsu network runs, in hook order.

Part of contracts/. Participants first (others ask it who may act), then assets, then the
modules that move them.
"""

from __future__ import annotations

from contracts import cash, participants

MODULES = [participants, cash]

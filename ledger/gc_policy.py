"""The cyclic garbage collector's settings for a process that executes blocks.

Part of ledger/. A block allocates tens of thousands of short-lived containers (decoded
records, contexts, receipts), almost none of them in reference cycles, so reference counting
frees them and CPython's default threshold (a young collection every 700 allocations) only
re-walks live objects: 4.2% of the ledger bench's CPU and 6.3% of the venue bench's, measured
with gc.callbacks (docs/PERFORMANCE.md). Cycles are still collected, just less often.
"""

from __future__ import annotations

import gc

# Container allocations (net of frees) before a young collection; CPython's default is 700.
YOUNG_COLLECTION_ALLOCATIONS = 50_000
# Young collections before a middle one, and middle ones before a full one (defaults 10, 10).
MIDDLE_AFTER_YOUNG = 20
FULL_AFTER_MIDDLE = 100


def tune_for_blocks() -> None:
    """Move what exists now (modules, tables, configuration) out of the collector's sight and
    collect the young generations less often. Call once a process has loaded its code."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, MIDDLE_AFTER_YOUNG, FULL_AFTER_MIDDLE)

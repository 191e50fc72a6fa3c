"""Reconnect delays for a p2p dialer: exponential growth, capped, with jitter.

Sans-IO: the caller sleeps. Jitter comes from an injected random.Random so tests can seed it;
it spreads the reconnects of many nodes that lost the same peer at the same moment.
"""

from __future__ import annotations

import random

BACKOFF_INITIAL_MS = 100
BACKOFF_MAX_MS = 5_000


class Backoff:
    """Delay n (from 0) is drawn uniformly from [cap_n / 2, cap_n], cap_n = min(max, initial*2^n).

    Keeping half the cap as a floor ("equal jitter") means a flapping peer is never redialled
    in a tight loop, while the random half desynchronises dialers.
    """

    def __init__(
        self,
        rng: random.Random,
        initial_ms: int = BACKOFF_INITIAL_MS,
        max_ms: int = BACKOFF_MAX_MS,
    ) -> None:
        if not 0 < initial_ms <= max_ms:
            raise ValueError("backoff needs 0 < initial_ms <= max_ms")
        self._rng = rng
        self.initial_ms = initial_ms
        self.max_ms = max_ms
        self._attempt = 0

    def next_delay_ms(self) -> int:
        # Stop doubling once the cap is reached so the exponent stays small forever.
        cap = min(self.max_ms, self.initial_ms << min(self._attempt, 32))
        if cap < self.max_ms:
            self._attempt += 1
        return self._rng.randint(cap // 2, cap)

    def reset(self) -> None:
        """Called once a link is up, so the next loss is retried quickly again."""
        self._attempt = 0

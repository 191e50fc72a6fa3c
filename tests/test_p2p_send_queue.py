"""Per-peer send queues and reconnect backoff: bounded memory, counted drops, bounded delays."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.backoff import Backoff
from p2p.send_queue import SendQueue


@settings(deadline=None)  # timing under a loaded CI box is not the property
@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=64),
    st.lists(st.binary(max_size=80), max_size=40),
)
def test_queue_stays_bounded_and_refuses_the_newest(
    max_frames: int, max_bytes: int, pushes: list[bytes]
) -> None:
    queue = SendQueue(max_frames, max_bytes)
    accepted: list[bytes] = []
    for frame in pushes:
        fits = len(queue) < max_frames and queue.queued_bytes + len(frame) <= max_bytes
        assert queue.push(frame) == fits
        if fits:
            accepted.append(frame)
        assert len(queue) <= max_frames and queue.queued_bytes <= max_bytes
    # Drop-newest: every frame the queue said yes to is still there, in order.
    assert queue.pop_batch(max_batch_bytes=10**6) == accepted
    assert queue.dropped_frames == len(pushes) - len(accepted)
    assert queue.queued_bytes == 0


def test_pop_batch_respects_the_byte_budget_but_always_makes_progress() -> None:
    queue = SendQueue(10, 1000)
    for size in (300, 300, 300):
        queue.push(bytes(size))
    assert [len(f) for f in queue.pop_batch(max_batch_bytes=650)] == [300, 300]
    assert [len(f) for f in queue.pop_batch(max_batch_bytes=10)] == [300]


def test_clear_counts_what_it_drops() -> None:
    queue = SendQueue(10, 1000)
    queue.push(b"a")
    queue.push(b"b")
    assert queue.clear() == 2
    assert queue.dropped_frames == 2 and len(queue) == 0


@settings(deadline=None)  # timing under a loaded CI box is not the property
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1, max_value=60))
def test_backoff_grows_to_its_cap_and_resets(seed: int, attempts: int) -> None:
    backoff = Backoff(random.Random(seed), initial_ms=100, max_ms=5000)
    delays = [backoff.next_delay_ms() for _ in range(attempts)]
    for n, delay in enumerate(delays):
        cap = min(5000, 100 * 2**n)
        assert cap // 2 <= delay <= cap
    backoff.reset()
    assert 50 <= backoff.next_delay_ms() <= 100


def test_backoff_is_reproducible_from_its_seed() -> None:
    first = Backoff(random.Random(7))
    second = Backoff(random.Random(7))
    assert [first.next_delay_ms() for _ in range(10)] == [second.next_delay_ms() for _ in range(10)]

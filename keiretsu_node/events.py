"""Events for subscribers: new blocks and receipts, fanned out over bounded queues.

Part of keiretsu_node/. A slow subscriber never holds the node back: when its queue is full it
is dropped with a final `overflow` event and can reconnect from the last height it saw.
A subscription holds its slot (of `max_subscribers`) until its connection has ended, not
until it stops receiving: a dropped subscriber whose connection lingers still counts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBER_QUEUE_EVENTS = 1_000


@dataclass(frozen=True)
class NodeEvent:
    kind: str  # "block", "receipt", "overflow"
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    accounts: frozenset[str]
    queue: asyncio.Queue[NodeEvent] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_EVENTS))
    closed: bool = False  # receives nothing more
    released: bool = False  # its connection has ended; its slot is free


class EventHub:
    def __init__(self, max_subscribers: int) -> None:
        self.max_subscribers = max_subscribers
        self._subs: list[Subscription] = []  # the ones receiving
        self.connections = 0  # subscriptions not yet released, receiving or not
        self.dropped_subscribers = 0

    def subscribe(self, accounts: frozenset[str]) -> Subscription | None:
        if self.connections >= self.max_subscribers:
            return None
        sub = Subscription(accounts)
        self._subs.append(sub)
        self.connections += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to `sub`; its slot stays taken until release()."""
        sub.closed = True
        if sub in self._subs:
            self._subs.remove(sub)

    def release(self, sub: Subscription) -> None:
        """The subscriber's connection has ended: free its slot."""
        self.unsubscribe(sub)
        if not sub.released:
            sub.released = True
            self.connections -= 1

    def wants_receipts(self) -> bool:
        """True when some subscriber follows accounts, so receipt events must be built."""
        return any(sub.accounts for sub in self._subs)

    def publish_block(self, block_event: NodeEvent, receipts: list[tuple[frozenset[str], NodeEvent]]) -> None:
        for sub in list(self._subs):
            self._offer(sub, block_event)
            if sub.accounts:
                for subjects, event in receipts:
                    if sub.accounts & subjects:
                        self._offer(sub, event)

    def _offer(self, sub: Subscription, event: NodeEvent) -> None:
        if sub.closed:
            return
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_subscribers += 1
            self.unsubscribe(sub)
            # Make room for the last word so the client learns why its stream ended.
            sub.queue.get_nowait()
            sub.queue.put_nowait(NodeEvent("overflow", {"reason": "subscriber too slow"}))

    def close_all(self) -> None:
        for sub in list(self._subs):
            self.unsubscribe(sub)
            try:
                sub.queue.put_nowait(NodeEvent("closing", {}))
            except asyncio.QueueFull:
                pass

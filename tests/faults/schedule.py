"""A fault schedule drawn from a seed: what happens, when, to whom, for how long.

Part of tests/faults. Pure and deterministic: the same seed, node count and duration give the
same plan, so a failing run replays with KEIRETSU_FAULT_SEED. Which node is the leader is only
known at run time, so a fault aimed at "the leader" resolves its target when it fires.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

LEADER = "@leader"
MIN_FAULT_MS = 1_500
MAX_FAULT_MS = 5_000
MIN_GAP_MS = 800
MAX_GAP_MS = 2_500
LEADER_TARGET_PER_MILLE = 500
MAX_DELAY_MS = 400
MAX_LOSS_PER_MILLE = 80
MAX_DUP_PER_MILLE = 30


class FaultKind(enum.Enum):
    KILL = "kill"  # SIGKILL, restart from disk when the fault ends
    PAUSE = "pause"  # SIGSTOP ... SIGCONT
    PARTITION = "partition"  # a minority cut off from the rest, both directions (proxy)
    ONE_WAY = "one_way"  # one direction of one link drops everything (proxy)
    SLOW = "slow"  # every link of a node delayed (proxy)
    LOSSY = "lossy"  # every link of a node resets and duplicates at random (proxy)
    ISOLATE = "isolate"  # the node's veth taken down: peers and clients lose it


@dataclass(frozen=True)
class PlannedFault:
    start_ms: int
    duration_ms: int
    kind: FaultKind
    target: str  # a node name or LEADER
    peers: tuple[str, ...] = ()  # PARTITION: the rest of the minority; ONE_WAY: the receiver
    delay_ms: int = 0
    loss_per_mille: int = 0
    dup_per_mille: int = 0

    def describe(self) -> str:
        extra = ""
        if self.kind == FaultKind.PARTITION:
            extra = f" with {list(self.peers)}"
        elif self.kind == FaultKind.ONE_WAY:
            extra = f" -> {self.peers[0]}"
        elif self.kind == FaultKind.SLOW:
            extra = f" {self.delay_ms} ms"
        elif self.kind == FaultKind.LOSSY:
            extra = f" loss {self.loss_per_mille}‰ dup {self.dup_per_mille}‰"
        return f"t+{self.start_ms / 1000:.1f}s {self.kind.value} {self.target}{extra} for {self.duration_ms} ms"


def plan(seed: int, names: list[str], duration_ms: int) -> list[PlannedFault]:
    """Faults one after another (each healed before the next), filling duration_ms."""
    rng = random.Random(seed)
    kinds = list(FaultKind)
    out: list[PlannedFault] = []
    at = rng.randrange(MIN_GAP_MS, MAX_GAP_MS)
    while True:
        length = rng.randrange(MIN_FAULT_MS, MAX_FAULT_MS)
        if at + length > duration_ms:
            return out
        out.append(_one(rng, rng.choice(kinds), names, at, length))
        at += length + rng.randrange(MIN_GAP_MS, MAX_GAP_MS)


def _target(rng: random.Random, names: list[str]) -> str:
    return LEADER if rng.randrange(1000) < LEADER_TARGET_PER_MILLE else rng.choice(names)


def _one(rng: random.Random, kind: FaultKind, names: list[str], at: int, length: int) -> PlannedFault:
    target = _target(rng, names)
    if kind == FaultKind.PARTITION:
        minority = (len(names) - 1) // 2
        others = [n for n in names if n != target]
        return PlannedFault(at, length, kind, target, tuple(rng.sample(others, minority - 1)))
    if kind == FaultKind.ONE_WAY:
        receiver = rng.choice([n for n in names if n != target])
        return PlannedFault(at, length, kind, target, (receiver,))
    if kind == FaultKind.SLOW:
        return PlannedFault(at, length, kind, target, delay_ms=rng.randrange(20, MAX_DELAY_MS))
    if kind == FaultKind.LOSSY:
        return PlannedFault(at, length, kind, target, loss_per_mille=rng.randrange(5, MAX_LOSS_PER_MILLE),
                            dup_per_mille=rng.randrange(0, MAX_DUP_PER_MILLE))
    return PlannedFault(at, length, kind, target)

"""Carries out a fault plan against a NetnsCluster, healing each fault when its time is up.

Part of tests/faults. The plan (schedule.py) is pure; this is where signals are sent, links
are cut and interfaces go down. Every fault is undone in a finally, so a cancelled run heals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.faults.netcluster import NetnsCluster
from tests.faults.proxy import HEALTHY, LinkFault
from tests.faults.schedule import LEADER, FaultKind, PlannedFault

LEADER_LOOKUP_S = 3.0


async def _resolve(cluster: NetnsCluster, fault: PlannedFault) -> str:
    if fault.target != LEADER:
        return fault.target
    try:
        return await cluster.leader(timeout_s=LEADER_LOOKUP_S)
    except TimeoutError:
        return cluster.names[0]  # no leader right now: hit a fixed node, so a replay does the same


def _links(cluster: NetnsCluster, fault: PlannedFault, target: str) -> list[tuple[str, str, LinkFault]]:
    """The directed links a proxy fault touches, with what each gets."""
    others = [n for n in cluster.names if n != target]
    if fault.kind == FaultKind.PARTITION:
        group = {target, *fault.peers}
        if len(group) < len(fault.peers) + 1:  # the leader was also drawn as a peer: keep the size
            group.add(next(n for n in others if n not in group))
        cut = LinkFault(cut=True)
        return [(a, b, cut) for a in group for b in cluster.names if b not in group] + \
               [(b, a, cut) for a in group for b in cluster.names if b not in group]
    if fault.kind == FaultKind.ONE_WAY:
        receiver = fault.peers[0] if fault.peers[0] != target else others[0]
        return [(target, receiver, LinkFault(cut=True))]
    if fault.kind == FaultKind.SLOW:
        slow = LinkFault(delay_ms=fault.delay_ms)
        return [(target, o, slow) for o in others] + [(o, target, slow) for o in others]
    lossy = LinkFault(loss_per_mille=fault.loss_per_mille, dup_per_mille=fault.dup_per_mille)
    return [(target, o, lossy) for o in others] + [(o, target, lossy) for o in others]


async def inject(cluster: NetnsCluster, fault: PlannedFault, log: Callable[[str], None]) -> None:
    """One fault, for its duration, then healed."""
    assert cluster.net is not None
    target = await _resolve(cluster, fault)
    log(f"{fault.describe()} -> {target}")
    seconds = fault.duration_ms / 1000
    if fault.kind == FaultKind.KILL:
        cluster.kill(target)
        try:
            await asyncio.sleep(seconds)
        finally:
            cluster.start(target)  # restart from its own data directory
        return
    if fault.kind == FaultKind.PAUSE:
        cluster.pause(target)
        try:
            await asyncio.sleep(seconds)
        finally:
            cluster.resume(target)
        return
    if fault.kind == FaultKind.ISOLATE:
        cluster.set_link_up(target, False)
        try:
            await asyncio.sleep(seconds)
        finally:
            cluster.set_link_up(target, True)
        return
    links = _links(cluster, fault, target)
    for src, dst, link_fault in links:
        cluster.net.set(src, dst, link_fault)
    try:
        await asyncio.sleep(seconds)
    finally:
        for src, dst, _ in links:
            cluster.net.set(src, dst, HEALTHY)


async def run_plan(cluster: NetnsCluster, plan: list[PlannedFault], started: float,
                   log: Callable[[str], None]) -> None:
    for fault in plan:
        wait = started + fault.start_ms / 1000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await inject(cluster, fault, log)

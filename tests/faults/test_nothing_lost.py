"""Nothing lost: real node processes trade while seeded faults hit them; then every node is audited.

Part of tests/faults (marked slow). Run: `pytest -m slow tests/faults -s`. Replay a failure with
KEIRETSU_FAULT_SEED=<seed printed in the summary>; KEIRETSU_FAULT_SOAK_S=600 adds a long soak.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from keiretsu_node.config import BatchingConfig, ConsensusConfig
from tests.faults.checks import Verdict, audit
from tests.faults.netcluster import NetnsCluster
from tests.faults.netns import NetnsUnavailable, check_available
from tests.faults.runner import run_plan
from tests.faults.schedule import plan
from tests.faults.workload import History, open_market, trade

pytestmark = pytest.mark.slow

CLIENT_TASKS = 6
STARTUP_TIMEOUT_S = 60.0
SOAK_ENV = "KEIRETSU_FAULT_SOAK_S"
SEED_ENV = "KEIRETSU_FAULT_SEED"
MAX_SOAK_S = 3_600


@pytest.fixture
def seed() -> int:
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else int.from_bytes(os.urandom(4), "big")


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    try:
        check_available()
    except NetnsUnavailable as exc:
        pytest.skip(f"fault suite needs Linux network namespaces: {exc}")


async def run_scenario(root: Path, nodes: int, duration_s: float, seed: int, say) -> Verdict:
    cluster = NetnsCluster(root, size=nodes, proxy_seed=seed,
                           consensus=ConsensusConfig(tick_ms=25, election_ticks=12),
                           batching=BatchingConfig(timeout_ms=5))
    verdict = Verdict(seed, nodes)
    faults = plan(seed, cluster.names, int(duration_s * 1000))
    say(f"seed {seed}: {len(faults)} faults over {duration_s:.0f} s on {nodes} nodes "
        f"(replay: {SEED_ENV}={seed})")
    try:
        await cluster.open()
        cluster.start_all()
        await cluster.wait_ready(timeout_s=STARTUP_TIMEOUT_S)
        market = await open_market(cluster, cluster.names[0])
        history = History()
        started = time.monotonic()
        deadline = started + duration_s
        for f in faults:
            verdict.faults[f.kind.value] += 1
        traders = [asyncio.create_task(trade(cluster, market, history, seed, t, deadline))
                   for t in range(CLIENT_TASKS)]
        try:
            await run_plan(cluster, faults, started, say)
        finally:
            results = await asyncio.gather(*traders, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"seed {seed}: a client task crashed: {errors[0]!r}"
        assert set(cluster.procs) == set(cluster.names) and not cluster.down, "every fault healed"
        assert cluster.net is not None
        say(f"traffic: {dict(history.ops)}, retries {history.retries}, proxy {dict(cluster.net.counters)}")
        await audit(cluster.urls, market, history, verdict)
        for name in cluster.names:
            proc = cluster.procs[name]
            if proc.poll() is not None:
                verdict.problem(f"{name} exited with {proc.returncode}: {cluster.log_tail(name)}")
        return verdict
    finally:
        await cluster.close()


def _report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(text, flush=True)


@pytest.mark.parametrize(("nodes", "duration_s"), [(3, 40), (5, 45)])
async def test_no_acknowledged_transaction_is_lost_duplicated_or_divergent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int, nodes: int, duration_s: int) -> None:
    verdict = await run_scenario(tmp_path, nodes, duration_s, seed, lambda s: _report(capsys, "  " + s))
    _report(capsys, "\n" + verdict.summary())
    assert verdict.acknowledged > 0, f"seed {seed}: nothing was acknowledged; the run proved nothing"
    assert verdict.ok, verdict.summary()


SOAK_S = min(int(os.environ.get(SOAK_ENV) or 0), MAX_SOAK_S)


@pytest.mark.skipif(not SOAK_S, reason=f"opt-in soak: set {SOAK_ENV}=<seconds>")
@pytest.mark.timeout(2 * SOAK_S + 300)  # the project's per-test limit would end a long soak
async def test_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int) -> None:
    verdict = await run_scenario(tmp_path, 5, SOAK_S, seed, lambda s: _report(capsys, "  " + s))
    _report(capsys, "\n" + verdict.summary())
    assert verdict.ok, verdict.summary()

"""Seeded cluster simulations of the Raft core: safety after every step, liveness after healing,
and proof that the checker catches deliberately broken rules. Replay: KEIRETSU_SIM_SEED=<n>.
"""

from __future__ import annotations

import pytest

from consensus.messages import Message
from consensus.raft import Raft
from tests.raft_sim import LivenessViolation, SafetyViolation, Simulation, seeds_to_run

FAST_SEEDS = {3: range(300), 5: range(120)}
SLOW_SEEDS = {3: range(300, 2300), 5: range(120, 820)}
BROKEN_SEARCH_SEEDS = range(400)


def sweep(n_nodes: int, seeds: range) -> None:
    for seed in seeds_to_run(seeds):
        Simulation(seed, n_nodes).run()  # raises with the seed and the replay command


@pytest.mark.parametrize("n_nodes", [3, 5])
def test_fast_seed_sweep_keeps_raft_safe_and_live(n_nodes: int) -> None:
    sweep(n_nodes, FAST_SEEDS[n_nodes])


@pytest.mark.slow
@pytest.mark.parametrize("n_nodes", [3, 5])
def test_large_seed_sweep_keeps_raft_safe_and_live(n_nodes: int) -> None:
    sweep(n_nodes, SLOW_SEEDS[n_nodes])


def test_same_seed_replays_the_same_history() -> None:
    first = Simulation(7, 5).run()
    again = Simulation(7, 5).run()
    assert first == again and first["delivered"] > 100


def test_env_seed_replays_exactly_one_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEIRETSU_SIM_SEED", "4242")
    assert seeds_to_run(range(10)) == [4242]


def test_simulation_exercises_the_faults_it_claims() -> None:
    totals: dict[str, int] = {}
    for seed in range(20):
        for key, value in Simulation(seed, 3).run().items():
            totals[key] = totals.get(key, 0) + value
    for fault in ("dropped", "crashes", "snapshots", "conf_changes", "leaders"):
        assert totals[fault] > 0, fault


class CommitsOlderTermsByCounting(Raft):
    """Broken on purpose: ignores figure 8 and commits whatever a majority stores."""

    def _maybe_commit(self) -> bool:
        matches = sorted((self.prs[v].match for v in self.conf.voters), reverse=True)
        candidate = matches[len(self.conf.voters) // 2]
        if candidate > self.log.committed:
            self.log.commit_to(candidate)
            return True
        return False


class TruncatesPastTheAppend(Raft):
    """Broken on purpose: drops entries after a matching append even without a conflict."""

    def _maybe_append(self, m: Message) -> int | None:
        last_new = super()._maybe_append(m)
        log = self.log
        if last_new is not None and log.last_index() > last_new:
            keep = max(last_new, log.committed)
            del log.entries[keep - log.snapshot.index:]
            log.stable_index = min(log.stable_index, keep)
        return last_new


@pytest.mark.parametrize("broken", [CommitsOlderTermsByCounting, TruncatesPastTheAppend])
def test_checker_catches_a_deliberately_broken_rule(broken: type[Raft]) -> None:
    for seed in BROKEN_SEARCH_SEEDS:
        try:
            Simulation(seed, 3, raft_cls=broken).run()
        except SafetyViolation as exc:
            assert f"KEIRETSU_SIM_SEED={seed}" in str(exc)
            return
        except LivenessViolation:
            continue
    pytest.fail(f"no seed in {BROKEN_SEARCH_SEEDS} exposed {broken.__name__}")

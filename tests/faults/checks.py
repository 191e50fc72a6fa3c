"""After the faults: heal, wait until every node agrees, then check that nothing was lost.

Part of tests/faults. Reads every node over its public API only (status, blocks, transactions,
cap tables), as an auditor would, and turns what it finds into a Verdict a user can trust.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from keiretsu_node.client import ApiError, Client
from tests.faults.workload import CURRENCY, History, Market

CONVERGE_TIMEOUT_S = 90.0
SCAN_CONCURRENCY = 16
MAX_PROBLEMS_SHOWN = 20
MAX_AUDIT_ATTEMPTS = 5


@dataclass
class Verdict:
    seed: int
    nodes: int
    height: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    ambiguous: int = 0
    ambiguous_applied: int = 0
    refused: int = 0
    lost: int = 0
    duplicated: int = 0
    divergent: int = 0
    refused_applied: int = 0
    conservation_breaks: int = 0
    negative_balances: int = 0
    behind: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        lines = [
            (f"fault run: seed {self.seed} (replay: KEIRETSU_FAULT_SEED={self.seed}), {self.nodes} nodes, "
             f"final height {self.height}"),
            f"  faults injected: {faults}",
            (f"  transactions acknowledged {self.acknowledged}, ambiguous {self.ambiguous} "
             f"(applied once {self.ambiguous_applied}, not applied {self.ambiguous - self.ambiguous_applied}), "
             f"refused {self.refused}"),
            (f"  lost {self.lost}, duplicated {self.duplicated}, divergent {self.divergent}, "
             f"refused-but-applied {self.refused_applied}, conservation breaks {self.conservation_breaks}, "
             f"negative balances {self.negative_balances}, nodes behind {self.behind}"),
        ]
        lines.extend(f"  PROBLEM: {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN])
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {len(self.problems) - MAX_PROBLEMS_SHOWN} more problems")
        return "\n".join(lines)


async def _status(client: Client) -> dict[str, Any] | None:
    try:
        return await client.status()
    except ApiError:
        return None


async def converge(urls: dict[str, str], timeout_s: float = CONVERGE_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Wait until every node applied everything committed and all stand on the same block."""
    clients = {n: Client(u, timeout_s=5) for n, u in urls.items()}
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            statuses = dict(zip(clients, await asyncio.gather(*(_status(c) for c in clients.values())), strict=False))
            live = [s for s in statuses.values() if s is not None]
            # Quiet, too: an empty mempool everywhere, so no block lands while we audit.
            if (len(live) == len(clients) and len({(s["height"], s["block_hash"]) for s in live}) == 1
                    and all(s["leader"] and s["applied_index"] == s["commit_index"] and not s["mempool_txs"]
                            for s in live)):
                return statuses  # type: ignore[return-value]
            if time.monotonic() > deadline:
                return {n: (s or {"error": "no answer"}) for n, s in statuses.items()}
            await asyncio.sleep(0.2)
    finally:
        for c in clients.values():
            await c.close()


async def _blocks(client: Client, height: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(SCAN_CONCURRENCY)

    async def one(h: int) -> dict[str, Any]:
        async with gate:
            return await client.block(h)

    return list(await asyncio.gather(*(one(h) for h in range(height + 1))))


def _check_chain(verdict: Verdict, name: str, blocks: list[dict[str, Any]]) -> None:
    for prev, block in itertools.pairwise(blocks):
        if block["prev_hash"] != prev["hash"]:
            verdict.problem(f"{name}: block {block['height']} does not link to block {prev['height']}")


def _supply_from_blocks(blocks: list[dict[str, Any]], isin: str) -> dict[str, int]:
    """Minted minus burned per asset, from the valid receipts' events alone."""
    supply: Counter[str] = Counter()
    for block in blocks:
        for tx in block["transactions"]:
            if tx["receipt"]["result"] != "valid":
                continue
            for event in tx["receipt"]["events"]:
                attrs = event["attrs"]
                if event["kind"] == "cash_minted":
                    supply[attrs["currency"]] += attrs["amount"]
                elif event["kind"] == "cash_burned":
                    supply[attrs["currency"]] -= attrs["amount"]
                elif event["kind"] == "security_issued":
                    supply[attrs["isin"]] += attrs["quantity"]
                elif event["kind"] == "security_redeemed":
                    supply[attrs["isin"]] -= attrs["quantity"]
    return {CURRENCY: supply[CURRENCY], isin: supply[isin]}


async def _check_assets(verdict: Verdict, name: str, client: Client, market: Market,
                        expected: dict[str, int]) -> None:
    for asset, supply in expected.items():
        table = await client.holders(asset, limit=10_000)
        total = 0
        for row in table["holders"]:
            total += row["free"] + row["locked"]
            if row["free"] < 0 or row["locked"] < 0:
                verdict.negative_balances += 1
                verdict.problem(f"{name}: {row['address']} holds {row['free']}/{row['locked']} {asset}")
        if not (total == table["outstanding"] == supply) or table["truncated"]:
            verdict.conservation_breaks += 1
            verdict.problem(f"{name}: {asset} balances sum to {total}, outstanding {table['outstanding']}, "
                            f"minted-burned in blocks {supply}")
    for address in market.accounts:
        for asset, held in (await client.account(address))["balances"].items():
            if held["free"] < 0 or held["locked"] < 0:
                verdict.negative_balances += 1
                verdict.problem(f"{name}: {address} holds {held} {asset}")


def _check_history(verdict: Verdict, name: str, history: History, seen: Counter[str]) -> None:
    for tx_id, count in seen.items():
        if count > 1:
            verdict.duplicated += 1
            verdict.problem(f"{name}: tx {tx_id} is in the ledger {count} times")
    for tx_id in history.acknowledged:
        if seen[tx_id] == 0:
            verdict.lost += 1
            verdict.problem(f"{name}: acknowledged tx {tx_id} is not in the ledger")
    for tx_id, code in history.refused.items():
        if seen[tx_id]:
            verdict.refused_applied += 1
            verdict.problem(f"{name}: tx {tx_id} was refused ({code}) yet is in the ledger")


async def _check_lookups(verdict: Verdict, name: str, client: Client, history: History,
                         where: dict[str, int]) -> None:
    """GET /v1/transactions/{id} agrees with the block scan for every acknowledged transaction."""
    gate = asyncio.Semaphore(SCAN_CONCURRENCY)

    async def one(tx_id: str) -> None:
        async with gate:
            status = await client.tx(tx_id)
        if status["status"] != "committed" or not status["height"] == where.get(tx_id) == history.acknowledged[tx_id]:
            verdict.lost += 1
            verdict.problem(f"{name}: GET tx {tx_id} says {status['status']} at {status.get('height')}, "
                            f"scan found it at {where.get(tx_id)}, the receipt said {history.acknowledged[tx_id]}")

    await asyncio.gather(*(one(t) for t in history.acknowledged))


async def audit(urls: dict[str, str], market: Market, history: History, verdict: Verdict) -> Verdict:
    """Every check on every node, on one quiet height; fills and returns the verdict.

    A submission delayed in a faulty link (or a client's ambiguous re-send) can still commit
    after the cluster looked quiet; balances read after such a block would not match the blocks
    scanned before it. So the audit is repeated until the height did not move while it ran.
    """
    for _ in range(MAX_AUDIT_ATTEMPTS):
        attempt = dataclasses.replace(verdict, problems=[])
        await _audit_once(urls, market, history, attempt)
        after = await converge(urls)
        if {s.get("height") for s in after.values()} == {attempt.height}:
            for f in dataclasses.fields(attempt):  # the caller holds `verdict`: fill it in place
                setattr(verdict, f.name, getattr(attempt, f.name))
            return verdict
    verdict.problem(f"the height kept moving through {MAX_AUDIT_ATTEMPTS} audits: the cluster never went quiet")
    return verdict


async def _audit_once(urls: dict[str, str], market: Market, history: History, verdict: Verdict) -> Verdict:
    statuses = await converge(urls)
    heights = {n: s.get("height", -1) for n, s in statuses.items()}
    top = max(heights.values())
    verdict.height = top
    for n, s in statuses.items():
        if s.get("height") != top or s.get("applied_index") != s.get("commit_index"):
            verdict.behind += 1
            verdict.problem(f"{n} is behind or not answering after healing: {s}")
    if verdict.behind:
        return verdict
    verdict.acknowledged = len(history.acknowledged)
    verdict.ambiguous = len(history.ambiguous)
    verdict.refused = len(history.refused)
    reference: list[tuple[str, str]] | None = None
    for name, url in urls.items():
        async with Client(url, timeout_s=30) as client:
            blocks = await _blocks(client, top)
            _check_chain(verdict, name, blocks)
            hashes = [(b["hash"], b["state_hash"]) for b in blocks]
            if reference is None:
                reference = hashes
            elif hashes != reference:
                first = next(i for i, (x, y) in enumerate(zip(hashes, reference, strict=False)) if x != y)
                verdict.divergent += 1
                verdict.problem(f"{name} diverges from {next(iter(urls))} at height {first}")
            seen: Counter[str] = Counter()
            where: dict[str, int] = {}
            for block in blocks:
                for tx in block["transactions"]:
                    seen[tx["receipt"]["tx_id"]] += 1
                    where[tx["receipt"]["tx_id"]] = block["height"]
            _check_history(verdict, name, history, seen)
            if name == next(iter(urls)):
                verdict.ambiguous_applied = sum(1 for t in history.ambiguous if seen[t])
            await _check_lookups(verdict, name, client, history, where)
            await _check_assets(verdict, name, client, market, _supply_from_blocks(blocks, market.isin))
    return verdict

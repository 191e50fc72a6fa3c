"""The load generator of `keiretsu bench network`: seeds accounts, pre-signs load, drives it, measures.

Part of keiretsu_node/; runs as its own process (`python -m keiretsu_node.loadgen --spec s.json
--out r.json`) so its CPU is not the node's. Signing happens before a phase's clock starts and
is reported on its own; latency is measured from each request's intended send time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import msgpack
import nacl.signing

from contracts.participants import MAX_ADMITS_PER_TX
from ledger.keys import address_of
from ledger.tx import TxBody, sign

# Bounds of one load process (units in the names).
MAX_ACCOUNTS = 1_000_000
MAX_PHASE_TXS = 2_000_000
MAX_INFLIGHT_REQUESTS = 4_096
REQUEST_TIMEOUT_S = 120.0
COMMIT_WAIT_MS = 30_000
SEED_REQUEST_TXS = 1_000
SEED_INFLIGHT_REQUESTS = 4
# participants.MAX_ADMITS_PER_TX: one operator-signed admit_many (~28 KiB) admits 256 accounts, so
# a 1M network needs 3,907 admission transactions instead of 1,000,000 (1M admits took 960 s).
ADMITS_PER_TX = MAX_ADMITS_PER_TX
SEED_ADMIT_REQUEST_TXS = 4  # 1,024 accounts (~118 KiB) per request
SEED_FUNDING_REQUEST_TXS = 8  # 64 legs each: 512 legs per request
SEED_BUSY_RETRIES = 20
SEED_POLL_TIMEOUT_S = 300.0
SEED_POLL_INTERVAL_S = 0.2
# After seeding, the nodes go on working for a while: at 1,000,000 accounts LevelDB compacts
# the seeded tables for minutes (0.09-0.56 cores measured between seeding and the first phase).
# That work belongs to seeding, so the phases start once the nodes' summed CPU over a window is
# below an idle network's bound (three idle nodes use ~0.04 cores), waiting at most SETTLE_MAX_S.
SETTLE_IDLE_CORES = 0.15
SETTLE_WINDOW_S = 2.0
SETTLE_MAX_S = 600.0
LEGS_PER_FUNDING_TX = 64  # settlement.MAX_BATCH_LEGS: a cash leg per account, and a share leg if traded
TX_LIFETIME_MS = 50 * 60 * 1000  # under the ledger's 60-minute limit
CASH_EACH_MINOR = 10**9
SHARES_EACH = 10**6
TRADE_PRICE_MINOR = 1_000
SAMPLE_INTERVAL_S = 1.0
PARALLEL_SIGN_MIN_TXS = 4_000
SIGN_CHUNK_TXS = 2_000
WORKLOADS = ("transfer", "dvp", "order")
SHARE_WORKLOADS = frozenset({"dvp", "order"})  # the workloads that need every account to hold shares
PROFILE_SAMPLES_PER_S = 50
PROFILER_STOP_TIMEOUT_S = 30.0


class LoadError(RuntimeError):
    """The load cannot run (setup refused, network unreachable); the message says why."""


# ---------------------------------------------------------------- keys and signing


class BenchKey:
    """A signing key built once from a seed (KeyPair rebuilds it per signature, 2x slower)."""

    __slots__ = ("address", "public_key", "signing_key")

    def __init__(self, seed: bytes) -> None:
        self.signing_key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self.signing_key.verify_key)
        self.address = address_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def account_seed(label: str, index: int) -> bytes:
    """Bench accounts are derived from the run's label: both phases and processes agree."""
    return hashlib.sha256(f"keiretsu-bench/{label}/{index}".encode()).digest()


def role_key(label: str, role: str) -> BenchKey:
    return BenchKey(hashlib.sha256(f"keiretsu-bench/{label}/{role}".encode()).digest())


def _addresses_chunk(label: str, start: int, stop: int) -> list[str]:
    return [BenchKey(account_seed(label, i)).address for i in range(start, stop)]


@dataclass(frozen=True)
class TxPlan:
    """One transaction to sign: a call and the indexes of its signers (-1 operator, -2 treasury)."""

    contract: str
    method: str
    args: dict[str, Any]
    signers: tuple[int, ...]
    nonce: int


@dataclass(frozen=True)
class SignJob:
    chain_id: str
    label: str
    operator_seed: bytes
    expires_at_ms: int
    plans: tuple[TxPlan, ...]


OPERATOR = -1
TREASURY = -2
AGENT = -3
ISSUER = -4


def _signer_key(job: SignJob, index: int, cache: dict[int, BenchKey]) -> BenchKey:
    key = cache.get(index)
    if key is None:
        if index == OPERATOR:
            key = BenchKey(job.operator_seed)
        elif index < 0:
            key = role_key(job.label, {TREASURY: "treasury", AGENT: "agent", ISSUER: "issuer"}[index])
        else:
            key = BenchKey(account_seed(job.label, index))
        if len(cache) < 100_000:
            cache[index] = key
    return key


def sign_job(job: SignJob) -> list[bytes]:
    """Raw signed transactions for a job (run in a worker process for large jobs)."""
    cache: dict[int, BenchKey] = {}
    out = []
    for plan in job.plans:
        keys = [_signer_key(job, i, cache) for i in plan.signers]
        body = TxBody(job.chain_id, plan.contract, plan.method, plan.args, plan.nonce, job.expires_at_ms,
                      tuple(k.public_key for k in keys))
        out.append(sign(body, keys).raw)  # type: ignore[arg-type]  # BenchKey has KeyPair's two members
    return out


def sign_all(chain_id: str, label: str, operator_seed: bytes,
             plans: list[TxPlan]) -> tuple[list[bytes], dict[str, float]]:
    """Sign every plan, on all cores when there are many; returns raws and the signing cost."""
    expires = int(time.time() * 1000) + TX_LIFETIME_MS
    jobs = [SignJob(chain_id, label, operator_seed, expires, tuple(plans[i:i + SIGN_CHUNK_TXS]))
            for i in range(0, len(plans), SIGN_CHUNK_TXS)]
    started, cpu0 = time.perf_counter(), _children_cpu_s() + time.process_time()
    if len(plans) >= PARALLEL_SIGN_MIN_TXS:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            parts = list(pool.map(sign_job, jobs))
    else:
        parts = [sign_job(job) for job in jobs]
    wall = time.perf_counter() - started
    cpu = _children_cpu_s() + time.process_time() - cpu0
    raws = [raw for part in parts for raw in part]
    signatures = sum(len(p.signers) for p in plans)
    return raws, {"txs": len(raws), "signatures": signatures, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                  "signatures_per_cpu_s": int(signatures / cpu) if cpu > 0 else 0}


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


# ---------------------------------------------------------------- talking to the network


class Network:
    """aiohttp sessions to the nodes' APIs; requests rotate over them (followers forward)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self._session: aiohttp.ClientSession | None = None
        self._next = 0

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=MAX_INFLIGHT_REQUESTS, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def next_url(self) -> str:
        self._next = (self._next + 1) % len(self.urls)
        return self.urls[self._next]

    async def submit(self, raws: list[bytes], url: str | None = None) -> list[dict[str, Any]]:
        """POST a batch and wait until it commits; one result per transaction, in order."""
        assert self._session is not None
        body = msgpack.packb(raws, use_bin_type=True)
        params = {"wait": "true", "timeout_ms": str(COMMIT_WAIT_MS)}
        async with self._session.post((url or self.next_url()) + "/v1/transactions/batch", data=body,
                                      params=params, headers={"Content-Type": "application/msgpack"}) as resp:
            doc = await resp.json(content_type=None)
            if resp.status != 200:
                return [{"accepted": False, "code": doc.get("code", f"HTTP_{resp.status}")}] * len(raws)
            return doc["results"]

    async def wait_committed(self, tx_id: str, timeout_s: float) -> dict[str, Any]:
        """Poll one transaction's status until it is no longer pending, or the time is up."""
        assert self._session is not None
        deadline = time.monotonic() + timeout_s
        while True:
            async with self._session.get(f"{self.urls[0]}/v1/transactions/{tx_id}") as resp:
                status = await resp.json()
            if status.get("status") not in ("pending", "unknown") or time.monotonic() > deadline:
                return status
            await asyncio.sleep(SEED_POLL_INTERVAL_S)

    async def status(self, url: str | None = None) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get((url or self.urls[0]) + "/v1/status") as resp:
            return await resp.json()


# ---------------------------------------------------------------- seeding


def _committed_valid(result: dict[str, Any]) -> bool:
    return result.get("status") == "committed" and result.get("receipt", {}).get("result") == "valid"


async def _run_setup(net: Network, raws: list[bytes], what: str) -> list[dict[str, Any]]:
    results = await net.submit(raws, net.urls[0])
    bad = [r for r in results if not _committed_valid(r)]
    if bad:
        raise LoadError(f"{what} refused: {bad[0]}")
    return results


async def _submit_all(net: Network, raws: list[bytes], what: str, per_request: int = SEED_REQUEST_TXS) -> int:
    """Submit in batches with a few in flight; every one must commit valid (BUSY is retried,
    one still pending when the wait ends is polled until it commits)."""
    chunks = [raws[i:i + per_request] for i in range(0, len(raws), per_request)]
    queue = iter(chunks)
    failures: list[dict[str, Any]] = []

    async def worker() -> None:
        for chunk in queue:
            for attempt in range(SEED_BUSY_RETRIES):
                try:
                    results = await net.submit(chunk)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    # A dropped connection says nothing about the batch: send it again; what had
                    # already arrived comes back DUPLICATE and is looked up below.
                    _log(f"{what}: {type(exc).__name__} ({exc}); resending {len(chunk)} txs")
                    results = [{"code": "BUSY"}] * len(chunk)
                busy = [raw for raw, r in zip(chunk, results, strict=False) if r.get("code") == "BUSY"]
                for r in results:
                    resent = r.get("code") == "DUPLICATE" and r.get("tx_id")
                    if resent or (r.get("accepted") and r.get("status") == "pending"):
                        r = await net.wait_committed(r["tx_id"], SEED_POLL_TIMEOUT_S)
                    if not _committed_valid(r) and r.get("code") != "BUSY":
                        failures.append(r)
                if not busy:
                    break
                chunk = busy
                await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(worker() for _ in range(SEED_INFLIGHT_REQUESTS)))
    if failures:
        raise LoadError(f"{what}: {len(failures)} refused, first: {failures[0]}")
    return len(raws)


def _code(label: str) -> str:
    """A 3-letter currency code per run, so runs against one live network never collide."""
    digest = hashlib.sha256(label.encode()).digest()
    return "".join(chr(ord("A") + b % 26) for b in digest[:3])


async def seed(spec: dict[str, Any], net: Network, chain_id: str) -> dict[str, Any]:
    """Admit the roles and N accounts, register a currency and an equity, fund every account."""
    label, n = spec["label"], spec["accounts"]
    op_seed = bytes.fromhex(spec["operator_seed"])
    started = time.perf_counter()
    signing: dict[str, float] = {"wall_s": 0.0, "cpu_s": 0.0, "txs": 0}

    def signed(plans: list[TxPlan]) -> list[bytes]:
        raws, cost = sign_all(chain_id, label, op_seed, plans)
        signing["wall_s"] += cost["wall_s"]
        signing["cpu_s"] += cost["cpu_s"]
        signing["txs"] += cost["txs"]
        return raws

    roles = {AGENT: ("agent", "cash_agent"), ISSUER: ("issuer", "issuer"), TREASURY: ("treasury", "investor")}
    role_addr = {i: role_key(label, name).address for i, (name, _) in roles.items()}
    nonce = iter(range(1, 1 << 62))
    admits = [TxPlan("participants", "admit", {"address": role_addr[i], "name": f"bench {name}",
                                               "roles": [role], "kyc_hash": bytes(32)}, (OPERATOR,), next(nonce))
              for i, (name, role) in roles.items()]
    await _run_setup(net, signed(admits), "admit roles")
    currency = _code(label)
    register = TxPlan("cash", "register_currency", {"currency": currency, "decimals": 2, "agent": role_addr[AGENT]},
                      (OPERATOR,), next(nonce))
    await _run_setup(net, signed([register]), "register currency")
    reg = await _run_setup(net, signed([TxPlan("securities", "register", {
        "name": f"Bench SME {label}", "kind": "equity", "authorised_supply": SHARES_EACH * (n + 1),
        "prospectus_hash": bytes(32), "prospectus_uri": "https://example.org/bench"}, (ISSUER,), next(nonce))]),
        "register equity")
    isin = next(e["attrs"]["isin"] for e in reg[0]["receipt"]["events"] if e["kind"] == "security_registered")
    await _run_setup(net, signed([
        TxPlan("cash", "mint", {"currency": currency, "to": role_addr[TREASURY], "amount": CASH_EACH_MINOR * n,
                                "deposit_ref": "bench"}, (AGENT,), next(nonce)),
        TxPlan("securities", "issue", {"isin": isin, "to": role_addr[TREASURY], "quantity": SHARES_EACH * n},
               (ISSUER,), next(nonce)),
        TxPlan("market", "open_book", {"isin": isin, "currency": currency, "tick_size": 1, "lot_size": 1},
               (OPERATOR,), next(nonce))]), "fund treasury and open the book")
    addresses = await derive_addresses(label, n)
    key_s = time.perf_counter() - started
    admits = [TxPlan("participants", "admit_many", {"accounts": [
        {"address": a, "name": "", "roles": ["investor"], "kyc_hash": bytes(32)}
        for a in addresses[i:i + ADMITS_PER_TX]]}, (OPERATOR,), next(nonce)) for i in range(0, n, ADMITS_PER_TX)]
    submit_from, cpu_from = time.perf_counter(), _nodes_cpu_s(spec)
    await _submit_all(net, signed(admits), "admitting accounts", SEED_ADMIT_REQUEST_TXS)
    admitted, cpu_admitted = time.perf_counter(), _nodes_cpu_s(spec)
    # Shares only when the mix trades them: a transfer-only run funds cash alone, half the legs
    # (a leg costs ~90 us of executor CPU per node, the bulk of seeding).
    assets = [(currency, CASH_EACH_MINOR)] + ([(isin, SHARES_EACH)] if SHARE_WORKLOADS & set(spec["mix"]) else [])
    per_tx = LEGS_PER_FUNDING_TX // len(assets)
    funding = [TxPlan("settlement", "batch", {"legs": [
        {"asset": asset, "source": role_addr[TREASURY], "target": a, "quantity": quantity}
        for a in addresses[i:i + per_tx] for asset, quantity in assets]}, (TREASURY,), next(nonce))
        for i in range(0, n, per_tx)]
    await _submit_all(net, signed(funding), "funding accounts", SEED_FUNDING_REQUEST_TXS)
    total = time.perf_counter() - started
    height = (await net.status())["height"]
    return {"accounts": n, "currency": currency, "isin": isin, "addresses": addresses, "height": height,
            "report": {"accounts": n, "seconds": round(total, 2), "key_derivation_s": round(key_s, 2),
                       "admit_s": round(admitted - submit_from, 2),
                       "fund_s": round(time.perf_counter() - admitted, 2), "signing": signing,
                       "funded_assets": [asset for asset, _ in assets],
                       # CPU of the nodes, summed (None against a network the bench did not start):
                       # moves much less with outside load than the seconds above do.
                       "nodes_cpu_s": {"admit": _cpu_delta(cpu_from, cpu_admitted),
                                       "fund": _cpu_delta(cpu_admitted, _nodes_cpu_s(spec))},
                       "txs": len(admits) + len(funding) + 8, "blocks": height,
                       "accounts_per_s": int(n / max(total, 1e-9))}}


async def settle(spec: dict[str, Any], *, idle_cores: float = SETTLE_IDLE_CORES,
                 window_s: float = SETTLE_WINDOW_S, max_s: float = SETTLE_MAX_S) -> dict[str, Any]:
    """Wait until the nodes are idle after seeding (what they still do is seeding's work).

    Idle: their summed CPU over one window below `idle_cores`. Against a network the bench did
    not start (no pids) there is nothing to watch and nothing is waited for.
    """
    started, first = time.perf_counter(), _nodes_cpu_s(spec)
    if first is None:
        return {"seconds": 0.0, "idle": None, "nodes_cpu_s": None, "last_window_cores": None}
    while True:
        t0, c0 = time.perf_counter(), _nodes_cpu_s(spec)
        await asyncio.sleep(window_s)
        t1, c1 = time.perf_counter(), _nodes_cpu_s(spec)
        cores = ((c1 or 0.0) - (c0 or 0.0)) / max(t1 - t0, 1e-9)
        if cores < idle_cores or t1 - started >= max_s:
            return {"seconds": round(t1 - started, 2), "idle": cores < idle_cores,
                    "nodes_cpu_s": _cpu_delta(first, c1), "last_window_cores": round(cores, 3)}


def _nodes_cpu_s(spec: dict[str, Any]) -> float | None:
    """CPU seconds of the bench's nodes so far, summed; None if it did not start them."""
    pids = spec.get("pids") or {}
    found = [proc_cpu_s(int(pid)) for pid in pids.values()]
    return sum(f for f in found if f is not None) if pids else None


def _cpu_delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


async def derive_addresses(label: str, n: int) -> list[str]:
    """Addresses of accounts 0..n-1 (a public key derivation each: spread over the cores)."""
    if n < PARALLEL_SIGN_MIN_TXS:
        return _addresses_chunk(label, 0, n)
    step = max(1, n // (4 * (os.cpu_count() or 1)))
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        parts = await asyncio.gather(*(loop.run_in_executor(pool, _addresses_chunk, label, i, min(n, i + step))
                                       for i in range(0, n, step)))
    return [a for part in parts for a in part]


# ---------------------------------------------------------------- workloads


def plan_load(mix: dict[str, int], count: int, accounts: int, addresses: list[str], currency: str, isin: str,
              rng: random.Random, first_nonce: int) -> list[TxPlan]:
    """`count` transactions of the mix; an order is placed as a crossing pair (sell then buy)."""
    kinds = [k for k in WORKLOADS for _ in range(mix.get(k, 0))]
    if not kinds:
        raise LoadError("the workload mix is empty")
    if accounts < 2:
        raise LoadError("the load needs at least 2 accounts")
    plans: list[TxPlan] = []
    nonce = first_nonce
    step = 0  # one per workload drawn (an order adds two plans: indexing by plans skewed the mix)
    while len(plans) < count:
        kind = kinds[step % len(kinds)]
        step += 1
        a = rng.randrange(accounts)
        b = (a + 1 + rng.randrange(accounts - 1)) % accounts
        nonce += 2
        if kind == "transfer":
            plans.append(TxPlan("cash", "transfer", {"currency": currency, "to": addresses[b],
                                                     "amount": 1 + rng.randrange(100)}, (a,), nonce))
        elif kind == "dvp":
            plans.append(TxPlan("settlement", "dvp", {"seller": addresses[a], "buyer": addresses[b], "isin": isin,
                                                      "quantity": 1, "currency": currency,
                                                      "amount": TRADE_PRICE_MINOR}, (a, b), nonce))
        else:
            order = {"isin": isin, "currency": currency, "quantity": 1, "price": TRADE_PRICE_MINOR}
            plans.append(TxPlan("market", "place_order", {**order, "side": "sell"}, (a,), nonce))
            plans.append(TxPlan("market", "place_order", {**order, "side": "buy"}, (b,), nonce + 1))
    return plans[:count]


# ---------------------------------------------------------------- driving and recording


@dataclass
class RequestRecord:
    """What happened to one HTTP batch: when it was meant to go, went, and came back."""

    intended_s: float
    sent_s: float
    done_s: float
    txs: int
    valid: int = 0
    invalid: int = 0
    busy: int = 0
    rejected: int = 0
    pending: int = 0
    dropped: int = 0
    trades: int = 0
    failed: bool = False
    reasons: dict[str, int] = field(default_factory=dict)


# Events that record a trade settled DvP: a fill on the book, or a bilateral settlement.dvp.
SETTLED_TRADES = frozenset({"trade", "dvp_settled"})
NOT_SENT = "NOT_SENT_OVERLOAD"


def _tally(record: RequestRecord, results: list[dict[str, Any]]) -> None:
    for r in results:
        if not r.get("accepted", False):
            code = r.get("code", "?")
            if code == "BUSY":
                record.busy += 1
            else:
                record.rejected += 1
            record.reasons[code] = record.reasons.get(code, 0) + 1
        elif r.get("status") == "committed":
            receipt = r.get("receipt", {})
            if receipt.get("result") == "valid":
                record.valid += 1
                record.trades += sum(1 for e in receipt.get("events", ()) if e.get("kind") in SETTLED_TRADES)
            else:
                record.invalid += 1
                reason = receipt.get("reason", "?")
                record.reasons[reason] = record.reasons.get(reason, 0) + 1
        elif r.get("status") == "dropped":
            record.dropped += 1
        else:
            record.pending += 1


async def _send(net: Network, chunk: list[bytes], intended_s: float, records: list[RequestRecord]) -> None:
    sent = time.perf_counter()
    record = RequestRecord(intended_s, sent, sent, len(chunk))
    try:
        results = await net.submit(chunk)
        _tally(record, results)
    except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
        record.failed = True
        record.reasons[type(exc).__name__] = record.reasons.get(type(exc).__name__, 0) + len(chunk)
    record.done_s = time.perf_counter()
    records.append(record)


async def closed_loop(net: Network, chunks: list[list[bytes]], concurrency: int, duration_s: float,
                      records: list[RequestRecord]) -> float:
    """`concurrency` clients, each sending its next batch as soon as the last one committed."""
    queue: Iterator[list[bytes]] = iter(chunks)
    started = time.perf_counter()
    deadline = started + duration_s

    async def client() -> None:
        for chunk in queue:
            if time.perf_counter() >= deadline:
                return
            now = time.perf_counter()
            await _send(net, chunk, now, records)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return started


async def open_loop(net: Network, chunks: list[list[bytes]], rate_tps: float, records: list[RequestRecord],
                    counters: dict[str, int]) -> float:
    """Batches sent on a fixed schedule whatever the answers; latency counts from the schedule,
    so a stalled network shows up as latency (no coordinated omission)."""
    started = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    offset = 0
    for chunk in chunks:
        intended = started + offset / rate_tps
        offset += len(chunk)
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_INFLIGHT_REQUESTS:
            counters["not_sent_overload_txs"] += len(chunk)
            records.append(RequestRecord(intended, intended, time.perf_counter(), len(chunk), failed=True,
                                         reasons={NOT_SENT: len(chunk)}))
            continue
        task = asyncio.create_task(_send(net, chunk, intended, records))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return started


# ---------------------------------------------------------------- the nodes' processes


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (from /proc/<pid>/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime (fields 14, 15)


def proc_rss_kib(pid: int) -> dict[str, int]:
    """Current and peak resident set size (VmRSS, VmHWM) from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return {"rss_kib": out.get("VmRSS", 0), "peak_rss_kib": out.get("VmHWM", 0)}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS_PER_S


def load_avg_1m() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


@dataclass
class Sampler:
    """Once a second: each node's CPU and RSS, and this process's CPU, for the time series."""

    pids: dict[str, int]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {"t": time.perf_counter(), "self_cpu_s": time.process_time(), "machine_busy_s": machine_busy_s(),
                "load_avg_1m": load_avg_1m(),
                "nodes": {name: {"cpu_s": proc_cpu_s(pid), **proc_rss_kib(pid)} for name, pid in self.pids.items()}}

    async def run(self) -> None:
        while True:
            self.samples.append(self.snapshot())
            await asyncio.sleep(SAMPLE_INTERVAL_S)


def node_usage(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """CPU (in cores: 1.0 = one core busy) between two snapshots, and peak RSS so far, per node."""
    wall = max(last["t"] - first["t"], 1e-9)
    out: dict[str, Any] = {}
    for name, end in last["nodes"].items():
        begin = first["nodes"].get(name, {})
        if end["cpu_s"] is None or begin.get("cpu_s") is None:
            out[name] = {"cpu_cores": None, "peak_rss_mib": None}
            continue
        out[name] = {"cpu_cores": round((end["cpu_s"] - begin["cpu_s"]) / wall, 3),
                     "peak_rss_mib": round(end["peak_rss_kib"] / 1024, 1),
                     "rss_mib": round(end["rss_kib"] / 1024, 1)}
    loadgen = (last["self_cpu_s"] - first["self_cpu_s"]) / wall
    out["loadgen"] = {"cpu_cores": round(loadgen, 3)}
    # Other engineers' or system work on the same machine: it takes cores from the nodes, so
    # every figure is reported next to it (machine busy minus nodes and this load process).
    machine = (last["machine_busy_s"] - first["machine_busy_s"]) / wall
    ours = loadgen + sum(v["cpu_cores"] or 0.0 for k, v in out.items() if k != "loadgen")
    out["machine"] = {"cores": os.cpu_count(), "busy_cores": round(machine, 3),
                      "other_processes_cores": round(max(machine - ours, 0.0), 3),
                      "load_avg_1m_start": first["load_avg_1m"], "load_avg_1m_end": last["load_avg_1m"]}
    return out


def cpu_cost(usage: dict[str, Any], committed: int, wall_s: float) -> dict[str, Any]:
    """CPU per committed transaction, and the rate that CPU alone would allow on this machine.

    Unlike tx/s, CPU-ms per tx barely depends on what else runs on the machine, so it is the
    figure to compare across runs on a shared box.
    """
    if committed <= 0:
        return {}
    node_cpu_s = sum(v["cpu_cores"] * wall_s for k, v in usage.items()
                     if k not in ("loadgen", "machine") and v.get("cpu_cores") is not None)
    loadgen_cpu_s = usage["loadgen"]["cpu_cores"] * wall_s
    per_tx_ms = 1000 * node_cpu_s / committed
    total_ms = per_tx_ms + 1000 * loadgen_cpu_s / committed
    cores = usage["machine"]["cores"] or 1
    return {"nodes_cpu_ms_per_tx": round(per_tx_ms, 3), "loadgen_cpu_ms_per_tx": round(total_ms - per_tx_ms, 3),
            "cpu_bound_tps": int(cores * 1000 / total_ms) if total_ms > 0 else None}


# ---------------------------------------------------------------- summaries


def weighted_percentiles(pairs: list[tuple[float, int]], quantiles: tuple[float, ...]) -> list[float]:
    """Percentiles of values each repeated `weight` times (every tx of a batch shares its latency)."""
    pairs = sorted(p for p in pairs if p[1] > 0)
    total = sum(w for _, w in pairs)
    if total == 0:
        return [0.0 for _ in quantiles]
    out = []
    for q in quantiles:
        rank = max(1, int(q * total + 0.999999))  # nearest-rank
        seen = 0
        for value, weight in pairs:
            seen += weight
            if seen >= rank:
                out.append(value)
                break
    return out


def _latency_ms(pairs: list[tuple[float, int]]) -> dict[str, float]:
    p50, p95, p99, top = weighted_percentiles(pairs, (0.50, 0.95, 0.99, 1.0))
    return {"p50": round(p50 * 1000, 1), "p95": round(p95 * 1000, 1), "p99": round(p99 * 1000, 1),
            "max": round(top * 1000, 1), "samples": sum(w for _, w in pairs)}


def _not_committed(r: RequestRecord) -> int:
    """Transactions of a request that neither committed nor were refused or dropped by a node:
    still pending at the end of the wait, lost with a failed request, or never sent."""
    return r.pending + (r.txs if r.failed else 0)


def _latencies(records: list[RequestRecord], phase_end: float) -> list[tuple[float, int]]:
    """(latency, transactions) for every transaction meant to commit: a committed one's real
    latency; one not committed counts with at least the time it was seen waiting (a never-sent
    one: until the phase ended), so the slowest requests are never dropped from the tail."""
    pairs = []
    for r in records:
        if r.valid + r.invalid:
            pairs.append((r.done_s - r.intended_s, r.valid + r.invalid))
        missing = _not_committed(r)
        if missing:
            until = phase_end if NOT_SENT in r.reasons else r.done_s
            pairs.append((max(until, r.done_s) - r.intended_s, missing))
    return pairs


def summarize(records: list[RequestRecord], started: float, warmup_s: float) -> dict[str, Any]:
    """Throughput over the window after warm-up; latency of every tx sent in that window (those
    that never committed at no less than the time they were seen waiting)."""
    window_start = started + warmup_s
    # The window ends at the last commit: a request that committed nothing (pending, failed)
    # must not stretch it.
    end = max((r.done_s for r in records if r.valid + r.invalid), default=window_start)
    phase_end = max((r.done_s for r in records), default=window_start)
    if not any(r.intended_s >= window_start for r in records):
        window_start, warmup_s = started, 0.0  # the phase was over before warm-up ended: count it all
    measured = [r for r in records if r.intended_s >= window_start]
    seconds = max(end - window_start, 1e-9)
    committed = sum(r.valid + r.invalid for r in records if r.done_s >= window_start)
    totals = {k: sum(getattr(r, k) for r in records) for k in
              ("txs", "valid", "invalid", "busy", "rejected", "pending", "dropped", "trades")}
    reasons: dict[str, int] = {}
    for r in records:
        for code, count in r.reasons.items():
            reasons[code] = reasons.get(code, 0) + count
    return {
        "window_s": round(seconds, 3),
        "warmup_s_applied": warmup_s,
        "committed_tps": round(committed / seconds, 1),
        "submit_to_commit_ms": _latency_ms(_latencies(measured, phase_end)),
        "trade_to_settlement_ms": _latency_ms([(r.done_s - r.intended_s, r.trades) for r in measured]),
        "counts": totals,
        "not_committed_txs": sum(_not_committed(r) for r in records),
        "failed_requests": sum(1 for r in records if r.failed),
        "reasons": reasons,
    }


def timeline(records: list[RequestRecord], started: float) -> list[dict[str, Any]]:
    """Per second since the phase began: committed tx/s and latency p50/p99 of what committed."""
    buckets: dict[int, list[tuple[float, int]]] = {}
    for r in records:
        n = r.valid + r.invalid
        if n:
            buckets.setdefault(int(r.done_s - started), []).append((r.done_s - r.intended_s, n))
    out = []
    for second in range(max(buckets, default=-1) + 1):
        pairs = buckets.get(second, [])
        if not pairs:  # nothing committed: no latency to show (None draws a gap, not a 0 ms dip)
            out.append({"t_s": second, "committed": 0, "p50_ms": None, "p99_ms": None})
            continue
        p50, p99 = weighted_percentiles(pairs, (0.5, 0.99))
        out.append({"t_s": second, "committed": sum(w for _, w in pairs),
                    "p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1)})
    return out


# ---------------------------------------------------------------- phases


async def run_phase(net: Network, spec: dict[str, Any], phase: dict[str, Any], seeded: dict[str, Any],
                    chain_id: str, sampler: Sampler, rng: random.Random, index: int) -> dict[str, Any]:
    """Plan and sign the phase's load, then drive it (closed or open loop) and measure it."""
    mode, per_request = phase["mode"], max(2, phase["request_txs"] // 2 * 2)  # order pairs stay together
    count = phase["txs"] if mode == "closed" else int(phase["rate_tps"] * phase["duration_s"])
    count = min(max(count, per_request), MAX_PHASE_TXS)
    plans = plan_load(spec["mix"], count, seeded["accounts"], seeded["addresses"], seeded["currency"],
                      seeded["isin"], rng, first_nonce=(index + 1) << 40)
    raws, signing = sign_all(chain_id, spec["label"], bytes.fromhex(spec["operator_seed"]), plans)
    chunks = [raws[i:i + per_request] for i in range(0, len(raws), per_request)]
    _log(f"{phase['name']}: {len(raws)} txs signed in {signing['wall_s']} s; driving ({mode})")
    height0 = (await net.status())["height"]
    profilers = start_profilers(spec.get("profile_dir"), phase["name"], sampler.pids)
    first = sampler.snapshot()
    records: list[RequestRecord] = []
    counters = {"not_sent_overload_txs": 0}
    try:
        if mode == "closed":
            started = await closed_loop(net, chunks, phase["concurrency"], phase["duration_s"], records)
        else:
            started = await open_loop(net, chunks, phase["rate_tps"], records, counters)
    finally:
        last = sampler.snapshot()
        stop_profilers(profilers)
    height1 = (await net.status())["height"]
    summary = summarize(records, started, phase["warmup_s"])
    # The phase's start on the wall clock, so the per-second timeline lines up with node traces.
    started_unix_s = round(time.time() - (time.perf_counter() - started), 3)
    blocks = max(height1 - height0, 0)
    committed = summary["counts"]["valid"] + summary["counts"]["invalid"]
    wall = max(last["t"] - first["t"], 1e-9)
    usage = node_usage(first, last)
    return {"name": phase["name"], "mode": mode, "rate_tps": phase.get("rate_tps"),
            "concurrency": phase.get("concurrency"), "request_txs": per_request, "signing": signing,
            "started_unix_s": started_unix_s,
            **summary, **counters,
            "blocks": blocks, "blocks_per_s": round(blocks / wall, 2),
            "mean_block_txs": round(committed / blocks, 1) if blocks else 0.0,
            "usage": usage, "cpu_cost": cpu_cost(usage, committed, wall), "timeline": timeline(records, started)}


def start_profilers(folder: str | None, phase: str, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy on every node for the phase (sampling from outside: the node is not paused)."""
    if not folder or not pids:
        return []
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        raise LoadError("--profile needs py-spy (pip install py-spy)")
    os.makedirs(folder, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--nonblocking", "--rate", str(PROFILE_SAMPLES_PER_S), "--pid", str(pid),
                              "--format", "raw", "--output", os.path.join(folder, f"{phase}-{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT makes py-spy write what it sampled; each gets PROFILER_STOP_TIMEOUT_S to do so."""
    for proc in profilers:
        proc.send_signal(signal.SIGINT)
    for proc in profilers:
        try:
            proc.wait(PROFILER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log(text: str) -> None:
    print(f"[loadgen] {text}", file=sys.stderr, flush=True)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Seed, then each phase in order; an open phase may take its rate from the last closed one."""
    rng = random.Random(spec["label"])
    sampler = Sampler({k: int(v) for k, v in spec.get("pids", {}).items()})
    sampling = asyncio.create_task(sampler.run())
    try:
        async with Network(spec["urls"]) as net:
            chain_id = (await net.status())["chain_id"]
            _log(f"seeding {spec['accounts']} accounts")
            seeded = await seed(spec, net, chain_id)
            _log(f"seeded in {seeded['report']['seconds']} s; waiting for the nodes to go idle")
            seeded["report"]["settle"] = await settle(spec)
            _log(f"settled in {seeded['report']['settle']['seconds']} s")
            phases: list[dict[str, Any]] = []
            for i, phase in enumerate(spec["phases"]):
                phase = dict(phase)
                if phase["mode"] == "open" and phase.get("rate_fraction"):
                    closed = [p for p in phases if p["mode"] == "closed"]
                    if not closed:
                        raise LoadError("an open phase with rate_fraction needs a closed phase before it")
                    phase["rate_tps"] = max(1.0, closed[-1]["committed_tps"] * phase["rate_fraction"])
                phases.append(await run_phase(net, spec, phase, seeded, chain_id, sampler, rng, i))
                _log(f"{phase['name']}: {phases[-1]['committed_tps']} tx/s, "
                     f"p99 {phases[-1]['submit_to_commit_ms']['p99']} ms")
            final = sampler.snapshot()
    finally:
        sampling.cancel()
    peak = {name: round(s["peak_rss_kib"] / 1024, 1) for name, s in final["nodes"].items()}
    return {"seed": seeded["report"], "phases": phases, "peak_rss_mib": peak,
            "node_samples": [{"t_s": round(s["t"] - sampler.samples[0]["t"], 2),
                              "nodes": s["nodes"]} for s in sampler.samples]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keiretsu_node.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON spec written by keiretsu_node.bench")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)
    with open(args.spec) as handle:
        spec = json.load(handle)
    if not 2 <= spec["accounts"] <= MAX_ACCOUNTS:
        print(f"accounts must be 2..{MAX_ACCOUNTS}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(spec))
    except (LoadError, aiohttp.ClientError) as exc:
        print(f"load generator: {exc}", file=sys.stderr)
        return 1
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`keiretsu demo`: the MVP's whole story with real signed transactions against a running network.

Part of cli/. The operator admits an issuer, two investors and a cash agent; the agent mints
MXN; the issuer registers and issues shares; the investors settle a DvP trade; balances and the
cap table are printed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.errors import CliError
from keiretsu_node.client import ApiError, Client, KeyPair, build, call
from keiretsu_node.client.calls import Call

MXN_DECIMALS = 2


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 10**MXN_DECIMALS)
    return f"{sign}{whole:,}.{cents:0{MXN_DECIMALS}d}"


class Story:
    def __init__(self, client: Client, chain_id: str, console: Console) -> None:
        self.client = client
        self.chain_id = chain_id
        self.console = console

    async def run(self, what: str, the_call: Call, signers: list[KeyPair]) -> dict[str, Any]:
        tx = build(self.chain_id, the_call, signers)
        status = await self.client.submit(tx, wait=True, timeout_ms=15_000)
        if status.get("status") != "committed":
            raise CliError(f"{what}: not committed ({status.get('status')}: {status.get('reason', '')})")
        receipt = status["receipt"]
        if receipt["result"] != "valid":
            raise CliError(f"{what}: refused by the ledger: {receipt['reason']} {receipt['detail']}")
        where = f"block {status['height']}, tx {status['tx_id'][:16]}…"
        self.console.print(f"  [green]✓[/green] {what}  [dim]{where}[/dim]")
        return receipt


def _kyc(name: str) -> bytes:
    return hashlib.sha256(f"kyc-record:{name}".encode()).digest()


async def play(api_url: str, chain_id: str, operator: KeyPair, keys_dir: Path | None,
               console: Console, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Play the story; returns what it made (addresses, ISIN) for tests and the caller."""
    issuer, ana, bruno, bank = (KeyPair.generate() for _ in range(4))
    if keys_dir is not None:
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, key in (("issuer", issuer), ("ana", ana), ("bruno", bruno), ("bank", bank)):
            path = keys_dir / f"{name}-{key.address[:10]}.key"
            key.save(path)
    async with Client(api_url) as client:
        story = Story(client, chain_id, console)
        console.print(f"[bold]Keiretsu demo[/bold] against {api_url} (chain {chain_id})")
        for who, key, roles in (("Tortillería del Norte S.A. (issuer)", issuer, ["issuer"]),
                                ("Ana (investor)", ana, ["investor"]),
                                ("Bruno (investor)", bruno, ["investor"]),
                                ("Banco Ejemplo (cash agent)", bank, ["cash_agent"])):
            await story.run(f"operator admits {who}", call("participants", "admit", address=key.address,
                            name=who.split(" (")[0], roles=roles, kyc_hash=_kyc(who)), [operator])
        currency = "MXN"
        try:
            await story.run("operator authorises Banco Ejemplo to issue MXN",
                            call("cash", "register_currency", currency=currency, decimals=MXN_DECIMALS,
                                 agent=bank.address), [operator])
        except CliError as exc:
            if "ALREADY_EXISTS" not in str(exc):
                raise
            currency = await _fresh_currency(story, operator, bank)
        for who, key, amount in (("Ana", ana, 500_000_00), ("Bruno", bruno, 1_000_000_00)):
            await story.run(f"Banco Ejemplo mints {currency} {_money(amount)} to {who}",
                            call("cash", "mint", currency=currency, to=key.address, amount=amount,
                                 deposit_ref=f"deposit-{who.lower()}-001"), [bank])
        receipt = await story.run(
            "issuer registers 1,000,000 shares (equity)",
            call("securities", "register", name="Tortillería del Norte, serie A", kind="equity",
                 authorised_supply=1_000_000, prospectus_hash=hashlib.sha256(b"prospectus v1").digest(),
                 prospectus_uri="https://issuer.example/prospectus-v1.pdf"), [issuer])
        isin = next(e["attrs"]["isin"] for e in receipt["events"] if e["kind"] == "security_registered")
        await story.run(f"issuer issues 10,000 shares of {isin} to Ana",
                        call("securities", "issue", isin=isin, to=ana.address, quantity=10_000), [issuer])
        price_minor, quantity = 150_00, 2_500
        await story.run(f"Ana sells {quantity:,} shares to Bruno at {currency} {_money(price_minor)} — DvP, both sign",
                        call("settlement", "dvp", seller=ana.address, buyer=bruno.address, isin=isin,
                             quantity=quantity, currency=currency, amount=price_minor * quantity,
                             reference="demo-trade-1"), [ana, bruno])
        await _print_state(client, console, isin, currency, {"Ana": ana.address, "Bruno": bruno.address,
                                                             "Issuer": issuer.address, "Bank": bank.address})
        return {"isin": isin, "currency": currency, "ana": ana.address, "bruno": bruno.address,
                "issuer": issuer.address, "bank": bank.address}


async def _fresh_currency(story: Story, operator: KeyPair, bank: KeyPair) -> str:
    """On a network that already ran the demo, MXN has its agent: use a demo-only code."""
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        code = f"MX{letter}"
        try:
            await story.run(f"operator authorises Banco Ejemplo to issue {code}",
                            call("cash", "register_currency", currency=code, decimals=MXN_DECIMALS,
                                 agent=bank.address), [operator])
            return code
        except CliError as exc:
            if "ALREADY_EXISTS" not in str(exc):
                raise
    raise CliError("no free demo currency code left")


async def _print_state(client: Client, console: Console, isin: str, currency: str, people: dict[str, str]) -> None:
    table = Table(title="Balances after settlement (free / locked)")
    table.add_column("who")
    table.add_column(currency, justify="right")
    table.add_column(isin, justify="right")
    for who, address in people.items():
        balances = (await client.account(address))["balances"]
        cash = balances.get(currency, {"free": 0, "locked": 0})
        shares = balances.get(isin, {"free": 0, "locked": 0})
        table.add_row(who, f"{_money(cash['free'])} / {_money(cash['locked'])}",
                      f"{shares['free']:,} / {shares['locked']:,}")
    console.print(table)
    cap = await client.holders(isin)
    cap_table = Table(title=f"Cap table of {isin} (outstanding {cap['outstanding']:,})")
    cap_table.add_column("holder")
    cap_table.add_column("shares", justify="right")
    cap_table.add_column("%", justify="right")
    names = {address: who for who, address in people.items()}
    # The API lists holders in address order (its paging cursor); a cap table reads largest first.
    for row in sorted(cap["holders"], key=lambda r: (-r["total"], r["address"])):
        share_bp = row["total"] * 10_000 // max(cap["outstanding"], 1)
        cap_table.add_row(names.get(row["address"], row["address"]), f"{row['total']:,}",
                          f"{share_bp // 100}.{share_bp % 100:02d}")
    console.print(cap_table)


async def ensure_api(api_url: str, timeout_s: float = 60) -> None:
    """The node answers and the cluster has a leader (so the story's first call can commit)."""
    import time

    async with Client(api_url, timeout_s=5) as client:
        try:
            await client.status()
        except ApiError as exc:
            raise CliError(f"no node answers at {api_url}: {exc.detail}") from exc
        deadline = time.monotonic() + timeout_s
        while not await client.ready():
            if time.monotonic() > deadline:
                raise CliError(f"the node at {api_url} is not ready (no leader?) after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)

"""`keiretsu status`: the cluster at a glance — who leads, heights, lag — as a table.

Part of cli/. Asks every node named in the genesis (or the URLs given) for /v1/status.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.table import Table

from keiretsu_node.client import ApiError, Client


async def gather_status(urls: list[str]) -> list[tuple[str, dict[str, Any] | None, str]]:
    async def one(url: str) -> tuple[str, dict[str, Any] | None, str]:
        async with Client(url, timeout_s=3) as client:
            try:
                return url, await client.status(), ""
            except ApiError as exc:
                return url, None, exc.detail or exc.code

    return list(await asyncio.gather(*(one(u) for u in urls)))


def render(rows: list[tuple[str, dict[str, Any] | None, str]], console: Console) -> int:
    table = Table(title="Keiretsu cluster")
    for column in ("node", "api", "role", "term", "leader", "height", "applied", "mempool", "peers (lag)"):
        table.add_column(column)
    down = 0
    for url, status, error in rows:
        if status is None:
            down += 1
            table.add_row("?", url, f"[red]down[/red] {error}", "", "", "", "", "", "")
            continue
        peers = ", ".join(
            f"{p['name']}{'' if p['connected'] else ' ✗'}" + (f" ({p['lag']})" if p.get("lag") is not None else "")
            for p in status["peers"]
        )
        role = status["role"] or "?"
        table.add_row(status["node"], url, f"[bold]{role}[/bold]" if role == "leader" else role,
                      str(status["term"]), status["leader"] or "-", str(status["height"]),
                      str(status["applied_index"]), str(status["mempool_txs"]), peers)
    console.print(table)
    return down

"""`keiretsu node start` and `keiretsu up`: run one node, or a whole local network of processes.

Part of cli/. `up` writes a network on first use (embedded defaults, loopback ports), starts one
process per node, waits until they are ready, and on Ctrl-C stops them cleanly; the next `up`
resumes from the same folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.errors import CliError
from keiretsu_node.bootstrap import GENESIS_FILE, KEYS_DIR, NODE_CONFIG_FILE, init_network
from keiretsu_node.client import Client
from keiretsu_node.config import ConfigError, NetworkSpec, NodeSpec, load_node
from ledger.genesis import Genesis

READY_TIMEOUT_S = 60
STOP_GRACE_S = 10
NETWORK_DIR = "network"
DEFAULT_P2P_BASE = 7100
DEFAULT_API_BASE = 8100


def run_node(config_path: Path) -> None:
    """Run one node in this process until SIGINT or SIGTERM; then stop cleanly."""
    from keiretsu_node.node import Node, NodeError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_node(config_path)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc

    async def main() -> None:
        try:
            node = Node(config)
        except NodeError as exc:
            raise CliError(str(exc)) from exc
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
        except OSError as exc:
            await node.stop()
            raise CliError(f"node {config.name} cannot listen: {exc}") from exc
        except NodeError as exc:
            await node.stop()
            raise CliError(str(exc)) from exc
        assert node.failure is not None
        stopping = asyncio.ensure_future(stop.wait())
        either: set[asyncio.Future[Any]] = {stopping, node.failure}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        logging.getLogger("keiretsu.node").info("stopping node %s", config.name)
        await node.stop()
        if node.failure.done():
            raise CliError(f"node {config.name} stopped: {node.failure.result()}")

    asyncio.run(main())


def local_spec(nodes: int, p2p_base: int, api_base: int, chain_id: str = "keiretsu-local-1") -> NetworkSpec:
    specs = tuple(NodeSpec(f"node{i}", "127.0.0.1", p2p_base + i, api_base + i) for i in range(1, nodes + 1))
    return NetworkSpec(chain_id, specs, ("operator",))


def ensure_network(root: Path, nodes: int, p2p_base: int, api_base: int,
                   console: Console) -> tuple[Genesis, list[Path]]:
    network = root / NETWORK_DIR
    if (network / GENESIS_FILE).exists():
        genesis = Genesis.load(network / GENESIS_FILE)
        configs = [network / n.name / NODE_CONFIG_FILE for n in genesis.nodes]
        if len(configs) != nodes:
            console.print(f"[yellow]resuming the existing {len(configs)}-node network in {network} "
                          f"(--nodes {nodes} applies to a new folder)[/yellow]")
        return genesis, configs
    try:
        made = init_network(local_spec(nodes, p2p_base, api_base), network)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    console.print(f"created a {nodes}-node network in {network}")
    return made.genesis, list(made.node_configs)


def spawn(config: Path) -> subprocess.Popen[bytes]:
    log_path = config.parent / "node.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed by the OS at exit
    return subprocess.Popen([sys.executable, "-m", "cli.main", "node", "start", "--config", str(config)],
                            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=os.getcwd(), start_new_session=True)


async def wait_ready(urls: list[str], procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    clients = [Client(u, timeout_s=2) for u in urls]
    try:
        while time.monotonic() < deadline:
            for proc, url in zip(procs, urls, strict=True):
                if proc.poll() is not None:
                    raise CliError(f"the node at {url} exited (status {proc.returncode}); see its node.log")
            ready = await asyncio.gather(*(c.ready() for c in clients))
            if all(ready):
                return
            await asyncio.sleep(0.2)
        raise CliError(f"the network was not ready within {timeout_s} s; see the node.log files")
    finally:
        for c in clients:
            await c.close()


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def up(root: Path, nodes: int, p2p_base: int, api_base: int, demo: bool, seconds: float | None) -> None:
    from cli import demo as demo_story
    from ledger.keys import KeyPair

    console = Console()
    genesis, configs = ensure_network(root, nodes, p2p_base, api_base, console)
    urls = [f"http://{n.host}:{n.api_port}" for n in genesis.nodes]
    procs = [spawn(c) for c in configs]
    try:
        with console.status("starting nodes and electing a leader…"):
            asyncio.run(wait_ready(urls, procs, READY_TIMEOUT_S))
        console.print(f"[bold green]network {genesis.chain_id} is up[/bold green] — {len(procs)} nodes")
        for node, url in zip(genesis.nodes, urls, strict=True):
            console.print(f"  {node.name}: API {url}/v1/status  metrics {url}/metrics  "
                          f"log {root / NETWORK_DIR / node.name / 'node.log'}")
        if demo:
            operator = KeyPair.load(root / NETWORK_DIR / KEYS_DIR / "operator.key")
            asyncio.run(demo_story.play(urls[0], genesis.chain_id, operator, root / "demo-keys", console))
        console.print("running; Ctrl-C stops every node (the next `keiretsu up` resumes from disk)")
        _watch(procs, urls, seconds, console)
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        stop_all(procs)
    console.print("stopped")


def _watch(procs: list[subprocess.Popen[bytes]], urls: list[str], seconds: float | None, console: Console) -> None:
    started = time.monotonic()
    while seconds is None or time.monotonic() - started < seconds:
        for proc, url in zip(procs, urls, strict=True):
            if proc.poll() is not None:
                raise CliError(f"the node at {url} exited (status {proc.returncode}); see its node.log")
        time.sleep(0.5)

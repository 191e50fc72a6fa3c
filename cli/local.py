"""`keiretsu node start` and `keiretsu up`: run one node, or a whole local network of processes.

Part of cli/. `up` writes a network on first use (embedded defaults, loopback ports), starts one
process per node, waits until they are ready, and on Ctrl-C stops them cleanly; the next `up`
resumes from the same folder.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.errors import CliError
from keiretsu_node.bootstrap import GENESIS_FILE, KEYS_DIR, init_network
from keiretsu_node.config import ConfigError, NetworkSpec, NodeSpec, load_node
from keiretsu_node.localnet import LocalNetworkError, NodeProcesses, network_layout, stop_with_starter
from ledger.genesis import Genesis

READY_TIMEOUT_S = 60
STOP_GRACE_S = 10
NETWORK_DIR = "network"
DEFAULT_P2P_BASE = 7100
DEFAULT_API_BASE = 8100


def run_node(config_path: Path) -> None:
    """Run one node in this process until SIGINT or SIGTERM; then stop cleanly."""
    from keiretsu_node.node import Node, NodeError
    from ledger import gc_policy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_node(config_path)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc

    if not stop_with_starter():
        raise CliError("the process that started this node has exited; not starting")
    gc_policy.tune_for_blocks()  # a node process executes blocks all day (ledger/gc_policy.py)

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


def ensure_network(root: Path, nodes: int, p2p_base: int, api_base: int, console: Console) -> Path:
    """The network folder under root: the existing one (resumed), or a new one."""
    network = root / NETWORK_DIR
    if (network / GENESIS_FILE).exists():
        try:
            existing = len(Genesis.load(network / GENESIS_FILE).nodes)
        except ValueError as exc:  # damaged: say so, and leave the folder for the operator to look at
            raise CliError(f"cannot resume the network in {network}: {exc}") from exc
        if existing != nodes:
            console.print(f"[yellow]resuming the existing {existing}-node network in {network} "
                          f"(--nodes {nodes} applies to a new folder)[/yellow]")
        return network
    try:
        init_network(local_spec(nodes, p2p_base, api_base), network)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    console.print(f"created a {nodes}-node network in {network}")
    return network


def up(root: Path, nodes: int, p2p_base: int, api_base: int, demo: bool, seconds: float | None) -> None:
    from cli import demo as demo_story
    from ledger.keys import KeyPair

    console = Console()
    network = ensure_network(root, nodes, p2p_base, api_base, console)
    try:
        genesis, configs, urls = network_layout(network)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the network in {network}: {exc}") from exc
    processes = NodeProcesses(configs, urls)
    _interrupt_on_terminate()
    try:
        processes.start_all()  # inside the try: a signal or failure halfway stops those started
        with console.status("starting nodes and electing a leader…"):
            asyncio.run(processes.wait_ready(timeout_s=READY_TIMEOUT_S))
        console.print(f"[bold green]network {genesis.chain_id} is up[/bold green] — {len(configs)} nodes")
        for name, url in urls.items():
            console.print(f"  {name}: API {url}/v1/status  metrics {url}/metrics  log {network / name / 'node.log'}")
        if demo:
            operator = KeyPair.load(network / KEYS_DIR / "operator.key")
            first = next(iter(urls.values()))
            asyncio.run(demo_story.play(first, genesis.chain_id, operator, root / "demo-keys", console))
        console.print("running; Ctrl-C stops every node (the next `keiretsu up` resumes from disk)")
        _watch(processes, seconds)
    except LocalNetworkError as exc:
        raise CliError(f"{exc}\n(see the node.log files under {network})") from exc
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        processes.stop_all(STOP_GRACE_S)
    console.print("stopped")


def _interrupt_on_terminate() -> None:
    """SIGTERM (`kill`, a service manager) and SIGHUP (the terminal closed) stop the network as
    Ctrl-C does; their default would end this process and leave its nodes running."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def _watch(processes: NodeProcesses, seconds: float | None) -> None:
    started = time.monotonic()
    while seconds is None or time.monotonic() - started < seconds:
        for name, status in processes.exited().items():
            raise CliError(f"{name} exited (status {status}); see its node.log:\n{processes.log_tail(name, 5)}")
        time.sleep(0.5)

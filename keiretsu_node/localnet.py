"""Node processes of one local network: start, signal, stop, and wait until they are ready.

Part of keiretsu_node/. One implementation for `keiretsu up`, the benchmarks and the tests:
every process it starts it also stops (SIGKILL as the last resort), every wait is bounded.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from keiretsu_node.bootstrap import GENESIS_FILE, NODE_CONFIG_FILE
from ledger.genesis import Genesis

SOURCE_ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 15.0
READY_POLL_S = 0.1
READY_PROBE_TIMEOUT_S = 2.0
# Set for the nodes NodeProcesses starts: the pid of the process that started them, whose death
# should stop them (stop_with_starter). A test run or bench killed outright could not stop them
# itself, and a node left behind goes on using a core and its ports.
STARTER_PID_ENV = "KEIRETSU_STARTER_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class LocalNetworkError(RuntimeError):
    """A node exited or never became ready; the message carries the tail of its log."""


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1 (released again for the nodes to take)."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stop_with_starter() -> bool:
    """In a node NodeProcesses started: ask Linux to send it SIGTERM (its clean stop) when the
    starter dies. False if the starter is already gone, so the node should not start at all.

    The kernel signals when the thread that started the child exits, so NodeProcesses.start
    must run on a thread that lives as long as the nodes (every caller uses the main thread);
    a wrapper in front of the node (the fault suite's `ip netns exec`) execs, keeping the pid.
    Elsewhere than Linux, or without the variable (a node an operator started), nothing is done.
    """
    starter = os.environ.get(STARTER_PID_ENV, "")
    if not starter.isdigit() or not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return True  # not granted: the starter's own stop is all there is, as before
    try:  # it may have died before the request was made
        os.kill(int(starter), 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists (another user's process could only be a reused pid: not worth refusing)
    return True


def network_layout(network_dir: Path) -> tuple[Genesis, dict[str, Path], dict[str, str]]:
    """The genesis, each node's config file and API URL, for a folder `network init` wrote."""
    genesis = Genesis.load(network_dir / GENESIS_FILE)
    configs = {n.name: network_dir / n.name / NODE_CONFIG_FILE for n in genesis.nodes}
    urls = {n.name: f"http://{n.host}:{n.api_port}" for n in genesis.nodes}
    return genesis, configs, urls


class NodeProcesses:
    """`keiretsu node start` processes, one per entry of `configs`, logging to node.log beside it.

    Subclasses may set `configs`, `urls` and `procs` themselves and override `command` (the fault
    suite prefixes it to enter a network namespace).
    """

    def __init__(self, configs: dict[str, Path], urls: dict[str, str]) -> None:
        self.configs = configs
        self.urls = urls
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, name: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", "node", "start", "--config", str(self.configs[name].resolve())]

    def start(self, name: str) -> None:
        with open(self.configs[name].parent / "node.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                self.command(name), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=SOURCE_ROOT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT), STARTER_PID_ENV: str(os.getpid())})

    def start_all(self) -> None:
        for name in self.configs:
            self.start(name)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(30)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets and memory but runs nothing, like a long GC pause."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM (after SIGCONT: a paused process cannot act on it), then SIGKILL past the grace."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def exited(self) -> dict[str, int]:
        """Nodes whose process ended, with their exit status."""
        return {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.configs[name].parent / "node.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def wait_ready(self, names: list[str] | None = None, timeout_s: float = 60.0) -> None:
        """Until every named node answers /healthz/ready (a leader is known and it is caught up)."""
        names = names or list(self.procs)
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=READY_PROBE_TIMEOUT_S)) as http:
            while True:
                for name, status in self.exited().items():
                    if name in names:
                        raise LocalNetworkError(f"{name} exited with status {status}:\n{self.log_tail(name)}")
                ready = await asyncio.gather(*(_is_ready(http, self.urls[n]) for n in names))
                if all(ready):
                    return
                if time.monotonic() > deadline:
                    waiting = [n for n, r in zip(names, ready, strict=True) if not r]
                    raise LocalNetworkError(f"not ready within {timeout_s:.0f} s: {waiting}")
                await asyncio.sleep(READY_POLL_S)


async def _is_ready(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url + "/healthz/ready") as resp:
            return resp.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False

"""Linux network namespaces for the fault suite: one per node, each joined to the host by a veth.

Part of tests/faults. Addresses come from 10.213.0.0/16 and exist only inside the namespaces
this module creates; nothing is routed off this machine. Taking a host-side veth down cuts a
node off completely (peers and clients alike), as a pulled cable does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

SUBNET_PREFIX = "10.213"
MAX_NODES = 8
IP_TIMEOUT_S = 10


class NetnsUnavailable(RuntimeError):
    """This machine cannot give us namespaces; the message is the reason a test skips."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=check)


@dataclass(frozen=True)
class NodeLink:
    """One node's namespace and the veth pair joining it to the host."""

    netns: str
    host_if: str
    node_if: str
    host_ip: str  # host side: where the node's peers reach its proxy
    node_ip: str  # inside the namespace: where the node listens

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


class Topology:
    """Creates namespaces and veths for `names`; `close()` removes everything it made."""

    def __init__(self, names: list[str]) -> None:
        if len(names) > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} nodes")
        check_available()
        tag = os.getpid() % 4096
        base = (os.getpid() % 30) * MAX_NODES  # third octet: runs in parallel do not collide
        self.links: dict[str, NodeLink] = {}
        for i, name in enumerate(names):
            octet = base + i + 1
            self.links[name] = NodeLink(f"kf{tag:03x}n{i}", f"kf{tag:03x}h{i}", f"kf{tag:03x}v{i}",
                                        f"{SUBNET_PREFIX}.{octet}.1", f"{SUBNET_PREFIX}.{octet}.2")
        try:
            for link in self.links.values():
                self._create(link)
        except Exception:
            self.close()
            raise

    @staticmethod
    def _create(link: NodeLink) -> None:
        _ip("netns", "del", link.netns, check=False)  # a leftover of a crashed run with our pid
        _ip("link", "del", link.host_if, check=False)
        _ip("netns", "add", link.netns)
        _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.node_if)
        _ip("link", "set", link.node_if, "netns", link.netns)
        _ip("addr", "add", f"{link.host_ip}/24", "dev", link.host_if)
        _ip("link", "set", link.host_if, "up")
        _ip("link", "set", "lo", "up", netns=link.netns)
        _ip("addr", "add", f"{link.node_ip}/24", "dev", link.node_if, netns=link.netns)
        _ip("link", "set", link.node_if, "up", netns=link.netns)
        # Peers' proxies live on other host-side addresses: reach them through our own veth only.
        _ip("route", "add", "default", "via", link.host_ip, netns=link.netns)

    def set_up(self, name: str, up: bool) -> None:
        _ip("link", "set", self.links[name].host_if, "up" if up else "down")

    def close(self) -> None:
        left = []
        for link in self.links.values():
            gone = _ip("netns", "del", link.netns, check=False)  # takes its veth end, and so the pair
            _ip("link", "del", link.host_if, check=False)
            if gone.returncode != 0 and link.netns in _ip("netns", "list", check=False).stdout:
                left.append(f"{link.netns}: {gone.stderr.strip()}")
        if left:
            raise RuntimeError(f"network namespaces left behind: {left}")


def check_available() -> None:
    """Raise NetnsUnavailable with the reason when namespaces cannot be made here."""
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root")
    probe = f"kfprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` failed: {made.stderr.strip()}")
    _ip("netns", "del", probe, check=False)

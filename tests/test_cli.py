"""The `keiretsu` command end to end: keys, network init, node start, demo, status, errors."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import REPO, free_ports

ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def keiretsu(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=REPO)


def test_keys_new_writes_a_0600_key_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "ana.key"
    first = keiretsu("keys", "new", "--out", str(out))
    assert first.returncode == 0 and first.stdout.startswith("kx")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert keiretsu("keys", "show", str(out)).stdout.strip() == first.stdout.split()[0]
    again = keiretsu("keys", "new", "--out", str(out))
    assert again.returncode == 1 and again.stderr.startswith("error:") and "Traceback" not in again.stderr


@pytest.mark.parametrize("args, message", [
    (["status", "--network", "/nonexistent"], "cannot read"),
    (["node", "start", "--config", "/nonexistent/node.toml"], "no such file"),
    (["submit", "cash", "transfer", "--key", "/nonexistent.key", "--chain-id", "x", "--api", "http://127.0.0.1:9"],
     "cannot read key"),
])
def test_errors_are_one_line_without_a_traceback(args: list[str], message: str) -> None:
    result = keiretsu(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["bench", "network", "--work-dir", "/nonexistent/dir"], "--work-dir /nonexistent/dir is not a directory"),
    (["bench", "network", "--out", "/proc/keiretsu-bench"], "error: No such file or directory: /proc/keiretsu-bench"),
])
def test_bench_rejects_bad_paths_before_starting_anything(args: list[str], message: str) -> None:
    result = keiretsu(*args)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["bench", "ledger", "--transfers", "0"], "--transfers must be 1..1,000,000"),
    (["bench", "ledger", "--batch-size", "0"], "--batch-size must be 1..10,000"),
    (["bench", "market", "--resting", "-1"], "--resting must be 0..1,000,000"),
])
def test_bench_rejects_out_of_range_counts_with_a_usage_line(args: list[str], message: str) -> None:
    result = keiretsu(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_bad_files_and_arguments_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    not_a_table = tmp_path / "nodes.toml"
    not_a_table.write_text('chain_id = "x"\nnodes = [1]\n')
    not_utf8 = tmp_path / "binary.toml"
    not_utf8.write_bytes(b"\xff\xfe\x00garbage")
    damaged = tmp_path / "damaged"
    (damaged / "network").mkdir(parents=True)
    (damaged / "network" / "genesis.json").write_text("garbage")
    cases = [
        (["network", "init", str(not_a_table), "--out", str(tmp_path / "a")], "nodes[0] must be a table"),
        (["network", "init", str(not_utf8), "--out", str(tmp_path / "b")], "not valid TOML"),
        (["node", "start", "--config", str(not_utf8)], "not valid TOML"),
        (["up", "--dir", str(damaged), "--no-demo", "--seconds", "1"], "cannot resume the network"),
        (["submit", "cash", "transfer", "--chain-id", "x", "--api", "http://127.0.0.1:9", "--key", "/no.key",
          "--arg", "x=" + "[" * 50_000], "nested too deeply"),
    ]
    for args, message in cases:
        result = keiretsu(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error:") and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_quoted_fsync_flag_is_refused_not_read_as_true(tmp_path: Path) -> None:
    spec = tmp_path / "net.toml"
    spec.write_text('chain_id = "x"\n[[nodes]]\nname = "a"\nhost = "127.0.0.1"\np2p_port = 1\napi_port = 2\n')
    assert keiretsu("network", "init", str(spec), "--out", str(tmp_path / "net")).returncode == 0
    config = tmp_path / "net" / "a" / "node.toml"
    config.write_text(config.read_text().replace("fsync = true", 'fsync = "false"'))
    result = keiretsu("node", "start", "--config", str(config))
    assert result.returncode == 1 and "fsync must be true or false" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_network_init_rejects_a_bad_config_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "net.toml"
    bad.write_text('chain_id = "x"\n[[nodes]]\nname = "a"\nhost = "127.0.0.1"\np2p_port = 99999\napi_port = 1\n')
    result = keiretsu("network", "init", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "p2p_port" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bootstrap_start_demo_and_status_end_to_end(tmp_path: Path) -> None:
    ports = free_ports(6)
    text = (REPO / "network.example.toml").read_text()
    for old, new in zip(("7101", "8101", "7102", "8102", "7103", "8103"), ports, strict=True):
        text = text.replace(f"= {old}", f"= {new}")
    config = tmp_path / "network.toml"
    config.write_text(text)
    net = tmp_path / "net"
    init = keiretsu("network", "init", str(config), "--out", str(net))
    assert init.returncode == 0, init.stderr
    assert stat.S_IMODE((net / "keys" / "operator.key").stat().st_mode) == 0o600
    procs = []
    try:
        for name in ("node1", "node2", "node3"):
            log = open(net / name / "node.log", "wb")  # noqa: SIM115 - owned by the child
            procs.append(subprocess.Popen([sys.executable, "-m", "cli.main", "node", "start", "--config",
                                           str(net / name / "node.toml")], stdout=log, stderr=subprocess.STDOUT,
                                          env=ENV, cwd=REPO))
        demo = None
        for _ in range(60):  # until a leader exists: the demo's first call waits for commit
            demo = keiretsu("demo", "--network", str(net), timeout=180)
            if demo.returncode == 0 or "no node answers" not in demo.stderr:
                break
            subprocess.run(["sleep", "0.5"])
        assert demo is not None and demo.returncode == 0, demo.stderr + demo.stdout
        assert "Ana sells" in demo.stdout and "Cap table" in demo.stdout
        status = keiretsu("status", "--network", str(net))
        assert status.returncode == 0, status.stderr
        assert "leader" in status.stdout and status.stdout.count("node") >= 3
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    assert all(p.returncode == 0 for p in procs), "nodes must stop cleanly on SIGTERM"


@pytest.mark.slow
def test_up_starts_plays_the_demo_stops_and_resumes(tmp_path: Path) -> None:
    p2p, api = free_ports(2)
    base = ["up", "--dir", str(tmp_path / "data"), "--p2p-base", str(p2p - 1), "--api-base", str(api - 1),
            "--nodes", "1", "--seconds", "1"]
    first = keiretsu(*base, timeout=180)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "is up" in first.stdout and "Ana sells" in first.stdout and "stopped" in first.stdout
    second = keiretsu(*base, "--no-demo", timeout=180)
    assert second.returncode == 0, second.stderr + second.stdout
    log = (tmp_path / "data" / "network" / "node1" / "node.log").read_text()
    assert "height 10" in log.splitlines()[-1] or "height 10" in log


def test_up_stops_every_node_on_sigterm(tmp_path: Path) -> None:
    p2p, api = free_ports(2)
    up = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--dir", str(tmp_path / "data"),
                           "--p2p-base", str(p2p - 1), "--api-base", str(api - 1), "--nodes", "1", "--no-demo"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=REPO)
    try:
        assert up.stdout is not None
        for line in up.stdout:  # bounded by the network's start-up; the finally kills on failure
            if line.startswith("running;"):
                break
        node_log = tmp_path / "data" / "network" / "node1" / "node.log"
        up.send_signal(signal.SIGTERM)
        rest = up.communicate(timeout=60)[0]
        try:  # before the cleanup below, which would stop a node left running
            socket.create_connection(("127.0.0.1", api), timeout=5).close()
            node_left_listening = True
        except ConnectionRefusedError:
            node_left_listening = False
    finally:
        up.kill()
        _kill_processes_mentioning(tmp_path)  # a node the bug under test would have left running
    assert up.returncode == 0 and "stopped" in rest
    assert "stopping node node1" in node_log.read_text(), "the node must have been told to stop"
    assert not node_left_listening, "a node still answers on its API port"


def _kill_processes_mentioning(path: Path) -> None:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read


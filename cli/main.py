"""The `keiretsu` command: keys, network bootstrap, nodes, a local network, submit, query, bench.

Part of cli/. Each subcommand is a thin call into the layers; every failure is one line on
stderr (`error: …`) and a non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from cli.errors import CliError

DEFAULT_ROOT = Path("keiretsu-data")


def _network_dir(args: argparse.Namespace) -> Path:
    return Path(args.network) if args.network else DEFAULT_ROOT / "network"


def _genesis(args: argparse.Namespace) -> Any:
    from ledger.genesis import Genesis

    path = _network_dir(args) / "genesis.json"
    try:
        return Genesis.load(path)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc} "
                       "(run `keiretsu up` or `keiretsu network init`, or pass --network)") from exc


def _api_urls(args: argparse.Namespace) -> list[str]:
    if getattr(args, "api", None):
        return [args.api]
    return [f"http://{n.host}:{n.api_port}" for n in _genesis(args).nodes]


# ---------------------------------------------------------------- commands


def cmd_keys_new(args: argparse.Namespace) -> None:
    from ledger.keys import KeyPair

    path = Path(args.out)
    if path.exists():
        raise CliError(f"{path} exists; refusing to overwrite a key")
    key = KeyPair.generate()
    key.save(path)
    print(f"{key.address}  (key written to {path}, mode 0600)")


def cmd_keys_show(args: argparse.Namespace) -> None:
    print(_load_key(args.key).address)


def _load_key(path: str) -> Any:
    from ledger.keys import KeyPair

    try:
        return KeyPair.load(Path(path))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read key {path}: {exc}") from exc


def cmd_network_init(args: argparse.Namespace) -> None:
    from keiretsu_node.bootstrap import init_network
    from keiretsu_node.config import ConfigError, load_network

    try:
        made = init_network(load_network(Path(args.config)), Path(args.out))
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    print(f"network {made.genesis.chain_id}: genesis {made.root / 'genesis.json'}")
    for path in made.node_configs:
        print(f"  node config {path}   (keiretsu node start --config {path})")
    for path in made.operator_keys:
        print(f"  operator key {path} (mode 0600)")


def cmd_node_start(args: argparse.Namespace) -> None:
    from cli.local import run_node

    run_node(Path(args.config))


def cmd_up(args: argparse.Namespace) -> None:
    from cli.local import up

    if not 1 <= args.nodes <= 15:
        raise CliError("--nodes must be between 1 and 15")
    up(Path(args.dir), args.nodes, args.p2p_base, args.api_base, not args.no_demo, args.seconds)


def cmd_status(args: argparse.Namespace) -> None:
    from rich.console import Console

    from cli.status import gather_status, render

    down = render(asyncio.run(gather_status(_api_urls(args))), Console())
    if down:
        raise CliError(f"{down} node(s) did not answer")


def cmd_demo(args: argparse.Namespace) -> None:
    from rich.console import Console

    from cli import demo

    genesis = _genesis(args)
    operator = _load_key(args.operator or str(_network_dir(args) / "keys" / "operator.key"))
    url = _api_urls(args)[0]
    asyncio.run(demo.ensure_api(url))
    asyncio.run(demo.play(url, genesis.chain_id, operator, _network_dir(args).parent / "demo-keys", Console()))


def _parse_arg(text: str) -> tuple[str, Any]:
    """k=v where v is JSON (numbers, true/false, lists, "strings") or else a plain string;
    hex:abcd… gives bytes."""
    if "=" not in text:
        raise CliError(f"argument {text!r} must look like name=value")
    name, raw = text.split("=", 1)
    if raw.startswith("hex:"):
        try:
            return name, bytes.fromhex(raw[4:])
        except ValueError as exc:
            raise CliError(f"argument {name}: not hex") from exc
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw
    except RecursionError as exc:
        raise CliError(f"argument {name}: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise CliError(f"argument {name}: {exc}") from exc


def cmd_submit(args: argparse.Namespace) -> None:
    from keiretsu_node.client import ApiError, CallError, Client, build, call

    genesis = _genesis(args) if not args.chain_id else None
    chain_id = args.chain_id or genesis.chain_id
    values = dict(_parse_arg(a) for a in args.arg)
    signers = [_load_key(k) for k in args.key]
    try:
        tx = build(chain_id, call(args.contract, args.method, **values), signers)
    except CallError as exc:
        raise CliError(str(exc)) from exc

    async def go() -> Any:
        async with Client(_api_urls(args)[0]) as client:
            return await client.submit(tx, wait=not args.no_wait, timeout_ms=args.timeout_ms)

    try:
        result = asyncio.run(go())
    except ApiError as exc:
        if exc.outcome_unknown:  # it may have been accepted: running the command again would sign anew
            raise CliError(f"outcome unknown for tx {tx.tx_id.hex()} ({exc.detail}); look it up with "
                           f"`keiretsu query tx {tx.tx_id.hex()}` before submitting again") from exc
        raise CliError(f"refused: {exc.code}: {exc.detail}") from exc
    print(json.dumps(result, indent=2))
    status = result.get("status")
    if status == "pending":
        if not args.no_wait:
            raise CliError(f"still pending after {args.timeout_ms} ms: tx {result.get('tx_id')}", exit_code=3)
        return
    if status == "dropped":
        raise CliError(f"dropped: {result.get('reason')} {result.get('detail', '')}".rstrip())
    if status != "committed":  # 'unknown' (the node forgot a drop) or anything unforeseen
        raise CliError(f"not committed ({status}): tx {result.get('tx_id', tx.tx_id.hex())}")
    receipt = result.get("receipt")
    if not receipt or receipt["result"] != "valid":
        raise CliError(f"committed but invalid: {receipt['reason']} {receipt['detail']}" if receipt
                       else f"committed without a receipt in the answer: tx {tx.tx_id.hex()}")


def cmd_query(args: argparse.Namespace) -> None:
    from keiretsu_node.client import ApiError, Client

    async def go() -> Any:
        async with Client(_api_urls(args)[0]) as client:
            what, target = args.what, args.target
            if what == "account":
                return await client.account(target)
            if what == "history":
                return await client.history(target, limit=args.limit)
            if what == "tx":
                return await client.tx(target)
            if what == "block":
                return await client.block(target)
            if what == "security":
                return await client.security(target)
            if what == "holders":
                return await client.holders(target)
            if what == "participant":
                return await client.participant(target)
            contract, _, name = target.partition(".")
            return await client.query(contract, name, **dict(_parse_arg(a) for a in args.arg))

    try:
        print(json.dumps(asyncio.run(go()), indent=2))
    except ApiError as exc:
        raise CliError(f"{exc.code}: {exc.detail}") from exc


def cmd_bench(args: argparse.Namespace) -> None:
    from cli import bench

    bench.run(args.kind, args.rest)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keiretsu", description="Keiretsu: a permissioned ledger for SME securities")
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("new", help="generate an Ed25519 key (file mode 0600)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_keys_new)
    p = keys.add_parser("show", help="print the address of a key file")
    p.add_argument("key")
    p.set_defaults(fn=cmd_keys_show)

    network = sub.add_parser("network", help="bootstrap a network").add_subparsers(dest="network_command",
                                                                                   required=True)
    p = network.add_parser("init", help="node keys, certificates, genesis and node folders from a network TOML")
    p.add_argument("config", help="network TOML, like network.example.toml")
    p.add_argument("--out", required=True, help="a new, empty folder")
    p.set_defaults(fn=cmd_network_init)

    node = sub.add_parser("node", help="run a node").add_subparsers(dest="node_command", required=True)
    p = node.add_parser("start", help="run one node until SIGINT/SIGTERM")
    p.add_argument("--config", required=True, help="the node's node.toml")
    p.set_defaults(fn=cmd_node_start)

    p = sub.add_parser("up", help="start a local network (and play the demo), Ctrl-C to stop")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dir", default=str(DEFAULT_ROOT), help="where the network and its data live")
    p.add_argument("--p2p-base", type=int, default=7100)
    p.add_argument("--api-base", type=int, default=8100)
    p.add_argument("--no-demo", action="store_true", help="start the network only")
    p.add_argument("--seconds", type=float, default=None, help="stop by itself after this long")
    p.set_defaults(fn=cmd_up)

    def with_network(p: argparse.ArgumentParser) -> None:
        p.add_argument("--network", help=f"network folder (default {DEFAULT_ROOT / 'network'})")
        p.add_argument("--api", help="a node's API URL (default: the nodes in the genesis)")

    p = sub.add_parser("status", help="the cluster at a glance")
    with_network(p)
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("demo", help="play the MVP story against a running network")
    with_network(p)
    p.add_argument("--operator", help="operator key file (default: <network>/keys/operator.key)")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("submit",
                       help="sign and submit a call: keiretsu submit cash transfer --key k --arg currency=MXN …")
    with_network(p)
    p.add_argument("contract")
    p.add_argument("method")
    p.add_argument("--key", action="append", required=True,
                   help="signer key file (repeat for co-signers; first is the sender)")
    p.add_argument("--arg", action="append", default=[], help="name=value (JSON, or hex:… for bytes)")
    p.add_argument("--chain-id")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout-ms", type=int, default=10_000)
    p.set_defaults(fn=cmd_submit)

    p = sub.add_parser("query", help="read the ledger: account|history|tx|block|security|holders|participant|contract")
    with_network(p)
    p.add_argument("what", choices=["account", "history", "tx", "block", "security", "holders", "participant",
                                    "contract"])
    p.add_argument("target", help="address, tx id, height, ISIN, or contract.query for `contract`")
    p.add_argument("--arg", action="append", default=[], help="query parameter name=value (for `contract`)")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(fn=cmd_query)

    p = sub.add_parser("bench", help="benchmarks: ledger | raft | market | network (see docs/PERFORMANCE.md)")
    p.add_argument("kind", choices=["ledger", "raft", "market", "network"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark (--help for them)")
    p.set_defaults(fn=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a path or socket the operator named: say which, without a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or str(exc) or type(exc).__name__}{where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`tamga testnet`, `tamga node run`, `tamga bench`: thin wrappers over testnet/, node/ and bench/.

The operator's commands are the one place where the CLI runs more than a node client:
the testnet tooling, a node in this process (`tamga node run`), the benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

import ledger
import testnet as testnet_lib
from bench.chart import write_chart
from bench.tamga_bench import run_bench
from node import ConfigError, StartError, run_node
from node.client import ClientError

from ._options import json_option, kv_lines, print_json

DEFAULT_STATES = "AM,BY,KZ,KG,RU"


def _dir_option(f: Any) -> Any:
    return click.option(
        "--dir", "directory", metavar="DIR", required=True, envvar="TAMGA_TESTNET", show_envvar=True,
        type=click.Path(file_okay=False, path_type=Path), help="The testnet directory.",
    )(f)


def _state_argument(f: Any) -> Any:
    return click.argument("state", metavar="STATE", callback=_upper_state)(f)


def _upper_state(ctx: click.Context, param: click.Parameter, value: str) -> str:
    code = value.upper()
    if code not in ledger.MEMBER_STATES:
        raise click.BadParameter(f"{value} is not a member state ({', '.join(ledger.MEMBER_STATES)})")
    return code


def _states(value: str) -> list[str]:
    codes = [s.strip().upper() for s in value.split(",") if s.strip()]
    bad = [s for s in codes if s not in ledger.MEMBER_STATES]
    if bad or not codes:
        raise click.BadParameter(
            f"{', '.join(bad) or 'nothing'}: give member states from {', '.join(ledger.MEMBER_STATES)}",
            param_hint="--states",
        )
    if len(set(codes)) != len(codes):
        raise click.BadParameter("a member state is named twice", param_hint="--states")
    return codes


@click.group()
def testnet() -> None:
    """A local network of member-state nodes on loopback, for trying Tamga out."""


def _call(name: str, *args: Any) -> Any:
    """Call the testnet library; its refusals are one-line operating errors."""
    try:
        return getattr(testnet_lib, name)(*args)
    except testnet_lib.TestnetError as exc:
        raise click.ClickException(str(exc)) from None


@testnet.command("init")
@_dir_option
@click.option("--states", default=DEFAULT_STATES, show_default=True, help="Member states, comma-separated.")
@json_option
def testnet_init(directory: Path, states: str, as_json: bool) -> None:
    """Write genesis, keys, certificates and node configs for a new testnet."""
    net = _call("init_testnet", directory, _states(states))
    info = {
        "dir": str(net.dir),
        "chain_id": net.chain_id,
        "genesis": str(net.genesis_path),
        "states": [
            {"state": n.state, "url": n.api_url, "peer_address": n.peer_address, "config": str(n.config),
             "data_dir": str(n.data_dir), "regulator_key": str(n.regulator_key)}
            for n in net.nodes.values()
        ],
    }
    if as_json:
        print_json(info)
        return
    click.echo(f"initialised a testnet of {', '.join(net.nodes)} in {net.dir} (chain {net.chain_id})")
    for row in info["states"]:
        click.echo(f"{row['state']:<3} {row['url']:<23} regulator key {row['regulator_key']}")
    click.echo(f"start it with: tamga testnet up --dir {directory}; other commands check the nodes' "
               f"certificates against its genesis: export TAMGA_GENESIS={net.genesis_path}", err=True)


@testnet.command("up")
@_dir_option
@json_option
def testnet_up(directory: Path, as_json: bool) -> None:
    """Start every node of the testnet and wait until they agree on a leader."""
    _print_status(_call("up", directory), as_json)


@testnet.command("down")
@_dir_option
@json_option
def testnet_down(directory: Path, as_json: bool) -> None:
    """Stop every node (SIGTERM, and wait for each to exit)."""
    stopped = list(_call("down", directory))
    if as_json:
        print_json({"stopped": stopped})
    elif stopped:
        click.echo(f"stopped {', '.join(stopped)}")
    else:
        click.echo("no node was running", err=True)


@testnet.command("status")
@_dir_option
@json_option
def testnet_status(directory: Path, as_json: bool) -> None:
    """For each state: url, pid, role, term, height, head hash, data dir, regulator key."""
    _print_status(_call("status", directory), as_json)


@testnet.command("kill")
@_state_argument
@_dir_option
@json_option
def testnet_kill(state: str, directory: Path, as_json: bool) -> None:
    """Kill one state's node with SIGKILL (a crash, to try recovery)."""
    _stopped(state, _call("kill", directory, state), "killed", as_json)


@testnet.command("stop")
@_state_argument
@_dir_option
@json_option
def testnet_stop(state: str, directory: Path, as_json: bool) -> None:
    """Stop one state's node cleanly (SIGTERM)."""
    _stopped(state, _call("stop", directory, state), "stopped", as_json)


@testnet.command("start")
@_state_argument
@_dir_option
@json_option
def testnet_start(state: str, directory: Path, as_json: bool) -> None:
    """Start one state's node again; it catches up with the others."""
    _print_status([_call("start", directory, state)], as_json, one=True)


def _stopped(state: str, done: bool, verb: str, as_json: bool) -> None:
    if as_json:
        print_json({"state": state, verb: bool(done)})
    elif done:
        click.echo(f"{verb} {state}")
    else:
        click.echo(f"the {state} node was not running", err=True)


def _print_status(rows: list[dict[str, Any]], as_json: bool, one: bool = False) -> None:
    if as_json:
        print_json(rows[0] if one else rows)
        return
    click.echo(f"{'':<3} {'URL':<23} {'PID':<7} {'ROLE':<9} {'TERM':<4} {'HEIGHT':<6} HEAD")
    for row in rows:
        cells = [
            f"{_cell(row, 'state'):<3}", f"{_cell(row, 'url'):<23}", f"{_cell(row, 'pid'):<7}",
            f"{_cell(row, 'role'):<9}", f"{_cell(row, 'term'):<4}", f"{_cell(row, 'height'):<6}",
            str(row.get("head_hash") or "-")[:16],
        ]
        click.echo(" ".join(cells))
    if rows and not one and rows[0].get("regulator_key"):
        where = Path(str(rows[0]["regulator_key"])).parent.parent
        click.echo(f"regulator keys: {where}/<STATE>/regulator.key; data: {where}/<STATE>/data; "
                   f"genesis (pins the nodes' certificates): {where}/genesis.json", err=True)


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "-" if value is None or value == "" else str(value)


def _plain(value: Any) -> Any:
    """Library results (dataclasses, paths, bytes) as JSON values."""
    if hasattr(value, "to_json"):
        return _plain(value.to_json())
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


# node


@click.group()
def node() -> None:
    """Run a member state's node."""


@node.command("run")
@click.option("--config", "config", metavar="FILE", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The node's TOML configuration.")
def node_run(config: Path) -> None:
    """Run one node until SIGTERM or Ctrl-C."""
    try:
        code = run_node(config)
    except (ConfigError, StartError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


# bench


BENCH_FIELDS = (
    "kind", "nodes", "clients", "batch", "duration_s", "documents", "rejected", "errors", "docs_per_s",
    "codes_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_percent_per_node", "machine",
)
SPARKS = " ▁▂▃▄▅▆▇█"
LEADER_WAIT_S = 15.0
PROGRESS_STEPS_PER_S = 10


@click.command()
@click.option("--testnet", "directory", metavar="DIR", required=True, envvar="TAMGA_TESTNET",
              type=click.Path(file_okay=False, path_type=Path), help="A running testnet.")
@click.option("--kind", type=click.Choice(["single", "shipment"]), required=True,
              help="Single-code shipments, or shipments of 1,000 codes.")
@click.option("--duration", type=click.FloatRange(1, 3600), required=True, metavar="SECONDS")
@click.option("--clients", type=click.IntRange(1, 10_000), default=64, show_default=True,
              help="Concurrent clients.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="Documents per request.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw committed docs/s (blue) and p99 latency (red) per second into this PNG.")
@json_option
def bench(directory: Path, kind: str, duration: float, clients: int, batch: int, png: Path | None,
          as_json: bool) -> None:
    """Drive a running testnet with signed documents; report throughput, latency and CPU.

    Each client submits documents with wait=commit and times each until its commit
    answer. The documents are prepared (and signed) before the clock starts.
    """
    try:
        # A node that just (re)started may not know the leader yet; give it a moment.
        net = testnet_lib.load_testnet(directory)
        testnet_lib.poll_until(
            lambda: testnet_lib.leader_agreed(net), LEADER_WAIT_S, "a leader all nodes name"
        )
    except testnet_lib.TestnetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("preparing and signing the documents ...", err=True)
    steps = int(duration * PROGRESS_STEPS_PER_S)
    try:
        with click.progressbar(length=steps, label="measuring", file=sys.stderr) as bar:
            shown = [0]

            def advance(elapsed_s: float) -> None:
                step = int(elapsed_s * PROGRESS_STEPS_PER_S) - shown[0]
                if step > 0:
                    bar.update(step)
                    shown[0] += step

            result = run_bench(directory, kind, duration, clients, batch, advance)
    except (RuntimeError, ValueError, ClientError, testnet_lib.TestnetError) as exc:
        raise click.ClickException(str(exc)) from None
    if png is not None:
        write_chart(png, result["timeline_docs_per_s"], result["timeline_p99_ms"])
    if as_json:
        print_json(_plain(result))
        return
    rows = [(k.replace("_", " "), result.get(k)) for k in BENCH_FIELDS if k in result]
    click.echo("\n".join(kv_lines(rows)))
    timeline = result.get("timeline_docs_per_s") or []
    if timeline:
        click.echo(f"docs/s each second: {sparkline(timeline)}  (peak {max(timeline)})")


def sparkline(values: list[int]) -> str:
    """Throughput over time in one line of text (no plotting library is installed)."""
    top = max(values) or 1
    return "".join(SPARKS[round(v / top * (len(SPARKS) - 1))] for v in values)

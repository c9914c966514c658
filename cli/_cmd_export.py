"""`tamga export parquet` and `tamga sql`: the chain as Parquet tables, queried with DuckDB."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click
import plyvel

import ledger
from node.client import ClientError

from ._cmd_audit import progress_bar
from ._options import genesis_option, json_option, key_option, load_genesis, make_client, print_json
from .audit import resolve_data_dir

if TYPE_CHECKING:
    from . import analytics


def _engine(name: str) -> ModuleType:
    """pyarrow and DuckDB load only for these commands (they take a while to import),
    and say what to install when they are missing."""
    try:
        if name == "sql":
            from . import sql

            return sql
        from . import analytics as exporting

        return exporting
    except ImportError as exc:
        raise click.ClickException(
            f"{exc.name} is not installed: pip install 'tamga[analytics]' (pyarrow, duckdb, matplotlib)"
        ) from None


@click.command("parquet")
@click.option("--node", metavar="URL", envvar="TAMGA_NODE", show_envvar=True,
              help="Read the blocks from this node (a regulator's or auditor's --key signs the reads).")
@click.option("--data-dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Or read a node's data directory offline (a copy, or a stopped node's).")
@click.option("--out", metavar="DIR", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The export directory: one folder of Parquet part files per table.")
@click.option("--since", type=click.IntRange(1), default=None, metavar="HEIGHT",
              help="Export from this height (replacing parts from there on); default: after the last "
                   "export in DIR, or from the first block.")
@genesis_option(help="Genesis file: needed with --data-dir; with --node it pins the node's certificate.")
@key_option(required=False)
@json_option
@click.pass_context
def parquet(ctx: click.Context, node: str | None, data_dir: Path | None, out: Path, since: int | None,
            genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """Write the chain as Parquet tables: blocks, documents, code_events, shipments, flows,
    participants.

    A nightly run appends the blocks since the last one; running it again from the same
    height gives the same files. Query them with `tamga sql`.
    """
    if data_dir is not None and ctx.get_parameter_source("node") is click.core.ParameterSource.ENVIRONMENT:
        node = None  # TAMGA_NODE is a default; --data-dir on the command line says otherwise
    if (node is None) == (data_dir is None):
        raise click.UsageError("give either --node URL or --data-dir DIR")
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out} is a file, not a directory")
    exporting = _engine("analytics")
    started = time.perf_counter()
    try:
        if data_dir is not None:
            report = _from_data_dir(data_dir, genesis, out, since, as_json)
        else:
            report = _from_node(str(node), genesis, key, out, since, as_json)
    except exporting.ExportError as exc:
        raise click.ClickException(str(exc)) from None
    summary = report.to_json() | {"out": str(out), "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        print_json(summary)
    elif report.blocks == 0:
        click.echo(f"{out} is up to date (height {report.last})")
    else:
        rows = ", ".join(f"{n} {name}" for name, n in report.rows.items())
        click.echo(f"exported blocks {report.first}..{report.last} to {out}: {rows} "
                   f"({report.bytes:,} bytes in {summary['seconds']} s)")


def _from_data_dir(data_dir: Path, genesis_path: Path | None, out: Path, since: int | None,
                   quiet: bool) -> analytics.ExportReport:
    exporting = _engine("analytics")
    if genesis_path is None:
        raise click.UsageError("--data-dir needs --genesis FILE (the chain the directory holds)")
    genesis = load_genesis(genesis_path)
    try:
        store = ledger.open_existing(resolve_data_dir(data_dir), genesis)
    except plyvel.Error as exc:
        if "lock" in str(exc).lower():
            raise ClientError(
                f"{data_dir} is in use by a running node: stop the node, or export a copy"
            ) from None
        raise ClientError(f"cannot read {data_dir}: {exc}") from None
    try:
        with progress_bar("exporting", store.head.height, 0, not quiet) as advance:
            report: analytics.ExportReport = exporting.export(
                exporting.StoreSource(store), out, since, exporting.genesis_regulators(genesis),
                genesis.time_ms, advance,
            )
            return report
    finally:
        store.close()


def _from_node(node: str, genesis_path: Path | None, key: Path | None, out: Path, since: int | None,
               quiet: bool) -> analytics.ExportReport:
    exporting = _engine("analytics")
    client = make_client(node, key, genesis_path)
    genesis = load_genesis(genesis_path) if genesis_path is not None else None
    regulators = exporting.genesis_regulators(genesis) if genesis is not None else []
    source = exporting.NodeSource(client)
    with progress_bar("exporting", source.head(), 0, not quiet) as advance:
        report: analytics.ExportReport = exporting.export(
            source, out, since, regulators, genesis.time_ms if genesis else 0, advance
        )
        return report


@click.command("sql")
@click.argument("query", required=False)
@click.option("--data", metavar="DIR", envvar="TAMGA_DATA", show_envvar=True, default="tamga-export",
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="The directory `tamga export parquet` wrote.")
@click.option("--report", "report_name", metavar="NAME",
              help="Run a report shipped with tamga instead of QUERY (--report list names them).")
@click.option("--param", "params", metavar="NAME=VALUE", multiple=True,
              help="Set a report parameter, e.g. unaccepted_days_max=7 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row (JSON lines).")
def sql(query: str | None, data: Path, report_name: str | None, params: tuple[str, ...],
        as_json: bool) -> None:
    """Query the exported tables with DuckDB.

    \b
    Tables: blocks, documents, code_events, shipments, flows, participants,
    and the view code_history. Examples:
      tamga sql "SELECT type, status, count(*) FROM documents GROUP BY ALL"
      tamga sql --report unaccepted_cross_border --param unaccepted_days_max=7
    """
    if (query is None) == (report_name is None):
        raise click.UsageError("give a QUERY or --report NAME (not both)")
    pairs = []
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        pairs.append((name.strip(), value.strip()))
    engine = _engine("sql")
    try:
        con = engine.connect(data, pairs)
        try:
            if report_name == "list":
                names, rows = ["report"], [(name,) for name in engine.reports(con)]
            else:
                statement = engine.report_query(con, report_name) if report_name else str(query)
                names, rows = engine.run(con, statement)
        finally:
            con.close()
    except engine.SqlError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        for row in rows:
            click.echo(json.dumps({n: engine.json_value(v) for n, v in zip(names, row)}, ensure_ascii=False))
        return
    for line in engine.text_table(names, rows):
        click.echo(line)
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)

"""`tamga audit`: verify a whole chain, follow one, prove and check a code's provenance."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import plyvel
from click.core import ParameterSource

import ledger
from node.client import ClientError

from . import audit as auditing
from ._options import genesis_option, json_option, key_option, make_client, print_json
from .documents import parse_one


@click.group()
def audit() -> None:
    """Auditors: verify chains and provenance trusting nothing but the genesis file."""


def _genesis_required(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--genesis", metavar="FILE", envvar="TAMGA_GENESIS", show_envvar=True, required=True,
        type=click.Path(dir_okay=False, path_type=Path), help="The genesis file: the only thing trusted.",
    )(f)


def _workers_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workers", type=click.IntRange(1, 64), default=auditing.default_workers,
        show_default="cores, up to 4",
        help="Processes that check signatures ahead of the replay.",
    )(f)


@contextmanager
def progress_bar(
    label: str, total: int, start: int = 0, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr counting block heights; the callback takes a height."""
    # Off a terminal a bar is noise in a log: the final report says it all.
    if not enabled or total <= start or not sys.stderr.isatty():
        yield lambda height: None
        return
    with click.progressbar(length=total - start, label=label, file=sys.stderr, show_pos=True) as bar:
        done = [start]

        def advance(height: int) -> None:
            if height > done[0]:
                bar.update(min(height, total) - min(done[0], total))
                done[0] = height

        yield advance


@audit.command("verify")
@click.option("--node", metavar="URL", envvar="TAMGA_NODE", show_envvar=True,
              help="Stream the chain from this node.")
@click.option("--data-dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Or read a node's data directory (a copy, or a stopped node's).")
@_genesis_required
@key_option(required=False)
@click.option("--replica", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the auditor's replica here, so that the next run resumes (default: temporary).")
@_workers_option
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
@json_option
@click.pass_context
def verify(ctx: click.Context, node: str | None, data_dir: Path | None, genesis: Path, key: Path | None,
           replica: Path | None, workers: int, progress: bool, as_json: bool) -> None:
    """Verify a chain from genesis: hash links, Merkle roots, every signature and
    permission and state transition by replay, and the attestations.

    Exits 1 with the first failing height and the reason.
    """
    node = _only_one_source(ctx, node, data_dir)
    trusted = auditing.load_genesis(genesis)
    evidence: list[dict[str, Any]] | None = None
    with auditing.replica_dir(replica) as replica_path:
        start = auditing.replica_height(trusted, replica_path)
        if data_dir is not None:
            target = _data_dir_height(data_dir, trusted)
            with progress_bar("verifying", target, start, progress and not as_json) as advance:
                result = auditing.verify_data_dir(data_dir, trusted, replica_path, workers, advance)
        else:
            assert node is not None
            client = make_client(node, key, trusted)
            target = int(client.status().get("height", 0))
            with progress_bar("verifying", target, start, progress and not as_json) as advance:
                result = auditing.verify_node(client, trusted, replica_path, workers, advance)
            evidence = auditing.checked_evidence(client, trusted)
    _print_report(result, as_json, evidence)


def _only_one_source(ctx: click.Context, node: str | None, data_dir: Path | None) -> str | None:
    from_env = ctx.get_parameter_source("node") == ParameterSource.ENVIRONMENT
    if data_dir is not None and node is not None and not from_env:
        raise click.UsageError("give either --node URL or --data-dir DIR, not both")
    if data_dir is None and node is None:
        raise click.UsageError("give --node URL (or set TAMGA_NODE) or --data-dir DIR")
    return None if data_dir is not None else node


def _data_dir_height(data_dir: Path, genesis: ledger.Genesis) -> int:
    """The head height of a data directory, for the progress bar (0 when unreadable)."""
    try:
        store = ledger.open_existing(auditing.resolve_data_dir(data_dir), genesis)
    except (ledger.LedgerError, OSError, ClientError, plyvel.Error):
        return 0
    try:
        return store.head.height
    finally:
        store.close()


def _print_report(result: ledger.AuditReport, as_json: bool,
                  evidence: list[dict[str, Any]] | None = None) -> None:
    if as_json:
        print_json({**result.to_json(), **({"evidence": evidence} if evidence is not None else {})})
    elif result.ok:
        click.echo(
            f"verified: blocks {result.start_height + 1}..{result.height} "
            f"({result.documents} documents: {result.applied} applied, {result.rejected} rejected), "
            f"{result.attestations} attestations checked"
        )
        click.echo(f"head:     {result.height} {result.head_hash.hex()}")
        click.echo(
            f"final:    every block up to {result.final_height} is attested by a Byzantine quorum of member "
            "states"
        )
        if result.unattested:
            shown = ", ".join(str(h) for h in result.unattested[:10])
            click.echo(f"NOT final (short of a Byzantine quorum of attestations): {shown}", err=True)
        for piece in evidence or []:
            holds = "holds" if piece["against"] else "cleared"
            checked = "verified against genesis" if piece["verified"] else "DOES NOT VERIFY"
            what = (f"two entries as Raft leader at term {piece.get('term')} index {piece.get('index')}"
                    if piece.get("kind") == "append_equivocation"
                    else f"two blocks at height {piece.get('height')}")
            click.echo(f"evidence: {piece['state']} signed {what} ({holds}; {checked}) {piece['id']}")
    if not result.ok:
        failure = result.failure
        assert failure is not None
        raise click.ClickException(f"audit failed at height {failure.height}: {failure.what}: {failure.why}")


@audit.command("follow")
@click.option("--node", metavar="URL", envvar="TAMGA_NODE", show_envvar=True, required=True,
              help="Pull blocks from this node.")
@_genesis_required
@click.option("--data-dir", metavar="DIR", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The auditor's own replica; a later run resumes from it.")
@key_option(required=False)
@click.option("--interval", "interval_s", metavar="SECONDS", type=click.FloatRange(0.05, 3600), default=1.0,
              show_default=True, help="Pause between pulls.")
@click.option("--once", is_flag=True, help="Pull and verify what is there now, then stop.")
@_workers_option
@json_option
def follow(node: str, genesis: Path, data_dir: Path, key: Path | None, interval_s: float, once: bool,
           workers: int, as_json: bool) -> None:
    """Keep an auditor's replica: pull new blocks and verify each as it arrives.

    Resumes where it stopped; refuses to go past a block that fails (exit 1).
    Stop it with Ctrl-C.
    """
    trusted = auditing.load_genesis(genesis)
    client = make_client(node, key, trusted)
    follower = auditing.Follower(client, trusted, data_dir, workers)
    if not as_json:
        click.echo(f"following {client.url} into {data_dir}, from height {follower.state.height}", err=True)
    seen = [follower.state.height]

    def on_round(state: auditing.FollowState) -> None:
        if as_json or state.height == seen[0]:
            return
        now = dt.datetime.now().strftime("%H:%M:%S")
        click.echo(f"{now} verified up to {state.height} {state.head_hash.hex()[:16]}")
        seen[0] = state.height

    try:
        state = auditing.follow(follower, interval_s, 1 if once else None, on_round)
    except KeyboardInterrupt:
        state = follower.state
    finally:
        follower.close()
    if as_json:
        print_json(state.to_json())
    elif state.failure is None:
        click.echo(f"stopped at height {state.height}; run again to resume", err=True)
    if state.failure is not None:
        f = state.failure
        raise click.ClickException(
            f"refusing to go past height {f.height}: {f.what}: {f.why} (the replica stays at {state.height})"
        )


@audit.command("prove")
@click.argument("raw", metavar="CODE")
@click.option("--out", metavar="FILE", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the provenance bundle.")
@click.option("--node", metavar="URL", envvar="TAMGA_NODE", show_envvar=True, required=True)
@genesis_option()
@key_option(required=False)
@click.option("--final-timeout", "final_wait_s", metavar="SECONDS", type=click.FloatRange(0, 3600),
              default=auditing.FINAL_WAIT_S, show_default=True,
              help="How long to wait for the code's blocks to become final before saying they are not.")
@json_option
def prove(raw: str, out: Path, node: str, genesis: Path | None, key: Path | None, final_wait_s: float,
          as_json: bool) -> None:
    """Save a code's provenance bundle: every document that touched it, with proofs.

    Every block in it is final (attested by a Byzantine quorum of member states); while
    one is not yet, this waits, then says so. Anyone can check the file offline with
    `tamga audit check FILE --genesis FILE`.
    """
    code_key = parse_one(os.fsencode(raw))
    data, bundle = auditing.fetch_bundle(make_client(node, key, genesis), code_key, final_wait_s)
    out.write_bytes(data)
    summary = {"code": code_key, "documents": len(bundle.entries), "registrations": len(bundle.registrations),
               "bytes": len(data), "out": str(out)}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote the provenance of {code_key} to {out}: {len(bundle.entries)} documents, "
                   f"{len(bundle.registrations)} registrations, {len(data):,} bytes")


@audit.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_genesis_required
@json_option
def check(file: Path, genesis: Path, as_json: bool) -> None:
    """Check a provenance bundle offline against the genesis file alone."""
    trusted = auditing.load_genesis(genesis)
    bundle = auditing.read_bundle(file)
    try:
        events = ledger.verify_provenance(bundle, trusted)
    except ledger.ProofError as exc:
        if as_json:
            print_json({"ok": False, "code": bundle.code, "error": str(exc)})
        raise click.ClickException(f"the provenance of {bundle.code} does not verify: {exc}") from None
    if as_json:
        print_json({"ok": True, "code": bundle.code, "events": [e.to_json() for e in events]})
        return
    click.echo(f"{'BLOCK.POS':<10} {'TIME (UTC)':<19}  {'DOCUMENT':<16} SIGNER")
    for e in events:
        when = dt.datetime.fromtimestamp(e.time_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{f'{e.height}.{e.position}':<10} {when}  {e.type:<16} {e.signer}")
    click.echo(f"verified: {len(events)} documents about {bundle.code}, each signed by a registered "
               f"participant and in a final block (attested by a Byzantine quorum of member states)")

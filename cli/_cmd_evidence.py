"""`tamga evidence list|show`: proofs that a member state's node signed two different
blocks at one height, as a node holds them, checked here against genesis when given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import ledger

from ._options import (
    json_option,
    kv_lines,
    load_genesis,
    make_client,
    node_option,
    print_json,
)


@click.group()
def evidence() -> None:
    """Equivocation evidence: two attestations by one state for different blocks at one height.

    A node that holds evidence against a state refuses that state's node as Raft leader
    until the regulators clear it (a governance clear_evidence document).
    """


@evidence.command("list")
@node_option
@json_option
def list_(node: str, genesis: Path | None, as_json: bool) -> None:
    """Every piece of evidence the node holds."""
    pieces = make_client(node, None, genesis).evidence()
    if as_json:
        print_json({"evidence": pieces})
        return
    if not pieces:
        click.echo("no evidence: no member state was seen signing two blocks at one height")
        return
    click.echo(f"{'STATE':<6} {'HEIGHT':>8}  {'HOLDS':<7} ID")
    for p in pieces:
        holds = "yes" if p.get("against") else "cleared"
        click.echo(f"{p.get('state', '?'):<6} {p.get('height', 0):>8}  {holds:<7} {p.get('id')}")


@evidence.command("show")
@click.argument("evidence_id", metavar="ID")
@node_option
@json_option
def show(evidence_id: str, node: str, genesis: Path | None, as_json: bool) -> None:
    """One piece of evidence, checked against genesis when --genesis is given."""
    piece = make_client(node, None, genesis).evidence_piece(evidence_id.strip().lower())
    verified = _verify(piece, genesis) if genesis is not None else None
    if as_json:
        print_json({**piece, "verified": verified})
        return
    pairs: list[tuple[str, Any]] = [("id", piece.get("id")), ("state", piece.get("state")),
                                    ("height", piece.get("height")), ("round", piece.get("round")),
                                    ("holds", "yes" if piece.get("against") else "cleared by the regulators")]
    for i, att in enumerate(piece.get("attestations") or [], 1):
        pairs.append((f"attests #{i}", att.get("block_hash")))
    pairs.append(("verified", "not checked: give --genesis FILE" if verified is None
                  else "yes: both signatures verify against genesis" if verified else "NO"))
    click.echo("\n".join(kv_lines(pairs)))
    if verified is False:
        raise click.ClickException("the evidence does not verify against genesis")


def _verify(piece: dict[str, Any], genesis: Path) -> bool:
    try:
        parsed = ledger.Evidence.decode(bytes.fromhex(str(piece.get("bytes", ""))))
    except (ledger.DecodeError, ValueError):
        return False
    return parsed.verify(load_genesis(genesis), ledger.Verifier())

"""`tamga evidence list|show`: proofs that a member state's node signed two different
blocks at one height, or, as Raft leader, two different entries at one (term, index), as
a node holds them, checked here against genesis when given."""

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
    """Equivocation evidence: two attestations by one state for different blocks at one
    height, or two appends its node signed as leader for different entries at one Raft
    (term, index).

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
        click.echo("no evidence: no member state was seen signing two blocks at one height, "
                   "or two entries at one Raft slot")
        return
    click.echo(f"{'STATE':<6} {'AT':>16}  {'HOLDS':<7} ID")
    for p in pieces:
        holds = "yes" if p.get("against") else "cleared"
        click.echo(f"{p.get('state', '?'):<6} {_at(p):>16}  {holds:<7} {p.get('id')}")


def _at(piece: dict[str, Any]) -> str:
    """Where the state equivocated: a block height, or a Raft term and index."""
    if piece.get("kind") == "append_equivocation":
        return f"t{piece.get('term', 0)}/i{piece.get('index', 0)}"
    return f"h{piece.get('height', 0)}"


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
    appends = piece.get("kind") == "append_equivocation"
    place: list[tuple[str, Any]] = ([("raft term", piece.get("term")), ("raft index", piece.get("index"))]
                                    if appends else
                                    [("height", piece.get("height")), ("round", piece.get("round"))])
    pairs: list[tuple[str, Any]] = [("id", piece.get("id")), ("kind", piece.get("kind")),
                                    ("state", piece.get("state")), *place,
                                    ("holds", "yes" if piece.get("against") else "cleared by the regulators")]
    for i, att in enumerate(piece.get("attestations") or [], 1):
        pairs.append((f"attests #{i}", att.get("block_hash")))
    for i, signed in enumerate(piece.get("appends") or [], 1):
        pairs.append((f"appended #{i}", signed.get("entry_hash")))
    pairs.append(("verified", "not checked: give --genesis FILE" if verified is None
                  else "yes: both signatures verify against genesis" if verified else "NO"))
    click.echo("\n".join(kv_lines(pairs)))
    if verified is False:
        raise click.ClickException("the evidence does not verify against genesis")


def _verify(piece: dict[str, Any], genesis: Path) -> bool:
    try:
        parsed = ledger.decode_evidence(bytes.fromhex(str(piece.get("bytes", ""))))
    except (ledger.DecodeError, ValueError):
        return False
    return parsed.verify(load_genesis(genesis), ledger.Verifier())

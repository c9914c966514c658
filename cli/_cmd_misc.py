"""`tamga keys`, `tamga doc`, `tamga flows`, `tamga export`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

import ledger

from . import audit as auditing
from . import epcis
from ._options import (
    genesis_option,
    json_option,
    key_option,
    kv_lines,
    load_key,
    make_client,
    node_option,
    print_json,
)
from .documents import parse_one, reason_words

# keys


@click.group()
def keys() -> None:
    """Make and inspect participant keys (Ed25519)."""


@keys.command("new")
@click.option("--out", metavar="FILE", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key (PEM, owner-only); FILE.pub gets the public key.")
@click.option("--encrypt", is_flag=True, help="Protect the key with a passphrase (asked for twice).")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@json_option
def keys_new(out: Path, encrypt: bool, force: bool, as_json: bool) -> None:
    """Make a new key; print its participant id and public key.

    Give the public key (or FILE.pub) to your state's regulator to be registered.
    """
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; use --force to overwrite it")
    passphrase = None
    if encrypt:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=True).encode()
    key = ledger.KeyPair.generate()
    if force:
        # Asked for in so many words: key files are otherwise never overwritten.
        out.unlink(missing_ok=True)
    key.save(out, passphrase)
    public_path = out.with_name(out.name + ".pub")
    public_path.write_bytes(key.public_pem())
    info = _key_info(key)
    info.update({"key_file": str(out), "public_key_file": str(public_path)})
    if as_json:
        print_json(info)
    else:
        click.echo(_key_lines(info))
        click.echo(f"wrote {out} (keep it secret) and {public_path}", err=True)


@keys.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def keys_show(file: Path, as_json: bool) -> None:
    """Show the participant id and public key of a private key FILE."""
    info = _key_info(load_key(file))
    if as_json:
        print_json(info)
    else:
        click.echo(_key_lines(info))
        click.echo(info["public_pem"], nl=False)


def _key_lines(info: dict[str, Any]) -> str:
    return "\n".join(kv_lines([("participant", info["participant"]), ("public key", info["public_key"])]))


def _key_info(key: ledger.KeyPair) -> dict[str, Any]:
    return {
        "participant": key.participant_id,
        "public_key": key.public_key.hex(),
        "public_pem": key.public_pem().decode(),
    }


# doc


@click.group()
def doc() -> None:
    """Documents: what happened to one you submitted."""


@doc.command("show")
@click.argument("doc_id", metavar="ID")
@node_option
@key_option(required=False)
@json_option
def doc_show(doc_id: str, node: str, genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """A document's status, result and block, and what it says."""
    client = make_client(node, key, genesis)
    info = client.document(doc_id.strip().lower())
    if as_json:
        print_json(info)
        return
    pairs: list[tuple[str, Any]] = [("id", info.get("id", doc_id)), ("status", info.get("status"))]
    if info.get("status") == "rejected":
        reason = info.get("reason")
        pairs.append(("reason", f"{reason} ({reason_words(reason)}): {info.get('message')}"))
    pairs += [("block", info.get("height")), ("position", info.get("position"))]
    if info.get("height") is not None:
        pairs.append(("final", "yes" if info.get("final") else
                      "not yet (its block is not attested by a Byzantine quorum of member states)"))
    body = _document_body(info.get("document"))
    if body:
        payload = {k: v for k, v in body.items() if k not in ("chain_id", "nonce", "expires_at_ms")}
        for name, value in payload.items():
            if name == "codes" and isinstance(value, list) and len(value) > 5:
                value = ", ".join(value[:5]) + f", ... ({len(value)} codes)"
            pairs.append((name, value))
    click.echo("\n".join(kv_lines(pairs)))


def _document_body(value: Any) -> dict[str, Any] | None:
    """The node may give a document as its JSON form, signed JSON form or wire hex."""
    if isinstance(value, dict):
        inner = value.get("document", value)
        return inner if isinstance(inner, dict) else None
    if isinstance(value, str):
        try:
            return ledger.decode_signed(bytes.fromhex(value)).document.to_json()
        except (ValueError, ledger.DecodeError):
            return None
    return None


# flows


@click.command()
@click.option("--from-state", required=True, metavar="XX", help="Exporting member state, e.g. RU.")
@click.option("--to-state", required=True, metavar="XX", help="Importing member state, e.g. KZ.")
@click.option("--since", type=click.IntRange(0), default=0, help="From this block height.")
@click.option("--until", type=click.IntRange(0), default=None, help="Up to this block height.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@node_option
@key_option(required=False)
@json_option
def flows(from_state: str, to_state: str, since: int, until: int | None, limit: int, node: str,
          genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """Cross-border shipments from one member state to another (for regulators)."""
    states = [s.upper() for s in (from_state, to_state)]
    for s in states:
        if s not in ledger.MEMBER_STATES:
            raise click.BadParameter(f"{s} is not a member state ({', '.join(ledger.MEMBER_STATES)})")
    client = make_client(node, key, genesis)
    found = client.flows(states[0], states[1], since, until, limit)
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo(f"no shipments from {states[0]} to {states[1]} since block {since}", err=True)
    for shipment in found:
        items = shipment.get("items") or []
        click.echo(
            f"block {shipment.get('height')}  {shipment.get('id')}  {shipment.get('shipper')} -> "
            f"{shipment.get('receiver')}  {len(items)} item(s)  {shipment.get('status')}"
        )


# export


@click.group()
def export() -> None:
    """Export provenance in other formats."""


@export.command("epcis")
@click.argument("code")
@click.option("--out", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the EPCIS document here instead of standard output.")
@node_option
@genesis_option(help="Genesis file: pins the node's certificate; every document is checked against it "
                     "before exporting.")
@key_option(required=False)
@json_option
def export_epcis(code: str, out: Path | None, genesis: Path | None, node: str, key: Path | None,
                 as_json: bool) -> None:
    """A code's provenance as a GS1 EPCIS 2.0 JSON-LD document.

    Events use Digital Link URIs for EPCs and the CBV 2.0 event hash as eventID. Only
    final blocks are exported: while one is not final yet this waits (up to a minute),
    then says it is not final. With --genesis every document is checked (signature,
    inclusion, a Byzantine quorum of attestations) first.
    """
    key_text = parse_one(code)
    client = make_client(node, key, genesis)
    _, bundle = auditing.fetch_bundle(client, key_text)
    checked = auditing.load_genesis(genesis) if genesis is not None else None
    events = epcis.bundle_events(bundle, checked)
    document = epcis.epcis_document(key_text, events, int(time.time() * 1000))
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if out is None:
        click.echo(text)
        return
    out.write_text(text + "\n", encoding="utf-8")
    summary = {"code": key_text, "events": len(document["epcisBody"]["eventList"]), "out": str(out),
               "verified": checked is not None}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote {summary['events']} EPCIS events for {key_text} to {out}"
                   + (" (every document verified against genesis)" if checked else ""))

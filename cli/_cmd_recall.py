"""`tamga recall`, `tamga import` and `tamga trade`: recalls across the union, customs
imports of goods from outside it, and each member state's export and import records
(docs/RECALL.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Any

import click

import ledger

from ._options import (
    codes_input,
    gather_codes,
    genesis_option,
    json_option,
    key_option,
    kv_lines,
    make_client,
    make_session,
    node_option,
    print_json,
    report,
    wait_mode,
    wait_options,
)
from .documents import check_gtin


def _id(raw: str, what: str) -> bytes:
    """A recall or import id as given on the command line: 64 hex digits."""
    try:
        value = bytes.fromhex(raw.strip())
    except ValueError:
        value = b""
    if len(value) != 32:
        raise click.BadParameter(f"{raw!r} is not {what} id (64 hex digits, as the filing command prints)")
    return value


# GS1 AI 17 is YYMMDD; a day 00 means the end of the month, as GS1 allows.
_YYMMDD = re.compile("[0-9]{6}")


def _submitting(f: Any) -> Any:
    for decorate in (json_option, wait_options, genesis_option(), key_option(required=True), node_option):
        f = decorate(f)
    return f


def _state(value: str, hint: str) -> str:
    state = value.upper()
    if state not in ledger.MEMBER_STATES:
        raise click.BadParameter(f"{value} is not a member state ({', '.join(ledger.MEMBER_STATES)})",
                                 param_hint=hint)
    return state


@click.group()
def recall() -> None:
    """Recalls: a batch, an expiry range or listed codes of a GTIN, across the union."""


@recall.command("file")
@click.option("--gtin", required=True, help="The recalled product's GTIN.")
@click.option("--batch", default="", help="The recalled batch (GS1 AI 10), as printed.")
@click.option("--expiry-from", default="", metavar="YYMMDD", help="First expiry date recalled (AI 17).")
@click.option("--expiry-to", default="", metavar="YYMMDD", help="Last expiry date recalled (AI 17).")
@click.option("--reason", required=True, help="Why, for every holder and regulator to read.")
@codes_input(required=False)
@_submitting
def file_recall(gtin: str, batch: str, expiry_from: str, expiry_to: str, reason: str, codes: tuple[str, ...],
                codes_file: IO[bytes] | None, node: str, key: Path, genesis: Path | None, wait: bool,
                final: bool, timeout: float, as_json: bool) -> None:
    """File a recall (the producer, or the regulator of its state); print its id.

    Name one of: --batch, --expiry-from with --expiry-to, or the listed CODES.
    """
    keys = gather_codes(codes, codes_file, required=False)
    chosen = [bool(batch), bool(expiry_from or expiry_to), bool(keys)]
    if sum(chosen) != 1:
        raise click.UsageError("name one of: --batch, --expiry-from/--expiry-to, or codes")
    if (expiry_from or expiry_to) and not (_YYMMDD.fullmatch(expiry_from) and _YYMMDD.fullmatch(expiry_to)):
        raise click.BadParameter("both ends of the range, as YYMMDD", param_hint="--expiry-from/--expiry-to")
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    outcome = session.submit(
        ledger.DocType.RECALL, gtin=check_gtin(gtin), batch=batch, expiry_from=expiry_from,
        expiry_to=expiry_to, codes=keys, reason=reason,
    )
    report(outcome, as_json)


@recall.command("release")
@click.argument("recall_id", metavar="ID")
@click.option("--note", default="", help="Why the goods are free again, for the record.")
@_submitting
def release(recall_id: str, note: str, node: str, key: Path, genesis: Path | None, wait: bool, final: bool,
            timeout: float, as_json: bool) -> None:
    """End a recall (its filer, or the regulator of the producer's state)."""
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    outcome = session.submit(ledger.DocType.RELEASE_RECALL, recall=_id(recall_id, "a recall"), note=note)
    report(outcome, as_json)


@recall.command("list")
@click.option("--status", type=click.Choice(["active", "released", "all"]), default="all", show_default=True)
@click.option("--after", default=None, metavar="ID", help="Start after this recall id (a previous `next`).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@node_option
@key_option(required=True)
@json_option
def list_recalls(status: str, after: str | None, limit: int, node: str, genesis: Path | None, key: Path,
                 as_json: bool) -> None:
    """Recalls by id; prints the cursor of the next page on stderr."""
    page = make_client(node, key, genesis).recalls_page(status, after, limit)
    if as_json:
        print_json(page)
        return
    for item in page.get("recalls", []):
        what = item.get("batch") or (f"{item.get('expiry_from')}..{item.get('expiry_to')}"
                                     if item.get("expiry_from") else f"{item.get('listed_codes')} code(s)")
        click.echo(f"{item['id']}  {item['status']:<8} {item['gtin']}  {item['selector']} {what}  "
                   f"{item.get('reason', '')}")
    if page.get("next"):
        click.echo(f"more after {page['next']} (--after {page['next']})", err=True)


@recall.command("show")
@click.argument("recall_id", metavar="ID")
@node_option
@key_option(required=True)
@json_option
def show(recall_id: str, node: str, genesis: Path | None, key: Path, as_json: bool) -> None:
    """A recall and, per member state you oversee, the holders of what it matches."""
    view = make_client(node, key, genesis).recall(_id(recall_id, "a recall").hex())
    if as_json:
        print_json(view)
        return
    order = ("id", "status", "gtin", "selector", "batch", "expiry_from", "expiry_to", "reason", "filer",
             "producer", "state", "height", "codes", "out_of_circulation", "held_by_you")
    click.echo("\n".join(kv_lines([(k.replace("_", " "), view.get(k)) for k in order if view.get(k) not in
                                   (None, "")])))
    for state, per in view.get("states", {}).items():
        click.echo(f"{state}: {per.get('codes')} code(s)")
        for holder in per.get("holders", []):
            click.echo(f"  {holder['participant']}  {holder['codes']}")


@recall.command("epcis")
@click.argument("recall_id", metavar="ID")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the document here instead of standard output.")
@node_option
@key_option(required=True)
@json_option
def epcis(recall_id: str, output: Path | None, node: str, genesis: Path | None, key: Path,
          as_json: bool) -> None:
    """The recall (and its release, if any) as an EPCIS 2.0 JSON-LD document."""
    import json
    import time

    from . import epcis as mapping

    client = make_client(node, key, genesis)
    rid = _id(recall_id, "a recall").hex()
    view = client.recall(rid)
    recalled = {k: view.get(k, "") for k in ("gtin", "batch", "expiry_from", "expiry_to", "reason")}
    events = [_ledger_event(client, rid, "recall", recalled)]
    if view.get("release_document"):
        events.append(_ledger_event(client, view["release_document"], "release_recall",
                                    {**recalled, "recall": rid}))
    try:
        document = mapping.recall_epcis_document(rid, events, int(time.time() * 1000))
    except mapping.EpcisError as exc:
        raise click.ClickException(str(exc)) from exc
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")


def _ledger_event(client: Any, doc_id: str, kind: str, fields: dict[str, Any]) -> Any:
    from . import epcis as mapping

    status = client.document(doc_id)
    signed = status.get("document") or {}
    body = signed.get("document", {})
    height = status.get("height")
    if height is None:
        raise click.ClickException(f"document {doc_id} is not on the chain yet")
    (header,) = client.headers(height, height)
    if kind == "recall":
        fields = {**fields, "codes": body.get("codes", [])}
    signer = body.get("signer", "")
    state = (client.participant(signer) or {}).get("state") if signer else None
    return mapping.LedgerEvent(doc_id, kind, height, int(status.get("position") or 0), int(header["time_ms"]),
                               signer, state, fields)


@click.group("import")
def customs_import() -> None:
    """Goods from outside the union: the customs import and its confirmation."""


@customs_import.command("declare")
@click.option("--declaration", required=True, help="The customs declaration number.")
@click.option("--country", required=True, metavar="XX", help="Country of origin (ISO 3166 alpha-2).")
@click.option("--attribute", "attributes", multiple=True, metavar="AI=VALUE",
              help="An attribute of every unit (expiry 17=YYMMDD, batch 10=...); repeatable.")
@codes_input()
@_submitting
def declare(declaration: str, country: str, attributes: tuple[str, ...], codes: tuple[str, ...],
            codes_file: IO[bytes] | None, node: str, key: Path, genesis: Path | None, wait: bool,
            final: bool, timeout: float, as_json: bool) -> None:
    """Declare imported goods under codes emitted to you (an importer); print the import id.
    They stay out of circulation until your regulator confirms the declaration."""
    pairs = []
    for item in attributes:
        ai, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not AI=VALUE", param_hint="--attribute")
        pairs.append([ai, value])
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    outcome = session.submit(
        ledger.DocType.IMPORT, declaration=declaration, country=country.upper(),
        codes=gather_codes(codes, codes_file), attributes=sorted(pairs),
    )
    report(outcome, as_json)


@customs_import.command("confirm")
@click.argument("import_id", metavar="ID")
@_submitting
def confirm(import_id: str, node: str, key: Path, genesis: Path | None, wait: bool, final: bool,
            timeout: float, as_json: bool) -> None:
    """Confirm an import's declaration (the regulator of the importer's state): its goods
    enter circulation."""
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    fields: dict[str, Any] = {"import": _id(import_id, "an import")}
    report(session.submit(ledger.DocType.CONFIRM_IMPORT, **fields), as_json)


@customs_import.command("show")
@click.argument("import_id", metavar="ID")
@node_option
@key_option(required=True)
@json_option
def show_import(import_id: str, node: str, genesis: Path | None, key: Path, as_json: bool) -> None:
    """A customs import and whether it is confirmed."""
    view = make_client(node, key, genesis).customs_import(_id(import_id, "an import").hex())
    if as_json:
        print_json(view)
        return
    click.echo("\n".join(kv_lines([(k.replace("_", " "), v) for k, v in view.items() if k != "products"])))
    for product in view.get("products", []):
        click.echo(f"  {product['gtin']}  {product['units']}")


@click.command()
@click.option("--state", required=True, metavar="XX", help="The member state whose records to list.")
@click.option("--direction", type=click.Choice(["export", "import"]), required=True)
@click.option("--since", type=click.IntRange(0), default=0, help="From this block height.")
@click.option("--until", type=click.IntRange(0), default=None, help="Up to this block height.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@node_option
@key_option(required=True)
@json_option
def trade(state: str, direction: str, since: int, until: int | None, limit: int, node: str,
          genesis: Path | None, key: Path, as_json: bool) -> None:
    """A member state's export or import records (its regulator, entitled auditors):
    accepted shipments between member states and confirmed-or-pending customs imports."""
    page = make_client(node, key, genesis).trade(_state(state, "--state"), direction, since, until, limit)
    if as_json:
        print_json(page)
        return
    records = page.get("records", [])
    if not records:
        click.echo(f"no {direction} records of {page.get('state')} since block {since}", err=True)
    for record in records:
        units = sum(p["units"] for p in record.get("products", []))
        exporter, importer = record.get("exporter", {}), record.get("importer", {})
        click.echo(f"block {record.get('height')}  {record.get('kind'):<7} "
                   f"{exporter.get('state')} {exporter.get('id') or '-'}{_tax_id_text(exporter)} -> "
                   f"{importer.get('state')} {importer.get('id')}{_tax_id_text(importer)}  {units} unit(s)  "
                   f"{record.get('document')}")


def _tax_id_text(party: dict[str, Any]) -> str:
    """The party's tax id (ledger/_tax_ids.py), where its registration gave one."""
    return f" (tax id {party['tax_id']})" if party.get("tax_id") else ""

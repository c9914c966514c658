"""`tamga code`: every document about codes, and reading a code's state and history."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

import ledger
from node.client import NodeError

from ._details import details_options, take_details
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
    stdin_bytes,
    wait_mode,
    wait_options,
)
from .actions import Outcome, Session, check_hash
from .documents import describe_code, parse_one, parse_sscc, split_lines


@click.group()
def code() -> None:
    """Marking codes: issue, introduce, pack, ship, accept, sell, block; read and check."""


def submitting(f: Callable[..., Any], final_default: bool = False) -> Callable[..., Any]:
    """The options of every command that files a document."""
    f = wait_options(json_option(f), final_default)
    for decorate in (genesis_option(), key_option(required=True), node_option):
        f = decorate(f)
    return f


def submitting_final(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a command a business acts on at once, outside the ledger: it waits
    for finality by default (--no-final to wait for the commit only).

    Which: ship (the goods leave the warehouse against it), accept (the receiver takes
    ownership, and pays, against it), reject (the goods go back) and retire (a sale,
    an export or a destruction cannot be undone in the world). For these, a block that
    a hostile leader could still replace is not enough; finality costs one gossip round
    of attestations more. Steps inside one business (emit, introduce, aggregate, ...)
    wait for the commit only, as before."""
    return submitting(f, final_default=True)


def _session(params: dict[str, Any]) -> Session:
    wait = wait_mode(params["wait"], params["final"])
    return make_session(params["node"], params["key"], params["genesis"], wait, params["timeout"])


# Reading codes.


@code.command("parse")
@click.argument("raw", metavar="RAW")
@click.option("--group", default=None, help="Also check the layouts of this product group (needs --genesis).")
@genesis_option(help="Genesis file whose product-group table --group names.")
@json_option
def parse(raw: str, group: str | None, genesis: Path | None, as_json: bool) -> None:
    """What the ledger understands a scanned code to be, or why it refuses it.

    RAW is the code as scanned (GS1 element string with GS separators, ]d2 prefix,
    (01)...(21)... or a Digital Link URI); '-' reads the first line of standard input,
    keeping GS bytes. With --group, an AI the group does not use, a serial it does not
    print and a dropped GS are refused as the group's rules say.
    """
    layouts = _group_layouts(group, genesis) if group else None
    data = os.fsencode(raw)
    if raw == "-":
        lines = split_lines(stdin_bytes(), "standard input")
        if not lines:
            raise click.UsageError("standard input holds no code")
        data = lines[0].raw
    try:
        if layouts is not None:
            ledger.read_code(data, layouts, str(group))
        info: dict[str, Any] = {"input": data.decode("latin-1"), "ok": True, **describe_code(data)}
    except ledger.CodeError as exc:
        info = {"input": data.decode("latin-1"), "ok": False, "reason": exc.reason, "message": exc.message}
    if as_json:
        print_json(info)
    elif info["ok"]:
        order = ("kind", "layout", "key", "gtin", "serial", "sscc", "element_string", "digital_link")
        rows = [(k.replace("_", " "), info[k]) for k in order if k in info]
        rows += [(name.replace("_", " "), value) for name, value in info.get("attributes", {}).items()]
        click.echo("\n".join(kv_lines(rows)))
    if not info["ok"]:
        raise click.ClickException(f"refused ({info['reason']}): {info['message']}")


def _group_layouts(group: str, genesis: Path | None) -> tuple[ledger.Layout, ...]:
    if genesis is None:
        raise click.UsageError("--group reads the product-group table of a genesis file: give --genesis FILE")
    found = ledger.Genesis.load(genesis).product_group(group)
    if found is None:
        raise click.BadParameter(f"genesis {genesis} names no product group {group!r}", param_hint="--group")
    return found.layouts


@code.command("check")
@click.argument("raw", metavar="CODE")
@node_option
@json_option
def check(raw: str, node: str, genesis: Path | None, as_json: bool) -> None:
    """The public check anyone may make: is the code genuine, what product, what status."""
    key = parse_one(os.fsencode(raw))
    try:
        info = make_client(node, None, genesis).check(key)
    except NodeError as exc:
        if exc.status != 404:
            raise
        if as_json:
            print_json({"code": key, "status": "unknown"})
        raise click.ClickException(
            f"{key} is unknown: no member state issued it (possibly counterfeit)"
        ) from None
    if as_json:
        print_json(info)
        return
    product = f"GTIN {info['gtin']}" if info.get("gtin") else f"SSCC {info.get('sscc')}"
    blocked = " (suspended by a regulator)" if info.get("suspended") else ""
    click.echo(f"{info.get('code', key)}: {product}, {info.get('status')}{blocked}")


@code.command("show")
@click.argument("raw", metavar="CODE")
@node_option
@key_option(required=False)
@json_option
def show(raw: str, node: str, genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """A code's state: status, owner, aggregate, transit, suspension."""
    info = make_client(node, key, genesis).code(parse_one(os.fsencode(raw)))
    if as_json:
        print_json(info)
        return
    order = (
        "code", "kind", "gtin", "serial", "sscc", "status", "retire_reason", "owner", "owner_state",
        "aggregate", "outermost_aggregate", "children", "in_transit", "suspended", "suspended_inside",
    )
    click.echo("\n".join(kv_lines([(k.replace("_", " "), info[k]) for k in order if k in info])))


@code.command("history")
@click.argument("raw", metavar="CODE")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many entries.")
@node_option
@key_option(required=False)
@json_option
def history(raw: str, limit: int | None, node: str, genesis: Path | None, key: Path | None,
            as_json: bool) -> None:
    """Every document that touched a code, directly or by moving an aggregate it was in."""
    key_text = parse_one(os.fsencode(raw))
    entries = make_client(node, key, genesis).history(key_text, limit)
    if as_json:
        print_json({"code": key_text, "entries": entries})
        return
    click.echo(f"{'BLOCK.POS':<10} {'FINAL':<5} {'DOCUMENT':<16} ID")
    for e in entries:
        at = f"{e['height']}.{e['position']}"
        final = "yes" if e.get("final") else "no"
        click.echo(f"{at:<10} {final:<5} {e['type']:<16} {e['document_id']}{_history_note(e)}")


def _history_note(entry: dict[str, Any]) -> str:
    if entry.get("via"):
        return f"  with {entry['via']}"
    if entry.get("sscc") and entry["type"] == "aggregate":
        return f"  into {entry['sscc']}"
    if entry.get("sscc") and entry["type"] == "disaggregate":
        return f"  out of {entry['sscc']}"
    return ""


# The regulator's documents.


@code.command("emit")
@click.option("--gtin", required=True, help="Product GTIN (8, 12, 13 or 14 digits).")
@click.option("--count", required=True, type=click.IntRange(1, ledger.CODES_PER_DOCUMENT_MAX),
              help="How many codes to issue.")
@click.option("--to", "owner", metavar="ID", required=True,
              help="Participant id of the producer or importer.")
@submitting
def emit(gtin: str, count: int, owner: str, as_json: bool, **params: Any) -> None:
    """Issue COUNT new codes for a GTIN to a producer or importer (regulator only).

    Serials are drawn at random here; the issued codes are printed one per line.
    """
    outcome = _session(params).emit(gtin, count, owner)
    report(outcome, as_json, outcome.extra["codes"])


@code.command("suspend")
@codes_input()
@click.option("--note", default="", help="Why, for the record.")
@submitting
def suspend(codes: tuple[str, ...], codes_file: IO[bytes] | None, note: str, as_json: bool,
            **params: Any) -> None:
    """Block codes held in your state (regulator only)."""
    keys = gather_codes(codes, codes_file)
    _run(params, as_json, lambda s: s.suspend(keys, note))


@code.command("release")
@codes_input()
@submitting
def release(codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool, **params: Any) -> None:
    """Unblock suspended codes (regulator only)."""
    keys = gather_codes(codes, codes_file)
    _run(params, as_json, lambda s: s.release(keys))


# Businesses' documents.


@code.command("introduce")
@codes_input()
@click.option("--attr", "attrs", multiple=True, metavar="AI=VALUE",
              help="An attribute of every code, as its GS1 AI: 17=270630 (expiry), 10=LOT (batch), "
                   "8005=015000 (price, kopecks), 11, 3103, 240, 7003; repeat for several.")
@submitting
def introduce(codes: tuple[str, ...], codes_file: IO[bytes] | None, attrs: tuple[str, ...], as_json: bool,
              **params: Any) -> None:
    """Put emitted codes into circulation (producer or importer), with the attributes
    their product group requires (expiry for dairy, the price for tobacco)."""
    keys = gather_codes(codes, codes_file)
    attributes = _attributes(attrs)
    _run(params, as_json, lambda s: s.introduce(keys, attributes))


def _attributes(attrs: tuple[str, ...]) -> list[list[str]]:
    """AI=VALUE options as the document's sorted [AI, value] pairs, each checked."""
    pairs: dict[str, str] = {}
    for item in attrs:
        ai, sep, value = item.partition("=")
        if not sep or ai in pairs:
            raise click.BadParameter(f"{item!r}: give each attribute once, as AI=VALUE", param_hint="--attr")
        try:
            ledger.check_attribute(ai, value)
        except ledger.CodeError as exc:
            raise click.BadParameter(exc.message, param_hint="--attr") from None
        pairs[ai] = value
    return [[ai, pairs[ai]] for ai in sorted(pairs)]


@code.command("aggregate")
@click.option("--sscc", required=True, help="The SSCC of the box or pallet (any scanned form).")
@codes_input()
@submitting
def aggregate(sscc: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
              **params: Any) -> None:
    """Pack codes (units or smaller aggregates) into an SSCC."""
    sscc_key = parse_sscc(os.fsencode(sscc))
    keys = gather_codes(codes, codes_file)
    _run(params, as_json, lambda s: s.aggregate(sscc_key, keys), [sscc_key])


@code.command("disaggregate")
@click.argument("sscc")
@submitting
def disaggregate(sscc: str, as_json: bool, **params: Any) -> None:
    """Unpack an SSCC: its contents become loose codes of its owner."""
    sscc_key = parse_sscc(os.fsencode(sscc))
    _run(params, as_json, lambda s: s.disaggregate(sscc_key), [sscc_key])


@code.command("ship")
@click.option("--to", "receiver", metavar="ID", required=True, help="Participant id of the receiver.")
@codes_input()
@details_options(commercial=True)
@submitting_final
def ship(receiver: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
         **params: Any) -> None:
    """Ship codes or aggregates to another participant, also across a border.

    Prints the shipment id, which the receiver accepts or rejects. Waits until the
    shipment is final (--no-final: only committed), since goods leave against it. The
    business document (--doc-number, --doc-date, --price, --vat) is read in full by the
    two parties only.
    """
    keys = gather_codes(codes, codes_file)
    details = take_details(params)
    _run(params, as_json, lambda s: s.ship(receiver, keys, details))


@code.command("cancel")
@click.argument("shipment")
@submitting
def cancel(shipment: str, as_json: bool, **params: Any) -> None:
    """Cancel your shipment before the receiver answers."""
    shipment_id = check_hash(shipment)
    _run(params, as_json, lambda s: s.cancel(shipment_id))


@code.command("accept")
@click.argument("shipment")
@codes_input(required=False)
@details_options()
@submitting_final
def accept(shipment: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
           **params: Any) -> None:
    """Accept a shipment sent to you: all of it, or only the CODES given. To keep only some
    codes of a pallet, give the pallet and those codes: the rest go back to the shipper.
    This works at any depth: give the pallet, the box and the packs of the box to keep
    (each code's aggregate is listed too); a box listed without any of its codes is kept whole.

    Waits until the acceptance is final (--no-final: only committed): ownership passes.
    """
    shipment_id = check_hash(shipment)
    keys = gather_codes(codes, codes_file, required=False)
    details = take_details(params)
    _run(params, as_json, lambda s: s.accept(shipment_id, keys, details))


@code.command("reject")
@click.argument("shipment")
@submitting_final
def reject(shipment: str, as_json: bool, **params: Any) -> None:
    """Refuse a shipment sent to you; the goods stay the shipper's.

    Waits until the refusal is final (--no-final: only committed): the goods go back.
    """
    shipment_id = check_hash(shipment)
    _run(params, as_json, lambda s: s.reject(shipment_id))


@code.command("retire")
@click.option("--reason", required=True, type=click.Choice(ledger.WITHDRAWAL_REASONS),
              help="retail_sale (retailers), remote_sale, export_outside_union, destroyed, lost, expired, "
                   "donation, confiscation, own_use, liquidation, samples, production_use; all but the "
                   "sales need the supporting document (--doc-type, --doc-number, --doc-date).")
@codes_input()
@details_options()
@submitting_final
def retire(reason: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
           **params: Any) -> None:
    """Take codes out of circulation: a retail sale, an export out of the Union, destruction...

    Waits until the document is final (--no-final: only committed): none of these can be
    undone in the world.
    """
    keys = gather_codes(codes, codes_file)
    details = take_details(params)
    _run(params, as_json, lambda s: s.retire(reason, keys, details))


@code.command("return")
@codes_input()
@submitting
def return_(codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool, **params: Any) -> None:
    """Take back goods sold at retail: they are in circulation again (retailers)."""
    keys = gather_codes(codes, codes_file)
    _run(params, as_json, lambda s: s.return_(keys))


def _run(params: dict[str, Any], as_json: bool, act: Callable[[Session], Outcome],
         payload: list[str] | None = None) -> None:
    outcome = act(_session(params))
    report(outcome, as_json, payload or [outcome.id])

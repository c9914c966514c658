"""`tamga code apply|write-off|remark|reaggregate|withdraw`: the lifecycle of real goods
(issue 13), and the business details (dates, supporting and commercial documents) that
`ship`, `accept` and `retire` take as well.

Dates are given as ISO dates or times (2026-11-30, 2026-11-30T09:15:00+03:00; a date
alone is midnight UTC) and filed as milliseconds since the epoch; the ledger refuses a
date after the block time (`future_date`). Amounts are in minor units (kopecks, tiyn).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click

import ledger

from ._cmd_code import _attributes, _run, code, submitting
from ._options import codes_input, gather_codes
from .documents import parse_one, parse_sscc

F = TypeVar("F", bound=Callable[..., Any])


def _date_ms(value: str | None, hint: str) -> int | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time", param_hint=hint) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def details_options(commercial: bool = False) -> Callable[[F], F]:
    """--doc-date, --doc-number, --doc-type, --transfer-date (and --price, --vat on a shipment)."""
    def decorate(f: F) -> F:
        options = [
            click.option("--doc-date", help="Date of the business or supporting document (ISO)."),
            click.option("--doc-number", help="Its number (UPD, act, court decision...)."),
            click.option("--doc-type", help="Its type (destruction_act, gift_deed, court_decision...)."),
            click.option("--transfer-date", help="When the goods changed hands (ISO)."),
        ]
        if commercial:
            options += [
                click.option("--price", type=click.IntRange(0), help="Price, minor units; parties only."),
                click.option("--vat", type=click.IntRange(0), help="VAT, minor units; parties only."),
            ]
        for option in options:
            f = option(f)
        return f

    return decorate


def take_details(params: dict[str, Any]) -> list[list[Any]]:
    """Pop the detail options from a command's parameters: the document's sorted pairs."""
    found: dict[str, Any] = {
        "doc_date": _date_ms(params.pop("doc_date", None), "--doc-date"),
        "transfer_date": _date_ms(params.pop("transfer_date", None), "--transfer-date"),
        "doc_number": params.pop("doc_number", None),
        "doc_type": params.pop("doc_type", None),
        "price": params.pop("price", None),
        "vat": params.pop("vat", None),
    }
    return [[name, found[name]] for name in sorted(found) if found[name] is not None]


@code.command("apply")
@codes_input()
@click.option("--attr", "attrs", multiple=True, metavar="AI=VALUE",
              help="An attribute printed beside every code (17=270630 expiry, 10=LOT batch, 8005=price).")
@details_options()
@submitting
def apply(codes: tuple[str, ...], codes_file: IO[bytes] | None, attrs: tuple[str, ...], as_json: bool,
          **params: Any) -> None:
    """File a print report: emitted codes are now printed on goods (status applied, as the
    national systems call it), with the attributes printed beside them. `introduce`
    puts them into circulation later (producer or importer)."""
    keys = gather_codes(codes, codes_file)
    attributes = _attributes(attrs)
    details = take_details(params)
    _run(params, as_json, lambda s: s.submit(ledger.DocType.APPLY, codes=keys, attributes=attributes,
                                             details=details))


@code.command("write-off")
@click.option("--reason", required=True, type=click.Choice(ledger.WRITE_OFF_REASONS),
              help="spoiled or defective labels, lost, destroyed, not_used.")
@codes_input()
@details_options()
@submitting
def write_off(reason: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
              **params: Any) -> None:
    """Write off emitted or applied codes that never entered circulation (producer or importer)."""
    keys = gather_codes(codes, codes_file)
    details = take_details(params)
    _run(params, as_json, lambda s: s.submit(ledger.DocType.WRITE_OFF, reason=reason, codes=keys,
                                             details=details))


@code.command("remark")
@click.argument("old")
@click.argument("new")
@details_options()
@submitting
def remark(old: str, new: str, as_json: bool, **params: Any) -> None:
    """Replace the damaged code OLD on goods in circulation by NEW (emitted or applied to
    you): OLD is written off as remarked, and each code names the other."""
    old_key, new_key = parse_one(os.fsencode(old)), parse_one(os.fsencode(new))
    details = take_details(params)
    doc = ledger.DocType.REMARK
    _run(params, as_json, lambda s: s.submit(doc, old=old_key, new=new_key, details=details),
         [old_key, new_key])


@code.command("reaggregate")
@click.option("--sscc", required=True, help="The SSCC of the box or pallet.")
@click.option("--add", "adds", multiple=True, metavar="CODE", help="A code to put in; repeat for several.")
@click.option("--remove", "removes", multiple=True, metavar="CODE", help="A code to take out; repeat.")
@details_options()
@submitting
def reaggregate(
    sscc: str, adds: tuple[str, ...], removes: tuple[str, ...], as_json: bool, **params: Any
) -> None:
    """Put codes into an aggregate or take codes out of it without unpacking it."""
    if not adds and not removes:
        raise click.UsageError("give --add or --remove")
    sscc_key = parse_sscc(os.fsencode(sscc))
    add = [parse_one(os.fsencode(c)) for c in adds]
    remove = [parse_one(os.fsencode(c)) for c in removes]
    details = take_details(params)
    doc = ledger.DocType.REAGGREGATE
    _run(params, as_json, lambda s: s.submit(doc, sscc=sscc_key, add=add, remove=remove, details=details),
         [sscc_key])


@code.command("withdraw")
@click.option("--reason", required=True, type=click.Choice(ledger.WITHDRAWAL_REASONS),
              help="Any withdrawal reason of the national systems; all but retail_sale and "
                   "remote_sale need --doc-type, --doc-number and --doc-date.")
@codes_input()
@details_options()
@submitting
def withdraw(reason: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
             **params: Any) -> None:
    """Take codes out of circulation for any reason, with its supporting document."""
    keys = gather_codes(codes, codes_file)
    details = take_details(params)
    doc = ledger.DocType.RETIRE
    _run(params, as_json, lambda s: s.submit(doc, reason=reason, codes=keys, details=details))


@code.command("ship-invoiced")
@click.option("--to", "receiver", metavar="ID", required=True, help="Participant id of the receiver.")
@codes_input()
@details_options(commercial=True)
@submitting
def ship_invoiced(receiver: str, codes: tuple[str, ...], codes_file: IO[bytes] | None, as_json: bool,
                  **params: Any) -> None:
    """Ship with the business document: its number and date, the transfer date, price and
    VAT (only the shipper and the receiver read the number, price and VAT)."""
    keys = gather_codes(codes, codes_file)
    details = take_details(params)
    doc = ledger.DocType.SHIP
    _run(params, as_json, lambda s: s.submit(doc, receiver=receiver, codes=keys, details=details))

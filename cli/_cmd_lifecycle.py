"""`tamga code apply|write-off|remark|reaggregate`: the lifecycle of real goods (issue 13).
Each takes the business details of cli/_details.py, as `ship`, `accept` and `retire` do."""

from __future__ import annotations

import os
from typing import IO, Any

import click

import ledger

from ._cmd_code import _attributes, _run, code, submitting
from ._details import details_options, take_details
from ._options import codes_input, gather_codes
from .documents import parse_one, parse_sscc


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

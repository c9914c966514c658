"""Business details on the command line (issue 13): the optional last field `details` of
the business documents. Dates are ISO dates or times (2026-11-30, 2026-11-30T09:15:00+03:00;
a date alone is midnight UTC), filed as milliseconds since the epoch; the ledger refuses
a date after the block time (`future_date`). Amounts are in minor units (kopecks, tiyn).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click

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

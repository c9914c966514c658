"""Tax ids of participants, and the trade records that name the parties by them.

Each member state identifies a business by its own tax number, which the Union's
exchange of export and import data uses too:

| state | name | shape here |
|---|---|---|
| RU | INN (ИНН) | 10 digits (an organisation) or 12 (an individual entrepreneur) |
| KZ | BIN (БИН) / IIN | 12 digits |
| BY | UNP (УНП) | 9 digits |
| AM | TIN (ՀՎՀՀ) | 8 digits |
| KG | INN (ИНН) | 14 digits |

Only the shape is checked (digits, length per state); the check digits some of these
carry are left to the registering regulator, which checks the number against its tax
service as it registers the business, off the chain.

A business (producer, importer, wholesaler, retailer) registers with its tax id on a
chain with the product catalogue: the trade records of its cross-border sales and its
customs imports name it by that id, and a record without it is of no use to the states'
customs statistics. A regulator is named by genesis, and an auditor trades nothing, so
they may register without one (an auditor that gives one has it checked). A chain
without the catalogue (every chain from before issue 13) keeps registering businesses
without one, so its blocks replay to the same results.

A trade record's party is [participant id, name, state] as before, with the tax id
appended when the participant has one: a record of parties without tax ids keeps the
bytes it had.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import _recall as recall
from ._records import ParticipantRecord

# Digits per member state (see the table above).
TAX_ID_DIGITS: dict[str, tuple[int, ...]] = {
    "RU": (10, 12),
    "KZ": (12,),
    "BY": (9,),
    "AM": (8,),
    "KG": (14,),
}
TAX_ID_NAMES = {"RU": "INN", "KZ": "BIN", "BY": "UNP", "AM": "TIN", "KG": "INN"}
# Roles that must give a tax id on a chain with the catalogue.
TAXPAYING_ROLES = frozenset(("producer", "importer", "wholesaler", "retailer"))


def tax_id_problem(state: str, tax_id: str, roles: Sequence[str], required: bool) -> str | None:
    """Why a registration's tax id is refused, or None when it is right. `required`: the
    chain asks businesses for one (a chain with the catalogue)."""
    if not tax_id:
        if required and not TAXPAYING_ROLES.isdisjoint(roles):
            name = TAX_ID_NAMES.get(state, "tax id")
            return f"a business registers with its tax id (the {name} of {state})"
        return None
    lengths = TAX_ID_DIGITS.get(state)
    if lengths is None:  # genesis names only member states; any digits for another
        return None
    if len(tax_id) not in lengths or not tax_id.isdigit():
        digits = " or ".join(map(str, lengths))
        return f"a tax id ({TAX_ID_NAMES[state]}) of {state} is {digits} digits, not {tax_id!r}"
    return None


def party(pid: str, record: ParticipantRecord, state: str) -> list[str]:
    """A trade record's party: [id, name, state] and the tax id when there is one."""
    return [pid, record.name, state, *([record.tax_id] if record.tax_id else [])]


def trade(db: Any, state: str, direction: str, since: int = 0, until: int | None = None,
          limit: int = 100) -> list[dict[str, Any]]:
    """A member state's export or import records, in chain order, with tax ids."""
    limit = max(1, min(limit, recall.PAGE_MAX))
    prefix = recall.trade_prefix(state, direction)
    stop = prefix + (until + 1).to_bytes(8, "big") if until is not None else prefix + b"\xff" * 13
    out: list[dict[str, Any]] = []
    for key, raw in db.iterator(start=prefix + since.to_bytes(8, "big"), stop=stop):
        view = recall.trade_json(key, raw)
        view["state"] = state
        view["direction"] = direction
        out.append(view)
        if len(out) >= limit:
            break
    return out


def kept_unit_counts(children: Callable[[str], Sequence[str]], items: Sequence[str],
                     chosen: Sequence[str]) -> list[list[Any]]:
    """Units per GTIN an accept keeps, sorted by GTIN: the items it lists (all when it lists
    none) and, inside an aggregate, the children it lists (all when it lists none of them),
    at any depth, as the state machine leaves them (`children`: as the aggregations before
    the accept packed them)."""
    listed = set(chosen)
    stack = [(key, 0) for key in (items if not chosen else [k for k in items if k in listed])]
    counts: dict[str, int] = {}
    while stack:
        key, depth = stack.pop()
        gtin = recall.gtin_of(key)
        if gtin:
            counts[gtin] = counts.get(gtin, 0) + 1
        elif depth <= recall.AGGREGATION_LEVELS_MAX:
            inside = list(children(key))
            kept = [child for child in inside if child in listed]
            stack.extend((child, depth + 1) for child in (kept or inside))
    return [[g, counts[g]] for g in sorted(counts)]


def derive_trade_record(ship: Any, accept: Any, exporter: Sequence[str], importer: Sequence[str],
                        children: Callable[[str], Sequence[str]]) -> bytes:
    """The trade record an accept writes, from the two signed documents alone (see
    docs/RECALL.md, "How an auditor proves a record"): `exporter` and `importer` are
    (name, state) or (name, state, tax id) as their registrations say; `children` the
    contents of the aggregates shipped as the aggregate documents before the accept say.
    A per-child accept (issue 13) counts what it kept, at any depth."""
    ship_doc, accept_doc = ship.document, accept.document
    receiver, items = ship_doc.payload[:2]
    chosen = accept_doc.payload[1]
    return recall.trade_record(
        "union", [ship_doc.signer, *_tail(exporter)], [receiver, *_tail(importer)],
        kept_unit_counts(children, list(items), list(chosen)), accept.id, ship.id,
    )


def _tail(facts: Sequence[str]) -> list[str]:
    name, state, *rest = facts
    return [name, state, *([rest[0]] if rest and rest[0] else [])]


def customs_party(country: str) -> list[str]:
    """The exporter of a customs import: a country outside the union, with no union tax id."""
    return ["", "", country]


__all__ = [
    "TAX_ID_DIGITS",
    "TAXPAYING_ROLES",
    "customs_party",
    "derive_trade_record",
    "kept_unit_counts",
    "party",
    "tax_id_problem",
    "trade",
]

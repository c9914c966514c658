"""The product catalogue: product groups (data in genesis) and registered products.

A product group says how its codes are printed (its `Layout`s), which attributes must
be known when its goods enter circulation (expiry for dairy, the maximum retail price
for tobacco), which withdrawal reasons and which documents it uses. The groups are
data in genesis, not branches in code: a new group, or a group that changes its
layout, is a new table, not a new release.

A product (a GTIN) is registered by the regulator of its producer's state
(`register_product`), naming its group, name, customs tariff (TN VED) code and its
producer or importer. The regulator signs rather than the business because the group
decides which rules the goods follow (a producer choosing its own group could pick
the laxest one) and the tariff code decides duties: both are what the regulator
vouches for, as it vouches for participants and emits codes. A business files its
request with its regulator off the chain, as it does in the national systems, where
product cards are moderated before any code is ordered.

A chain whose genesis names no product groups (every chain from before the catalogue)
keeps the rules it was built under: `emit` needs no registered product and
`introduce` no attribute, so its blocks replay to the same hashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._codes import ATTRIBUTE_AIS, CodeError, Layout, check_attribute
from ._encoding import pack_trusted, unpack_trusted
from ._errors import DecodeError

P_PRODUCT = b"t"  # GTIN -> ProductRecord ("trade item", as GS1 calls what a GTIN names)
P_ATTRIBUTES = b"q"  # code key -> [[AI, value], ...] given when the code entered circulation ("a" is taken)

# A genesis table of a few dozen groups covers every group the Union marks today; the
# bounds keep a hostile or mistaken genesis file from costing unbounded memory.
GROUPS_MAX = 64
LAYOUTS_PER_GROUP_MAX = 8
NAMES_PER_GROUP_MAX = 32
_NAME_RE = re.compile("[a-z][a-z0-9_]{0,31}")
# TN VED (the Union's customs tariff nomenclature): 4 digits for a heading, up to 10.
TNVED_RE = re.compile("[0-9]{4}(?:[0-9]{2}){0,3}")


def _names(what: str, values: Any) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or len(values) > NAMES_PER_GROUP_MAX:
        raise DecodeError(f"{what} must be a list of at most {NAMES_PER_GROUP_MAX} names")
    if any(not isinstance(v, str) or not _NAME_RE.fullmatch(v) for v in values):
        raise DecodeError(f"{what} must be lower-case names such as retail_sale")
    if list(values) != sorted(set(values)):
        raise DecodeError(f"{what} must be sorted and without repeats")
    return tuple(values)


def _optional_names(what: str, values: Any) -> tuple[str, ...] | None:
    return None if values is None else _names(what, values)


# The rule of a table from before `reasons_needing_document`: every withdrawal reason but
# the sales needs its supporting document.
LEGACY_REASONS_WITHOUT_DOCUMENT = frozenset(("retail_sale", "remote_sale"))


@dataclass(frozen=True, slots=True)
class ProductGroup:
    """One row of the group table in genesis."""

    name: str
    title: str
    layouts: tuple[Layout, ...]
    required: tuple[str, ...] = ()  # attribute AIs that `introduce` must give
    withdrawal_reasons: tuple[str, ...] = ()  # the `retire` reasons the group uses
    documents: tuple[str, ...] = ()  # the document types the group uses
    # The withdrawal reasons whose supporting document (type, number, date) the group's
    # rules require: data, so a state that starts asking for a deed changes the table,
    # not the code. None in a table written before the field (its genesis keeps its
    # hash): then every reason but the sales, whose fiscal receipt is the cash
    # register's, needs one, as the ledger required before the table said so.
    reasons_needing_document: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise DecodeError(f"product group name {self.name!r} must be a lower-case name")
        if not isinstance(self.title, str) or len(self.title) > 200:
            raise DecodeError(f"product group {self.name}: the title is text of at most 200 characters")
        if not 0 < len(self.layouts) <= LAYOUTS_PER_GROUP_MAX:
            raise DecodeError(f"product group {self.name} needs 1 to {LAYOUTS_PER_GROUP_MAX} layouts")
        if any(ai not in ATTRIBUTE_AIS for ai in self.required) or list(self.required) != sorted(
            set(self.required)
        ):
            among = ", ".join(ATTRIBUTE_AIS)
            raise DecodeError(f"product group {self.name}: required attributes are sorted AIs among {among}")
        _names(f"product group {self.name}: withdrawal_reasons", self.withdrawal_reasons)
        _names(f"product group {self.name}: documents", self.documents)
        if self.reasons_needing_document is not None:
            what = f"product group {self.name}: reasons_needing_document"
            _names(what, self.reasons_needing_document)
            if not set(self.reasons_needing_document) <= set(self.withdrawal_reasons):
                raise DecodeError(f"{what} must be among its withdrawal_reasons")

    def needs_document(self, reason: str) -> bool:
        """Whether a withdrawal for `reason` needs its supporting document."""
        if self.reasons_needing_document is None:
            return reason not in LEGACY_REASONS_WITHOUT_DOCUMENT
        return reason in self.reasons_needing_document

    @property
    def attribute_ais(self) -> frozenset[str]:
        """The attributes its goods may carry: those its layouts print and those it requires."""
        printed = {ai for layout in self.layouts for ai in layout.ais if ai in ATTRIBUTE_AIS}
        return frozenset(printed | set(self.required))

    @property
    def serial_lengths(self) -> tuple[int, ...]:
        return tuple(sorted({layout.serial_chars for layout in self.layouts}))

    def to_list(self) -> list[Any]:
        return [
            self.name,
            self.title,
            [layout.to_list() for layout in self.layouts],
            list(self.required),
            list(self.withdrawal_reasons),
            list(self.documents),
            # Only when the table names it, so that a genesis from before keeps its hash.
            *([list(self.reasons_needing_document)] if self.reasons_needing_document is not None else []),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "layouts": [layout.to_json() for layout in self.layouts],
            "required": list(self.required),
            "withdrawal_reasons": list(self.withdrawal_reasons),
            "documents": list(self.documents),
            **({"reasons_needing_document": list(self.reasons_needing_document)}
               if self.reasons_needing_document is not None else {}),
        }

    @classmethod
    def from_json(cls, obj: Any) -> ProductGroup:
        try:
            layouts = tuple(Layout.from_json(layout) for layout in obj["layouts"])
        except CodeError as exc:
            raise DecodeError(f"product group {obj.get('name')!r}: {exc.message}") from exc
        return cls(
            obj["name"],
            obj.get("title", ""),
            layouts,
            tuple(obj.get("required", ())),
            _names("withdrawal_reasons", obj.get("withdrawal_reasons", [])),
            _names("documents", obj.get("documents", [])),
            _optional_names("reasons_needing_document", obj.get("reasons_needing_document")),
        )

    @classmethod
    def from_list(cls, value: Any) -> ProductGroup:
        """A group from its canonical list form (as a governance proposal carries it),
        with every check; anything else raises DecodeError."""
        if not isinstance(value, list) or len(value) not in (6, 7):
            raise DecodeError("a product group is [name, title, layouts, required, withdrawal "
                              "reasons, documents, reasons needing a document]")
        name, title, layouts, required, reasons, documents, *rest = value
        if not isinstance(layouts, list) or not 0 < len(layouts) <= LAYOUTS_PER_GROUP_MAX:
            raise DecodeError(f"a product group has 1 to {LAYOUTS_PER_GROUP_MAX} layouts")
        parsed = []
        for layout in layouts:
            if (not isinstance(layout, list) or len(layout) != 3 or not isinstance(layout[0], str)
                    or not isinstance(layout[2], list) or not all(isinstance(ai, str) for ai in layout[2])):
                raise DecodeError("a layout is [form, serial characters, [AI, ...]]")
            try:
                parsed.append(Layout(layout[0], layout[1], tuple(layout[2])))
            except CodeError as exc:
                raise DecodeError(f"product group {name!r}: {exc.message}") from exc
        if not isinstance(required, list) or not all(isinstance(ai, str) for ai in required):
            raise DecodeError("required is a list of AIs")
        group = cls(name, title, tuple(parsed), tuple(required), _names("withdrawal_reasons", reasons),
                    _names("documents", documents),
                    _names("reasons_needing_document", rest[0]) if rest else None)
        if group.to_list() != value:
            raise DecodeError("the product group's encoding is not canonical")
        return group


def groups_from_json(values: Any) -> tuple[ProductGroup, ...]:
    if not isinstance(values, list) or len(values) > GROUPS_MAX:
        raise DecodeError(f"product_groups must be a list of at most {GROUPS_MAX} groups")
    groups = tuple(ProductGroup.from_json(v) for v in values)
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise DecodeError("genesis names a product group twice")
    return groups


@dataclass(frozen=True, slots=True)
class ProductRecord:
    gtin: str
    group: str
    name: str
    tnved: str
    producer: str
    state: str
    registered_height: int

    def pack(self) -> bytes:
        return pack_trusted(
            [self.gtin, self.group, self.name, self.tnved, self.producer, self.state, self.registered_height]
        )

    @classmethod
    def unpack(cls, data: bytes) -> ProductRecord:
        return cls(*unpack_trusted(data))

    def to_json(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin,
            "group": self.group,
            "name": self.name,
            "tnved": self.tnved,
            "producer": self.producer,
            "state": self.state,
            "registered_height": self.registered_height,
        }


def product_key(gtin: str) -> bytes:
    return P_PRODUCT + gtin.encode()


def attributes_key(code: str) -> bytes:
    return P_ATTRIBUTES + code.encode()


def attributes_problem(pairs: list[list[str]], group: ProductGroup | None) -> tuple[str, str] | None:
    """What is wrong with a document's attributes for a group: (kind, message), where kind
    is "bad" (a malformed value or an AI the group does not use) or "missing" (a required
    attribute not given); None when they are right. Without a group table only the values
    are checked."""
    for ai, value in pairs:
        try:
            check_attribute(ai, value)
        except CodeError as exc:
            return "bad", exc.message
        if group is not None and ai not in group.attribute_ais:
            return "bad", f"AI {ai} is not an attribute product group {group.name} uses"
    if group is not None:
        given = {ai for ai, _ in pairs}
        missing = [ai for ai in group.required if ai not in given]
        if missing:
            return "missing", (
                f"product group {group.name} needs attribute(s) {', '.join(missing)} "
                "when its goods enter circulation"
            )
    return None

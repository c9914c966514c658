"""The product-group table in force: genesis's, as governance documents last set it.

Genesis seeds the catalogue's group table (ledger/_catalogue.py). From then on a
Byzantine quorum of regulators changes it with a `governance` document
(ledger/_governance.py): `set_product_group` adds a group or replaces one (its layouts,
attributes, withdrawal reasons and which of them need a supporting document, its
documents); `retire_product_group` closes a group to new products and new codes.

The table is ledger state, one key, written whole by the document that changes it (a
few dozen groups of a few hundred bytes: a change is rare and costs one write), so the
change is in the state hash every member state attests and every node reads the same
table. Until a governance document writes it the key is absent and the table is
genesis's, so a chain whose table never changed keeps its state hashes.

A retired group stays in the table: products registered under it keep its rules, so
goods already made can still be moved, sold and withdrawn; it takes no new product and
no new codes. Deleting a group instead would leave registered products without rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ._catalogue import GROUPS_MAX, ProductGroup
from ._encoding import pack_trusted, unpack_trusted
from ._errors import DecodeError

# Within governance's prefix b"g" (ledger/_governance.py keys g + one letter: p, m, c, e,
# x); the table is what governance decides, beside the parameters and the members.
K_GROUP_TABLE = b"gt"

GROUP_ACTIVE = "active"
GROUP_RETIRED = "retired"


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class GroupTable:
    """The groups in force by name (retired ones included) and the names retired."""

    groups: Mapping[str, ProductGroup]
    retired: frozenset[str] = frozenset()

    def pack(self) -> bytes:
        status = self.status
        return pack_trusted([[status(name), group.to_list()] for name, group in self.groups.items()])

    def status(self, name: str) -> str:
        return GROUP_RETIRED if name in self.retired else GROUP_ACTIVE

    def to_json(self) -> list[dict[str, Any]]:
        """Each group as genesis JSON writes it, with its status and the reasons needing a
        supporting document spelled out (a table from before the field leaves them implied)."""
        return [
            {
                **group.to_json(),
                "reasons_needing_document": [r for r in group.withdrawal_reasons if group.needs_document(r)],
                "status": self.status(name),
            }
            for name, group in self.groups.items()
        ]

    def with_group(self, group: ProductGroup) -> GroupTable:
        """The table with `group` added, or put in place of the group of its name (active
        again if it was retired)."""
        groups = dict(self.groups)
        if group.name not in groups and len(groups) >= GROUPS_MAX:
            raise DecodeError(f"the table holds {GROUPS_MAX} groups already")
        groups[group.name] = group
        return GroupTable(groups, self.retired - {group.name})

    def without(self, name: str) -> GroupTable:
        """The table with the group `name` retired."""
        return GroupTable(self.groups, self.retired | {name})


def genesis_table(groups: tuple[ProductGroup, ...]) -> GroupTable:
    return GroupTable({g.name: g for g in groups})


# Decoding the table costs more than reading it, and it is read at every block; the
# stored bytes change only with a governance document, so the last few are kept.
_DECODED: dict[bytes, GroupTable] = {}
_DECODED_MAX = 8


def governed_groups(reader: Reader, groups: tuple[ProductGroup, ...]) -> GroupTable:
    """The group table in force in the state `reader` reads; `groups` is genesis's."""
    raw = reader.get(K_GROUP_TABLE)
    if raw is None:
        return genesis_table(groups)
    table = _DECODED.get(raw)
    if table is None:
        rows = unpack_trusted(raw)
        decoded = {}
        retired = set()
        for status, value in rows:
            group = ProductGroup.from_list(value)
            decoded[group.name] = group
            if status == GROUP_RETIRED:
                retired.add(group.name)
        table = GroupTable(decoded, frozenset(retired))
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[raw] = table
    return table


__all__ = ["GROUP_ACTIVE", "GROUP_RETIRED", "K_GROUP_TABLE", "GroupTable", "genesis_table", "governed_groups"]

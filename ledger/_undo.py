"""Undo data: what a store needs to take back a block that is not final yet.

After Bitcoin Core's undo files (rev*.dat): for every block applied above the final
height, the store keeps, in the block's own write batch, the previous value of every
key the block wrote (or that the key did not exist) and the head before the block.
Rolling back is then a pure fold of these records from the head down, written as one
batch. Once a block is final its undo record is pruned, so undo data is bounded by
the gap between the head and the final height.

A record is `[previous head as a list, [key, previous value or nil, ...]]` under
`P_UNDO + height`; the chain keys of the block itself (header, documents, results,
attestations, the undo record) are removed by their height prefix and are not listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._encoding import pack_trusted, unpack_trusted
from ._errors import LedgerError
from ._records import P_DOC, P_FLOW, P_HISTORY, P_INBOX, P_INVOLVED, P_NESTING, u64

P_UNDO = b"U"  # height -> undo record of the block at that height (only above the final height)
META_FINAL = b"Mfinal"  # the final height the store was last told: no undo data at or below it

# Keys that a block always creates: they name the block's height and position, or a
# document id that no block records twice. Their previous value is "absent" without a
# read, which keeps the undo cost of a 10,000-code shipment to one read per changed record.
# The inbox, involvement and nesting indexes are keyed by the block's height too.
_ALWAYS_NEW = (P_HISTORY[0], P_DOC[0], P_FLOW[0], P_INBOX[0], P_INVOLVED[0], P_NESTING[0])


class RollbackRefused(LedgerError):
    """A rollback was asked for that would undo a final block, or that the store cannot do."""


def undo_key(height: int) -> bytes:
    return P_UNDO + u64(height)


def is_always_new(key: bytes) -> bool:
    return key[0] in _ALWAYS_NEW


@dataclass(frozen=True, slots=True)
class UndoRecord:
    previous_head: list[Any]  # the Head before the block, as Head.to_list()
    previous: list[tuple[bytes, bytes | None]]  # every key the block wrote, with its old value

    def pack(self) -> bytes:
        flat: list[bytes | None] = []
        for key, value in self.previous:
            flat.append(key)
            flat.append(value)
        return pack_trusted([self.previous_head, flat])

    @staticmethod
    def unpack(raw: bytes) -> UndoRecord:
        head, flat = unpack_trusted(raw)
        pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return UndoRecord(list(head), pairs)


def fold_undo(records_from_head_down: Iterable[UndoRecord]) -> dict[bytes, bytes | None]:
    """The value every touched key must get back, from records ordered head first.

    A key written by several of the undone blocks gets the value it had before the
    lowest of them, so a later (lower) record overrides an earlier one."""
    restore: dict[bytes, bytes | None] = {}
    for record in records_from_head_down:
        for key, value in record.previous:
            restore[key] = value
    return restore


def undo_bytes(records: Sequence[bytes]) -> int:
    """Bytes of stored undo records (the bench's figure per non-final block)."""
    return sum(len(r) for r in records)

"""The records of the ledger's state and the LevelDB keys they live under.

All state is in one LevelDB keyspace, split by a one-byte prefix. Values are msgpack
arrays written by our own code. Fixed-width big-endian heights and positions make
prefix scans come back in chain order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._encoding import pack_trusted, unpack_trusted

# State
P_CODE = b"c"  # code key -> CodeRecord
P_CHILDREN = b"k"  # sscc key -> list of child keys
P_PARTICIPANT = b"p"  # participant id -> ParticipantRecord
P_DOC = b"d"  # document id -> [height, position, result code]
P_SHIPMENT = b"s"  # shipment id (= ship document id) -> ShipmentRecord
P_HISTORY = b"h"  # code key 0x00 height position -> [document id, type, sscc]
P_HOLDING = b"o"  # participant id code key -> b""
P_FLOW = b"x"  # from state, to state, height, position -> shipment id
P_AUDIT = b"a"  # participant id, scope (a member state, or "*" for the union) -> [height granted]
P_LINK = b"m"  # code key -> [relation, other code key, height, position]: a re-marking (issue 13)
# Store-local indexes: derived from the state when a block is written, never part of the
# state hash, so a store may add or rebuild one without changing any block.
P_NESTING = b"n"  # code key 0x00 height position -> [type, sscc]: the code's packs and unpacks
# The inbox and the parties of each document (ledger/_inbox.py).
P_INBOX = b"i"  # participant id height position -> [kind, document id]
P_PENDING = b"j"  # participant id height position -> document id of a shipment awaiting it
P_INVOLVED = b"v"  # height position -> [parties, member states] of a document naming others
P_PARTY = b"e"  # participant id code key -> b"": it held the code, or received it in a shipment
# Chain
P_BLOCK = b"B"  # height -> header bytes
P_BLOCK_DOC = b"D"  # height position -> signed document wire bytes
P_RESULTS = b"R"  # height -> list of results
P_ATTEST = b"A"  # height state code -> signature
P_META = b"M"  # meta keys below

META_HEAD = b"Mhead"  # [height, block hash, state hash, time ms, raft index]
META_GENESIS = b"Mgenesis"  # genesis hash
META_SYNC = b"Msync"  # height at the last explicit sync (a synced write flushes all before it)
META_NESTING = b"Mnesting"  # present once the nesting index covers every block written
META_PARTIES = b"Mparties"  # present once the party index covers every block written

SEP = b"\x00"

UNIT = 0
AGGREGATE = 1

EMITTED = "emitted"
INTRODUCED = "introduced"
RETIRED = "retired"
DISAGGREGATED = "disaggregated"  # an SSCC that was unpacked and is empty
# The lifecycle of real goods (issue 13).
APPLIED_TO_GOODS = "applied"  # printed on the goods (the print report); not yet in circulation
WRITTEN_OFF = "written_off"  # emitted or applied, never in circulation, or replaced by a remark
REMARKED = "remarked"  # the write-off reason of a code a remark replaced
REPLACED_BY = "replaced_by"
REPLACES = "replaces"

ACTIVE = "active"
REVOKED = "revoked"

PENDING = "pending"
ACCEPTED = "accepted"
PARTIALLY_ACCEPTED = "partially_accepted"
REJECTED = "rejected"
CANCELLED = "cancelled"


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def code_key(key: str) -> bytes:
    return P_CODE + key.encode()


def history_key(key: str, height: int, position: int) -> bytes:
    return P_HISTORY + key.encode() + SEP + u64(height) + u32(position)


def history_prefix(key: str) -> bytes:
    return P_HISTORY + key.encode() + SEP


def nesting_prefix(key: str) -> bytes:
    return P_NESTING + key.encode() + SEP


def at_height_position(height: int, position: int) -> bytes:
    """The key suffix of a place in the chain; keys sort in chain order by it."""
    return u64(height) + u32(position)


def holding_key(owner: str, key: str) -> bytes:
    return P_HOLDING + owner.encode() + key.encode()


def audit_key(pid: str, scope: str) -> bytes:
    return P_AUDIT + pid.encode() + scope.encode()


def _field(index: int) -> Any:
    def get(self: list[Any]) -> Any:
        return self[index]

    def set(self: list[Any], value: Any) -> None:
        self[index] = value

    return property(get, set)


class CodeRecord(list[Any]):
    """One code's state. For a code inside an aggregate, owner and shipment are those
    of the outermost aggregate; they are read from there, never copied down, so that
    moving an aggregate costs the same whatever it holds.

    A list with named fields rather than a dataclass: it is read and written once per
    code per document, and a list packs and unpacks with no conversion.
    """

    __slots__ = ()

    kind = _field(0)
    status = _field(1)
    owner = _field(2)
    parent = _field(3)  # enclosing aggregate's key, "" when loose
    shipment = _field(4)  # shipment in transit, b"" when none
    suspended = _field(5)
    suspended_inside = _field(6)  # suspended codes somewhere inside this aggregate
    retire_reason = _field(7)
    level = _field(8)  # 0 for units, 1 + deepest child for aggregates
    count = _field(9)  # direct children of an aggregate

    @classmethod
    def new(
        cls, kind: int, status: str, owner: str, *, level: int = 0, count: int = 0
    ) -> CodeRecord:
        return cls([kind, status, owner, "", b"", False, 0, "", level, count])

    def pack(self) -> bytes:
        return pack_trusted(self)

    @classmethod
    def unpack(cls, data: bytes) -> CodeRecord:
        return cls(unpack_trusted(data))

    @property
    def blocked(self) -> bool:
        return bool(self[5] or self[6])


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    public_key: bytes
    state: str
    roles: list[str]
    name: str
    status: str
    registered_height: int
    # The tax id its registration gave (ledger/_tax_ids.py); "" when none, and then left
    # out of the stored record, so that a record from before keeps its bytes.
    tax_id: str = ""

    def pack(self) -> bytes:
        return pack_trusted(
            [
                self.public_key,
                self.state,
                self.roles,
                self.name,
                self.status,
                self.registered_height,
                *([self.tax_id] if self.tax_id else []),
            ]
        )

    @classmethod
    def unpack(cls, data: bytes) -> ParticipantRecord:
        return cls(*unpack_trusted(data))

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(slots=True)
class ShipmentRecord:
    shipper: str
    receiver: str
    items: list[str]
    status: str
    height: int
    from_state: str
    to_state: str
    accepted: list[str]

    def pack(self) -> bytes:
        return pack_trusted(
            [
                self.shipper,
                self.receiver,
                self.items,
                self.status,
                self.height,
                self.from_state,
                self.to_state,
                self.accepted,
            ]
        )

    @classmethod
    def unpack(cls, data: bytes) -> ShipmentRecord:
        return cls(*unpack_trusted(data))

    def to_json(self) -> dict[str, Any]:
        return {
            "shipper": self.shipper,
            "receiver": self.receiver,
            "items": self.items,
            "status": self.status,
            "height": self.height,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "cross_border": self.from_state != self.to_state,
            "accepted": self.accepted,
        }

"""Recalls, the lot index, customs imports and the union's trade records (issue 13).

Recall, applied lazily
----------------------
A `recall` names a GTIN and one selector: a batch (AI 10), an expiry range (AI 17,
YYMMDD, inclusive) or listed codes. Applying it does not rewrite the codes it matches:
it writes the recall record (P_RECALL) and adds the recall to its GTIN's list of active
recalls (P_RECALL_GTIN); listed codes are also written one key each (P_RECALL_CODE),
bounded by the 30,000 codes a document carries. Every document that moves goods then
asks `RecallCheck.recall_of(code)`, which reads the GTIN's active list (once per
document and GTIN) and, only when the GTIN has one, the code's stored attributes. So a
recall matching 1,000,000 codes costs a handful of writes to apply, on every node alike,
and its `recalled` disposition lasts until a `release_recall` removes it from the list:
the disposition is a function of the state, hence the same on every node and auditor.

Rewriting every matching code instead would make one document cost a million writes
(minutes of apply on every node, a million-entry state-hash step, and blocks stalled
behind it), and a release another million. The lazy form costs one dictionary look-up
per moved code while no recall is active for its GTIN (the benchmark measures it).

The lot index (P_LOT) lists each unit under its GTIN and attribute value, for AI 10 and
AI 17, written whenever attributes are stored (`store_attributes`); the holdings index
(P_HOLDINGS, ledger/_holdings.py) counts the units of each lot per holder, kept by the
state machine as goods change hands. Both are state. A recall's holders, its counts
and its inbox notices come from one range of the holdings index (as many keys as
holders), never from a scan of the codes it matches.

Trade records
-------------
When a shipment between two member states is accepted, the accept writes an export
record for the origin state and an import record for the destination state
(P_TRADE): the exporter and importer (ids, names and states as their participant
records hold them), the accepted units counted per GTIN (units inside accepted
aggregates included), and the accept and ship documents' ids. The record is a function
of the accept document, the ship document and the state before the accept, so an
auditor who checks both documents' inclusion proofs and replays the chain gets the
same record (docs/TRADE.md). A customs `import` of goods from outside the union adds an
import record of kind "customs" for its state.

Deterministic like the rest of ledger/: no clock, no set iteration order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._encoding import pack_trusted, unpack_trusted
from ._holdings import BATCH_AI as BATCH_AI  # re-exported: the state machine reads them here
from ._holdings import EXPIRY_AI as EXPIRY_AI
from ._holdings import (
    GONE,
    INDEXED_AIS,
    counts_from_items,
    holders_from_keys,
    holdings_range,
)
from ._holdings import P_LOT as P_LOT
from ._records import P_CHILDREN, P_CODE, SEP, u32, u64

P_RECALL = b"r"  # recall id (its document id) -> RecallRecord
P_RECALL_GTIN = b"f"  # GTIN -> [[recall id, batch, expiry from, expiry to, listed], ...] active
P_RECALL_CODE = b"w"  # code key 0x00 recall id -> b"": a code a recall lists
P_TRADE = b"y"  # state, direction (E|I), height, position -> TradeRecord
P_IMPORT = b"u"  # import id (its document id) -> ImportRecord

ACTIVE = "active"
RELEASED = "released"
PENDING = "pending"
CONFIRMED = "confirmed"
EXPORT = "export"
IMPORT = "import"
_DIRECTION = {EXPORT: b"E", IMPORT: b"I"}

# A GTIN with this many recalls active at once is beyond any real case; the bound keeps
# the per-move check (which walks the list) short.
RECALLS_PER_GTIN_MAX = 64
# A listing of a recall's codes scans at most this many keys of the lot index per
# request; a larger recall is read page by page (`after`). One million keys is a few
# seconds of LevelDB.
RECALL_SCAN_MAX = 1_000_000
# A trade record's per-GTIN counts for a shipment of aggregates: at most 30,000 codes per
# document, four levels deep, so bounded by what the shipment's aggregates hold.
AGGREGATION_LEVELS_MAX = 4

Get = Callable[[bytes], "bytes | None"]


def lot_key(gtin: str, ai: str, value: str, code: str) -> bytes:
    return P_LOT + gtin.encode() + ai.encode() + value.encode() + SEP + code.encode()


def lot_prefix(gtin: str, ai: str, value: str = "") -> bytes:
    return P_LOT + gtin.encode() + ai.encode() + value.encode()


def store_attributes(put: Callable[[bytes, bytes], None], key: str, attributes: Sequence[Sequence[str]],
                     packed: bytes) -> None:
    """Store a unit's attributes and index it by batch and expiry. Every document that
    stores attributes (introduce, import, and apply when it comes) goes through here, so
    the lot index stays complete."""
    from ._catalogue import attributes_key

    put(attributes_key(key), packed)
    gtin = key[2:16]
    for ai, value in attributes:
        if ai in INDEXED_AIS:
            put(lot_key(gtin, ai, value, key), b"")


def gtin_of(key: str) -> str:
    """The GTIN of a unit's key ("01" GTIN "21" serial); "" for anything else."""
    return key[2:16] if key.startswith("01") and len(key) > 18 else ""


@dataclass(slots=True)
class RecallRecord:
    gtin: str
    batch: str
    expiry_from: str
    expiry_to: str
    listed: int  # codes listed by the recall document (0 for a batch or expiry recall)
    reason: str
    filer: str
    state: str  # the producer's state (the catalogue's)
    producer: str
    height: int
    status: str
    released_by: str = ""
    released_height: int = 0
    release_note: str = ""
    release_document: bytes = b""  # the id of the release_recall document

    def pack(self) -> bytes:
        return pack_trusted([
            self.gtin, self.batch, self.expiry_from, self.expiry_to, self.listed, self.reason, self.filer,
            self.state, self.producer, self.height, self.status, self.released_by, self.released_height,
            self.release_note, self.release_document,
        ])

    @classmethod
    def unpack(cls, data: bytes) -> RecallRecord:
        return cls(*unpack_trusted(data))

    @property
    def selector(self) -> str:
        if self.batch:
            return "batch"
        if self.expiry_from:
            return "expiry"
        return "codes"

    def entry(self, recall_id: bytes) -> list[Any]:
        return [recall_id, self.batch, self.expiry_from, self.expiry_to, self.listed > 0]

    def to_json(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin, "selector": self.selector, "batch": self.batch,
            "expiry_from": self.expiry_from, "expiry_to": self.expiry_to, "listed_codes": self.listed,
            "reason": self.reason, "filer": self.filer, "state": self.state, "producer": self.producer,
            "height": self.height, "status": self.status, "released_by": self.released_by,
            "released_height": self.released_height, "release_note": self.release_note,
            "release_document": self.release_document.hex(),
        }


@dataclass(slots=True)
class ImportRecord:
    importer: str
    state: str
    declaration: str
    country: str
    codes: list[str]
    counts: list[list[Any]]  # [[GTIN, units], ...] sorted by GTIN
    height: int
    status: str
    confirmed_by: str = ""
    confirmed_height: int = 0
    # The importer's tax id when its registration gave one (ledger/_tax_ids.py); written
    # only when there is one, so records from before it pack as they did.
    importer_tax_id: str = ""

    def pack(self) -> bytes:
        return pack_trusted([
            self.importer, self.state, self.declaration, self.country, self.codes, self.counts, self.height,
            self.status, self.confirmed_by, self.confirmed_height,
            *([self.importer_tax_id] if self.importer_tax_id else []),
        ])

    @classmethod
    def unpack(cls, data: bytes) -> ImportRecord:
        return cls(*unpack_trusted(data))

    def to_json(self) -> dict[str, Any]:
        return {
            "importer": self.importer, "state": self.state, "declaration": self.declaration,
            "country": self.country, "codes": len(self.codes),
            "products": [{"gtin": g, "units": n} for g, n in self.counts], "height": self.height,
            "status": self.status, "confirmed_by": self.confirmed_by,
            "confirmed_height": self.confirmed_height, "importer_tax_id": self.importer_tax_id or None,
        }


def trade_key(state: str, direction: str, height: int, position: int) -> bytes:
    return P_TRADE + state.encode() + _DIRECTION[direction] + u64(height) + u32(position)


def trade_prefix(state: str, direction: str) -> bytes:
    return P_TRADE + state.encode() + _DIRECTION[direction]


def trade_record(kind: str, exporter: list[str], importer: list[str], counts: list[list[Any]],
                 document: bytes, shipment: bytes, declaration: str = "") -> bytes:
    """[kind, [exporter id, name, state], [importer id, name, state], [[GTIN, units]...],
    document id, shipment id, customs declaration]: kind is "union" for a shipment between
    member states, "customs" for goods entering from outside the union."""
    return pack_trusted([kind, exporter, importer, counts, document, shipment, declaration])


def trade_json(key: bytes, raw: bytes) -> dict[str, Any]:
    """A trade record as the API lists it, each party with its tax id (None: none)."""
    kind, exporter, importer, counts, document, shipment, declaration = unpack_trusted(raw)
    return {
        "height": int.from_bytes(key[-12:-4], "big"), "position": int.from_bytes(key[-4:], "big"),
        "kind": kind, "exporter": party_json(exporter), "importer": party_json(importer),
        "products": [{"gtin": g, "units": n} for g, n in counts],
        "document": document.hex(), "shipment": shipment.hex(), "declaration": declaration,
    }


def party_json(value: Sequence[str]) -> dict[str, Any]:
    """A trade record's party, [id, name, state] and the tax id when it has one
    (ledger/_tax_ids.py `party` writes it)."""
    return {"id": value[0], "name": value[1], "state": value[2],
            "tax_id": value[3] if len(value) > 3 and value[3] else None}


def stored_children(get: Get) -> Callable[[str], list[str]]:
    """An aggregate's children as the state holds them."""

    def children(key: str) -> list[str]:
        raw = get(P_CHILDREN + key.encode())
        return list(unpack_trusted(raw)) if raw is not None else []

    return children


def unit_counts(children: Callable[[str], Sequence[str]], keys: Sequence[str]) -> list[list[Any]]:
    """Units per GTIN among `keys`, counting the units inside aggregates; sorted by GTIN."""
    counts: dict[str, int] = {}
    stack = [(key, 0) for key in keys]
    while stack:
        key, depth = stack.pop()
        gtin = gtin_of(key)
        if gtin:
            counts[gtin] = counts.get(gtin, 0) + 1
        elif depth <= AGGREGATION_LEVELS_MAX:
            stack.extend((child, depth + 1) for child in children(key))
    return [[g, counts[g]] for g in sorted(counts)]


def _matches(get: Get, key: str, entries: list[list[Any]]) -> bytes | None:
    """The first active recall (of the code's GTIN) that matches the code, or None."""
    attributes: dict[str, str] | None = None
    for recall_id, batch, lo, hi, listed in entries:
        if listed:
            if get(P_RECALL_CODE + key.encode() + SEP + recall_id) is not None:
                return bytes(recall_id)
            continue
        if attributes is None:
            from ._catalogue import attributes_key

            raw = get(attributes_key(key))
            attributes = dict(unpack_trusted(raw)) if raw is not None else {}
        if batch:
            if attributes.get(BATCH_AI) == batch:
                return bytes(recall_id)
        elif lo <= attributes.get(EXPIRY_AI, "") <= hi:
            return bytes(recall_id)
    return None


class RecallCheck:
    """Which active recall holds a code, as the state stands; one per document.

    `any_active` is read once: with no recall active anywhere the check costs nothing
    per code; otherwise a code costs one look-up of its GTIN's list (cached for the
    document) and, when the GTIN has recalls, a read of its attributes."""

    __slots__ = ("get", "_by_gtin", "active")

    def __init__(self, get: Get) -> None:
        self.get = get
        self._by_gtin: dict[str, list[list[Any]]] = {}
        raw = get(P_RECALL_GTIN)
        self.active = bool(raw is not None and unpack_trusted(raw))

    def entries(self, gtin: str) -> list[list[Any]]:
        found = self._by_gtin.get(gtin)
        if found is None:
            raw = self.get(P_RECALL_GTIN + gtin.encode())
            found = list(unpack_trusted(raw)) if raw is not None else []
            self._by_gtin[gtin] = found
        return found

    def recall_of(self, key: str) -> tuple[bytes, str] | None:
        """(recall id, GTIN) of the recall that holds the code, or of one holding a unit
        inside it when it is an aggregate; None when none does."""
        if not self.active:
            return None
        stack = [(key, 0)]
        while stack:
            code, depth = stack.pop()
            gtin = gtin_of(code)
            if gtin:
                entries = self.entries(gtin)
                if entries:
                    found = _matches(self.get, code, entries)
                    if found is not None:
                        return found, gtin
            elif depth <= AGGREGATION_LEVELS_MAX:
                raw = self.get(P_CHILDREN + code.encode())
                if raw is not None:
                    stack.extend((child, depth + 1) for child in reversed(unpack_trusted(raw)))
        return None


def active_count_bytes(count: int) -> bytes:
    return pack_trusted(count)


# -- reads (the store's LevelDB, at its head) ----------------------------------------------


def recall_codes(db: Any, recall_id: bytes, record: RecallRecord, after: str = "",
                 limit: int = RECALL_SCAN_MAX) -> Iterator[str]:
    """The codes a recall matches, from the lot index (or its listed codes), in key order."""
    if record.selector == "codes":
        # Listed codes are few (one document's worth); the listing key holds them.
        raw = db.get(P_RECALL + recall_id + b"/codes")
        codes = sorted(unpack_trusted(raw)) if raw is not None else []
        yield from (c for c in codes if c > after)
        return
    start, stop = lot_range(record.gtin, record.batch, record.expiry_from, record.expiry_to)
    for scanned, key in enumerate(db.iterator(start=start, stop=stop, include_value=False), 1):
        code = key[key.index(SEP, len(P_LOT) + 16) + 1:].decode()
        if code > after:
            yield code
        if scanned >= limit:
            return


def holder_of(get: Get, key: str) -> tuple[str, str]:
    """(owner of the outermost aggregate around the code, status of the code). Records
    are read as plain lists (fields as in CodeRecord): this runs once per matched code."""
    raw = get(P_CODE + key.encode())
    if raw is None:
        return "", ""
    record = unpack_trusted(raw)
    status = record[1]
    for _ in range(AGGREGATION_LEVELS_MAX + 1):
        if not record[3]:
            return record[2], status
        raw = get(P_CODE + record[3].encode())
        if raw is None:
            break
        record = unpack_trusted(raw)
    return "", status


def recall_holders(db: Any, recall_id: bytes, record: RecallRecord,
                   state_of: Callable[[str], str]) -> dict[str, Any]:
    """Holders of the codes a recall matches, grouped by member state: per state, each
    holder with its count, and the state's total. Codes already retired count apart.

    A batch or an expiry range reads the holdings index (ledger/_holdings.py): as many
    keys as holders (times days, for a range), whatever the number of codes. Listed
    codes read each code's record: at most one document's worth."""
    if record.selector == "codes":
        per, retired = _listed_holders(db, recall_id, record)
    else:
        start, stop = holdings_range(record.gtin, record.batch, record.expiry_from, record.expiry_to)
        per, retired = counts_from_items(db.iterator(start=start, stop=stop))
    states: dict[str, dict[str, int]] = {}
    for owner in sorted(per):
        states.setdefault(state_of(owner), {})[owner] = per[owner]
    return {
        "codes": sum(per.values()) + retired,
        "out_of_circulation": retired,
        "states": {
            s: {"codes": sum(held.values()),
                "holders": [{"participant": p, "codes": held[p]} for p in sorted(held)]}
            for s, held in sorted(states.items())
        },
    }


def _listed_holders(db: Any, recall_id: bytes, record: RecallRecord) -> tuple[dict[str, int], int]:
    per: dict[str, int] = {}
    retired = 0
    for code in recall_codes(db, recall_id, record):
        owner, status = holder_of(db.get, code)
        if status in GONE or not owner:
            retired += 1
            continue
        per[owner] = per.get(owner, 0) + 1
    return per, retired


Scan = Callable[[bytes, bytes], Iterator[bytes]]


def notified_holders(doc: Any, get: Get, scan: Scan | None) -> list[str]:
    """Whom a recall document (or the release of one) is addressed to, as the state
    stands: every current holder of a code it matches, and the GTIN's producer.

    The holders of a batch or an expiry range come from the holdings index through
    `scan` (one range: as many keys as holders); those of listed codes from each
    code's record. The producer is named even when it holds none of the codes: recalled
    goods may move only back to it, so whoever holds them later (the producer, after an
    accept of a returned shipment) has the recall in its inbox already."""
    from ._catalogue import ProductRecord, product_key
    from ._documents import DocType

    if doc.type is DocType.RELEASE_RECALL:
        raw = get(P_RECALL + doc.payload[0])
        if raw is None:
            return []
        record = RecallRecord.unpack(raw)
        gtin, batch, lo, hi = record.gtin, record.batch, record.expiry_from, record.expiry_to
        producer = record.producer
        listed_raw = get(P_RECALL + doc.payload[0] + b"/codes")
        codes = list(unpack_trusted(listed_raw)) if listed_raw is not None else []
    else:
        gtin, batch, lo, hi, codes = doc.payload[:5]
        product = get(product_key(gtin))
        producer = ProductRecord.unpack(product).producer if product is not None else ""
    holders: dict[str, None] = {}
    if codes:
        for code in codes:
            owner, status = holder_of(get, code)
            if owner and status not in GONE:
                holders.setdefault(owner, None)
    elif scan is not None:
        start, stop = holdings_range(gtin, batch, lo, hi)
        holders.update(dict.fromkeys(holders_from_keys(scan(start, stop))))
    if producer:
        holders.setdefault(producer, None)
    return list(holders)


def lot_range(gtin: str, batch: str, lo: str, hi: str) -> tuple[bytes, bytes]:
    """The lot-index keys [start, stop) of a batch or an expiry range (inclusive)."""
    if batch:
        prefix = lot_prefix(gtin, BATCH_AI, batch) + SEP
        return prefix, prefix + b"\xff"
    return lot_prefix(gtin, EXPIRY_AI, lo), lot_prefix(gtin, EXPIRY_AI, hi) + b"\x01"


def overlay_scan(db: Any, pending: Callable[[], Sequence[dict[bytes, bytes | None]]]
                 ) -> Callable[[bytes, bytes], Iterator[bytes]]:
    """A key scan of the stored state merged with writes not yet stored (a block's
    overlay): keys in order, deleted ones left out. The stored keys stream from LevelDB
    (a recall may match a million of them); only the overlay's keys in range are sorted."""

    def scan(start: bytes, stop: bytes) -> Iterator[bytes]:
        extra: dict[bytes, bytes | None] = {}
        for layer in pending():
            extra.update({k: v for k, v in layer.items() if start <= k < stop})
        stored = db.iterator(start=start, stop=stop, include_value=False)
        if not extra:
            yield from stored
            return
        added = sorted(k for k, v in extra.items() if v is not None)
        yield from heapq.merge((k for k in stored if k not in extra), added)

    return scan


# Pages of the trade and recall listings: a regulator's screen, and what one answer may
# cost the node (one LevelDB seek and this many keys).
PAGE_MAX = 1000


def recall_record(db: Any, recall_id: bytes) -> RecallRecord | None:
    raw = db.get(P_RECALL + recall_id)
    return RecallRecord.unpack(raw) if raw is not None else None


def recalls(db: Any, after: bytes = b"", limit: int = 100, status: str = "") -> list[dict[str, Any]]:
    """Recalls by id (their document id), a page after `after`; with `status`, only those."""
    limit = max(1, min(limit, PAGE_MAX))
    start = P_RECALL + after + b"\x00" if after else P_RECALL
    out: list[dict[str, Any]] = []
    for scanned, (key, raw) in enumerate(db.iterator(start=start, stop=b"s"), 1):
        if len(key) != len(P_RECALL) + 32:
            continue  # a recall's list of codes, beside its record
        record = RecallRecord.unpack(raw)
        if not status or record.status == status:
            out.append({"id": key[len(P_RECALL):].hex(), **record.to_json()})
        if len(out) >= limit or scanned >= PAGE_MAX * 2:
            break
    return out


def import_record(db: Any, import_id: bytes) -> ImportRecord | None:
    raw = db.get(P_IMPORT + import_id)
    return ImportRecord.unpack(raw) if raw is not None else None

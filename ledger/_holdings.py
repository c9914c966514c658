"""Who holds how many units of each lot: the index a recall reads its holders from.

A recall names a GTIN and a batch (AI 10) or an expiry range (AI 17), and matches every
unit that carries it: a million, for a large one. Its inbox notices and the regulators'
view of it (`GET /v1/recalls/{id}`) need the holders and their counts, not the codes, so
the state machine keeps, for every lot (GTIN, AI, value) and every holder, the number of
units of the lot the holder holds:

    P_HOLDINGS  GTIN, AI (10|17), value, 0x00, holder -> count (msgpack int)

The holder of a unit is the owner of the outermost aggregate around it (in transit: the
shipper, still its owner until the accept), and "" for a unit out of circulation for
good (retired or written off), so that every unit with a batch or an expiry counts
exactly once per indexed attribute and a lot's keys sum to the units that carry it. A
count that falls to zero is deleted: the keys under a lot are its current holders.

A recall of a batch then finds its holders and counts with one prefix range (as many
keys as holders); a recall of an expiry range with one range over the days it covers
(days x holders keys); a recall of listed codes reads its codes (at most one document's
worth), never the index.

Kept by the state machine after each document's handler, from that document's writes
(`follow`), so that no handler has to know about it: a document changes holders when
it changes a code record's owner, parent or status, or stores a unit's attributes. For
each code the document wrote, the unit's holder is worked out before and after it; for
an aggregate whose holder changed (an accepted pallet), the units under it that the
document did not write move with it. The counts are updated once per (lot, holder) per
document: a 1,000-unit shipment of one batch accepted costs two read-modify-writes of
counts, and one read of each unit's attributes (what says which lot it is in).

The index is state: its writes are part of the block's writes, so they are in the state
hash every member state attests, undone with the block (ledger/_undo.py), and carried by
snapshots like any other key. No document's outcome reads it today, but the holders per
state a regulator is shown are then a function of the attested state: a node that
listed other holders would hold a state whose hash the others do not attest, and an
auditor who replays the chain gets the same counts.

Deterministic like the rest of ledger/: no clock, no set iteration order in what is
written (counts are written in the order of their lots and holders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ._catalogue import P_ATTRIBUTES
from ._documents import DocType
from ._encoding import pack_trusted, unpack_trusted
from ._errors import invariant
from ._records import P_CHILDREN, P_CODE, RETIRED, SEP, WRITTEN_OFF

P_LOT = b"l"  # GTIN, AI (10|17), value 0x00 code key -> b"": each unit under its lots
P_HOLDINGS = b"z"  # GTIN, AI (10|17), value 0x00 holder -> units of the lot it holds

BATCH_AI = "10"
EXPIRY_AI = "17"
INDEXED_AIS = (EXPIRY_AI, BATCH_AI)
OUT_OF_CIRCULATION = ""  # the holder slot of units retired or written off

# Statuses in which a unit is out of circulation for good: nobody holds it any more.
GONE = frozenset((RETIRED, WRITTEN_OFF))
# Four levels of aggregation and the code itself (ledger/_state.py AGGREGATION_LEVELS_MAX).
_ROOT_STEPS_MAX = 5
_LEVELS_MAX = 4
_UNIT = b"01"
_CODE = P_CODE[0]
_ATTRIBUTES = P_ATTRIBUTES[0]
# Units of one document mostly share their attributes (an introduce packs them once):
# the lots of each packed value are worked out once. Bounded so memory stays flat.
_LOTS_CACHE_MAX = 4096

# Document types that never change who holds a unit nor a unit's attributes, so the
# index skips them without looking at their writes: a shipment, its cancellation or
# rejection (the shipper owns the goods until the accept), packing and unpacking (a
# packer packs and unpacks only what it holds, and the aggregate stays with it),
# emission (a new code has no attributes), suspensions, the confirmation of an import
# (imported -> introduced, same holder), and documents that write no code records.
# Every other type, including any added later, is followed.
HOLDERS_UNCHANGED = frozenset((
    DocType.REGISTER_PARTICIPANT, DocType.REVOKE_PARTICIPANT, DocType.EMIT, DocType.SHIP,
    DocType.CANCEL_SHIPMENT, DocType.REJECT, DocType.AGGREGATE, DocType.DISAGGREGATE, DocType.SUSPEND,
    DocType.RELEASE, DocType.GOVERNANCE, DocType.REGISTER_PRODUCT, DocType.GRANT_AUDIT,
    DocType.REVOKE_AUDIT, DocType.RECALL, DocType.RELEASE_RECALL, DocType.CONFIRM_IMPORT,
))

Get = Callable[[bytes], "bytes | None"]
Writes = dict[bytes, "bytes | None"]


class _Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Overlay(Protocol):
    """The state machine's overlay (ledger/_state.py): the document's writes over the
    block's over the stored state."""

    doc: Writes
    block: Writes
    reader: _Reader


def lot(gtin: str, ai: str, value: str) -> bytes:
    return gtin.encode() + ai.encode() + value.encode()


def holdings_key(lot_: bytes, holder: str) -> bytes:
    return P_HOLDINGS + lot_ + SEP + holder.encode()


def holdings_range(gtin: str, batch: str, lo: str, hi: str) -> tuple[bytes, bytes]:
    """The index keys [start, stop) of a batch, or of an expiry range (inclusive)."""
    if batch:
        prefix = P_HOLDINGS + lot(gtin, BATCH_AI, batch) + SEP
        return prefix, prefix + b"\xff"
    # A value is followed by 0x00, so every key of the last day sorts below 0x01.
    return P_HOLDINGS + lot(gtin, EXPIRY_AI, lo), P_HOLDINGS + lot(gtin, EXPIRY_AI, hi) + b"\x01"


def holder_in(key: bytes) -> str:
    """The holder a P_HOLDINGS key names (after the separator that ends the value)."""
    return key[key.index(SEP, len(P_HOLDINGS) + 16) + 1:].decode()


_lots_cache: dict[tuple[bytes, bytes], tuple[bytes, ...]] = {}


def _lots(gtin: bytes, packed: bytes | None) -> tuple[bytes, ...]:
    """The lots a unit of this GTIN with these stored attributes is in."""
    if not packed:
        return ()
    found = _lots_cache.get((gtin, packed))
    if found is None:
        if len(_lots_cache) >= _LOTS_CACHE_MAX:
            _lots_cache.clear()
        found = tuple(gtin + ai.encode() + value.encode()
                      for ai, value in unpack_trusted(packed) if ai in INDEXED_AIS)
        _lots_cache[(gtin, packed)] = found
    return found


def _holder_up(get: Get, key: bytes) -> str | None:
    """A unit's holder as `get` sees the state: None when the code does not exist."""
    raw = get(P_CODE + key)
    if raw is None:
        return None
    record = unpack_trusted(raw)
    if record[1] in GONE:
        return OUT_OF_CIRCULATION
    return _root_owner(get, record)


def _root_owner(get: Get, record: list[Any]) -> str:
    """The owner of the outermost aggregate around a code whose record this is."""
    for _ in range(_ROOT_STEPS_MAX):
        if not record[3]:
            return str(record[2])
        raw = get(P_CODE + record[3].encode())
        if raw is None:
            break
        record = unpack_trusted(raw)
    return OUT_OF_CIRCULATION  # a broken chain of aggregates: nobody can move the unit


def _units_under(get: Get, sscc: bytes, skip: dict[bytes, None]) -> Iterator[bytes]:
    """The units under an aggregate, not descending into codes in `skip` (the document
    wrote them: they count on their own). A packed unit is in circulation (only loose
    codes are retired or written off), so its holder is the aggregate's."""
    stack = [(sscc, 0)]
    while stack:
        key, depth = stack.pop()
        raw = get(P_CHILDREN + key)
        if raw is None or depth >= _LEVELS_MAX:
            continue
        for child in unpack_trusted(raw):
            encoded = child.encode()
            if encoded in skip:
                continue
            if encoded[:2] == _UNIT:
                yield encoded
            else:
                stack.append((encoded, depth + 1))


def follow(ov: Overlay) -> None:
    """Bring the index up to date with the document's writes (`ov.doc`), before they
    join the block's: adds the changed counts to them."""
    doc, block, read = ov.doc, ov.block, ov.reader.get

    def old(key: bytes) -> bytes | None:
        return block[key] if key in block else read(key)

    def new(key: bytes) -> bytes | None:
        return doc[key] if key in doc else old(key)

    written: dict[bytes, None] = {}  # code keys (without prefix) the document wrote, in order
    for key in doc:
        if key[0] == _CODE or (key[0] == _ATTRIBUTES and key[1:3] == _UNIT):
            written[key[1:]] = None
    if not written:
        return
    delta: dict[tuple[bytes, str], int] = {}

    def move(unit: bytes, before: str | None, after: str | None) -> None:
        """One unit's count from its holder before to its holder after, in every lot it
        was and is in (its attributes may change with the document)."""
        attributes = P_ATTRIBUTES + unit
        if before == after and attributes not in doc:
            return
        old_attributes = old(attributes)
        new_attributes = doc.get(attributes, old_attributes)
        gtin = unit[2:16]
        if before is not None:
            for lot_ in _lots(gtin, old_attributes):
                delta[(lot_, before)] = delta.get((lot_, before), 0) - 1
        if after is not None:
            for lot_ in _lots(gtin, new_attributes):
                delta[(lot_, after)] = delta.get((lot_, after), 0) + 1
        if old_attributes is not None and new_attributes != old_attributes:
            _forget_lots(doc, unit, _lots(gtin, old_attributes), _lots(gtin, new_attributes))

    for key in written:
        if key[:2] == _UNIT:
            move(key, _holder_up(old, key), _holder_up(new, key))
            continue
        # An aggregate: the units under it that the document did not write have the
        # aggregate's holder before and after; they move only when that changed.
        old_raw, new_raw = old(P_CODE + key), new(P_CODE + key)
        if old_raw is None or new_raw is None:
            continue  # a new aggregate holds only codes the document wrote
        before = _root_owner(old, unpack_trusted(old_raw))
        after = _root_owner(new, unpack_trusted(new_raw))
        if before == after:
            continue
        for unit in _units_under(old, key, written):
            move(unit, before, after)
    _write_counts(doc, new, delta)


def _forget_lots(doc: Writes, unit: bytes, before: tuple[bytes, ...], after: tuple[bytes, ...]) -> None:
    """A unit whose attributes a document replaced (a print report's, then another at
    introduce) leaves the per-code lot index of the lots it is no longer in."""
    for lot_ in before:
        if lot_ not in after:
            doc[P_LOT + lot_ + SEP + unit] = None


def _write_counts(doc: Writes, get: Get, delta: dict[tuple[bytes, str], int]) -> None:
    for (lot_, holder), step in sorted(delta.items()):
        if not step:
            continue
        key = holdings_key(lot_, holder)
        raw = get(key)
        count = (unpack_trusted(raw) if raw is not None else 0) + step
        invariant(count >= 0, f"the holdings index would count {count} units of {lot_!r} for {holder!r}: "
                              "a data directory written before the holdings index existed (issue 13) "
                              "holds units it never counted; re-initialise it or replay from genesis")
        doc[key] = pack_trusted(count) if count else None


# -- reads ---------------------------------------------------------------------------------


def holders_from_keys(keys: Iterable[bytes]) -> list[str]:
    """The holders (in circulation) named by index keys, each once, in key order."""
    seen: dict[str, None] = {}
    for key in keys:
        holder = holder_in(key)
        if holder != OUT_OF_CIRCULATION:
            seen.setdefault(holder, None)
    return list(seen)


def counts_from_items(items: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, int], int]:
    """Units per holder in circulation, and units out of circulation, from index items."""
    per: dict[str, int] = {}
    out = 0
    for key, raw in items:
        holder = holder_in(key)
        count = int(unpack_trusted(raw))
        if holder == OUT_OF_CIRCULATION:
            out += count
        else:
            per[holder] = per.get(holder, 0) + count
    return per, out

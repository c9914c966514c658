"""Who a document is addressed to: the inbox index and the parties of each document.

The state machine calls `involvement` once for each document it applies, while the
state is exactly as that document left it, and hands the result to the store with
the block. The store keeps it in three store-local indexes (ledger/_records.py):

- P_INBOX     participant, height, position -> [kind, document id]: all that was
              addressed to the participant, in chain order (a page costs O(page));
- P_PENDING   participant, height, position -> document id: incoming shipments still
              awaiting the participant's accept or reject (deleted when one ends it);
- P_INVOLVED  height, position -> [parties, states]: for a suspension or release, the
              holders it named and their member states as of that moment, for the read
              rule of the event feed. Every other document's parties and states follow
              from the document and records that never change (a participant's state,
              a shipment's two ends), so the feed works them out when it reads
              (`involvement` again) rather than the apply path writing them per document.

They are derived from the documents and the state, the same on every node, but they
are not state: they are not in the state hash (a store may add or rebuild an index
without changing any block), and no document's outcome depends on them.

Deterministic like the rest of ledger/: no clock, no set iteration order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._documents import DocType, Document, SignedDocument
from ._encoding import unpack_trusted
from ._identity import participant_id
from ._reasons import Result
from ._records import (
    P_DOC,
    P_PARTICIPANT,
    P_SHIPMENT,
    PARTIALLY_ACCEPTED,
    CodeRecord,
    ParticipantRecord,
    ShipmentRecord,
    code_key,
)

Read = Callable[[bytes], "bytes | None"]

# The kinds of inbox item, by what the document did to the participant it names.
INCOMING_SHIPMENT = "incoming_shipment"  # to the receiver; pending until accepted or rejected
SHIPMENT_ACCEPTED = "shipment_accepted"  # to the shipper
SHIPMENT_PARTIALLY_ACCEPTED = "shipment_partially_accepted"  # to the shipper: the rest returns to it
SHIPMENT_REJECTED = "shipment_rejected"  # to the shipper: every item returns to it
SHIPMENT_CANCELLED = "shipment_cancelled"  # to the receiver: the shipper took it back
CODES_EMITTED = "codes_emitted"  # to the producer or importer the codes were emitted to
CODES_SUSPENDED = "codes_suspended"  # to each holder of a code the regulator froze
CODES_RELEASED = "codes_released"  # to each holder of a code the regulator released
REGISTERED = "registered"  # to the participant registered
REVOKED = "revoked"  # to the participant revoked
CODES_RECALLED = "codes_recalled"  # to each current holder of a code a recall matches
RECALL_RELEASED = "recall_released"  # to each current holder of a code a released recall matched
IMPORT_CONFIRMED = "import_confirmed"  # to the importer whose customs import its regulator confirmed

INBOX_KINDS = (
    INCOMING_SHIPMENT, SHIPMENT_ACCEPTED, SHIPMENT_PARTIALLY_ACCEPTED, SHIPMENT_REJECTED, SHIPMENT_CANCELLED,
    CODES_EMITTED, CODES_SUSPENDED, CODES_RELEASED, REGISTERED, REVOKED, CODES_RECALLED, RECALL_RELEASED,
    IMPORT_CONFIRMED,
)
# Scan the state's keys in [start, stop) in key order (a recall's holders come from the
# lot index, ledger/_recall.py); None where the caller has no ordered view of the state.
Scan = Callable[[bytes, bytes], Iterator[bytes]]

# A code inside aggregates is held by the owner of its outermost aggregate; four levels
# of aggregation and the code itself (ledger/_state.py AGGREGATION_LEVELS_MAX).
_ROOT_STEPS_MAX = 5


@dataclass(frozen=True, slots=True)
class Notice:
    """One inbox item: what a document means to one participant it names."""

    participant: str
    kind: str
    pending: bool = False


@dataclass(frozen=True, slots=True)
class Involvement:
    """Who and what one applied document involves, beyond its signer."""

    height: int
    position: int
    document_id: bytes
    notices: tuple[Notice, ...]
    states: tuple[str, ...]  # member states the document touched, in first-seen order
    # Pending incoming shipments this document ends: (receiver, height, position of the ship).
    resolves: tuple[tuple[str, int, int], ...] = ()
    # Whether the parties depend on the moment (the holders of codes), so must be stored.
    stored: bool = False

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(n.participant for n in self.notices)


def involvement(
    doc: Document, doc_id: bytes, signer: ParticipantRecord, read: Read, height: int, position: int,
    decode: Callable[[bytes], ParticipantRecord] = ParticipantRecord.unpack, scan: Scan | None = None,
) -> Involvement | None:
    """What an applied document addresses, read from the state it left; None when it
    names nobody but its signer (introduce, aggregate, retire, ...). `decode` reads a
    participant record (the state machine passes its cached decoding)."""
    if doc.type is DocType.SHIP:  # the common case, kept short: one notice, nothing to read
        receiver = doc.payload[0]
        notice = Notice(receiver, INCOMING_SHIPMENT, pending=True)
        return Involvement(height, position, doc_id, (notice,), (signer.state,))
    handler = _ADDRESSEES.get(doc.type)
    if handler is None:
        return None
    notices, states, resolves = handler(doc, _Reads(read, decode, scan))
    # Nobody is notified of their own document; each participant once per document.
    kept: dict[str, Notice] = {}
    for notice in notices:
        if notice.participant != doc.signer and notice.participant not in kept:
            kept[notice.participant] = notice
    all_states = tuple(dict.fromkeys((signer.state, *states)))
    stored = doc.type in _STORED
    return Involvement(height, position, doc_id, tuple(kept.values()), all_states, resolves, stored)


_Found = tuple[list[Notice], list[str], tuple[tuple[str, int, int], ...]]


class _Reads:
    """The state as the document left it, and how to decode a participant from it."""

    __slots__ = ("get", "decode", "scan")

    def __init__(
        self, get: Read, decode: Callable[[bytes], ParticipantRecord], scan: Scan | None = None
    ) -> None:
        self.get = get
        self.decode = decode
        self.scan = scan

    def __call__(self, key: bytes) -> bytes | None:
        return self.get(key)


def _state_of(read: Read, pid: str) -> list[str]:
    raw = read(P_PARTICIPANT + pid.encode())
    if raw is None:
        return []
    decode = read.decode if isinstance(read, _Reads) else ParticipantRecord.unpack
    return [decode(raw).state]


def _register(doc: Document, read: Read) -> _Found:
    public_key, state = doc.payload[0], doc.payload[1]
    return [Notice(participant_id(public_key), REGISTERED)], [state], ()


def _revoke(doc: Document, read: Read) -> _Found:
    (pid,) = doc.payload
    return [Notice(pid, REVOKED)], _state_of(read, pid), ()


def _emit(doc: Document, read: Read) -> _Found:
    owner = doc.payload[0]
    return [Notice(owner, CODES_EMITTED)], _state_of(read, owner), ()


def _shipment_end(kind_of: Callable[[ShipmentRecord], tuple[str, str]]) -> Callable[[Document, Read], _Found]:
    """An accept, reject or cancel: it names the other party of the shipment and ends
    the receiver's pending item."""

    def found(doc: Document, read: Read) -> _Found:
        shipment_id = doc.payload[0]
        raw = read(P_SHIPMENT + shipment_id)
        place = read(P_DOC + shipment_id)
        if raw is None or place is None:  # an applied end always finds its shipment
            return [], [], ()
        shipment = ShipmentRecord.unpack(raw)
        height, position, _reason = unpack_trusted(place)
        party, kind = kind_of(shipment)
        return ([Notice(party, kind)], [shipment.from_state, shipment.to_state],
                ((shipment.receiver, height, position),))

    return found


def _accepted(shipment: ShipmentRecord) -> tuple[str, str]:
    partial = shipment.status == PARTIALLY_ACCEPTED
    return shipment.shipper, SHIPMENT_PARTIALLY_ACCEPTED if partial else SHIPMENT_ACCEPTED


def _holders(kind: str) -> Callable[[Document, Read], _Found]:
    """A suspension or release names the holder of each code it touches (the owner of
    the outermost aggregate around it), as of the moment it applied."""

    def found(doc: Document, read: Read) -> _Found:
        holders: dict[str, None] = {}
        for key in doc.payload[0]:
            owner = _holder(read, key)
            if owner:
                holders.setdefault(owner, None)
        notices = [Notice(h, kind) for h in holders]
        states = [s for h in holders for s in _state_of(read, h)]
        return notices, states, ()

    return found


def _holder(read: Read, key: str) -> str:
    for _ in range(_ROOT_STEPS_MAX):
        raw = read(code_key(key))
        if raw is None:
            return ""
        record = CodeRecord.unpack(raw)
        if not record.parent:
            return str(record.owner)
        key = record.parent
    return ""


def _recall_holders(kind: str) -> Callable[[Document, Read], _Found]:
    """A recall, or its release, names the current holder of each code it matches and
    the GTIN's producer, found through the holdings index (ledger/_holdings.py: as many
    keys as holders, never a scan of the codes); listed codes through their records."""

    def found(doc: Document, read: Read) -> _Found:
        from ._recall import notified_holders

        scan = read.scan if isinstance(read, _Reads) else None
        get = read.get if isinstance(read, _Reads) else read
        holders = notified_holders(doc, get, scan)
        notices = [Notice(h, kind) for h in holders]
        states = [s for h in holders for s in _state_of(read, h)]
        return notices, states, ()

    return found


def _import_confirmed(doc: Document, read: Read) -> _Found:
    from ._recall import P_IMPORT, ImportRecord

    raw = read(P_IMPORT + doc.payload[0])
    if raw is None:  # an applied confirmation always finds its import
        return [], [], ()
    record = ImportRecord.unpack(raw)
    return [Notice(record.importer, IMPORT_CONFIRMED)], [record.state], ()


# Documents whose parties depend on the moment (the holders of codes), so are stored.
_STORED = frozenset((DocType.SUSPEND, DocType.RELEASE, DocType.RECALL, DocType.RELEASE_RECALL))

_ADDRESSEES: dict[DocType, Callable[[Document, Read], _Found]] = {
    DocType.REGISTER_PARTICIPANT: _register,
    DocType.REVOKE_PARTICIPANT: _revoke,
    DocType.EMIT: _emit,
    DocType.ACCEPT: _shipment_end(_accepted),
    DocType.REJECT: _shipment_end(lambda s: (s.shipper, SHIPMENT_REJECTED)),
    DocType.CANCEL_SHIPMENT: _shipment_end(lambda s: (s.receiver, SHIPMENT_CANCELLED)),
    DocType.SUSPEND: _holders(CODES_SUSPENDED),
    DocType.RELEASE: _holders(CODES_RELEASED),
    DocType.RECALL: _recall_holders(CODES_RECALLED),
    DocType.RELEASE_RECALL: _recall_holders(RECALL_RELEASED),
    DocType.CONFIRM_IMPORT: _import_confirmed,
}


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One item of a participant's inbox, as the store reads it back."""

    height: int
    position: int
    kind: str
    document_id: bytes

    @property
    def cursor(self) -> str:
        return f"{self.height}.{self.position}"


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A document of the chain as the read rule sees it: where it is, what it is, its
    outcome, and whom and which member states it involved (from P_INVOLVED, or the
    signer's state alone for a document that named nobody else)."""

    height: int
    position: int
    document_id: bytes
    signed: SignedDocument | None  # None where the bytes did not decode
    result: Result
    parties: tuple[str, ...]
    states: tuple[str, ...]

    @property
    def signer(self) -> str | None:
        return self.signed.document.signer if self.signed is not None else None

    @property
    def cursor(self) -> str:
        return f"{self.height}.{self.position}"

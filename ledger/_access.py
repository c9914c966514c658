"""Who may read what: the one access rule of the client API (docs/ACCESS.md).

`check_read(store, reader, thing)` answers None when the reader may read the thing and
`Reason.NOT_ENTITLED` when it may not; `visible_history` cuts a code's history to what
a reader may see. Both are pure functions of the ledger state as the store holds it at
its head: the node calls them for every read route, the event feed for every event.

The rule in short (the table is in docs/ACCESS.md):

- a business reads what it signed or what names it, a code while it holds it (or
  receives it), a code's history up to the moment it passed the code on, the
  shipments it sends or receives, its own holdings, and any participant's record
  (counterparties are checked before a shipment);
- a regulator reads everything about its state's participants, codes held in its
  state or that passed through it (shipped from or into it), shipments from or into
  it and flows with one end in it; every regulator reads whole blocks;
- an auditor reads what its grants allow: a grant names one member state (given by
  that state's regulator, `grant_audit`) or the whole union (`UNION`, in genesis);
- anyone unsigned reads only the public check and block headers' attestations.

Member-state nodes receive everything over the peer links; this rule is about the
client API only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._documents import DocType, SignedDocument
from ._identity import participant_id
from ._reasons import Reason

if TYPE_CHECKING:
    from ._store import HistoryEntry, LedgerStore

REGULATOR = "regulator"
AUDITOR = "auditor"
# The scope of an auditor grant that covers every member state (genesis gives it).
UNION = "*"

Place = tuple[int, int]  # (height, position) of a document in the chain
# A place after every place: the window of a reader who may see a code's whole history.
END: Place = (1 << 64, 1 << 32)

NOT_ENTITLED = Reason.NOT_ENTITLED
# Documents every active participant reads: a recall and its release are safety notices
# that holders anywhere must find (in their event feed too), and they name no holder.
PUBLIC_NOTICES = frozenset((DocType.RECALL, DocType.RELEASE_RECALL))
# Aggregates nest at most four levels (ledger/_state.AGGREGATION_LEVELS_MAX); a document
# about an aggregate is about the codes inside it, this deep.
AGGREGATE_DEPTH_MAX = 4


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: a registered participant as of the head, or the anonymous public."""

    id: str  # participant id; "" for anonymous
    state: str = ""
    roles: frozenset[str] = frozenset()
    active: bool = False
    # Member states an auditor grant on the chain covers; UNION for all of them.
    audits: frozenset[str] = frozenset()

    @property
    def is_regulator(self) -> bool:
        return self.active and REGULATOR in self.roles

    @property
    def reads_blocks(self) -> bool:
        """Regulators and auditors with a grant read whole blocks."""
        return self.is_regulator or (self.active and bool(self.audits))

    def oversees(self, state: str) -> bool:
        """Whether this reader sees everything touching `state`: its regulator, or an
        auditor with a grant for it or for the union."""
        if not self.active:
            return False
        if self.is_regulator and self.state == state:
            return True
        return UNION in self.audits or state in self.audits

    @property
    def oversees_all(self) -> bool:
        return self.active and UNION in self.audits

    def oversees_any(self, states: Iterable[str]) -> bool:
        return any(self.oversees(s) for s in states)


ANONYMOUS = Reader("")


def reader_of(store: LedgerStore, pid: str | None) -> Reader:
    """The reader a (verified) participant id names, as of the store's head."""
    if not pid:
        return ANONYMOUS
    record = store.participant_record(pid)
    if record is None:
        return ANONYMOUS
    # Only auditors hold grants: others are spared the look-up on every read.
    audits = store.audit_scopes(pid) if AUDITOR in record.roles else frozenset()
    return Reader(pid, record.state, frozenset(record.roles), record.active, audits)


# -- the things read --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentRead:
    """A document, its result and its inclusion proof."""

    id: bytes


@dataclass(frozen=True, slots=True)
class CodeRead:
    """A code's current state (owner, status, shipment in transit)."""

    key: str


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A code's history, or its provenance bundle: allowed when some of it is visible;
    `visible_history` then says which part."""

    key: str


@dataclass(frozen=True, slots=True)
class ShipmentRead:
    id: bytes


@dataclass(frozen=True, slots=True)
class HoldingsRead:
    participant: str


@dataclass(frozen=True, slots=True)
class ParticipantRead:
    participant: str


@dataclass(frozen=True, slots=True)
class FlowRead:
    from_state: str
    to_state: str


@dataclass(frozen=True, slots=True)
class TradeRead:
    """A member state's export or import records (ledger/_recall.py)."""

    state: str


@dataclass(frozen=True, slots=True)
class RecallRead:
    """A recall and its holders: the handler shows each reader only the states it
    oversees (`recall_view_for`)."""

    id: bytes


@dataclass(frozen=True, slots=True)
class ImportRead:
    """A customs import: its importer and the overseers of its state."""

    id: bytes


@dataclass(frozen=True, slots=True)
class BlockRead:
    """Whole blocks with every document in them (headers are for any signed reader)."""


Thing = (DocumentRead | CodeRead | HistoryRead | ShipmentRead | HoldingsRead | ParticipantRead
         | FlowRead | BlockRead | TradeRead | RecallRead | ImportRead)


# -- the rule ---------------------------------------------------------------------------


def check_read(store: LedgerStore, reader: Reader, thing: Thing) -> Reason | None:
    """None when `reader` may read `thing`; Reason.NOT_ENTITLED when not.

    Things that do not exist are allowed here: the route answers 404 for them, which
    tells nothing a reader could not learn from the public check."""
    if not reader.active:
        return NOT_ENTITLED
    allowed = _RULES[type(thing)](store, reader, thing)
    return None if allowed else NOT_ENTITLED


def may_read(store: LedgerStore, reader: Reader, thing: Thing) -> bool:
    return check_read(store, reader, thing) is None


def _participant_states(store: LedgerStore, pids: Iterable[str]) -> list[str]:
    out = []
    for pid in pids:
        record = store.participant_record(pid)
        if record is not None:
            out.append(record.state)
    return out


def _may_read_participant(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    """A participant's record (name, state, roles, status) is for every signed reader:
    a business checks its counterparty before it ships, as national systems let it do
    by tax number. What it holds and does stays need-to-know."""
    return reader.active


def _may_read_holdings(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    pid = thing.participant
    if pid == reader.id or reader.oversees_all:
        return True
    record = store.participant_record(pid)
    return record is None or reader.oversees(record.state)


def _may_read_flow(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    return reader.oversees(thing.from_state) or reader.oversees(thing.to_state)


def _may_read_blocks(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    return reader.reads_blocks


def _may_read_shipment(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    shipment = store.shipment_record(thing.id)
    if shipment is None:
        return True  # 404
    if reader.id in (shipment.shipper, shipment.receiver):
        return True
    return reader.oversees(shipment.from_state) or reader.oversees(shipment.to_state)


def _may_read_code(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    """A code's current state: its holder and the receiver of a shipment it is in, the
    overseers of the holder's state, and the overseers of any state it passed through."""
    key = thing.key
    current = store.code_holder(key)
    if current is None:
        return True  # 404
    holder, receiver = current
    if reader.id in (holder, receiver) or reader.oversees_all:
        return True
    if reader.is_regulator or reader.audits:
        return _oversees_code(store, reader, key, current)
    return False


def _oversees_code(store: LedgerStore, reader: Reader, key: str, current: tuple[str, str]) -> bool:
    """Whether a regulator or auditor oversees a state the code was held in or shipped
    into or out of: the holder's and receiver's states first (a few key reads), then the
    whole history."""
    if reader.oversees_any(_participant_states(store, [p for p in current if p])):
        return True
    return reader.oversees_any(_code_states(store, key))


def _may_read_history(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    return history_window(store, reader, thing.key) is not None


def _may_read_document(store: LedgerStore, reader: Reader, thing: Any) -> bool:
    found = store.document_place(thing.id)
    if found is None:
        return True  # 404
    place, signed = found
    if signed is None:  # bytes that never decoded: only overseers of the block
        return reader.reads_blocks and (reader.is_regulator or reader.oversees_all)
    return document_visible(store, reader, signed, place)


def document_visible(store: LedgerStore, reader: Reader, signed: SignedDocument, place: Place) -> bool:
    """Whether `reader` may read this document, recorded at `place` in the chain: its
    signer, whom it names, the overseers of their states, and whoever may see it in the
    history of a code it moved (including the codes inside the aggregates it moved).

    The event feed calls this for each document it would serve."""
    if not reader.active:
        return False
    doc = signed.document
    if doc.signer == reader.id or reader.oversees_all or doc.type in PUBLIC_NOTICES:
        return True
    named = named_participants(store, signed)
    if reader.id in named:
        return True
    overseer = reader.is_regulator or bool(reader.audits)
    if overseer and reader.oversees_any(_participant_states(store, [doc.signer, *named])):
        return True
    for key in codes_within(store, touched_codes(store, signed)):
        if overseer:
            if reader.oversees_any(_code_states(store, key)):
                return True
        elif store.was_party(reader.id, key):
            window = history_window(store, reader, key)
            if window is not None and place <= window:
                return True
    return False


def codes_within(store: LedgerStore, keys: Sequence[str]) -> Iterable[str]:
    """The keys, and after them the codes ever packed in those that are aggregates, to
    the depth aggregates nest (each key once)."""
    seen: set[str] = set()
    level = list(keys)
    for _ in range(AGGREGATE_DEPTH_MAX + 1):
        nxt: list[str] = []
        for key in level:
            if key in seen:
                continue
            seen.add(key)
            yield key
            if key.startswith("00"):  # an SSCC: an aggregate's key
                nxt.extend(store.packed_codes(key))
        if not nxt:
            return
        level = nxt


def named_participants(store: LedgerStore, signed: SignedDocument) -> list[str]:
    """The participants a document names besides its signer: whom it registers,
    revokes or grants, the owner codes are emitted to, a shipment's receiver, and both
    ends of the shipment an accept, reject or cancel answers."""
    doc = signed.document
    kind = doc.type
    if kind is DocType.REGISTER_PARTICIPANT:
        return [participant_id(doc.payload[0])]
    if kind in (DocType.REVOKE_PARTICIPANT, DocType.GRANT_AUDIT, DocType.REVOKE_AUDIT):
        return [doc.payload[0]]
    if kind is DocType.EMIT:
        return [doc.payload[0]]
    if kind is DocType.SHIP:
        return [doc.payload[0]]
    if kind in (DocType.ACCEPT, DocType.REJECT, DocType.CANCEL_SHIPMENT):
        shipment = store.shipment_record(doc.payload[0])
        return [shipment.shipper, shipment.receiver] if shipment is not None else []
    if kind is DocType.CONFIRM_IMPORT:
        from ._recall import import_record

        record = import_record(store.db, doc.payload[0])
        return [record.importer] if record is not None else []
    return []


def touched_codes(store: LedgerStore, signed: SignedDocument) -> list[str]:
    """The code keys a document moved or changed (not the codes inside aggregates it
    names): an accept, reject or cancel touches every item of its shipment (those not
    accepted go back to the shipper)."""
    doc = signed.document
    kind = doc.type
    if kind in (DocType.ACCEPT, DocType.REJECT, DocType.CANCEL_SHIPMENT):
        shipment = store.shipment_record(doc.payload[0])
        return list(shipment.items) if shipment is not None else []
    if kind is DocType.EMIT:
        gtin, serials = doc.payload[1], doc.payload[2]
        return ["01" + gtin + "21" + s for s in serials]
    if kind is DocType.AGGREGATE:
        return [doc.payload[0], *doc.payload[1]]
    if kind is DocType.DISAGGREGATE:
        return [doc.payload[0]]
    if kind in (DocType.SHIP, DocType.RETIRE):
        return list(doc.payload[1])
    if kind in (DocType.INTRODUCE, DocType.RETURN, DocType.SUSPEND, DocType.RELEASE):
        return list(doc.payload[0])
    # The lifecycle of real goods (issue 13).
    if kind is DocType.APPLY:
        return list(doc.payload[0])
    if kind is DocType.WRITE_OFF:
        return list(doc.payload[1])
    if kind is DocType.REMARK:
        return [doc.payload[0], doc.payload[1]]
    if kind is DocType.REAGGREGATE:
        return [doc.payload[0], *doc.payload[1], *doc.payload[2]]
    if kind is DocType.IMPORT:
        return list(doc.payload[2])
    if kind is DocType.RECALL:
        return list(doc.payload[4])
    return []


# A shipment's commercial details (issue 13): the parties' business. The JSON views of a
# document (the event feed) leave them out for every reader but the shipper and the
# receiver, and say which they left out; the signed bytes (blocks, proofs, bundles) keep
# them, since cutting them would break the signature (docs/ACCESS.md).
COMMERCIAL_DETAILS = ("doc_number", "price", "vat")


def withheld_details(signed: SignedDocument, reader_id: str) -> list[str]:
    """The commercial details of `signed` that `reader_id` may not see (none for a party)."""
    doc = signed.document
    if doc.type is not DocType.SHIP or not doc.payload[-1]:
        return []
    if reader_id in (doc.signer, doc.payload[0]):
        return []
    return [name for name, _ in doc.payload[-1] if name in COMMERCIAL_DETAILS]


def document_json_for(signed: SignedDocument, reader_id: str) -> dict[str, Any]:
    """A document's JSON as `reader_id` may read it: without what `withheld_details` names."""
    return withhold_in_json(signed.document.to_json(), reader_id)


def withhold_in_json(document: dict[str, Any], reader_id: str | None) -> dict[str, Any]:
    """The same cut on a document's JSON form (`Document.to_json`), for the routes that
    hold only that; the input is not changed."""
    details = document.get("details")
    if document.get("type") != DocType.SHIP.value or not details:
        return document
    if reader_id is not None and reader_id in (document.get("signer"), document.get("receiver")):
        return document
    withheld = [pair[0] for pair in details if pair[0] in COMMERCIAL_DETAILS]
    if not withheld:
        return document
    out = dict(document)
    kept = [pair for pair in details if pair[0] not in withheld]
    if kept:
        out["details"] = kept
    else:
        out.pop("details")
    out["withheld"] = withheld
    return out


_RULES: dict[type, Callable[[LedgerStore, Reader, Any], bool]] = {
    DocumentRead: _may_read_document,
    CodeRead: _may_read_code,
    HistoryRead: _may_read_history,
    ShipmentRead: _may_read_shipment,
    HoldingsRead: _may_read_holdings,
    ParticipantRead: _may_read_participant,
    FlowRead: _may_read_flow,
    BlockRead: _may_read_blocks,
    TradeRead: lambda store, reader, thing: reader.oversees(thing.state),
    # A recall is a public safety notice: every active participant reads what is
    # recalled and why; who holds the goods is cut to what the reader oversees.
    RecallRead: lambda store, reader, thing: reader.active,
    ImportRead: lambda store, reader, thing: _may_read_import(store, reader, thing.id),
}


def _may_read_import(store: LedgerStore, reader: Reader, import_id: bytes) -> bool:
    from ._recall import import_record

    record = import_record(store.db, import_id)
    return record is None or record.importer == reader.id or reader.oversees(record.state)


def recall_view_for(reader: Reader, view: dict[str, Any], own_codes: int) -> dict[str, Any]:
    """A recall's holders view (ledger/_recall.recall_holders) cut to the reader: the
    overseers of a state see its holders, the filer and producer see counts per state,
    any other reader sees only how many codes it holds itself."""
    states = view["states"]
    if reader.oversees_all:
        return view
    out = {k: v for k, v in view.items() if k != "states"}
    shown: dict[str, Any] = {}
    for state, per in states.items():
        if reader.oversees(state):
            shown[state] = per
        elif reader.id in (view.get("filer"), view.get("producer")):
            shown[state] = {"codes": per["codes"]}
    out["states"] = shown
    out["held_by_you"] = own_codes
    return out


# -- a code's parties and what each may see of its history --------------------------------


@dataclass(slots=True)
class Party:
    """A participant's time with a code: as its holder, or as the receiver of a shipment
    it was in. `until` is the place of the document that ended it (inclusive), None
    while it lasts."""

    participant: str
    holder: bool
    since: Place
    until: Place | None = None


@dataclass(slots=True)
class _Timeline:
    parties: list[Party] = field(default_factory=list)
    holder: Party | None = None
    receivers: dict[bytes, Party] = field(default_factory=dict)  # shipment id -> receiver

    def hold(self, pid: str, at: Place) -> None:
        if self.holder is not None:
            self.holder.until = at
        self.holder = Party(pid, True, at)
        self.parties.append(self.holder)


@dataclass(frozen=True, slots=True)
class DocFacts:
    """What the party timeline needs of a document in a code's history."""

    type: str  # the DocType's value
    signer: str
    payload: Sequence[Any]
    id: bytes  # the document id of a ship (the shipment's id); b"" for other types


def code_parties(
    entries: Iterable[HistoryEntry], facts_at: Callable[[int, int], DocFacts], key: str
) -> list[Party]:
    """Who held a code and who received it, and when, from its whole history (its own
    entries merged with those of the aggregates it travelled in).

    A pure function of the history and its documents: a holder begins with an emit
    (the owner it names) or an accepted shipment (its receiver) and ends when the next
    one begins; a receiver begins with a ship and ends with the accept, reject or
    cancel of that shipment."""
    line = _Timeline()
    for entry in entries:
        at = (entry.height, entry.position)
        doc = facts_at(entry.height, entry.position)
        kind = doc.type
        if kind == _EMIT:
            line.hold(doc.payload[0], at)
        elif kind == _SHIP:
            receiver = Party(doc.payload[0], False, at)
            line.receivers[doc.id] = receiver
            line.parties.append(receiver)
        elif kind in _ANSWERS:
            receiver_or_none = line.receivers.pop(doc.payload[0], None)
            if receiver_or_none is not None:
                receiver_or_none.until = at
            if kind == _ACCEPT:
                chosen = doc.payload[1]
                if not chosen or (entry.via or key) in chosen:
                    line.hold(doc.signer, at)
    return line.parties


_EMIT, _SHIP, _ACCEPT = DocType.EMIT.value, DocType.SHIP.value, DocType.ACCEPT.value
_ANSWERS = frozenset((DocType.ACCEPT.value, DocType.REJECT.value, DocType.CANCEL_SHIPMENT.value))


def window_of(parties: Iterable[Party], pid: str) -> Place | None:
    """The last place of a code's history that `pid` may see as a party: all of it
    while it holds or receives the code, up to the document that ended its last time
    with the code otherwise; None if it never was a party."""
    window: Place | None = None
    for party in parties:
        if party.participant != pid:
            continue
        if party.until is None:
            return END
        if window is None or party.until > window:
            window = party.until
    return window


def history_window(store: LedgerStore, reader: Reader, key: str) -> Place | None:
    """The last place of a code's history `reader` may see (END: all of it), or None
    when it may see none of it."""
    if not reader.active:
        return None
    current = store.code_holder(key)
    if current is None:
        return END  # no such code: the route answers 404
    if reader.id in current or reader.oversees_all:
        return END
    if reader.is_regulator or reader.audits:
        return END if _oversees_code(store, reader, key, current) else None
    return window_of(store.code_parties(key), reader.id)


def visible_history(
    store: LedgerStore, reader: Reader, key: str, entries: Sequence[HistoryEntry]
) -> list[HistoryEntry]:
    """The entries of a code's history `reader` may see: all of it for its holder, its
    receiver and the overseers of a state it passed through; up to the moment it
    passed the code on for a past holder; nothing for anyone else."""
    window = history_window(store, reader, key)
    if window is None:
        return []
    if window == END:
        return list(entries)
    return [e for e in entries if (e.height, e.position) <= window]


def _code_states(store: LedgerStore, key: str) -> list[str]:
    """The member states a code was held in or shipped into or from."""
    parties = store.code_parties(key)
    return _participant_states(store, dict.fromkeys(p.participant for p in parties))


__all__ = [
    "ANONYMOUS",
    "END",
    "UNION",
    "BlockRead",
    "CodeRead",
    "DocumentRead",
    "FlowRead",
    "HistoryRead",
    "HoldingsRead",
    "ParticipantRead",
    "DocFacts",
    "Party",
    "Reader",
    "ShipmentRead",
    "Thing",
    "check_read",
    "code_parties",
    "codes_within",
    "document_json_for",
    "document_visible",
    "history_window",
    "may_read",
    "named_participants",
    "reader_of",
    "touched_codes",
    "visible_history",
    "window_of",
    "withheld_details",
    "withhold_in_json",
]

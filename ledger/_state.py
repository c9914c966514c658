"""The state machine: a pure function of (state, ordered documents, block time).

`execute_block` gives every document a `Result` and returns the writes that the block
makes to the state, in the order they were made. It reads the state before the block
through a `Reader` and never writes: the caller puts the writes, the block and the
results into one atomic batch. A rejected document leaves no write behind: each
document works on its own overlay, merged into the block's only when it applies.

Nothing here reads a clock, a random source or the environment, and nothing iterates
a set, so every node and every auditor get the same results and the same state hash.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol

from . import _holdings as holdings
from . import _recall as recall
from . import _tax_ids as tax_ids
from ._admission import RECORDED_REFUSALS, admission
from ._catalogue import (
    TNVED_RE,
    ProductGroup,
    ProductRecord,
    attributes_problem,
    product_key,
)
from ._catalogue import attributes_key as catalogue_attributes_key
from ._codes import CodeError, Sscc, check_attribute, is_valid_gtin, parse_key
from ._documents import (
    CODES_PER_DOCUMENT_MAX,
    PAYLOADS,
    DocType,
    Field,
    SignedDocument,
    decode_signed,
)
from ._encoding import pack_trusted, unpack_trusted
from ._errors import DecodeError, InvariantError
from ._genesis import ChainParams, Genesis
from ._governance import GovernanceRefused, governance_writes, governed_params
from ._group_table import K_GROUP_TABLE, governed_groups
from ._identity import DOMAIN_DOCUMENT, Verifier, participant_id
from ._inbox import Involvement, involvement
from ._reasons import APPLIED, Reason, Result
from ._records import (
    ACCEPTED,
    ACTIVE,
    AGGREGATE,
    APPLIED_TO_GOODS,
    CANCELLED,
    DISAGGREGATED,
    EMITTED,
    INTRODUCED,
    P_CHILDREN,
    P_CODE,
    P_DOC,
    P_FLOW,
    P_HISTORY,
    P_LINK,
    P_PARTICIPANT,
    P_SHIPMENT,
    PARTIALLY_ACCEPTED,
    PENDING,
    REJECTED,
    REMARKED,
    REPLACED_BY,
    REPLACES,
    RETIRED,
    REVOKED,
    SEP,
    UNIT,
    WRITTEN_OFF,
    CodeRecord,
    ParticipantRecord,
    ShipmentRecord,
    audit_key,
    code_key,
    holding_key,
    u32,
    u64,
)

# Units in boxes, boxes on pallets, pallets in containers: four levels cover practice
# and bound the walk from a code up to its outermost aggregate.
AGGREGATION_LEVELS_MAX = 4
REGULATOR = "regulator"
BUSINESS_ROLES = frozenset(("producer", "importer", "wholesaler", "retailer"))
MAKERS = frozenset(("producer", "importer"))
RETAILERS = frozenset(("retailer",))
REGULATORS = frozenset((REGULATOR,))
AUDITORS = frozenset(("auditor",))
UNION_STATE = "EAEU"
UNION_SCOPE = "*"  # the scope of a grant covering every member state (ledger/_access.UNION)




class Rejected(Exception):
    """Raised inside a handler to reject the whole document with a reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.result = Result(reason, message)


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    results: list[Result]
    writes: dict[bytes, bytes | None]
    documents: list[SignedDocument | None]  # None where the bytes did not decode
    # Who each applied document addresses (ledger/_inbox.py): store-local indexes, not state.
    involved: list[Involvement] = field(default_factory=list)
    # Values read from the stored state (None: absent), which are the values before the
    # block: the store's undo data takes them from here instead of reading them again.
    stored: dict[bytes, bytes | None] = field(default_factory=dict)


class _Overlay:
    """Reads through the document's writes, then the block's, then the stored state."""

    __slots__ = ("reader", "block", "doc", "stored")

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.block: dict[bytes, bytes | None] = {}
        self.doc: dict[bytes, bytes | None] = {}
        self.stored: dict[bytes, bytes | None] = {}  # see BlockOutcome.stored

    def get(self, key: bytes) -> bytes | None:
        doc = self.doc
        if key in doc:
            return doc[key]
        block = self.block
        if key in block:
            return block[key]
        value = self.stored[key] = self.reader.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.doc[key] = value

    def delete(self, key: bytes) -> None:
        self.doc[key] = None

    def write_doc(self) -> None:
        """Keep the document's writes: they become part of the block's."""
        self.block.update(self.doc)
        self.doc = {}

    def drop_doc(self) -> None:
        self.doc = {}


def state_hash_step(previous: bytes, writes: dict[bytes, bytes | None]) -> bytes:
    """Chain the state hash over one block's writes, in the order they were made.

    Each node makes the same writes in the same order, so equal hashes at every height
    mean equal states; the first write that differs changes every hash after it. The
    writes are hashed as one flat msgpack array key, value (or nil), key, value, ...,
    framed by msgpack itself.
    """
    h = hashlib.sha256(b"tamga/state/v1")
    h.update(previous)
    h.update(pack_trusted(list(itertools.chain.from_iterable(writes.items()))))
    return h.digest()


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes | None]:
    """The state before block 1: each member state's regulator as a participant."""
    writes: dict[bytes, bytes | None] = {}
    for state in genesis.states:
        record = ParticipantRecord(
            state.regulator_public_key, state.code, [REGULATOR], f"Regulator of {state.name}", ACTIVE, 0
        )
        writes[P_PARTICIPANT + state.regulator_id.encode()] = record.pack()
    for public_key in genesis.auditors:
        pid = participant_id(public_key)
        # A union auditor belongs to no member state; "EAEU" says so where a state is shown.
        auditor = ParticipantRecord(public_key, UNION_STATE, ["auditor"], "Auditor of the Union", ACTIVE, 0)
        writes[P_PARTICIPANT + pid.encode()] = auditor.pack()
        writes[audit_key(pid, UNION_SCOPE)] = pack_trusted([0])
    return writes


class StateMachine:
    """Executes blocks of documents against a state it reads but never writes."""

    def __init__(self, genesis: Genesis, verifier: Verifier | None = None) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.member_states = {s.code for s in genesis.states}
        self.verifier = verifier or Verifier()
        self.params = genesis.params  # the parameters in force, read at each block
        # The catalogue's group table; empty on a chain from before the catalogue,
        # which then keeps the rules it was built under (see _catalogue.py).
        self.groups = {g.name: g for g in genesis.product_groups}
        # Groups closed to new products and codes (ledger/_group_table.py); like `groups`,
        # the table in force, read at each block and after a governance document sets it.
        self.retired_groups: frozenset[str] = frozenset()
        self._participants: dict[bytes, ParticipantRecord] = {}

    # The same few thousand participants sign block after block; decoding their record
    # costs more than reading it, so decoded records are kept by their stored bytes
    # (a changed record has other bytes). Bounded; records are never mutated in place.
    PARTICIPANT_CACHE_MAX = 65_536

    def participant_record(self, raw: bytes) -> ParticipantRecord:
        record = self._participants.get(raw)
        if record is None:
            if len(self._participants) >= self.PARTICIPANT_CACHE_MAX:
                self._participants.clear()
            record = ParticipantRecord.unpack(raw)
            self._participants[raw] = record
        return record

    def execute_block(
        self,
        reader: Reader,
        documents: Sequence[bytes],
        height: int,
        time_ms: int,
        verified: Callable[[bytes], bool] | None = None,
        decoded: Mapping[bytes, SignedDocument] | None = None,
    ) -> BlockOutcome:
        """Results and writes of one block. `verified(key)` says whether a signature was
        checked already (each node checks each signature once), by the document's
        `verified_key`: its id and its signature, since a forged copy of a document has
        the same id but another signature. `decoded` maps wire bytes to the document
        they decoded to, for documents the caller decoded already (each node decodes
        each document once)."""
        overlay = _Overlay(reader)
        # The parameters in force: genesis's, as governance documents last set them.
        self.params = governed_params(reader, self.genesis)
        self.read_groups(reader)
        within = within_block_limits(documents, self.params)
        known = decoded or {}
        if verified is None:
            # The documents are decoded here once, for the checks and the execution both.
            checked, known = self._verify_ahead(reader, documents[:within], known)
            verified = checked.__contains__
        results: list[Result] = []
        signed_documents: list[SignedDocument | None] = []
        ctx = _Context(self, overlay, height, time_ms)
        involved: list[Involvement] = []
        # Recalls find their holders through the lot index (ledger/_recall.py).
        scan = recall.overlay_scan(reader, lambda: (overlay.block,)) if hasattr(reader, "iterator") else None
        for position, wire in enumerate(documents[:within]):
            signed, result = ctx.run(wire, position, verified, known.get(wire))
            signed_documents.append(signed)
            results.append(result)
            if result is APPLIED and signed is not None:
                found = involvement(signed.document, signed.id, ctx.signer, overlay.get, height, position,
                                    self.participant_record, scan)
                if found is not None:
                    involved.append(found)
        for wire in documents[within:]:
            signed_documents.append(known.get(wire) or _decoded_or_none(wire))
            results.append(BLOCK_FULL_RESULT)
        return BlockOutcome(results, overlay.block, signed_documents, involved, overlay.stored)


    def read_groups(self, reader: Reader) -> None:
        """Take the product-group table in force in the state `reader` reads."""
        table = governed_groups(reader, self.genesis.product_groups)
        self.groups = dict(table.groups)
        self.retired_groups = table.retired

    def _verify_ahead(
        self, reader: Reader, documents: Sequence[bytes], decoded: Mapping[bytes, SignedDocument]
    ) -> tuple[set[bytes], dict[bytes, SignedDocument]]:
        """The verified keys of the block's documents whose signatures verify against keys
        known before the block, and every document that decodes, by its wire bytes (the
        execution reuses them). Checking them in one tight loop, before executing anything,
        keeps the signature code hot in the processor's caches. A document that does not
        even decode, or whose signer registers within this block, is left to the
        execution, which checks what is left itself."""
        ok: set[bytes] = set()
        known = dict(decoded)
        keys: dict[str, bytes | None] = {}
        chain_id = self.chain_id
        verify = self.verifier.verify
        for wire in documents:
            signed = known.get(wire)
            if signed is None:
                try:
                    signed = decode_signed(wire)
                except DecodeError:
                    continue
                known[wire] = signed
            signer = signed.document.signer
            if signer not in keys:
                raw = reader.get(P_PARTICIPANT + signer.encode())
                keys[signer] = self.participant_record(raw).public_key if raw is not None else None
            public_key = keys[signer]
            if public_key is not None and verify(public_key, signed.signature, DOMAIN_DOCUMENT, chain_id,
                                                 signed.body):
                ok.add(signed.verified_key)
        return ok, known


BLOCK_FULL_RESULT = Result(Reason.BLOCK_FULL, "the document lies beyond the block limits of genesis")


def within_block_limits(documents: Sequence[bytes], params: ChainParams) -> int:
    """How many of a block's documents, from the first, fit its genesis limits.

    An honest proposer never builds a larger block; when a leader does, the documents
    from the first one over a limit on are not executed (Reason.BLOCK_FULL), on every
    node and auditor alike. Refusing them rather than the whole block keeps what fits
    (its documents were ordered and their clients wait), and refusing a suffix rather
    than picking documents that still fit keeps the rule simple to state and check."""
    limit = min(len(documents), params.block_documents_max)
    if sum(map(len, documents[:limit])) <= params.block_bytes_max:
        return limit  # the common case, summed without a Python loop
    total_bytes = 0
    for position in range(limit):
        total_bytes += len(documents[position])
        if total_bytes > params.block_bytes_max:
            return position
    return limit


def _decoded_or_none(wire: bytes) -> SignedDocument | None:
    """A document refused unexecuted still names its id when it decodes, so that
    the client waiting for it hears the outcome."""
    try:
        return decode_signed(wire)
    except DecodeError:
        return None


class _Context:
    """A document's execution: the checks common to all types, then its handler.
    One context serves a whole block, document after document (`run` resets it)."""

    __slots__ = (
        "sm", "ov", "height", "position", "time_ms", "doc", "doc_id", "signer", "history_suffix",
        "_history_values", "_height_key",
    )

    def __init__(self, sm: StateMachine, ov: _Overlay, height: int, time_ms: int):
        self.sm = sm
        self.ov = ov
        self.height = height
        self.time_ms = time_ms
        self._height_key = SEP + u64(height)

    def run(
        self, wire: bytes, position: int, verified: Callable[[bytes], bool] | None,
        signed: SignedDocument | None = None,
    ) -> tuple[SignedDocument | None, Result]:
        """Execute one document; `signed` is what `wire` decodes to, when known."""
        self.position = position
        self.history_suffix = self._height_key + u32(position)
        self._history_values: dict[str, bytes] = {}
        if signed is None:
            try:
                signed = decode_signed(wire)
            except DecodeError as exc:
                return None, Result(Reason.MALFORMED, str(exc))
        self.doc = signed.document
        self.doc_id = signed.id
        try:
            self._admit(signed, verified)
        except Rejected as rej:
            return signed, rej.result
        try:
            HANDLERS[self.doc.type](self)
        except Rejected as rej:
            self.ov.drop_doc()
            self._record(rej.result)
            self.ov.write_doc()
            return signed, rej.result
        self._record(APPLIED)
        self.ov.write_doc()
        return signed, APPLIED

    def _admit(self, signed: SignedDocument, verified: Callable[[bytes], bool] | None) -> None:
        doc = self.doc
        raw = self.ov.get(P_PARTICIPANT + doc.signer.encode())
        signer = self.sm.participant_record(raw) if raw is not None else None
        sm = self.sm

        def signature_ok(record: ParticipantRecord) -> bool:
            if verified is not None and verified(signed.verified_key):
                return True
            return sm.verifier.verify(record.public_key, signed.signature, DOMAIN_DOCUMENT, doc.chain_id,
                                      signed.body)

        refusal = admission(
            signed, chain_id=sm.chain_id, time_ms=self.time_ms,
            expiry_window_ms=sm.params.document_expiry_window_max_ms,
            signer=signer, signature_ok=signature_ok,
            known=lambda: self.ov.get(P_DOC + self.doc_id) is not None,
        )
        if refusal is not None:
            if refusal.reason in RECORDED_REFUSALS:
                self._record(refusal)
                self.ov.write_doc()
            raise Rejected(refusal.reason, refusal.message)
        if signer is None:  # the rule refuses unknown signers
            raise InvariantError("an admitted document has a signer")
        self.signer = signer

    def _record(self, result: Result) -> None:
        self.ov.put(
            P_DOC + self.doc_id,
            pack_trusted([self.height, self.position, result.reason.value]),
        )

    # Helpers shared by the handlers.

    def require_role(self, roles: frozenset[str], action: str) -> None:
        if roles.isdisjoint(self.signer.roles):
            raise Rejected(
                Reason.FORBIDDEN_ROLE,
                # Sorted: set order varies between processes, and messages are hashed.
                f"{action} needs the role {' or '.join(sorted(roles))}; "
                f"the signer is {', '.join(self.signer.roles)}",
            )

    def participant(self, pid: str) -> ParticipantRecord:
        raw = self.ov.get(P_PARTICIPANT + pid.encode())
        if raw is None:
            raise Rejected(Reason.NOT_REGISTERED, f"participant {pid} is not registered")
        return self.sm.participant_record(raw)

    def code(self, key: str) -> CodeRecord:
        raw = self.ov.get(code_key(key))
        if raw is None:
            try:
                parse_key(key)
            except CodeError as exc:
                raise Rejected(Reason.INVALID_CODE, f"{key}: {exc.message}") from exc
            raise Rejected(Reason.UNKNOWN_CODE, f"{key} was never emitted")
        return CodeRecord.unpack(raw)

    def put_code(self, key: str, record: CodeRecord) -> None:
        self.ov.doc[P_CODE + key.encode()] = pack_trusted(record)

    def root(self, record: CodeRecord) -> CodeRecord:
        """The outermost aggregate around a code (the code itself when loose)."""
        for _ in range(AGGREGATION_LEVELS_MAX + 1):
            if not record.parent:
                return record
            raw = self.ov.get(code_key(record.parent))
            if raw is None:
                break
            record = CodeRecord.unpack(raw)
        raise Rejected(Reason.INVALID_CODE, "aggregation chain is broken")  # pragma: no cover

    def history(self, key: str, sscc: str = "") -> None:
        """Index this document under a code. The entry's key says where the document
        is (height, position); its value only the type and any aggregate involved, so
        that a 30,000-code document adds little more than its keys."""
        self.ov.doc[P_HISTORY + key.encode() + self.history_suffix] = self.history_value(sscc)

    def history_value(self, sscc: str) -> bytes:
        value = self._history_values.get(sscc)
        if value is None:
            value = pack_trusted([self.doc.type.value, sscc])
            self._history_values[sscc] = value
        return value

    def movable(self, key: str, seen: set[str]) -> CodeRecord:
        """A loose code the signer owns, in circulation, free to act on."""
        if key in seen:
            raise Rejected(Reason.REPEATED_CODE, f"{key} is listed twice")
        seen.add(key)
        ((_, _, record),) = self.movables([key])
        return CodeRecord(record)

    def movables(self, keys: Sequence[str]) -> list[tuple[str, bytes, list[Any]]]:
        """Loose codes the signer owns, in circulation and free to act on, each with its
        encoded key and its record as a plain list (fields as in CodeRecord); the first
        that is not refuses the whole document.

        This runs once per code per document: repeats are found with one set, the
        overlay's lookups are inlined, and the common case is one comparison of the
        record's status fields against what a movable code must hold."""
        _distinct(keys)
        movable_fields = [INTRODUCED, self.doc.signer, "", b"", False, 0]
        doc_writes, block_writes, read = self.ov.doc, self.ov.block, self.ov.reader.get
        stored = self.ov.stored
        out = []
        for key in keys:
            encoded = key.encode()
            code_key_ = P_CODE + encoded
            if code_key_ in doc_writes:
                raw = doc_writes[code_key_]
            elif code_key_ in block_writes:
                raw = block_writes[code_key_]
            else:
                raw = stored[code_key_] = read(code_key_)
            record = unpack_trusted(raw) if raw is not None else self.code(key)
            if record[1:7] != movable_fields:
                self._refuse_unmovable(key, record)
            out.append((key, encoded, record))
        return out

    def _refuse_unmovable(self, key: str, record: list[Any]) -> NoReturn:
        status, owner, parent, shipment, suspended, inside = record[1:7]
        if parent:
            raise Rejected(Reason.IN_AGGREGATE, f"{key} is packed in {parent}")
        if owner != self.doc.signer:
            raise Rejected(Reason.NOT_OWNER, f"{key} belongs to someone else")
        if shipment:
            raise Rejected(Reason.IN_TRANSIT, f"{key} is in transit in shipment {shipment.hex()}")
        if suspended or inside:
            raise Rejected(Reason.SUSPENDED, f"{key} is suspended by a regulator")
        raise Rejected(Reason.WRONG_STATUS, f"{key} is {status}, not in circulation")

    def shipment(self, shipment_id: bytes) -> ShipmentRecord:
        raw = self.ov.get(P_SHIPMENT + shipment_id)
        if raw is None:
            raise Rejected(Reason.UNKNOWN_SHIPMENT, f"no shipment {shipment_id.hex()}")
        record = ShipmentRecord.unpack(raw)
        if record.status != PENDING:
            raise Rejected(Reason.WRONG_STATUS, f"shipment {shipment_id.hex()} is {record.status}")
        return record

    def regulator_state(self) -> str:
        self.require_role(REGULATORS, f"{self.doc.type.value}")
        return self.signer.state

    def product_group(self, gtin: str, groups: dict[str, ProductGroup]) -> ProductGroup:
        """The group of a registered GTIN, memoised in `groups` for the document; refuses
        an unregistered GTIN and a group that does not use this document type."""
        group = groups.get(gtin)
        if group is None:
            raw = self.ov.get(product_key(gtin))
            if raw is None:
                raise Rejected(Reason.UNKNOWN_PRODUCT, f"GTIN {gtin} is not in the product catalogue")
            name = ProductRecord.unpack(raw).group
            found = self.sm.groups.get(name)
            if found is None:  # pragma: no cover - registration checks the group
                raise InvariantError(f"product {gtin} names group {name}, which genesis lacks")
            kind = self.doc.type.value
            if kind not in found.documents:
                raise Rejected(Reason.NOT_FOR_GROUP, f"product group {name} does not use {kind} documents")
            groups[gtin] = group = found
        return group


def _first_repeat(keys: Sequence[str]) -> str:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    raise InvariantError("no key repeats")


# Handlers: one per document type. Each raises Rejected or makes its writes.


def _register(ctx: _Context) -> None:
    public_key, state, roles, name, tax_id = ctx.doc.payload
    if ctx.regulator_state() != state:
        raise Rejected(Reason.WRONG_STATE, f"only the regulator of {state} registers its participants")
    # Businesses give their tax id on chains with the catalogue (ledger/_tax_ids.py).
    problem = tax_ids.tax_id_problem(state, tax_id, roles, required=bool(ctx.sm.groups))
    if problem is not None:
        raise Rejected(Reason.BAD_TAX_ID, problem)
    pid = participant_id(public_key)
    if ctx.ov.get(P_PARTICIPANT + pid.encode()) is not None:
        raise Rejected(Reason.ALREADY_EXISTS, f"participant {pid} is already registered")
    record = ParticipantRecord(public_key, state, list(roles), name, ACTIVE, ctx.height, tax_id)
    ctx.ov.put(P_PARTICIPANT + pid.encode(), record.pack())


def _revoke(ctx: _Context) -> None:
    (pid,) = ctx.doc.payload
    target = ctx.participant(pid)
    if ctx.regulator_state() != target.state:
        raise Rejected(Reason.WRONG_STATE, f"only the regulator of {target.state} revokes its participants")
    if REGULATOR in target.roles:
        raise Rejected(Reason.FORBIDDEN_ROLE, "a regulator is named by genesis and cannot be revoked")
    if target.status == REVOKED:
        raise Rejected(Reason.WRONG_STATUS, f"participant {pid} is already revoked")
    revoked = replace(target, status=REVOKED)  # records are shared through the cache
    ctx.ov.put(P_PARTICIPANT + pid.encode(), revoked.pack())


def _emit(ctx: _Context) -> None:
    owner_id, gtin, serials = ctx.doc.payload
    state = ctx.regulator_state()
    owner = ctx.participant(owner_id)
    if owner.status == REVOKED:
        raise Rejected(Reason.REVOKED, f"participant {owner_id} is revoked")
    if owner.state != state:
        raise Rejected(Reason.WRONG_STATE, f"{owner_id} is registered in {owner.state}, not {state}")
    if "producer" not in owner.roles and "importer" not in owner.roles:
        raise Rejected(Reason.FORBIDDEN_ROLE, "codes are emitted to producers and importers only")
    if len(gtin) != 14 or not is_valid_gtin(gtin):
        raise Rejected(Reason.INVALID_CODE, f"{gtin} is not a valid GTIN-14")
    if ctx.sm.groups:
        group = ctx.product_group(gtin, {})
        if group.name in ctx.sm.retired_groups:
            raise Rejected(Reason.NOT_FOR_GROUP,
                           f"product group {group.name} is retired: it takes no new codes")
        _check_layout(group, serials)
    prefix = "01" + gtin + "21"
    seen: set[str] = set()
    for serial in serials:
        key = prefix + serial
        if key in seen:
            raise Rejected(Reason.REPEATED_CODE, f"serial {serial} is listed twice")
        seen.add(key)
        try:
            parse_key(key)
        except CodeError as exc:
            raise Rejected(Reason.INVALID_CODE, f"serial {serial!r}: {exc.message}") from exc
        if ctx.ov.get(code_key(key)) is not None:
            raise Rejected(Reason.ALREADY_EXISTS, f"{key} was already emitted")
        ctx.put_code(key, CodeRecord.new(UNIT, EMITTED, owner_id))
        ctx.ov.put(holding_key(owner_id, key), b"")
        ctx.history(key)


def _check_layout(group: ProductGroup, serials: Sequence[str]) -> None:
    lengths = group.serial_lengths
    for serial in serials:
        if len(serial) not in lengths:
            raise Rejected(
                Reason.WRONG_LAYOUT,
                f"serial {serial!r} has {len(serial)} characters; product group {group.name} prints "
                f"serials of {' or '.join(map(str, lengths))}",
            )


def _distinct(keys: Sequence[str]) -> Sequence[str]:
    """The keys, refusing the document when one is listed twice."""
    if len(set(keys)) != len(keys):
        raise Rejected(Reason.REPEATED_CODE, f"{_first_repeat(keys)} is listed twice")
    return keys


def _owned_and_free(ctx: _Context, keys: Sequence[str], not_owner: str) -> Iterator[tuple[str, CodeRecord]]:
    """Each code with its record, when the signer owns it and no regulator froze it;
    `not_owner` completes the refusal ("was emitted to someone else")."""
    for key in _distinct(keys):
        record = ctx.code(key)
        if record.owner != ctx.doc.signer:
            raise Rejected(Reason.NOT_OWNER, f"{key} {not_owner}")
        if record.blocked:
            raise Rejected(Reason.SUSPENDED, f"{key} is suspended by a regulator")
        yield key, record


def _introduce(ctx: _Context) -> None:
    ctx.require_role(MAKERS, "introducing goods")
    keys, attributes, _details = ctx.doc.payload
    groups: dict[str, ProductGroup] = {}
    checked: set[str] = set()
    packed = pack_trusted(attributes) if attributes else b""
    recalls = recall.RecallCheck(ctx.ov.get)
    for key, record in _owned_and_free(ctx, keys, "was emitted to someone else"):
        if record.status == APPLIED_TO_GOODS and not attributes:
            # Printed with its attributes (`apply`): those are what the group's rule reads.
            _introduce_applied(ctx, key, record, groups)
            continue
        if record.status not in (EMITTED, APPLIED_TO_GOODS):
            raise Rejected(Reason.WRONG_STATUS, f"{key} is {record.status}, not emitted")
        _refuse_recalled(recalls, key, attributes)
        gtin = key[2:16]  # an emitted code is a unit: "01" GTIN "21" serial
        if gtin not in checked:
            group = ctx.product_group(gtin, groups) if ctx.sm.groups else None
            _check_attributes(attributes, group)
            checked.add(gtin)
        record.status = INTRODUCED
        ctx.put_code(key, record)
        if packed:
            recall.store_attributes(ctx.ov.put, key, attributes, packed)
        ctx.history(key)


def _check_attributes(attributes: list[list[str]], group: ProductGroup | None) -> None:
    problem = attributes_problem(attributes, group)
    if problem is not None:
        kind, message = problem
        raise Rejected(Reason.MISSING_ATTRIBUTE if kind == "missing" else Reason.BAD_ATTRIBUTE, message)


def _aggregate(ctx: _Context) -> None:
    ctx.require_role(BUSINESS_ROLES, "aggregation")
    sscc, children, _details = ctx.doc.payload
    try:
        parsed = parse_key(sscc)
    except CodeError as exc:
        raise Rejected(Reason.INVALID_CODE, f"{sscc}: {exc.message}") from exc
    if not isinstance(parsed, Sscc):
        raise Rejected(Reason.INVALID_CODE, f"{sscc} is not an SSCC (AI 00)")
    if ctx.ov.get(code_key(sscc)) is not None:
        raise Rejected(Reason.ALREADY_EXISTS, f"SSCC {sscc} is already in use")
    seen: set[str] = {sscc}
    level = 0
    for key in children:
        record = ctx.movable(key, seen)
        level = max(level, record.level)
        record.parent = sscc
        ctx.put_code(key, record)
        ctx.ov.delete(holding_key(ctx.doc.signer, key))
        ctx.history(key, sscc)
    if level + 1 > AGGREGATION_LEVELS_MAX:
        raise Rejected(Reason.TOO_DEEP, f"aggregates nest at most {AGGREGATION_LEVELS_MAX} levels")
    ctx.put_code(
        sscc,
        CodeRecord.new(AGGREGATE, INTRODUCED, ctx.doc.signer, level=level + 1, count=len(children)),
    )
    ctx.ov.put(P_CHILDREN + sscc.encode(), pack_trusted(list(children)))
    ctx.ov.put(holding_key(ctx.doc.signer, sscc), b"")
    ctx.history(sscc)


def _disaggregate(ctx: _Context) -> None:
    ctx.require_role(BUSINESS_ROLES, "disaggregation")
    sscc = ctx.doc.payload[0]
    record = ctx.movable(sscc, set())
    if record.kind != AGGREGATE:
        raise Rejected(Reason.WRONG_STATUS, f"{sscc} is a unit, not an aggregate")
    raw = ctx.ov.get(P_CHILDREN + sscc.encode())
    children: list[str] = unpack_trusted(raw) if raw is not None else []
    for key in children:
        child = ctx.code(key)
        child.parent = ""
        child.owner = record.owner
        ctx.put_code(key, child)
        ctx.ov.put(holding_key(record.owner, key), b"")
        ctx.history(key, sscc)
    record.status = DISAGGREGATED
    record.count = 0
    ctx.put_code(sscc, record)
    ctx.ov.delete(P_CHILDREN + sscc.encode())
    ctx.ov.delete(holding_key(record.owner, sscc))
    ctx.history(sscc)


def _ship(ctx: _Context) -> None:
    ctx.require_role(BUSINESS_ROLES, "shipping")
    receiver_id, items, _details = ctx.doc.payload
    if receiver_id == ctx.doc.signer:
        raise Rejected(Reason.INVALID_RECEIVER, "a shipment goes to another participant")
    receiver = ctx.participant(receiver_id)
    if receiver.status == REVOKED:
        raise Rejected(Reason.REVOKED, f"receiver {receiver_id} is revoked")
    if BUSINESS_ROLES.isdisjoint(receiver.roles):
        raise Rejected(Reason.INVALID_RECEIVER, f"receiver {receiver_id} does not trade goods")
    shipment_id = ctx.doc_id
    writes = ctx.ov.doc
    history = ctx.history_value("")
    suffix = ctx.history_suffix
    moving = ctx.movables(list(items))
    _refuse_recalled_moves(ctx, [key for key, _, _ in moving], receiver_id)
    for _key, encoded, record in moving:
        record[4] = shipment_id  # CodeRecord.shipment, by index on this hot path
        writes[P_CODE + encoded] = pack_trusted(record)
        writes[P_HISTORY + encoded + suffix] = history
    shipment = ShipmentRecord(
        ctx.doc.signer, receiver_id, list(items), PENDING, ctx.height,
        ctx.signer.state, receiver.state, [],
    )
    ctx.ov.put(P_SHIPMENT + ctx.doc_id, shipment.pack())
    if shipment.from_state != shipment.to_state:
        flow = P_FLOW + shipment.from_state.encode() + shipment.to_state.encode()
        ctx.ov.put(flow + u64(ctx.height) + u32(ctx.position), ctx.doc_id)


def _release_items(ctx: _Context, items: Iterable[str], new_owner: str | None) -> None:
    """End the transit of items; give them to `new_owner` when accepted."""
    for key in items:
        record = ctx.code(key)
        if new_owner is not None:
            if record.blocked:
                raise Rejected(Reason.SUSPENDED, f"{key} is suspended by a regulator")
            ctx.ov.delete(holding_key(record.owner, key))
            record.owner = new_owner
            ctx.ov.put(holding_key(new_owner, key), b"")
        record.shipment = b""
        ctx.put_code(key, record)
        ctx.history(key)


def _end_shipment(ctx: _Context, party: str, status: str) -> None:
    """Cancel (by the shipper) or reject (by the receiver): every item goes back."""
    shipment_id = ctx.doc.payload[0]
    shipment = ctx.shipment(shipment_id)
    allowed = shipment.shipper if party == "shipper" else shipment.receiver
    if allowed != ctx.doc.signer:
        verb = "cancels" if party == "shipper" else "rejects"
        raise Rejected(Reason.NOT_OWNER, f"only the {party} {verb} a shipment")
    _release_items(ctx, shipment.items, None)
    ctx.ov.put(P_SHIPMENT + shipment_id, replace(shipment, status=status).pack())


def _accept(ctx: _Context) -> None:
    shipment_id, chosen, _details = ctx.doc.payload
    shipment = ctx.shipment(shipment_id)
    if shipment.receiver != ctx.doc.signer:
        raise Rejected(Reason.NOT_OWNER, "only the receiver accepts a shipment")
    if chosen and ctx.sm.groups and any(key not in shipment.items for key in chosen):
        # Per child (issue 13), on chains with the catalogue: a chain from before keeps
        # refusing such an accept (not_in_shipment), so its blocks replay alike.
        _accept_per_child(ctx, shipment_id, shipment, chosen)
        return
    if chosen:
        in_shipment = set(shipment.items)
        seen: set[str] = set()
        for key in chosen:
            if key not in in_shipment:
                raise Rejected(Reason.NOT_IN_SHIPMENT, f"{key} is not in this shipment")
            if key in seen:
                raise Rejected(Reason.REPEATED_CODE, f"{key} is listed twice")
            seen.add(key)
        accepted = list(chosen)
        rest = [k for k in shipment.items if k not in seen]
    else:
        accepted, rest = list(shipment.items), []
    _refuse_recalled_moves(ctx, accepted, ctx.doc.signer)
    _release_items(ctx, accepted, ctx.doc.signer)
    _release_items(ctx, rest, None)
    shipment.status = PARTIALLY_ACCEPTED if rest else ACCEPTED
    shipment.accepted = accepted
    ctx.ov.put(P_SHIPMENT + shipment_id, shipment.pack())
    if shipment.from_state != shipment.to_state and accepted:
        _trade_records(ctx, shipment_id, shipment)


def _retire(ctx: _Context) -> None:
    reason, keys, _details = ctx.doc.payload
    if reason == "retail_sale":
        ctx.require_role(RETAILERS, "a retail sale")
    else:
        ctx.require_role(BUSINESS_ROLES, "retiring goods")
    seen: set[str] = set()
    groups: dict[str, ProductGroup] = {}
    recalls = recall.RecallCheck(ctx.ov.get)
    for key in keys:
        record = ctx.movable(key, seen)
        if record.kind != UNIT:
            raise Rejected(Reason.WRONG_STATUS, f"{key} is an aggregate: disaggregate it first")
        if reason != RECALL_DESTRUCTION:
            _refuse_recalled(recalls, key)
        if ctx.sm.groups:
            group = ctx.product_group(key[2:16], groups)
            if reason not in group.withdrawal_reasons:
                raise Rejected(
                    Reason.NOT_FOR_GROUP, f"product group {group.name} does not use the reason {reason}"
                )
            _check_supporting_document(ctx, reason, group)
        record.status = RETIRED
        record.retire_reason = reason
        ctx.put_code(key, record)
        ctx.ov.delete(holding_key(record.owner, key))
        ctx.history(key)


def _return(ctx: _Context) -> None:
    ctx.require_role(RETAILERS, "a return")
    recalls = recall.RecallCheck(ctx.ov.get)
    for key, record in _owned_and_free(ctx, ctx.doc.payload[0], "was sold by someone else"):
        if record.status != RETIRED or record.retire_reason != "retail_sale":
            raise Rejected(Reason.WRONG_STATUS, f"{key} was not sold at retail")
        _refuse_recalled(recalls, key)
        record.status = INTRODUCED
        record.retire_reason = ""
        ctx.put_code(key, record)
        ctx.ov.put(holding_key(record.owner, key), b"")
        ctx.history(key)


def _suspension(ctx: _Context, suspend: bool) -> None:
    state = ctx.regulator_state()
    for key in _distinct(ctx.doc.payload[0]):
        record = ctx.code(key)
        owner = ctx.participant(ctx.root(record).owner)
        if owner.state != state:
            raise Rejected(Reason.WRONG_STATE, f"{key} is held in {owner.state}, outside {state}")
        if record.suspended == suspend:
            raise Rejected(
                Reason.WRONG_STATUS, f"{key} is {'already' if suspend else 'not'} suspended"
            )
        record.suspended = suspend
        ctx.put_code(key, record)
        ctx.history(key)
        parent = record.parent
        for _ in range(AGGREGATION_LEVELS_MAX):
            if not parent:
                break
            outer = ctx.code(parent)
            outer.suspended_inside += 1 if suspend else -1
            ctx.put_code(parent, outer)
            parent = outer.parent


def _governance(ctx: _Context) -> None:
    """A governance certificate, submitted by any regulator; its quorum, not the
    submitter, authorizes it (see _governance.py)."""
    ctx.require_role(REGULATORS, "submitting a governance document")
    proposal, signatures = ctx.doc.payload
    try:
        writes = governance_writes(
            ctx.sm.genesis, ctx.sm.verifier, ctx.ov, proposal, signatures,
            time_ms=ctx.time_ms, height=ctx.height, position=ctx.position,
        )
    except GovernanceRefused as refused:
        raise Rejected(refused.reason, refused.message) from None
    for key, value in writes.items():
        ctx.ov.put(key, value)
    if K_GROUP_TABLE in writes:
        # The documents after this one in the block follow the new table.
        ctx.sm.read_groups(ctx.ov)


def _register_product(ctx: _Context) -> None:
    """The regulator of the producer's (or importer's) state registers a product."""
    gtin, group_name, name, tnved, producer_id = ctx.doc.payload
    state = ctx.regulator_state()
    if group_name not in ctx.sm.groups:
        # The message as before the table was governed: results (messages included) are
        # hashed, so a chain from before replays to the same results root.
        names = ", ".join(sorted(ctx.sm.groups)) or "none: genesis has no product-group table"
        raise Rejected(Reason.INVALID_PRODUCT, f"no product group {group_name!r} (genesis names {names})")
    if group_name in ctx.sm.retired_groups:
        raise Rejected(Reason.INVALID_PRODUCT,
                       f"product group {group_name} is retired: it takes no new products")
    if len(gtin) != 14 or not is_valid_gtin(gtin):
        raise Rejected(Reason.INVALID_CODE, f"{gtin} is not a valid GTIN-14")
    if not TNVED_RE.fullmatch(tnved):
        raise Rejected(Reason.INVALID_PRODUCT, f"TN VED code {tnved!r} must be 4, 6, 8 or 10 digits")
    if not name.strip():
        raise Rejected(Reason.INVALID_PRODUCT, "a product needs a name")
    producer = ctx.participant(producer_id)
    if producer.status == REVOKED:
        raise Rejected(Reason.REVOKED, f"participant {producer_id} is revoked")
    if producer.state != state:
        raise Rejected(Reason.WRONG_STATE, f"{producer_id} is registered in {producer.state}, not {state}")
    if MAKERS.isdisjoint(producer.roles):
        raise Rejected(Reason.FORBIDDEN_ROLE, "products are registered for producers and importers only")
    if ctx.ov.get(product_key(gtin)) is not None:
        raise Rejected(Reason.ALREADY_EXISTS, f"GTIN {gtin} is already in the catalogue")
    record = ProductRecord(gtin, group_name, name, tnved, producer_id, state, ctx.height)
    ctx.ov.put(product_key(gtin), record.pack())
def _audit_grant(ctx: _Context, grant: bool) -> None:
    """A regulator lets an auditor read what the regulator reads of its own state, or
    takes that back. The grant is a record of the state, so every node enforces it alike."""
    state = ctx.regulator_state()
    (pid,) = ctx.doc.payload
    target = ctx.participant(pid)
    if AUDITORS.isdisjoint(target.roles):
        raise Rejected(Reason.FORBIDDEN_ROLE, f"participant {pid} is not registered as an auditor")
    key = audit_key(pid, state)
    held = ctx.ov.get(key) is not None
    if grant:
        if target.status == REVOKED:
            raise Rejected(Reason.REVOKED, f"participant {pid} is revoked")
        if held:
            raise Rejected(Reason.ALREADY_EXISTS, f"{pid} already audits {state}")
        ctx.ov.put(key, pack_trusted([ctx.height]))
    else:
        if not held:
            raise Rejected(Reason.WRONG_STATUS, f"{pid} holds no audit grant for {state}")
        ctx.ov.delete(key)


# -- The lifecycle of real goods (issue 13, "The whole lifecycle") --------------------
#
# apply (the print report), write_off, remark, reaggregate, accept per child, supporting
# documents for withdrawals, business dates. A history entry's value names the doc's
# type and an aggregate; a child put into or taken out of an aggregate by a reaggregate
# (or taken out by a per-child accept) gets the entry of a pack ("aggregate") or an
# unpack ("disaggregate") of that aggregate, so that the store's nesting index and the
# merged histories (ledger/_store.py) follow it without knowing the new types; the
# entry's place names the document that did it.

# Which withdrawal reasons need a supporting document (type, number, date) is the group
# table's (ProductGroup.reasons_needing_document), as the governance documents last set it.
# Commercial details only a shipment carries (issue 13): the parties' business, which
# the access rule hides from readers who are not parties (docs/ACCESS.md).
COMMERCIAL_DETAILS = frozenset(("price", "vat"))
SUPPORT_DETAILS = ("doc_date", "doc_number", "doc_type")


def _details_of(ctx: _Context) -> dict[str, Any]:
    spec = ctx.doc.payload
    return dict(spec[-1]) if spec else {}


def _check_details(ctx: _Context) -> None:
    """Business dates are not after the block time; price and VAT only on shipments."""
    details = _details_of(ctx)
    for name in ("doc_date", "transfer_date"):
        when = details.get(name)
        if when is not None and when > ctx.time_ms:
            raise Rejected(
                Reason.FUTURE_DATE, f"{name} {when} is after the block time {ctx.time_ms} (ms)"
            )
    if ctx.doc.type is not DocType.SHIP:
        extra = sorted(COMMERCIAL_DETAILS.intersection(details))
        if extra:
            raise Rejected(Reason.BAD_DETAIL, f"{', '.join(extra)}: only a shipment carries these")


def _with_details(handler: Callable[[_Context], None]) -> Callable[[_Context], None]:
    def run(ctx: _Context) -> None:
        if ctx.doc.payload[-1]:  # documents without details (every one before) skip this
            _check_details(ctx)
        handler(ctx)

    return run


def _check_supporting_document(ctx: _Context, reason: str, group: ProductGroup) -> None:
    if not group.needs_document(reason):
        return
    details = _details_of(ctx)
    missing = [name for name in SUPPORT_DETAILS if name not in details]
    if missing:
        raise Rejected(
            Reason.MISSING_DOCUMENT,
            f"the reason {reason} needs its supporting document: {', '.join(missing)} missing",
        )


def _stored_attributes(ctx: _Context, key: str) -> list[list[str]]:
    raw = ctx.ov.get(catalogue_attributes_key(key))
    return unpack_trusted(raw) if raw is not None else []


def _introduce_applied(ctx: _Context, key: str, record: CodeRecord, groups: dict[str, ProductGroup]) -> None:
    """Introduce a code printed with its attributes: the group's rule reads those."""
    if ctx.sm.groups:
        _check_attributes(_stored_attributes(ctx, key), ctx.product_group(key[2:16], groups))
    record.status = INTRODUCED
    ctx.put_code(key, record)
    ctx.history(key)


def _apply(ctx: _Context) -> None:
    """The print report: emitted codes are now on goods, with the attributes printed
    beside them (expiry, batch, price). Required attributes may still come at
    `introduce`, so only the ones given are checked here."""
    ctx.require_role(MAKERS, "a print report")
    keys, attributes, _details = ctx.doc.payload
    groups: dict[str, ProductGroup] = {}
    packed = pack_trusted(attributes) if attributes else b""
    checked: set[str] = set()
    for key, record in _owned_and_free(ctx, keys, "was emitted to someone else"):
        if record.status != EMITTED:
            raise Rejected(Reason.WRONG_STATUS, f"{key} is {record.status}, not emitted")
        gtin = key[2:16]
        if gtin not in checked:
            group = ctx.product_group(gtin, groups) if ctx.sm.groups else None
            problem = attributes_problem(attributes, group)
            if problem is not None and problem[0] == "bad":
                raise Rejected(Reason.BAD_ATTRIBUTE, problem[1])
            checked.add(gtin)
        record.status = APPLIED_TO_GOODS
        ctx.put_code(key, record)
        if packed:
            # Through the recall's lot index (batch, expiry), as introduce and import do.
            recall.store_attributes(ctx.ov.put, key, attributes, packed)
        ctx.history(key)


def _never_circulated(ctx: _Context, key: str, record: CodeRecord) -> None:
    if record.status not in (EMITTED, APPLIED_TO_GOODS):
        raise Rejected(
            Reason.WRONG_STATUS,
            f"{key} is {record.status}: only emitted or applied codes are written off (retire the rest)",
        )


def _write_off(ctx: _Context) -> None:
    """Codes that never entered circulation (spoiled or lost labels) end here."""
    ctx.require_role(MAKERS, "a write-off")
    reason, keys, _details = ctx.doc.payload
    groups: dict[str, ProductGroup] = {}
    for key, record in _owned_and_free(ctx, keys, "was emitted to someone else"):
        _never_circulated(ctx, key, record)
        if ctx.sm.groups:
            ctx.product_group(key[2:16], groups)
        record.status = WRITTEN_OFF
        record.retire_reason = reason
        ctx.put_code(key, record)
        ctx.ov.delete(holding_key(record.owner, key))
        ctx.history(key)


def _remark(ctx: _Context) -> None:
    """A new code replaces a damaged one on goods in circulation: the new one enters
    circulation with the old one's attributes (unless printed with its own), the old
    one is written off, and each names the other (P_LINK) for history and provenance."""
    ctx.require_role(BUSINESS_ROLES, "a remark")
    old_key, new_key, _details = ctx.doc.payload
    if old_key == new_key:
        raise Rejected(Reason.REPEATED_CODE, f"{old_key} cannot replace itself")
    old = ctx.movable(old_key, set())
    if old.kind != UNIT:
        raise Rejected(Reason.WRONG_STATUS, f"{old_key} is an aggregate: an aggregate is not re-marked")
    new = ctx.code(new_key)
    if new.owner != ctx.doc.signer:
        raise Rejected(Reason.NOT_OWNER, f"{new_key} was emitted to someone else")
    if new.blocked:
        raise Rejected(Reason.SUSPENDED, f"{new_key} is suspended by a regulator")
    if new.kind != UNIT or new.status not in (EMITTED, APPLIED_TO_GOODS):
        raise Rejected(Reason.WRONG_STATUS, f"{new_key} is {new.status}: a new code is emitted or applied")
    if old_key[2:16] != new_key[2:16]:
        raise Rejected(Reason.INVALID_CODE, f"{new_key} is for another GTIN than {old_key}")
    attributes = _stored_attributes(ctx, new_key) or _stored_attributes(ctx, old_key)
    if ctx.sm.groups:
        _check_attributes(attributes, ctx.product_group(old_key[2:16], {}))
    if attributes:
        recall.store_attributes(ctx.ov.put, new_key, attributes, pack_trusted(attributes))
    new.status = INTRODUCED
    ctx.put_code(new_key, new)
    old.status = WRITTEN_OFF
    old.retire_reason = REMARKED
    ctx.put_code(old_key, old)
    ctx.ov.delete(holding_key(old.owner, old_key))
    ctx.ov.put(P_LINK + old_key.encode(), pack_trusted([REPLACED_BY, new_key, ctx.height, ctx.position]))
    ctx.ov.put(P_LINK + new_key.encode(), pack_trusted([REPLACES, old_key, ctx.height, ctx.position]))
    ctx.history(old_key)
    ctx.history(new_key)


def _nesting_entry(ctx: _Context, key: str, kind: DocType, sscc: str) -> None:
    """A child's history entry of a pack into, or an unpack out of, `sscc` (see above)."""
    ctx.ov.doc[P_HISTORY + key.encode() + ctx.history_suffix] = pack_trusted([kind.value, sscc])


def _take_out(ctx: _Context, sscc: str, keys: Sequence[str], owner: str) -> None:
    for key in keys:
        child = ctx.code(key)
        child.parent = ""
        child.owner = owner
        ctx.put_code(key, child)
        ctx.ov.put(holding_key(owner, key), b"")
        _nesting_entry(ctx, key, DocType.DISAGGREGATE, sscc)


def _level_of(ctx: _Context, children: Sequence[str]) -> int:
    return 1 + max((ctx.code(key).level for key in children), default=0)


def _reaggregate(ctx: _Context) -> None:
    """Add codes to an aggregate and take codes out of it, leaving the rest packed."""
    ctx.require_role(BUSINESS_ROLES, "reaggregation")
    sscc, add, remove, _details = ctx.doc.payload
    if not add and not remove:
        raise Rejected(Reason.WRONG_STATUS, "a reaggregation adds or removes at least one code")
    seen: set[str] = set()
    record = ctx.movable(sscc, seen)
    if record.kind != AGGREGATE:
        raise Rejected(Reason.WRONG_STATUS, f"{sscc} is a unit, not an aggregate")
    raw = ctx.ov.get(P_CHILDREN + sscc.encode())
    children: list[str] = unpack_trusted(raw) if raw is not None else []
    inside = set(children)
    for key in remove:
        if key in seen:
            raise Rejected(Reason.REPEATED_CODE, f"{key} is listed twice")
        seen.add(key)
        if key not in inside:
            raise Rejected(Reason.NOT_IN_AGGREGATE, f"{key} is not packed in {sscc}")
    if ctx.sm.groups:
        # The groups of the units it moves must use reaggregation (an aggregate inside
        # answers for itself when it was packed).
        groups: dict[str, ProductGroup] = {}
        for key in (*add, *remove):
            if key.startswith("01"):
                ctx.product_group(key[2:16], groups)
    kept = [key for key in children if key not in seen]
    if not kept and not add:
        raise Rejected(Reason.WRONG_STATUS, f"this would leave {sscc} empty: disaggregate it instead")
    _take_out(ctx, sscc, remove, record.owner)
    level = _level_of(ctx, kept) if remove else record.level
    for key in add:
        child = ctx.movable(key, seen)
        level = max(level, child.level + 1)
        child.parent = sscc
        ctx.put_code(key, child)
        ctx.ov.delete(holding_key(ctx.doc.signer, key))
        _nesting_entry(ctx, key, DocType.AGGREGATE, sscc)
    if level > AGGREGATION_LEVELS_MAX:
        raise Rejected(Reason.TOO_DEEP, f"aggregates nest at most {AGGREGATION_LEVELS_MAX} levels")
    children = kept + list(add)
    if len(children) > CODES_PER_DOCUMENT_MAX:
        # An aggregate holds at most what one aggregate document may list, so that
        # reaggregating, shipping or unpacking it stays bounded however often codes are added.
        raise Rejected(
            Reason.AGGREGATE_FULL, f"{sscc} would hold {len(children)} codes, over {CODES_PER_DOCUMENT_MAX}"
        )
    record.level = level
    record.count = len(children)
    ctx.put_code(sscc, record)
    ctx.ov.put(P_CHILDREN + sscc.encode(), pack_trusted(children))
    ctx.history(sscc)


def _accept_per_child(
    ctx: _Context, shipment_id: bytes, shipment: ShipmentRecord, chosen: Sequence[str]
) -> None:
    """The receiver lists what it accepts: items of the shipment and, under an aggregate it
    lists, the codes inside it that it keeps, at any depth (a box on a pallet, a pack in
    that box). Each listed code's parent is listed too, so what is kept forms trees under
    the accepted items. An aggregate some of whose children are listed keeps those only:
    the others are taken out of it and go back to the shipper, loose, as do the items not
    listed; an aggregate listed without any of its children is accepted whole."""
    items = set(shipment.items)
    listed = set(_distinct(chosen))
    kept: dict[str, list[str]] = {}  # aggregate -> the children listed
    depth: dict[str, int] = {}  # aggregate -> how far below its shipment item it lies
    for key in chosen:
        if key in items:
            continue
        raw = ctx.ov.get(code_key(key))
        parent = CodeRecord.unpack(raw).parent if raw is not None else ""
        below = _depth_below_item(ctx, parent, items)
        if below is None:
            raise Rejected(Reason.NOT_IN_SHIPMENT, f"{key} is not in this shipment nor in an aggregate of it")
        if parent not in listed:
            raise Rejected(Reason.NOT_IN_SHIPMENT, f"{key} is inside {parent}: list {parent} to accept it")
        kept.setdefault(parent, []).append(key)
        depth[parent] = below
    partial = False
    # The deepest aggregates first: an aggregate's level follows its children's, which a
    # refusal deeper down may have lowered. Every aggregate above a changed one has a
    # listed child (the path down to it is listed), so it is in `kept` and recomputed.
    for sscc in sorted(kept, key=lambda s: -depth[s]):
        aggregate = ctx.code(sscc)
        raw = ctx.ov.get(P_CHILDREN + sscc.encode())
        children: list[str] = unpack_trusted(raw) if raw is not None else []
        keep_set = set(kept[sscc])
        refused = [key for key in children if key not in keep_set]
        remaining = [key for key in children if key in keep_set]
        level = _level_of(ctx, remaining)
        if refused:
            partial = True
            _take_out(ctx, sscc, refused, shipment.shipper)
            ctx.ov.put(P_CHILDREN + sscc.encode(), pack_trusted(remaining))
        if refused or level != aggregate.level:
            aggregate.level = level
            aggregate.count = len(remaining)
            ctx.put_code(sscc, aggregate)
    accepted = [key for key in shipment.items if key in listed]
    rest = [key for key in shipment.items if key not in listed]
    # What stays in the accepted aggregates moves to the receiver: a recalled code among
    # it goes only to its producer (a refused one went back to the shipper above).
    _refuse_recalled_moves(ctx, accepted, ctx.doc.signer)
    _release_items(ctx, accepted, ctx.doc.signer)
    _release_items(ctx, rest, None)
    shipment.status = PARTIALLY_ACCEPTED if partial or rest else ACCEPTED
    shipment.accepted = list(chosen)
    ctx.ov.put(P_SHIPMENT + shipment_id, shipment.pack())
    if shipment.from_state != shipment.to_state and accepted:
        # Counted from the accepted items, whose aggregates now hold only what was kept.
        _trade_records(ctx, shipment_id, shipment, accepted)


def _depth_below_item(ctx: _Context, parent: str, items: set[str]) -> int | None:
    """How many aggregates lie between `parent` and the shipment item around it (0 when
    `parent` is an item); None when no item of the shipment holds it."""
    for below in range(AGGREGATION_LEVELS_MAX + 1):
        if not parent:
            return None
        if parent in items:
            return below
        raw = ctx.ov.get(code_key(parent))
        parent = CodeRecord.unpack(raw).parent if raw is not None else ""
    return None


LIFECYCLE_HANDLERS: dict[DocType, Callable[[_Context], None]] = {
    DocType.APPLY: _apply,
    DocType.WRITE_OFF: _write_off,
    DocType.REMARK: _remark,
    DocType.REAGGREGATE: _reaggregate,
}


# -- Recall across the union and customs imports (issue 13; ledger/_recall.py) ------------

# The one `retire` reason a recalled code may take besides going back to its producer
# (and `write_off`, when it exists): its destruction.
RECALL_DESTRUCTION = "destroyed"
IMPORTED = "imported"  # emitted codes a customs `import` names, until its regulator confirms
_RECALL_ERRORS = (CodeError,)


def _refuse_recalled(check: recall.RecallCheck, key: str, attributes: list[list[str]] | None = None) -> None:
    """Refuse a move of a code an active recall holds (`check`: one per document).
    `attributes` are those the document is about to store (an emitted code is matched
    by what it will carry)."""
    if not check.active:
        return
    found = check.recall_of(key)
    if found is None and attributes:
        gtin = recall.gtin_of(key)
        values = {ai: value for ai, value in attributes}
        for recall_id, batch, lo, hi, listed in check.entries(gtin) if gtin else []:
            if not listed and (values.get(recall.BATCH_AI) == batch if batch
                               else lo <= values.get(recall.EXPIRY_AI, "") <= hi):
                found = (bytes(recall_id), gtin)
                break
    if found is not None:
        raise Rejected(Reason.RECALLED, f"{key} is recalled by {found[0].hex()}")


def _refuse_recalled_moves(ctx: _Context, keys: Sequence[str], to: str) -> None:
    """A shipment or acceptance of recalled codes goes only to the GTIN's producer."""
    check = recall.RecallCheck(ctx.ov.get)
    if not check.active:
        return
    producers: dict[str, str] = {}
    for key in keys:
        found = check.recall_of(key)
        if found is None:
            continue
        recall_id, gtin = found
        if gtin not in producers:
            raw = ctx.ov.get(product_key(gtin))
            producers[gtin] = ProductRecord.unpack(raw).producer if raw is not None else ""
        if producers[gtin] != to:
            raise Rejected(
                Reason.RECALLED, f"{key} is recalled by {recall_id.hex()}: it goes back to its producer only"
            )


def _recall_handler(ctx: _Context) -> None:
    """The producer of a registered GTIN, or its state's regulator, recalls a batch, an
    expiry range or listed codes of it (applied lazily: see ledger/_recall.py)."""
    gtin, batch, lo, hi, codes, reason = ctx.doc.payload
    raw = ctx.ov.get(product_key(gtin))
    if raw is None:
        raise Rejected(Reason.UNKNOWN_PRODUCT, f"GTIN {gtin} is not in the product catalogue")
    product = ProductRecord.unpack(raw)
    signer = ctx.doc.signer
    if signer != product.producer:
        state = ctx.regulator_state()
        if state != product.state:
            raise Rejected(Reason.WRONG_STATE, f"{gtin} is made in {product.state}: its regulator recalls it")
    if not reason.strip():
        raise Rejected(Reason.BAD_ATTRIBUTE, "a recall says why")
    selectors = [bool(batch), bool(lo or hi), bool(codes)]
    if sum(selectors) != 1:
        raise Rejected(Reason.BAD_ATTRIBUTE, "a recall names one of: a batch, an expiry range, listed codes")
    try:
        if batch:
            check_attribute(recall.BATCH_AI, batch)
        elif lo or hi:
            check_attribute(recall.EXPIRY_AI, lo)
            check_attribute(recall.EXPIRY_AI, hi)
    except _RECALL_ERRORS as exc:
        raise Rejected(Reason.BAD_ATTRIBUTE, exc.message) from exc
    if (lo or hi) and lo > hi:
        raise Rejected(Reason.BAD_ATTRIBUTE, f"the expiry range {lo}..{hi} is empty")
    recall_id = ctx.doc_id
    for key in _distinct(codes):
        if recall.gtin_of(key) != gtin:
            raise Rejected(Reason.INVALID_CODE, f"{key} is not a unit of GTIN {gtin}")
        ctx.code(key)  # refuses a code never emitted
        ctx.ov.put(recall.P_RECALL_CODE + key.encode() + SEP + recall_id, b"")
    if codes:
        ctx.ov.put(recall.P_RECALL + recall_id + b"/codes", pack_trusted(list(codes)))
    entries_key = recall.P_RECALL_GTIN + gtin.encode()
    raw_entries = ctx.ov.get(entries_key)
    entries = list(unpack_trusted(raw_entries)) if raw_entries is not None else []
    if len(entries) >= recall.RECALLS_PER_GTIN_MAX:
        raise Rejected(Reason.WRONG_STATUS, f"GTIN {gtin} has {len(entries)} active recalls already")
    record = recall.RecallRecord(gtin, batch, lo, hi, len(codes), reason, signer, product.state,
                                 product.producer, ctx.height, recall.ACTIVE)
    entries.append(record.entry(recall_id))
    ctx.ov.put(entries_key, pack_trusted(entries))
    _count_active(ctx, +1)
    ctx.ov.put(recall.P_RECALL + recall_id, record.pack())


def _count_active(ctx: _Context, step: int) -> None:
    raw = ctx.ov.get(recall.P_RECALL_GTIN)
    count = (unpack_trusted(raw) if raw is not None else 0) + step
    ctx.ov.put(recall.P_RECALL_GTIN, pack_trusted(count))


def _release_recall(ctx: _Context) -> None:
    """Its filer, or the regulator of the producer's state, ends a recall: a producer does
    not undo a recall its regulator ordered."""
    recall_id, note = ctx.doc.payload
    raw = ctx.ov.get(recall.P_RECALL + recall_id)
    if raw is None:
        raise Rejected(Reason.UNKNOWN_RECALL, f"no recall {recall_id.hex()}")
    record = recall.RecallRecord.unpack(raw)
    if record.status != recall.ACTIVE:
        raise Rejected(Reason.WRONG_STATUS, f"recall {recall_id.hex()} is {record.status}")
    signer = ctx.doc.signer
    if signer != record.filer and ctx.regulator_state() != record.state:
        raise Rejected(Reason.WRONG_STATE, f"only the regulator of {record.state} releases this recall")
    entries_key = recall.P_RECALL_GTIN + record.gtin.encode()
    raw_entries = ctx.ov.get(entries_key)
    stored = unpack_trusted(raw_entries) if raw_entries is not None else []
    entries = [e for e in stored if e[0] != recall_id]
    if entries:
        ctx.ov.put(entries_key, pack_trusted(entries))
    else:
        ctx.ov.delete(entries_key)
    _count_active(ctx, -1)
    record.status = recall.RELEASED
    record.released_by = signer
    record.released_height = ctx.height
    record.release_note = note
    record.release_document = ctx.doc_id
    ctx.ov.put(recall.P_RECALL + recall_id, record.pack())


def _import(ctx: _Context) -> None:
    """An importer declares goods from outside the union (customs declaration number,
    country of origin) under codes emitted to it; they wait, status imported, until its
    regulator confirms the declaration."""
    ctx.require_role(frozenset(("importer",)), "a customs import")
    declaration, country, keys, attributes = ctx.doc.payload
    if not declaration.strip():
        raise Rejected(Reason.BAD_ATTRIBUTE, "an import names its customs declaration")
    if country in ctx.sm.member_states:
        raise Rejected(Reason.WRONG_STATE, f"{country} is a member state: its goods come by shipment")
    packed = pack_trusted(attributes) if attributes else b""
    checked: set[str] = set()
    recalls = recall.RecallCheck(ctx.ov.get)
    for key, record in _owned_and_free(ctx, keys, "was emitted to someone else"):
        if record.status != EMITTED:
            raise Rejected(Reason.WRONG_STATUS, f"{key} is {record.status}, not emitted")
        gtin = key[2:16]
        if gtin not in checked and ctx.sm.groups:
            raw = ctx.ov.get(product_key(gtin))
            if raw is None:
                raise Rejected(Reason.UNKNOWN_PRODUCT, f"GTIN {gtin} is not in the product catalogue")
            _check_attributes(attributes, ctx.sm.groups.get(ProductRecord.unpack(raw).group))
            checked.add(gtin)
        _refuse_recalled(recalls, key, attributes)
        record.status = IMPORTED
        ctx.put_code(key, record)
        if packed:
            recall.store_attributes(ctx.ov.put, key, attributes, packed)
        ctx.history(key)
    counts = recall.unit_counts(recall.stored_children(ctx.ov.get), keys)
    state = ctx.signer.state
    ctx.ov.put(recall.P_IMPORT + ctx.doc_id, recall.ImportRecord(
        ctx.doc.signer, state, declaration, country, list(keys), counts, ctx.height, recall.PENDING,
        importer_tax_id=ctx.signer.tax_id).pack())
    importer = tax_ids.party(ctx.doc.signer, ctx.signer, state)
    ctx.ov.put(recall.trade_key(state, recall.IMPORT, ctx.height, ctx.position), recall.trade_record(
        "customs", tax_ids.customs_party(country), importer, counts, ctx.doc_id, b"", declaration))


def _confirm_import(ctx: _Context) -> None:
    """The regulator of the importer's state confirms the declaration: the goods enter
    circulation."""
    state = ctx.regulator_state()
    (import_id,) = ctx.doc.payload
    raw = ctx.ov.get(recall.P_IMPORT + import_id)
    if raw is None:
        raise Rejected(Reason.UNKNOWN_IMPORT, f"no import {import_id.hex()}")
    record = recall.ImportRecord.unpack(raw)
    if record.state != state:
        raise Rejected(
            Reason.WRONG_STATE, f"the import is declared in {record.state}, whose regulator confirms"
        )
    if record.status != recall.PENDING:
        raise Rejected(Reason.WRONG_STATUS, f"import {import_id.hex()} is {record.status}")
    for key in record.codes:
        code = ctx.code(key)
        if code.status == IMPORTED:  # a regulator may have suspended it meanwhile: it stays so
            code.status = INTRODUCED
            ctx.put_code(key, code)
            ctx.history(key)
    record.status = recall.CONFIRMED
    record.confirmed_by = ctx.doc.signer
    record.confirmed_height = ctx.height
    ctx.ov.put(recall.P_IMPORT + import_id, record.pack())


def _trade_records(
    ctx: _Context, shipment_id: bytes, shipment: ShipmentRecord, accepted: Sequence[str] | None = None
) -> None:
    """An accepted cross-border shipment: an export record for the origin state and an
    import record for the destination, counting only the accepted items (`accepted`:
    the shipment's items accepted, when not `shipment.accepted`)."""
    items = shipment.accepted if accepted is None else accepted
    counts = recall.unit_counts(recall.stored_children(ctx.ov.get), items)
    exporter = tax_ids.party(shipment.shipper, ctx.participant(shipment.shipper), shipment.from_state)
    importer = tax_ids.party(shipment.receiver, ctx.participant(shipment.receiver), shipment.to_state)
    value = recall.trade_record("union", exporter, importer, counts, ctx.doc_id, shipment_id)
    ctx.ov.put(recall.trade_key(shipment.from_state, recall.EXPORT, ctx.height, ctx.position), value)
    ctx.ov.put(recall.trade_key(shipment.to_state, recall.IMPORT, ctx.height, ctx.position), value)


HANDLERS: dict[DocType, Callable[[_Context], None]] = {
    DocType.REGISTER_PARTICIPANT: _register,
    DocType.REVOKE_PARTICIPANT: _revoke,
    DocType.EMIT: _emit,
    DocType.INTRODUCE: _introduce,
    DocType.AGGREGATE: _aggregate,
    DocType.DISAGGREGATE: _disaggregate,
    DocType.SHIP: _ship,
    DocType.CANCEL_SHIPMENT: lambda ctx: _end_shipment(ctx, "shipper", CANCELLED),
    DocType.ACCEPT: _accept,
    DocType.REJECT: lambda ctx: _end_shipment(ctx, "receiver", REJECTED),
    DocType.RETIRE: _retire,
    DocType.RETURN: _return,
    DocType.SUSPEND: lambda ctx: _suspension(ctx, True),
    DocType.RELEASE: lambda ctx: _suspension(ctx, False),
    DocType.GOVERNANCE: _governance,
    DocType.REGISTER_PRODUCT: _register_product,
    DocType.GRANT_AUDIT: lambda ctx: _audit_grant(ctx, True),
    DocType.REVOKE_AUDIT: lambda ctx: _audit_grant(ctx, False),
    DocType.RECALL: _recall_handler,
    DocType.RELEASE_RECALL: _release_recall,
    DocType.IMPORT: _import,
    DocType.CONFIRM_IMPORT: _confirm_import,
}
# The lifecycle of real goods (issue 13): the new types, and the business details
# (dates not after the block time, commercial fields on shipments only) checked
# before every handler of a type that carries them.
HANDLERS.update(LIFECYCLE_HANDLERS)
for _kind, _spec in PAYLOADS.items():
    if _spec and _spec[-1][1] is Field.DETAILS:
        HANDLERS[_kind] = _with_details(HANDLERS[_kind])


def _following_holdings(handler: Callable[[_Context], None]) -> Callable[[_Context], None]:
    def run(ctx: _Context) -> None:
        handler(ctx)
        holdings.follow(ctx.ov)

    return run


# Who holds how many units of each lot (ledger/_holdings.py, what a recall's holders come
# from) follows every document type that may change a unit's holder or attributes.
for _kind in list(HANDLERS):
    if _kind not in holdings.HOLDERS_UNCHANGED:
        HANDLERS[_kind] = _following_holdings(HANDLERS[_kind])

__all__ = [
    "APPLIED",
    "BlockOutcome",
    "Reader",
    "Reason",
    "Result",
    "StateMachine",
    "genesis_writes",
    "state_hash_step",
]

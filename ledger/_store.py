"""The ledger's LevelDB store: state and chain in one keyspace, one batch per block.

Applying a block writes its header, documents, results, every state change and every
index in a single LevelDB write batch, so a crash leaves either the whole block or
none of it. A block above the final height also keeps, in that batch, the undo data
that `rollback_to` needs to take it back (ledger/_undo.py). Opening a store checks
that the head it records is a block it holds and that the chain it holds belongs to
the genesis it is opened with.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import plyvel

from . import _recall, _tax_ids
from ._access import DocFacts, Party, code_parties
from ._catalogue import P_PRODUCT, ProductRecord, attributes_key, product_key
from ._chain import Attestation, Block, BlockHeader, documents_root, results_root
from ._codes import Scanned, Sscc, parse_key
from ._documents import DocType, SignedDocument, decode_signed, document_id
from ._encoding import pack, pack_trusted, unpack_trusted
from ._errors import DecodeError, LedgerError, invariant
from ._genesis import ChainParams, Genesis
from ._governance import evidence_cleared_below, governed_params, next_conf_change
from ._group_table import GroupTable, governed_groups
from ._identity import Verifier
from ._inbox import INCOMING_SHIPMENT, InboxEntry, Involvement, involvement
from ._membership import Membership, governed_membership
from ._records import (
    AGGREGATE,
    META_GENESIS,
    META_HEAD,
    META_NESTING,
    META_PARTIES,
    META_SYNC,
    P_ATTEST,
    P_AUDIT,
    P_BLOCK,
    P_BLOCK_DOC,
    P_CHILDREN,
    P_CODE,
    P_DOC,
    P_FLOW,
    P_HISTORY,
    P_HOLDING,
    P_INBOX,
    P_INVOLVED,
    P_LINK,
    P_NESTING,
    P_PARTICIPANT,
    P_PARTY,
    P_PENDING,
    P_RESULTS,
    P_SHIPMENT,
    PENDING,
    CodeRecord,
    ParticipantRecord,
    ShipmentRecord,
    at_height_position,
    code_key,
    history_prefix,
    nesting_prefix,
    u32,
    u64,
)
from ._state import Result, StateMachine, genesis_writes, state_hash_step
from ._undo import META_FINAL, P_UNDO, RollbackRefused, UndoRecord, fold_undo, is_always_new, undo_key

PAGE_LIMIT_MAX = 1000
# Records one catalogue page may read while filtering by group: ten pages' worth.
PRODUCT_SCAN_MAX = 10 * PAGE_LIMIT_MAX
# A code's history follows the aggregates it was packed in, and theirs in turn. Aggregates
# nest at most four levels at once; eight bounds the walk with room to spare.
HISTORY_DEPTH_MAX = 8

Place = tuple[int, int]  # (height, position): where a document is in the chain
# Codes whose parties are kept between two blocks: a list of a few parties each, so
# 4,096 are well under a megabyte; cleared whenever a block is applied.
PARTIES_CACHED_MAX = 4096

_HISTORY_BYTE = P_HISTORY[0]
_HOLDING_BYTE = P_HOLDING[0]
_SHIPMENT_BYTE = P_SHIPMENT[0]
# History values that name no aggregate: nearly all of them, recognised without decoding.
# Every other history value packs or unpacks the code and goes to the nesting index too.
_PLAIN_HISTORY_VALUES = frozenset(pack_trusted([t.value, ""]) for t in DocType)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    invariant(bool(trimmed), "a prefix of only 0xff bytes has no end")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class StoreError(LedgerError):
    """The data directory cannot be used: another chain's, or damaged."""


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    hash: bytes
    state_hash: bytes
    time_ms: int
    raft_index: int

    def to_list(self) -> list[Any]:
        return [self.height, self.hash, self.state_hash, self.time_ms, self.raft_index]


@dataclass(frozen=True, slots=True)
class AppliedBlock:
    header: BlockHeader
    results: list[Result]
    document_ids: list[bytes | None]


@dataclass(frozen=True, slots=True)
class PreparedBlock:
    applied: AppliedBlock
    documents: list[bytes]
    writes: dict[bytes, bytes | None]
    involved: Sequence[Involvement] = ()
    # Values before the block of keys its execution read (BlockOutcome.stored).
    stored: Mapping[bytes, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    height: int
    position: int
    document_id: bytes
    type: str
    sscc: str  # the aggregate this code was packed into or unpacked from, if any
    via: str  # the enclosing aggregate whose move this was, "" for the code's own

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "position": self.position,
            "document_id": self.document_id.hex(),
            "type": self.type,
            "sscc": self.sscc or None,
            "via": self.via or None,
        }


class LedgerStore:
    """One member state's copy of the chain and the state it leads to."""

    def __init__(self, path: Path, genesis: Genesis, sync: bool = True, undo: bool = True) -> None:
        """`undo=False` keeps no undo data for any block: for a store that is never rolled
        back, such as an auditor's replica (a chain that changed below its head fails the
        audit's checkpoint instead), which then saves a read per changed key."""
        self.path = path
        self.genesis = genesis
        self.sync = sync
        self.undo = undo
        path.mkdir(parents=True, exist_ok=True)
        try:
            self.db = plyvel.DB(
                str(path),
                create_if_missing=True,
                # A large memtable batches whole blocks; the cache keeps hot code records
                # in memory (bounded); bloom filters make misses (new codes) cheap.
                write_buffer_size=64 << 20,
                lru_cache_size=256 << 20,
                bloom_filter_bits=10,
            )
        except plyvel.Error as exc:
            raise StoreError(f"cannot open ledger store {path}: {exc}") from exc
        self.machine = StateMachine(genesis)
        self._parties: dict[str, list[Party]] = {}
        self._parties_head = b""
        self._params_at: tuple[int, ChainParams] | None = None
        self._members_at: tuple[int, Membership] | None = None
        self.head = self._open()
        raw_final = self.db.get(META_FINAL)
        # The final height this store was told last: blocks at or below it have no undo
        # data and can never be rolled back (ledger/_undo.py).
        self.final_height = int.from_bytes(raw_final, "big") if raw_final is not None else 0

    def close(self) -> None:
        self.db.close()

    # Opening.

    def _open(self) -> Head:
        stored = self.db.get(META_GENESIS)
        if stored is None:
            return self._initialise()
        if stored != self.genesis.hash:
            raise StoreError(f"{self.path} holds another chain (genesis {stored.hex()[:16]}...)")
        raw = self.db.get(META_HEAD)
        if raw is None:
            raise StoreError(f"{self.path} has a genesis but no head: damaged")
        head = Head(*unpack_trusted(raw))
        if head.height > 0:
            header_raw = self.db.get(P_BLOCK + u64(head.height))
            if header_raw is None:
                raise StoreError(f"{self.path}: head block {head.height} is missing")
            header = BlockHeader.decode(header_raw)
            if header.hash != head.hash or header.state_hash != head.state_hash:
                raise StoreError(f"{self.path}: head block {head.height} does not match the head record")
            if self.db.get(P_BLOCK + u64(head.height + 1)) is not None:
                raise StoreError(f"{self.path}: a block beyond the head exists")
        if self.db.get(META_NESTING) is None:
            self._index_nesting()
        if self.db.get(META_PARTIES) is None:
            self._index_parties()
        return head

    def _index_nesting(self) -> None:
        """Build the nesting index of a store written before it existed: once, from the
        history entries that name an aggregate."""
        with self.db.write_batch(sync=self.sync) as batch:
            for key, value in self.db.iterator(prefix=P_HISTORY):
                if value not in _PLAIN_HISTORY_VALUES:
                    batch.put(P_NESTING + key[1:], value)
            batch.put(META_NESTING, b"")

    def _index_parties(self) -> None:
        """Build the party index of a store written before it existed: once, from every
        code's history (the access rule reads it to find a participant's codes)."""
        with self.db.write_batch(sync=self.sync) as batch:
            for key in self.db.iterator(prefix=P_CODE, include_value=False):
                code = key[len(P_CODE):].decode()
                for party in self._parties_now(code):
                    batch.put(P_PARTY + party.participant.encode() + code.encode(), b"")
            batch.put(META_PARTIES, b"")

    def _initialise(self) -> Head:
        writes = genesis_writes(self.genesis)
        state_hash = state_hash_step(self.genesis.hash, writes)
        head = Head(0, self.genesis.hash, state_hash, self.genesis.time_ms, 0)
        with self.db.write_batch(sync=self.sync) as batch:
            for key, value in writes.items():
                invariant(value is not None, "genesis only creates")
                batch.put(key, value)
            batch.put(META_GENESIS, self.genesis.hash)
            batch.put(META_HEAD, pack(head.to_list()))
            batch.put(META_NESTING, b"")
            batch.put(META_PARTIES, b"")
        return head

    # Applying.

    def apply_block(
        self,
        documents: Sequence[bytes],
        time_ms: int,
        proposer: str,
        raft_term: int = 0,
        raft_index: int = 0,
        verified: Callable[[bytes], bool] | None = None,
        decoded: Mapping[bytes, SignedDocument] | None = None,
    ) -> AppliedBlock:
        """Execute, store and make durable one block built from ordered documents."""
        prepared = self.prepare_block(documents, time_ms, proposer, raft_term, raft_index, verified,
                                      decoded=decoded)
        self.write_block(prepared)
        return prepared.applied

    def prepare_block(
        self,
        documents: Sequence[bytes],
        time_ms: int,
        proposer: str,
        raft_term: int = 0,
        raft_index: int = 0,
        verified: Callable[[bytes], bool] | None = None,
        known_documents_root: bytes | None = None,
        decoded: Mapping[bytes, SignedDocument] | None = None,
    ) -> PreparedBlock:
        """Execute a block on top of the head without storing it (auditors compare first).

        `known_documents_root` is the root the caller already computed from these very
        documents, so that it is not computed twice."""
        head = self.head
        height = head.height + 1
        # Block time never goes back and moves at most one step, whatever the proposer's
        # clock says (the node alarms when it had to clamp: node/_pipeline.py).
        time_ms = self.params().block_time(time_ms, head.time_ms)
        outcome = self.machine.execute_block(self.db, documents, height, time_ms, verified, decoded)
        state_hash = state_hash_step(head.state_hash, outcome.writes)
        header = BlockHeader(
            chain_id=self.genesis.chain_id,
            height=height,
            prev_hash=head.hash,
            documents_root=known_documents_root or documents_root(documents),
            results_root=results_root(outcome.results),
            state_hash=state_hash,
            time_ms=time_ms,
            proposer=proposer,
            raft_term=raft_term,
            raft_index=raft_index,
            documents=len(documents),
        )
        ids = [d.id if d is not None else None for d in outcome.documents]
        return PreparedBlock(AppliedBlock(header, outcome.results, ids), list(documents), outcome.writes,
                             outcome.involved, outcome.stored)

    def write_block(self, prepared: PreparedBlock, attestations: Sequence[Attestation] = ()) -> None:
        """Write a prepared block and its state changes in one atomic, durable batch, with
        any attestations of it that the caller has verified (an auditor has, and this
        saves checking them twice)."""
        header = prepared.applied.header
        invariant(header.prev_hash == self.head.hash, "a prepared block must extend the head")
        block_hash = header.hash
        invariant(all(a.block_hash == block_hash for a in attestations), "attestations of another block")
        height = header.height
        new_head = Head(height, block_hash, header.state_hash, header.time_ms, header.raft_index)
        # A block above the final height may have to be undone: keep what it overwrites,
        # side indexes included (the batch records each key's old value on first touch).
        undo = _UndoBatch(self.db, prepared.stored) if self.undo and height > self.final_height else None
        # transaction=True: an exception while the batch is built writes nothing of it.
        with self.db.write_batch(sync=self.sync, transaction=True) as real_batch:
            batch: Any = real_batch if undo is None else undo.wrap(real_batch)
            for key, value in prepared.writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
                    # Inline rather than a second pass: this loop runs once per write.
                    first = key[0]
                    if first == _HISTORY_BYTE and value not in _PLAIN_HISTORY_VALUES:
                        batch.put(P_NESTING + key[1:], value)
                    elif first == _HOLDING_BYTE:
                        batch.put(P_PARTY + key[1:], b"")
                    elif first == _SHIPMENT_BYTE:
                        _index_receiver(batch, value)
            _write_involved(batch, prepared.involved)
            # Chain records named by the height: rollback removes them by prefix.
            prefix = P_BLOCK_DOC + u64(height)
            for position, wire in enumerate(prepared.documents):
                real_batch.put(prefix + u32(position), wire)
            results = [r.to_list() for r in prepared.applied.results]
            real_batch.put(P_RESULTS + u64(height), pack_trusted(results))
            real_batch.put(P_BLOCK + u64(height), header.encode())
            if undo is not None:
                real_batch.put(undo_key(height), UndoRecord(self.head.to_list(), undo.previous).pack())
            for attestation in attestations:
                real_batch.put(P_ATTEST + u64(height) + attestation.state.encode(), attestation.signature)
            real_batch.put(META_HEAD, pack(new_head.to_list()))
        self.head = new_head

    # Undoing blocks that are not final.

    def set_final_height(self, height: int) -> None:
        """The node learned that blocks up to `height` are final: they can never be rolled
        back, so their undo data goes. Never lowers the final height. It may lie above
        the head (a node catching up): blocks applied up to it then keep no undo data."""
        if height <= self.final_height:
            return
        with self.db.write_batch(sync=self.sync, transaction=True) as batch:
            # No block at or below the old final height kept undo data: starting above it
            # spares a walk over the deleted records, which LevelDB keeps until it compacts.
            start = undo_key(self.final_height + 1)
            for key in self.db.iterator(start=start, stop=undo_key(height + 1), include_value=False):
                batch.delete(key)
            batch.put(META_FINAL, u64(height))
        self.final_height = height

    def undo_size(self) -> tuple[int, int]:
        """(blocks, bytes) of undo data held: what the head-to-final gap costs."""
        blocks = size = 0
        for value in self.db.iterator(prefix=P_UNDO, include_key=False):
            blocks += 1
            size += len(value)
        return blocks, size

    def rollback_to(self, height: int) -> list[Block]:
        """Undo every block above `height`, atomically, and return them (lowest first) so
        that the caller can offer their documents again. Refused below the final height.

        One synced write batch restores every key the undone blocks wrote and removes
        their chain records, so a crash leaves either the old head or the new one."""
        head = self.head
        if height < self.final_height:
            raise RollbackRefused(f"height {height} is below the final height {self.final_height}")
        if not 0 <= height <= head.height:
            raise RollbackRefused(f"height {height} is not at or below the head {head.height}")
        records: list[UndoRecord] = []
        for h in range(head.height, height, -1):
            raw = self.db.get(undo_key(h))
            if raw is None:
                raise RollbackRefused(f"block {h} has no undo data: it cannot be rolled back")
            records.append(UndoRecord.unpack(raw))
        undone = [cast(Block, self.block(h)) for h in range(height + 1, head.height + 1)]
        if not records:
            return undone
        restored = Head(*records[-1].previous_head)
        with self.db.write_batch(sync=True, transaction=True) as batch:
            for key, value in fold_undo(records).items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            for h in range(height + 1, head.height + 1):
                for prefix in (P_BLOCK_DOC + u64(h), P_ATTEST + u64(h)):
                    for key in self.db.iterator(prefix=prefix, include_value=False):
                        batch.delete(key)
                for key in (P_BLOCK + u64(h), P_RESULTS + u64(h), undo_key(h)):
                    batch.delete(key)
            if self.db.get(META_SYNC) is not None:
                batch.put(META_SYNC, u64(height))
            batch.put(META_HEAD, pack(restored.to_list()))
        self.head = restored
        # Caches keyed by what the undone blocks changed: the parameters and membership
        # in force, and the parties of codes, may differ at the restored head.
        self._params_at = None
        self._members_at = None
        self._parties = {}
        self._parties_head = b""
        return undone

    def make_durable(self) -> None:
        """Make every block written so far durable, even when blocks are written unsynced."""
        self.db.put(META_SYNC, u64(self.head.height), sync=True)

    def add_attestation(self, attestation: Attestation, verifier: Verifier) -> bool:
        """Store a verified attestation of a block we hold; False when it does not fit."""
        header = self.header(attestation.height)
        if header is None or not attestation.names(header):
            return False  # another block, or this block's hash under another round
        if not self.members().verify_attestation(attestation, verifier):
            return False
        key = P_ATTEST + u64(attestation.height) + attestation.state.encode()
        self.db.put(key, attestation.signature, sync=False)
        return True

    # Typed lookups for the node: nobody outside the ledger reads its keys.

    def params(self) -> ChainParams:
        """The chain parameters in force at the head: genesis's, as governance documents
        last set them. Read once per head (callers ask per document)."""
        cached = self._params_at
        if cached is None or cached[0] != self.head.height:
            cached = (self.head.height, governed_params(self.db, self.genesis))
            self._params_at = cached
        return cached[1]

    # -- governance, recall and trade records, typed (node/ reads no raw keys) ----------

    def evidence_cleared_below(self, state: str) -> int:
        """The height below which the regulators cleared evidence against `state` (0: never)."""
        return evidence_cleared_below(self.db, state)

    def next_conf_change(self, voters: Sequence[int]) -> tuple[str, int, bytes] | None:
        """The next Raft configuration change a committed governance document asks for."""
        return next_conf_change(self.db, self.genesis, voters)

    def trade(self, state: str, direction: str, since: int = 0, until: int | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
        """A member state's export or import records, in chain order, with the parties'
        tax ids (ledger/_tax_ids.py)."""
        return _tax_ids.trade(self.db, state, direction, since, until, limit)

    def recalls(self, after: bytes = b"", limit: int = 100, status: str = "") -> list[dict[str, Any]]:
        """A page of recalls by id, optionally of one status."""
        return _recall.recalls(self.db, after, limit, status)

    def recall(self, recall_id: bytes) -> _recall.RecallRecord | None:
        return _recall.recall_record(self.db, recall_id)

    def recall_holders(self, recall_id: bytes, record: _recall.RecallRecord,
                       state_of: Callable[[str], str]) -> dict[str, Any]:
        """Holders of what a recall matches, by member state (from the lot index)."""
        return _recall.recall_holders(self.db, recall_id, record, state_of)

    def import_record(self, import_id: bytes) -> _recall.ImportRecord | None:
        return _recall.import_record(self.db, import_id)

    def members(self) -> Membership:
        """The member table at the head: genesis's nodes, as governance documents last
        added, removed or replaced them. Read once per head."""
        cached = self._members_at
        if cached is None or cached[0] != self.head.height:
            cached = (self.head.height, governed_membership(self.db, self.genesis))
            self._members_at = cached
        return cached[1]

    def product_groups(self) -> GroupTable:
        """The product-group table in force at the head: genesis's, as governance documents
        last set it (ledger/_group_table.py)."""
        return governed_groups(self.db, self.genesis.product_groups)

    def participant_record(self, pid: str) -> ParticipantRecord | None:
        """A participant's record as of the head (cached decoding), or None."""
        raw = self.db.get(P_PARTICIPANT + pid.encode())
        return self.machine.participant_record(raw) if raw is not None else None

    def is_recorded(self, doc_id: bytes) -> bool:
        """Whether a block records a document with this id (applied or refused)."""
        return self.db.get(P_DOC + doc_id) is not None

    def has_attestation(self, height: int, state: str) -> bool:
        return self.db.get(P_ATTEST + u64(height) + state.encode()) is not None

    # Reads for the access rule (ledger/_access.py).

    def audit_scopes(self, pid: str) -> frozenset[str]:
        """The scopes of a participant's auditor grants: member states, or "*" for all."""
        prefix = P_AUDIT + pid.encode()
        keys = self.db.iterator(prefix=prefix, include_value=False)
        return frozenset(k[len(prefix):].decode() for k in keys)

    def shipment_record(self, shipment_id: bytes) -> ShipmentRecord | None:
        raw = self.db.get(P_SHIPMENT + shipment_id)
        return ShipmentRecord.unpack(raw) if raw is not None else None

    def code_holder(self, key: str) -> tuple[str, str] | None:
        """Who holds a code now (the owner of its outermost aggregate) and who receives
        it in a pending shipment ("" when it is not in transit); None for no such code."""
        record = self.code_record(key)
        if record is None:
            return None
        _, root = self.outermost(record)
        receiver = ""
        if root.shipment:
            shipment = self.shipment_record(root.shipment)
            receiver = shipment.receiver if shipment is not None else ""
        return root.owner, receiver

    def document_place(self, doc_id: bytes) -> tuple[Place, SignedDocument | None] | None:
        """Where a recorded document is and what it decodes to (None for bytes that never
        decoded); None when no block records it."""
        raw = self.db.get(P_DOC + doc_id)
        if raw is None:
            return None
        height, position, _reason = unpack_trusted(raw)
        return (height, position), self.document_at(height, position)

    def document_at(self, height: int, position: int) -> SignedDocument | None:
        wire = self.db.get(P_BLOCK_DOC + u64(height) + u32(position))
        if wire is None:
            return None
        try:
            return decode_signed(wire)
        except DecodeError:
            return None

    def code_parties(self, key: str) -> list[Party]:
        """Who held a code or received it in a shipment, and when (see `_access.code_parties`).

        Kept for the head: the same code is read many times between two blocks (its
        state, then its history, by several readers), and only a block changes it."""
        # By the head's hash, not its height: a node that returns to the last final
        # block and applies another branch has other blocks at the same heights.
        if self._parties_head != self.head.hash or len(self._parties) >= PARTIES_CACHED_MAX:
            self._parties.clear()
            self._parties_head = self.head.hash
        parties = self._parties.get(key)
        if parties is None:
            parties = self._parties_now(key)
            self._parties[key] = parties
        return parties

    def _parties_now(self, key: str) -> list[Party]:
        return code_parties(self._history_from(key, (0, 0), None, "", 0), self._facts_at, key)

    def _facts_at(self, height: int, position: int) -> DocFacts:
        """A stored document's type, signer and payload, unpacked without the checks of
        decoding: the bytes are those this store applied, so they decoded once already."""
        wire = self.db.get(P_BLOCK_DOC + u64(height) + u32(position))
        invariant(wire is not None, f"history names a missing document at {height}/{position}")
        body = unpack_trusted(cast(bytes, wire))[0]
        _version, _chain, doc_type, signer, _nonce, _expires, payload = unpack_trusted(body)
        return DocFacts(doc_type, signer, payload, document_id(body) if doc_type == "ship" else b"")

    def was_party(self, pid: str, key: str) -> bool:
        """Whether a participant ever held a code or received it, itself or inside an
        aggregate it was packed in: one key read per aggregate level."""
        prefix = P_PARTY + pid.encode()
        return any(self.db.get(prefix + code.encode()) is not None for code in (key, *self.enclosures(key)))

    def packed_codes(self, sscc: str) -> list[str]:
        """The codes an aggregate was made of: those its aggregate document listed (an
        SSCC is aggregated once and never reused, so these are all it ever held)."""
        prefix = history_prefix(sscc)
        it = self.db.iterator(prefix=prefix)
        try:
            first = next(it, None)
        finally:
            it.close()
        if first is None:
            return []
        signed = self.document_at(*_place_of(first[0]))
        if signed is None or signed.document.type is not DocType.AGGREGATE:
            return []
        codes = list(signed.document.payload[1])
        # Codes a reaggregate added later (issue 13) were packed in it too.
        for key, value in self.db.iterator(prefix=prefix):
            if unpack_trusted(value)[0] == DocType.REAGGREGATE.value:
                later = self.document_at(*_place_of(key))
                if later is not None:
                    codes.extend(c for c in later.document.payload[1] if c not in codes)
        return codes

    def link(self, key: str) -> tuple[str, str, int, int] | None:
        """A re-marking (issue 13): ("replaced_by" or "replaces", the other code, height,
        position of the remark), or None."""
        raw = self.db.get(P_LINK + key.encode())
        if raw is None:
            return None
        relation, other, height, position = unpack_trusted(raw)
        return relation, other, height, position

    def enclosures(self, key: str, depth: int = 0) -> list[str]:
        """Every aggregate a code was ever packed into, and theirs, to HISTORY_DEPTH_MAX."""
        out: list[str] = []
        if depth >= HISTORY_DEPTH_MAX:
            return out
        for _, value in self.db.iterator(prefix=nesting_prefix(key)):
            doc_type, sscc = unpack_trusted(value)
            if doc_type == "aggregate" and sscc and sscc not in out:
                out.append(sscc)
                out.extend(s for s in self.enclosures(sscc, depth + 1) if s not in out)
        return out

    # Chain reads.

    def header(self, height: int) -> BlockHeader | None:
        raw = self.db.get(P_BLOCK + u64(height))
        return BlockHeader.decode(raw) if raw is not None else None

    def block_documents(self, height: int) -> list[bytes]:
        prefix = P_BLOCK_DOC + u64(height)
        return [v for _, v in self.db.iterator(prefix=prefix)]

    def results(self, height: int) -> list[Result]:
        raw = self.db.get(P_RESULTS + u64(height))
        return [Result.from_list(r) for r in unpack_trusted(raw)] if raw is not None else []

    def block(self, height: int) -> Block | None:
        header = self.header(height)
        if header is None:
            return None
        return Block(header, self.block_documents(height), self.results(height))

    def attestations(self, height: int) -> list[Attestation]:
        header = self.header(height)
        if header is None:
            return []
        prefix = P_ATTEST + u64(height)
        return [
            Attestation(k[len(prefix):].decode(), height, header.raft_term, header.hash, v)
            for k, v in self.db.iterator(prefix=prefix)
        ]

    def document(self, doc_id: bytes) -> dict[str, Any] | None:
        raw = self.db.get(P_DOC + doc_id)
        if raw is None:
            return None
        height, position, _reason = unpack_trusted(raw)
        wire = self.db.get(P_BLOCK_DOC + u64(height) + u32(position))
        result = self.results(height)[position]
        return {"height": height, "position": position, "wire": wire, "result": result}

    # State reads.

    def code_record(self, key: str) -> CodeRecord | None:
        raw = self.db.get(code_key(key))
        return CodeRecord.unpack(raw) if raw is not None else None

    def outermost(self, record: CodeRecord) -> tuple[str, CodeRecord]:
        key = ""
        while record.parent:
            key = record.parent
            parent = self.code_record(key)
            invariant(parent is not None, f"aggregate {key} of a code is missing")
            record = cast(CodeRecord, parent)  # checked just above; the cast only informs mypy
        return key, record

    def code(self, key: str) -> dict[str, Any] | None:
        record = self.code_record(key)
        if record is None:
            return None
        root_key, root = self.outermost(record)
        owner = self.participant(root.owner)
        parsed = parse_key(key)
        view: dict[str, Any] = {
            "code": key,
            "kind": "aggregate" if record.kind == AGGREGATE else "unit",
            "status": record.status,
            "owner": root.owner,
            "owner_state": owner["state"] if owner else None,
            "aggregate": record.parent or None,
            "outermost_aggregate": root_key or None,
            "in_transit": root.shipment.hex() if root.shipment else None,
            "suspended": record.suspended,
            "retire_reason": record.retire_reason or None,
        }
        link = self.link(key)
        if link is not None:
            view[link[0]] = link[1]  # "replaced_by" or "replaces" (a remark, issue 13)
        if isinstance(parsed, Sscc):
            view["sscc"] = parsed.value
            view["children"] = record.count
            view["suspended_inside"] = record.suspended_inside
        else:
            view["gtin"] = parsed.gtin
            view["serial"] = parsed.serial
            attributes = self.attributes(key)
            if attributes:
                view["attributes"] = Scanned(parsed, tuple((ai, v) for ai, v in attributes)).attributes_json()
        # The recall that holds the code, or a unit inside the aggregate (docs/RECALL.md).
        recalled = _recall.RecallCheck(self.db.get).recall_of(key)
        if recalled is not None:
            view["recalled_by"] = recalled[0].hex()
        return view

    def product(self, gtin: str) -> dict[str, Any] | None:
        """A registered product, as the catalogue holds it."""
        raw = self.db.get(product_key(gtin))
        return ProductRecord.unpack(raw).to_json() if raw is not None else None

    def products(
        self, group: str = "", after: str = "", limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Registered products in GTIN order, of one group when `group` is given, and the
        cursor of the next page (None at the end). A page reads at most PRODUCT_SCAN_MAX
        records, so a rare group cannot make one request walk the whole catalogue: a short
        page with a cursor says where to go on."""
        limit = max(1, min(limit, PAGE_LIMIT_MAX))
        start = product_key(after) + b"\x00" if after else P_PRODUCT
        out: list[dict[str, Any]] = []
        rows = self.db.iterator(start=start, stop=prefix_end(P_PRODUCT))
        for scanned, (_, raw) in enumerate(rows, 1):
            record = ProductRecord.unpack(raw)
            if not group or record.group == group:
                out.append(record.to_json())
            if len(out) >= limit or scanned >= PRODUCT_SCAN_MAX:
                return out, record.gtin
        return out, None

    def attributes(self, key: str) -> list[list[str]]:
        """The attributes a unit was introduced with ([AI, value] pairs), if any."""
        raw = self.db.get(attributes_key(key))
        return list(unpack_trusted(raw)) if raw is not None else []

    def children(self, sscc: str) -> list[str]:
        raw = self.db.get(P_CHILDREN + sscc.encode())
        return list(unpack_trusted(raw)) if raw is not None else []

    def participant(self, pid: str) -> dict[str, Any] | None:
        raw = self.db.get(P_PARTICIPANT + pid.encode())
        if raw is None:
            return None
        record = ParticipantRecord.unpack(raw)
        return {
            "id": pid,
            "public_key": record.public_key.hex(),
            "state": record.state,
            "roles": record.roles,
            "name": record.name,
            "status": record.status,
            "registered_height": record.registered_height,
            "tax_id": record.tax_id or None,
        }

    def shipment(self, shipment_id: bytes) -> dict[str, Any] | None:
        raw = self.db.get(P_SHIPMENT + shipment_id)
        if raw is None:
            return None
        view = ShipmentRecord.unpack(raw).to_json()
        view["id"] = shipment_id.hex()
        return view

    def holdings(self, pid: str, after: str = "", limit: int = 100) -> list[str]:
        """Loose codes and outermost aggregates the participant holds, in key order."""
        limit = max(1, min(limit, PAGE_LIMIT_MAX))
        prefix = P_HOLDING + pid.encode()
        start = prefix + after.encode() + b"\x00" if after else prefix
        out: list[str] = []
        stop = prefix_end(prefix)
        for key in self.db.iterator(start=start, stop=stop, include_value=False):
            out.append(key[len(prefix):].decode())
            if len(out) >= limit:
                break
        return out

    def flows(
        self, from_state: str, to_state: str, since: int = 0, until: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Cross-border shipments from one member state to another, in chain order."""
        limit = max(1, min(limit, PAGE_LIMIT_MAX))
        prefix = P_FLOW + from_state.encode() + to_state.encode()
        stop = prefix + u64(until + 1) if until is not None else prefix_end(prefix)
        out: list[dict[str, Any]] = []
        for key, shipment_id in self.db.iterator(start=prefix + u64(since), stop=stop):
            view = self.shipment(shipment_id)
            if view is not None:
                view["position"] = int.from_bytes(key[-4:], "big")
                out.append(view)
            if len(out) >= limit:
                break
        return out

    def _own_history(self, key: str, lo: Place, hi: Place | None, via: str) -> Iterator[HistoryEntry]:
        """The code's own entries from `lo` (inclusive) to `hi` (exclusive), by one seek."""
        prefix = history_prefix(key)
        start = prefix + at_height_position(*lo)
        stop = prefix + at_height_position(*hi) if hi is not None else prefix_end(prefix)
        for k, v in self.db.iterator(start=start, stop=stop):
            doc_type, sscc = unpack_trusted(v)
            yield HistoryEntry(*_place_of(k), b"", doc_type, sscc, via)

    def _nesting_event(self, key: str, at: Place, before: bool) -> tuple[Place, str, str] | None:
        """The code's last pack or unpack before `at`, or its first at or after it: one
        step of an iterator that seeks there, whatever the length of the history."""
        prefix = nesting_prefix(key)
        cut = prefix + at_height_position(*at)
        if before:
            it = self.db.iterator(start=prefix, stop=cut, reverse=True)
        else:
            it = self.db.iterator(start=cut, stop=prefix_end(prefix))
        try:
            found = next(it, None)
        finally:
            it.close()
        if found is None:
            return None
        doc_type, sscc = unpack_trusted(found[1])
        return _place_of(found[0]), doc_type, sscc

    def _packed_until(self, key: str, since: Place) -> Place | None:
        """Where the packing that holds the code at `since` ends (its unpack), if it does."""
        after = self._nesting_event(key, since, before=False)
        return after[0] if after is not None else None

    def _history_from(
        self, key: str, lo: Place, hi: Place | None, via: str, depth: int
    ) -> Iterator[HistoryEntry]:
        """A code's history from `lo` (inclusive) to `hi` (exclusive), in chain order: its
        own entries merged with those of each aggregate it was packed in meanwhile.

        Every source is a LevelDB iterator that seeks to its start, and the merge pulls
        only what it yields, so reading n entries costs O(n + nesting depth) keys
        however long the history before `lo` is."""
        own = self._own_history(key, lo, hi, via)
        heap: list[tuple[int, int, int, HistoryEntry, Iterator[HistoryEntry]]] = []
        order = itertools.count()  # ties cannot happen; this only keeps tuples comparable

        def push(source: Iterator[HistoryEntry]) -> None:
            entry = next(source, None)
            if entry is not None:
                heapq.heappush(heap, (entry.height, entry.position, next(order), entry, source))

        def push_packed(sscc: str, since: Place) -> None:
            end = _earlier(self._packed_until(key, since), hi)
            push(self._history_from(sscc, since, end, sscc, depth + 1))

        push(own)
        packed = self._nesting_event(key, lo, before=True) if depth < HISTORY_DEPTH_MAX else None
        if packed is not None and packed[1] == "aggregate":
            push_packed(packed[2], lo)
        while heap:
            _, _, _, entry, source = heapq.heappop(heap)
            yield entry
            if source is own and entry.type == "aggregate" and entry.sscc and depth < HISTORY_DEPTH_MAX:
                push_packed(entry.sscc, (entry.height, entry.position + 1))
            push(source)

    def history(self, key: str, after: Place | None = None, limit: int = 100) -> list[HistoryEntry]:
        """Every document that touched a code, directly or by moving an aggregate it
        was packed in, in chain order; a page of at most `limit` after `after`.
        A page costs O(limit) key reads wherever in the history it starts."""
        limit = max(1, min(limit, PAGE_LIMIT_MAX))
        lo = (after[0], after[1] + 1) if after is not None else (0, 0)
        page = itertools.islice(self._history_from(key, lo, None, "", 0), limit)
        return [replace(e, document_id=self.document_id_at(e.height, e.position)) for e in page]

    def whole_history(self, key: str) -> list[HistoryEntry]:
        """A code's history without pages, for provenance bundles, which must be complete."""
        entries = self._history_from(key, (0, 0), None, "", 0)
        return [replace(e, document_id=self.document_id_at(e.height, e.position)) for e in entries]

    def document_id_at(self, height: int, position: int) -> bytes:
        wire = self.db.get(P_BLOCK_DOC + u64(height) + u32(position))
        invariant(wire is not None, f"history names a document at {height}/{position} that is missing")
        return document_id(unpack_trusted(cast(bytes, wire))[0])

    # The inbox and the event feed (ledger/_inbox.py; node/_feed.py).

    def inbox(self, pid: str, pending: bool = False, after: Place | None = None,
              limit: int = 100) -> list[InboxEntry]:
        """What was addressed to a participant, oldest first, a page of at most `limit`
        after `after`; with `pending`, only incoming shipments still awaiting it. One
        seek and `limit` keys, however long the inbox."""
        limit = max(1, min(limit, PAGE_LIMIT_MAX))
        prefix = (P_PENDING if pending else P_INBOX) + pid.encode()
        start = prefix + at_height_position(after[0], after[1] + 1) if after is not None else prefix
        out: list[InboxEntry] = []
        for key, value in self.db.iterator(start=start, stop=prefix_end(prefix)):
            height, position = _place_of(key)
            if pending:
                out.append(InboxEntry(height, position, INCOMING_SHIPMENT, value))
            else:
                kind, doc_id = unpack_trusted(value)
                out.append(InboxEntry(height, position, kind, doc_id))
            if len(out) >= limit:
                break
        return out

    def involvement(self, signed: SignedDocument, signer: ParticipantRecord, height: int,
                    position: int) -> Involvement | None:
        """Whom an applied document addresses, worked out from the state it left (the
        event feed's reading of a document; ledger/_inbox.py)."""
        return involvement(signed.document, signed.id, signer, self.db.get, height, position)

    def involved(self, height: int, position: int) -> tuple[list[str], list[str]] | None:
        """The holders a suspension or release named and their member states, as stored
        when it applied; None for any other document (ledger/_inbox.py)."""
        raw = self.db.get(P_INVOLVED + u64(height) + u32(position))
        if raw is None:
            return None
        parties, states = unpack_trusted(raw)
        return list(parties), list(states)

    def documents_after(self, after: Place | None, limit: int) -> list[tuple[int, int, bytes]]:
        """The next `limit` documents of the chain after `after`, in chain order, as
        (height, position, wire bytes), up to the head: one seek, `limit` keys."""
        start = P_BLOCK_DOC + (at_height_position(after[0], after[1] + 1) if after is not None else b"")
        stop = P_BLOCK_DOC + u64(self.head.height + 1)
        out: list[tuple[int, int, bytes]] = []
        for key, wire in self.db.iterator(start=start, stop=stop):
            out.append((*_place_of(key), wire))
            if len(out) >= limit:
                break
        return out


def _write_involved(batch: Any, involved: Sequence[Involvement]) -> None:
    """The block's inbox items, pending shipments and parties (ledger/_inbox.py), in
    document order: a shipment accepted later in the same block leaves no pending item."""
    for inv in involved:
        place = u64(inv.height) + u32(inv.position)
        for notice in inv.notices:
            who = notice.participant.encode()
            batch.put(P_INBOX + who + place, pack_trusted([notice.kind, inv.document_id]))
            if notice.pending:
                batch.put(P_PENDING + who + place, inv.document_id)
        for receiver, height, position in inv.resolves:
            batch.delete(P_PENDING + receiver.encode() + u64(height) + u32(position))
        if inv.stored:
            batch.put(P_INVOLVED + place, pack_trusted([list(inv.parties), list(inv.states)]))


class _UndoBatch:
    """A write batch that records, on the first touch of each key, the value it had
    before the block (None: absent), for the block's undo record (ledger/_undo.py).
    Chain keys named by the block's height are removed by prefix on rollback and are
    written to the real batch, not through this one."""

    def __init__(self, db: Any, stored: Mapping[bytes, bytes | None]) -> None:
        """`stored`: values before the block that the execution read already; each
        other key is read here (a LevelDB read per changed key is most of the undo cost,
        and on a large store most of a shipment's)."""
        self._get = db.get
        self._stored = stored
        self._seen: set[bytes] = set()
        self.previous: list[tuple[bytes, bytes | None]] = []
        self._batch: Any = None

    def wrap(self, batch: Any) -> _UndoBatch:
        self._batch = batch
        return self

    def _record(self, key: bytes) -> None:
        if key not in self._seen:
            self._seen.add(key)
            if is_always_new(key):
                previous = None
            elif key in self._stored:
                previous = self._stored[key]
            else:
                previous = self._get(key)
            self.previous.append((key, previous))

    def put(self, key: bytes, value: bytes) -> None:
        self._record(key)
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._record(key)
        self._batch.delete(key)


def _index_receiver(batch: Any, shipment_value: bytes) -> None:
    """A shipment's receiver becomes a party of each of its items (store-local index),
    once: when the shipment is made (its accept or reject rewrites the record)."""
    shipment = ShipmentRecord.unpack(shipment_value)
    if shipment.status != PENDING:
        return
    prefix = P_PARTY + shipment.receiver.encode()
    for item in shipment.items:
        batch.put(prefix + item.encode(), b"")


def _place_of(key: bytes) -> Place:
    """The (height, position) that ends a history or nesting key."""
    return int.from_bytes(key[-12:-4], "big"), int.from_bytes(key[-4:], "big")


def _earlier(a: Place | None, b: Place | None) -> Place | None:
    """The earlier of two ends, None meaning no end."""
    if a is None:
        return b
    return a if b is None or a < b else b


def open_existing(path: Path, genesis: Genesis) -> LedgerStore:
    """Open a store that must already exist (auditors, tools)."""
    if not (path / "CURRENT").exists():
        raise StoreError(f"{path} is not a ledger data directory")
    return LedgerStore(path, genesis)



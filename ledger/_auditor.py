"""The independent auditor: verify a chain from genesis, trusting nothing else.

It replays every block into its own replica (a LevelDB directory of its own), and at
each height checks the hash link, the documents' Merkle root, every signature, every
permission and state transition (by executing the documents itself: equal results and
an equal state hash), and every attestation against the node keys in genesis. The
first failure stops the audit with the height, what failed and why.

The replica is also the checkpoint: an audit resumes from the replica's head after
checking that the chain still holds the block the replica ended on. With workers > 1
the signatures of upcoming blocks are checked in worker processes (see
`_audit_workers`) while the main process replays the blocks in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plyvel

from ._audit_workers import SignatureWorkers, Verdicts
from ._chain import Attestation, Block, BlockHeader, documents_root
from ._documents import DocType, decode_signed
from ._encoding import pack, pack_trusted, unpack
from ._errors import DecodeError
from ._finality import final_states
from ._genesis import Genesis
from ._identity import PUBLIC_KEY_BYTES, Verifier, participant_id
from ._membership import Member, membership_after, membership_changed
from ._records import P_ATTEST, P_BLOCK, P_BLOCK_DOC, P_PARTICIPANT, P_RESULTS, ParticipantRecord, u64
from ._state import Result
from ._store import LedgerStore, PreparedBlock, prefix_end

# How far the signature workers may run ahead of the replay: enough documents to keep
# every worker busy while the replay catches up, few enough bytes to bound memory.
AHEAD_DOCUMENTS_MAX = 4_096
AHEAD_BYTES_MAX = 32 << 20

_PARTICIPANT_BYTE = P_PARTICIPANT[0]


@dataclass(frozen=True, slots=True)
class AuditFailure:
    height: int
    what: str
    why: str

    def __str__(self) -> str:
        return f"height {self.height}: {self.what}: {self.why}"


@dataclass(slots=True)
class AuditReport:
    ok: bool = True
    start_height: int = 0
    height: int = 0
    head_hash: bytes = b""
    documents: int = 0
    applied: int = 0
    rejected: int = 0
    attestations: int = 0
    final_height: int = 0  # highest height up to which every block is final (a Byzantine quorum attests it)
    unattested: list[int] = field(default_factory=list)
    failure: AuditFailure | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "start_height": self.start_height,
            "height": self.height,
            "head_hash": self.head_hash.hex(),
            "documents": self.documents,
            "applied": self.applied,
            "rejected": self.rejected,
            "attestations": self.attestations,
            "final_height": self.final_height,
            "unattested": self.unattested[:100],
            "failure": None
            if self.failure is None
            else {"height": self.failure.height, "what": self.failure.what, "why": self.failure.why},
        }


class _Failed(Exception):
    def __init__(self, failure: AuditFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _fail(height: int, what: str, why: str) -> _Failed:
    return _Failed(AuditFailure(height, what, why))


@dataclass(slots=True)
class RawBlock:
    """A block as read from somewhere untrusted: decoding is part of the audit."""

    height: int
    header: bytes
    documents: list[bytes]
    results: bytes | None  # the encoded results list, as stored
    attestations: list[tuple[str, bytes]]


def read_data_dir(path: Path, start: int) -> Iterator[RawBlock]:
    """Blocks from a node's data directory, from `start`, as raw as they are stored."""
    if not (path / "CURRENT").exists():
        raise FileNotFoundError(f"{path} is not a ledger data directory")
    db = plyvel.DB(str(path), create_if_missing=False)
    try:
        height = start
        while True:
            header = db.get(P_BLOCK + u64(height))
            if header is None:
                if db.get(P_BLOCK + u64(height + 1)) is not None:
                    yield RawBlock(height, b"", [], None, [])  # a gap: reported as missing
                return
            prefix = P_BLOCK_DOC + u64(height)
            documents = [v for _, v in db.iterator(start=prefix, stop=prefix_end(prefix))]
            results_raw = db.get(P_RESULTS + u64(height))
            att_prefix = P_ATTEST + u64(height)
            attestations = [
                (k[len(att_prefix) :].decode(errors="replace"), v)
                for k, v in db.iterator(start=att_prefix, stop=prefix_end(att_prefix))
            ]
            yield RawBlock(height, header, documents, results_raw, attestations)
            height += 1
    finally:
        db.close()


def raw_from_stream(items: Iterable[tuple[Block, list[Attestation]]]) -> Iterator[RawBlock]:
    """Blocks as a node streams them, already decoded (the stream reader decodes)."""
    for block, attestations in items:
        yield RawBlock(
            block.header.height,
            block.header.encode(),
            block.documents,
            pack([r.to_list() for r in block.results]),
            [(a.state, a.signature) for a in attestations],
        )


class Auditor:
    def __init__(self, genesis: Genesis, replica: Path, workers: int = 1) -> None:
        self.genesis = genesis
        # The replica is never rolled back (a chain that changed below its head fails the
        # checkpoint), so it keeps no undo data: a read less per changed key.
        self.replica = LedgerStore(replica, genesis, sync=False, undo=False)
        self.verifier = Verifier()
        self.workers = max(1, workers)
        self._workers: SignatureWorkers | None = None
        # Every key each state's node has held: genesis's, and those governance gave it
        # (replacing or re-adding its node). A node stores a state's attestation only
        # under the key its member table names, which may be the key of a table a few
        # blocks later than the block's; the workers check genesis's keys.
        self._node_keys: dict[str, set[bytes]] = {s.code: {s.node_public_key} for s in genesis.states}
        self._learn_keys(self.replica.members().members)

    def close(self) -> None:
        self._close_workers()
        self.replica.close()

    def __enter__(self) -> Auditor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Entry points.

    def verify_data_dir(self, path: Path, progress: Callable[[int], None] | None = None) -> AuditReport:
        """Audit a node's data directory (a copy, or a stopped node's)."""
        start = max(1, self.replica.head.height)
        return self.verify_raw(read_data_dir(path, start), progress)

    def verify_stream(
        self, items: Iterable[tuple[Block, list[Attestation]]], progress: Callable[[int], None] | None = None
    ) -> AuditReport:
        return self.verify_raw(raw_from_stream(items), progress)

    def verify_raw(
        self, blocks: Iterable[RawBlock], progress: Callable[[int], None] | None = None
    ) -> AuditReport:
        report = AuditReport(start_height=self.replica.head.height)
        report.final_height = report.start_height
        try:
            self._verify_in_order(blocks, report, progress)
        except _Failed as failed:
            report.ok = False
            report.failure = failed.failure
        report.height = self.replica.head.height
        report.head_hash = self.replica.head.hash
        return report

    # Signatures checked ahead in worker processes.

    def _verify_in_order(
        self, blocks: Iterable[RawBlock], report: AuditReport, progress: Callable[[int], None] | None
    ) -> None:
        if self.workers == 1:
            for raw in blocks:
                self._verify_block(raw, None, report)
                if progress is not None:
                    progress(raw.height)
            return
        ahead: deque[RawBlock] = deque()
        try:
            for raw in blocks:
                workers = self._signature_workers()
                registered = _registration_keys(raw.documents)
                if registered:
                    workers.add_keys(registered)  # queued before the block's own documents
                workers.submit(raw.documents, raw.header, raw.attestations)
                ahead.append(raw)
                while _too_far_ahead(ahead):
                    self._verify_next(ahead.popleft(), workers, report, progress)
            while ahead:
                self._verify_next(ahead.popleft(), workers, report, progress)
        except BaseException:
            # Verdicts still on their way would be taken for the next call's blocks.
            self._close_workers()
            raise

    def _signature_workers(self) -> SignatureWorkers:
        """The workers, started at the first block and kept across calls (a follower
        audits a few blocks per round, and starting a process costs more)."""
        if self._workers is None:
            self._workers = SignatureWorkers(self.genesis, self.workers, self._known_keys())
        return self._workers

    def _close_workers(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def _verify_next(
        self, raw: RawBlock, workers: SignatureWorkers, report: AuditReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        prepared = self._verify_block(raw, workers.next_verdicts(), report)
        registered = _registered_keys(prepared.writes) if prepared is not None else {}
        if registered:
            workers.add_keys(registered)
        if progress is not None:
            progress(raw.height)

    def _known_keys(self) -> dict[str, bytes]:
        """Every participant's public key in the replica, for the workers to start with."""
        keys = {}
        for key, value in self.replica.db.iterator(prefix=P_PARTICIPANT):
            keys[key[len(P_PARTICIPANT):].decode()] = ParticipantRecord.unpack(value).public_key
        return keys

    # One block.

    def _verify_block(
        self, raw: RawBlock, verdicts: Verdicts | None, report: AuditReport
    ) -> PreparedBlock | None:
        """Check one block and write it to the replica; None for the checkpoint block.
        `verdicts` are the workers' signature checks, None to check them here."""
        head = self.replica.head
        expected = head.height + 1
        if raw.height < expected and raw.height == head.height:
            # Resuming: the chain must still hold the block the replica ended on.
            if _decode_header(raw).hash != head.hash:
                raise _fail(raw.height, "checkpoint", "the chain no longer holds the block audited before")
            return None
        if not raw.header:
            raise _fail(expected, "missing", f"block {expected} is missing while later blocks exist")
        header = _decode_header(raw)
        self._check_link(header, expected)
        root = _checked_documents_root(header, raw)
        prepared = self.replica.prepare_block(
            raw.documents, header.time_ms, header.proposer, header.raft_term, header.raft_index,
            verdicts.verified.__contains__ if verdicts is not None else None,
            known_documents_root=root,
        )
        self._check_results(expected, raw, prepared.applied.results)
        self._check_header(header, prepared.applied.header)
        if membership_changed(prepared.writes):
            self._learn_keys(membership_after(prepared.writes, self.replica.db, self.genesis).members)
        attested = self._check_attestations(
            header, raw.attestations, verdicts.attestations if verdicts is not None else None
        )
        self.replica.write_block(prepared, attested)
        self._count(report, prepared, attested)
        return prepared

    def _count(self, report: AuditReport, prepared: PreparedBlock, attested: list[Attestation]) -> None:
        height = prepared.applied.header.height
        applied = sum(1 for r in prepared.applied.results if r.applied)
        report.documents += len(prepared.documents)
        report.applied += applied
        report.rejected += len(prepared.documents) - applied
        report.attestations += len(attested)
        if final_states(self.genesis, (a.state for a in attested)):
            if report.final_height == height - 1:
                report.final_height = height
        else:
            report.unattested.append(height)

    def _learn_keys(self, members: Iterable[Member]) -> None:
        for m in members:
            self._node_keys.setdefault(m.code, set()).add(m.node_public_key)

    def _check_link(self, header: BlockHeader, expected: int) -> None:
        head = self.replica.head
        if header.chain_id != self.genesis.chain_id:
            raise _fail(
                expected,
                "chain",
                f"block belongs to chain {header.chain_id!r}, not {self.genesis.chain_id!r}",
            )
        if header.height != expected:
            raise _fail(expected, "order", f"expected block {expected}, found block {header.height}")
        if header.prev_hash != head.hash:
            raise _fail(expected, "link", f"previous-block hash does not match block {head.height}")
        if header.time_ms < head.time_ms:
            raise _fail(expected, "time", "block time goes back")

    def _check_results(self, height: int, raw: RawBlock, ours: list[Result]) -> None:
        # The common case is byte equality with our own encoding; decoding the stored
        # results is only needed to say where they differ.
        if raw.results is not None and raw.results == pack_trusted([r.to_list() for r in ours]):
            return
        stored = _decode_results(raw)
        if stored is None:
            raise _fail(height, "results", "stored results do not decode")
        if len(stored) != len(ours):
            raise _fail(height, "results", f"{len(stored)} results stored for {len(ours)} documents")
        for position, (theirs, mine) in enumerate(zip(stored, ours)):
            if theirs != mine:
                raise _fail(
                    height,
                    "results",
                    f"document {position}: the chain records {theirs.reason.value}, replay gives "
                    f"{mine.reason.value} ({mine.message or 'applied'})",
                )
        raise _fail(height, "results", "stored results are not in canonical form")

    def _check_header(self, theirs: BlockHeader, ours: BlockHeader) -> None:
        if theirs.results_root != ours.results_root:
            raise _fail(theirs.height, "results", "the results root does not match the replayed results")
        if theirs.state_hash != ours.state_hash:
            raise _fail(theirs.height, "state", "the state hash differs from the replayed state")
        if theirs != ours:
            fields = [f for f in theirs.__slots__ if getattr(theirs, f) != getattr(ours, f)]
            raise _fail(theirs.height, "header", f"header fields differ from replay: {', '.join(fields)}")

    def _check_attestations(
        self, header: BlockHeader, raw: list[tuple[str, bytes]], hold: list[bool] | None
    ) -> list[Attestation]:
        """The block's attestations, each checked here or, when `hold` says, by a worker."""
        block_hash = header.hash
        out = []
        for i, (state, signature) in enumerate(raw):
            att = Attestation(state, header.height, header.raft_term, block_hash, signature)
            ok = hold[i] if hold is not None else att.verify(self.genesis, self.verifier)
            if not ok:
                ok = any(att.verify_key(key, self.genesis.chain_id, self.verifier)
                         for key in self._node_keys.get(state, ()))
            if not ok:
                raise _fail(header.height, "attestation", f"the attestation by {state!r} does not verify")
            out.append(att)
        return out


def _decode_header(raw: RawBlock) -> BlockHeader:
    try:
        return BlockHeader.decode(raw.header)
    except DecodeError as exc:
        raise _fail(raw.height, "header", f"the stored header does not decode: {exc}") from exc


def _checked_documents_root(header: BlockHeader, raw: RawBlock) -> bytes:
    if header.documents != len(raw.documents):
        counts = f"header counts {header.documents} documents, block has {len(raw.documents)}"
        raise _fail(header.height, "documents", counts)
    root = documents_root(raw.documents)
    if root != header.documents_root:
        raise _fail(header.height, "documents", "the Merkle root of the documents does not match the header")
    return root


def _too_far_ahead(ahead: deque[RawBlock]) -> bool:
    """Whether the blocks handed to the workers and not yet replayed exceed the bound;
    the oldest one is always replayed first, whatever its size."""
    if len(ahead) <= 1:
        return False
    documents = sum(len(raw.documents) for raw in ahead)
    return documents > AHEAD_DOCUMENTS_MAX or sum(map(_block_bytes, ahead)) > AHEAD_BYTES_MAX


def _block_bytes(raw: RawBlock) -> int:
    return sum(map(len, raw.documents))


def _registration_keys(documents: list[bytes]) -> dict[str, bytes]:
    """The keys that registrations among these documents carry, by the participant id
    each key gives, whether or not the registrations will apply.

    The workers check a block's signatures before the replay reaches it, so a signer
    registered a few blocks earlier was unknown to them and the replay checked its
    documents itself (a fifth of a 30,000-document audit). An id is a hash of its key
    (`participant_id`), and a registered participant's key is the one its id came from:
    a signature that verifies under the key a registration names for that id is the
    same verdict the replay reaches for a registered signer; for a signer that is not
    registered, the replay refuses the document whatever the verdict."""
    keys: dict[str, bytes] = {}
    for wire in documents:
        if _REGISTER_MARK not in wire:  # a scan in C; decoding every document costs more
            continue
        try:
            document = decode_signed(wire).document
        except DecodeError:
            continue
        public_key = document.payload[0] if document.type is DocType.REGISTER_PARTICIPANT else None
        if isinstance(public_key, bytes) and len(public_key) == PUBLIC_KEY_BYTES:
            keys[participant_id(public_key)] = public_key
    return keys


# The type name as msgpack encodes it within every registration's body.
_REGISTER_MARK = pack_trusted(DocType.REGISTER_PARTICIPANT.value)


def _registered_keys(writes: dict[bytes, bytes | None]) -> dict[str, bytes]:
    """Public keys that a block's writes register (or rewrite: a key never changes)."""
    return {
        key[len(P_PARTICIPANT):].decode(): ParticipantRecord.unpack(value).public_key
        for key, value in writes.items()
        if key[0] == _PARTICIPANT_BYTE and value is not None
    }


def _decode_results(raw: RawBlock) -> list[Result] | None:
    if raw.results is None:
        return None
    try:
        return [Result.from_list(v) for v in unpack(raw.results)]
    except (DecodeError, ValueError, TypeError, IndexError):
        return None

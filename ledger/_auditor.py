"""The independent auditor: verify a chain from genesis, trusting nothing else.

It replays every block into its own replica (a LevelDB directory of its own), and at
each height checks the hash link, the documents' Merkle root, every signature, every
permission and state transition (by executing the documents itself: equal results and
an equal state hash), and every attestation against the node keys in genesis. The
first failure stops the audit with the height, what failed and why.

The replica is also the checkpoint: an audit resumes from the replica's head after
checking that the chain still holds the block the replica ended on. With workers > 1
the signatures of the next window of blocks are checked in other processes while the
current window is replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plyvel

from ._chain import Attestation, Block, BlockHeader, documents_root
from ._documents import document_id
from ._encoding import pack, pack_trusted, unpack, unpack_trusted
from ._errors import DecodeError
from ._genesis import Genesis
from ._identity import DOMAIN_DOCUMENT, Verifier
from ._records import P_ATTEST, P_BLOCK, P_BLOCK_DOC, P_PARTICIPANT, P_RESULTS, ParticipantRecord, u64
from ._state import Result
from ._store import LedgerStore, prefix_end

# Documents whose signatures go to the worker processes in one window: large enough
# to keep the workers busy while the main process replays, small enough to bound memory.
WINDOW_DOCUMENTS = 4_096
CHUNK_DOCUMENTS = 512


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
    final_height: int = 0  # highest height up to which every block has a quorum of attestations
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


def _verify_chunk(chain_id: str, items: list[tuple[bytes, bytes, bytes, bytes]]) -> list[bytes]:
    """In a worker process: the verified keys (id and signature) of the documents whose
    signatures verify."""
    verifier = Verifier()
    return [
        doc_id + signature
        for doc_id, public_key, signature, body in items
        if verifier.verify(public_key, signature, DOMAIN_DOCUMENT, chain_id, body)
    ]


class Auditor:
    def __init__(self, genesis: Genesis, replica: Path, workers: int = 1) -> None:
        self.genesis = genesis
        self.replica = LedgerStore(replica, genesis, sync=False)
        self.verifier = Verifier()
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
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
            for window in self._windows(blocks):
                self._verify_window(window, report, progress)
        except _Failed as failed:
            report.ok = False
            report.failure = failed.failure
        report.height = self.replica.head.height
        report.head_hash = self.replica.head.hash
        return report

    # Windows of blocks, with their signatures checked ahead in worker processes.

    def _windows(
        self, blocks: Iterable[RawBlock]
    ) -> Iterator[list[tuple[RawBlock, Future[list[bytes]] | None]]]:
        window: list[RawBlock] = []
        count = 0
        pending: list[tuple[RawBlock, Future[list[bytes]] | None]] | None = None
        for raw in blocks:
            window.append(raw)
            count += len(raw.documents)
            if count >= WINDOW_DOCUMENTS:
                submitted = self._submit(window)
                if pending is not None:
                    yield pending
                pending, window, count = submitted, [], 0
        last = self._submit(window) if window else None
        if pending is not None:
            yield pending
        if last is not None:
            yield last

    def _submit(self, window: list[RawBlock]) -> list[tuple[RawBlock, Future[list[bytes]] | None]]:
        if self.workers == 1:
            return [(raw, None) for raw in window]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        out: list[tuple[RawBlock, Future[list[bytes]] | None]] = []
        keys: dict[str, bytes | None] = {}
        for raw in window:
            items = [item for wire in raw.documents if (item := self._signature_task(wire, keys))]
            future = self._pool.submit(_verify_chunk, self.genesis.chain_id, items) if items else None
            out.append((raw, future))
        return out

    def _signature_task(
        self, wire: bytes, keys: dict[str, bytes | None]
    ) -> tuple[bytes, bytes, bytes, bytes] | None:
        """What a worker needs to check one signature: the document id, the signer's key,
        the signature and the body. Only the signer is read here; the replay decodes and
        checks the document in full, and anything odd is simply left to it."""
        try:
            body, signature = unpack_trusted(wire)
            signer = unpack_trusted(body)[3]
        except (ValueError, TypeError, IndexError, KeyError):
            return None
        if not isinstance(signer, str) or not isinstance(signature, bytes) or not isinstance(body, bytes):
            return None
        if signer not in keys:
            record = self.replica.db.get(P_PARTICIPANT + signer.encode())
            keys[signer] = ParticipantRecord.unpack(record).public_key if record is not None else None
        public_key = keys[signer]
        if public_key is None:
            return None
        return document_id(body), public_key, signature, body

    def _verify_window(
        self,
        window: list[tuple[RawBlock, Future[list[bytes]] | None]],
        report: AuditReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        for raw, future in window:
            verified: Callable[[bytes], bool] | None = None
            if future is not None:
                ok = set(future.result())
                verified = ok.__contains__
            self._verify_block(raw, verified, report)
            if progress is not None:
                progress(raw.height)

    # One block.

    def _verify_block(
        self, raw: RawBlock, verified: Callable[[bytes], bool] | None, report: AuditReport
    ) -> None:
        head = self.replica.head
        expected = head.height + 1
        if raw.height < expected and raw.height == head.height:
            # Resuming: the chain must still hold the block the replica ended on.
            header = _decode_header(raw)
            if header.hash != head.hash:
                raise _fail(raw.height, "checkpoint", "the chain no longer holds the block audited before")
            return
        if not raw.header:
            raise _fail(expected, "missing", f"block {expected} is missing while later blocks exist")
        header = _decode_header(raw)
        self._check_link(header, expected)
        if header.documents != len(raw.documents):
            raise _fail(
                expected,
                "documents",
                f"header counts {header.documents} documents, block has {len(raw.documents)}",
            )
        root = documents_root(raw.documents)
        if root != header.documents_root:
            raise _fail(expected, "documents", "the Merkle root of the documents does not match the header")
        prepared = self.replica.prepare_block(
            raw.documents, header.time_ms, header.proposer, header.raft_term, header.raft_index, verified,
            known_documents_root=root,
        )
        ours = prepared.applied
        self._check_results(expected, raw, ours.results)
        self._check_header(header, ours.header)
        attested = self._check_attestations(header, raw.attestations)
        self.replica.write_block(prepared)
        for att in attested:
            self.replica.add_attestation(att, self.verifier)
        report.documents += len(raw.documents)
        report.applied += sum(1 for r in ours.results if r.applied)
        report.rejected += sum(1 for r in ours.results if not r.applied)
        report.attestations += len(attested)
        if len({a.state for a in attested}) >= self.genesis.quorum:
            if report.final_height == expected - 1:
                report.final_height = expected
        else:
            report.unattested.append(expected)

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

    def _check_attestations(self, header: BlockHeader, raw: list[tuple[str, bytes]]) -> list[Attestation]:
        out = []
        for state, signature in raw:
            att = Attestation(state, header.height, header.hash, signature)
            if not att.verify(self.genesis, self.verifier):
                raise _fail(header.height, "attestation", f"the attestation by {state!r} does not verify")
            out.append(att)
        return out


def _decode_header(raw: RawBlock) -> BlockHeader:
    try:
        return BlockHeader.decode(raw.header)
    except DecodeError as exc:
        raise _fail(raw.height, "header", f"the stored header does not decode: {exc}") from exc


def _decode_results(raw: RawBlock) -> list[Result] | None:
    if raw.results is None:
        return None
    try:
        return [Result.from_list(v) for v in unpack(raw.results)]
    except (DecodeError, ValueError, TypeError, IndexError):
        return None

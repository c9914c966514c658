"""The auditor's work over a node or a data directory: verify, follow, prove, check.

`ledger.Auditor` does the checking; this module feeds it blocks (streamed from a node
as msgpack, or read from a data directory), keeps the replica that makes a follower
resume where it stopped, and fetches provenance bundles.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plyvel

import ledger
from node.client import ClientError, NodeError, SyncNodeClient

# Verifying signatures in other processes pays off from a few thousand documents on;
# more workers than cores only adds switching.
WORKERS_MAX = 4


def default_workers() -> int:
    return max(1, min(WORKERS_MAX, os.cpu_count() or 1))


def raw_blocks(stream: Iterable[tuple[bytes, list[Any]]], first: int) -> Iterator[ledger.RawBlock]:
    """A node's block stream as raw blocks for the auditor.

    Only the outer framing is unpacked here; a block that does not decode is handed on
    as it is, so that the audit reports it at its height instead of the client
    failing somewhere before.
    """
    for offset, (block_bytes, attestations) in enumerate(stream):
        height = first + offset
        header, documents, results = b"", [], None
        try:
            value = ledger.unpack(block_bytes)
            if isinstance(value, list) and len(value) == 3 and isinstance(value[0], bytes):
                header = value[0]
                if isinstance(value[1], list) and all(isinstance(d, bytes) for d in value[1]):
                    documents = value[1]
                if isinstance(value[2], list):
                    results = ledger.pack(value[2])
        except ledger.DecodeError:
            pass
        yield ledger.RawBlock(height, header or b"\xc1", documents, results, _attestation_pairs(attestations))


def _attestation_pairs(attestations: list[Any]) -> list[tuple[str, bytes]]:
    out = []
    for item in attestations:
        # [state, height, round, block hash, signature]: the header gives the rest.
        if isinstance(item, list) and len(item) == 5:
            state, signature = item[0], item[4]
            if isinstance(state, str) and isinstance(signature, bytes):
                out.append((state, signature))
    return out


@contextlib.contextmanager
def replica_dir(path: Path | None) -> Iterator[Path]:
    """The auditor's own replica: the given directory (kept, resumable) or a temporary one."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tamga-audit-") as tmp:
        yield Path(tmp)


def verify_node(
    client: SyncNodeClient,
    genesis: ledger.Genesis,
    replica: Path,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ledger.AuditReport:
    """Stream every block the node holds (from the replica's head on) and audit it."""
    with ledger.Auditor(genesis, replica, workers) as auditor:
        first = max(1, auditor.replica.head.height)
        return auditor.verify_raw(raw_blocks(client.stream_blocks(first), first), progress)


def verify_data_dir(
    data_dir: Path,
    genesis: ledger.Genesis,
    replica: Path,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ledger.AuditReport:
    ledger_dir = resolve_data_dir(data_dir)
    with ledger.Auditor(genesis, replica, workers) as auditor:
        try:
            return auditor.verify_data_dir(ledger_dir, progress)
        except plyvel.Error as exc:
            if "lock" in str(exc).lower():
                raise ClientError(
                    f"{ledger_dir} is in use by a running node: stop the node, or audit a copy"
                ) from None
            raise ClientError(f"cannot read {ledger_dir}: {exc}") from None


def resolve_data_dir(data_dir: Path) -> Path:
    """The ledger store in a node's data directory (DIR/ledger), or DIR itself."""
    for candidate in (data_dir, data_dir / "ledger"):
        if (candidate / "CURRENT").exists():
            return candidate
    raise ClientError(f"{data_dir} is not a node's data directory (no LevelDB store in it or in ledger/)")


def replica_height(genesis: ledger.Genesis, replica: Path) -> int:
    if not (replica / "CURRENT").exists():
        return 0
    store = ledger.open_existing(replica, genesis)
    try:
        return store.head.height
    finally:
        store.close()


# Following a node: the replica is the auditor's own copy of the chain.


@dataclass(slots=True)
class FollowState:
    """What a follower has verified so far in this run."""

    height: int = 0
    head_hash: bytes = b""
    documents: int = 0
    unattested: list[int] = field(default_factory=list)  # blocks not final yet (short of a Byzantine quorum)
    failure: ledger.AuditFailure | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.failure is None,
            "height": self.height,
            "head_hash": self.head_hash.hex(),
            "documents": self.documents,
            "unattested": self.unattested[:100],
            "failure": None if self.failure is None else {
                "height": self.failure.height, "what": self.failure.what, "why": self.failure.why,
            },
        }


class Follower:
    """Pulls new blocks into its replica, verifying each; stops for good at a bad block.

    A block that fails is never stored, so a restarted follower fails on it again and
    never moves past it. A block stored before a quorum of member states attested it
    is marked unattested; the follower fetches its attestations again on later rounds
    and checks each against genesis.
    """

    def __init__(
        self, client: SyncNodeClient, genesis: ledger.Genesis, replica: Path, workers: int = 1
    ) -> None:
        self.client = client
        self.genesis = genesis
        self.auditor = ledger.Auditor(genesis, replica, workers)
        self.verifier = ledger.Verifier()
        self.state = FollowState(self.auditor.replica.head.height, self.auditor.replica.head.hash)
        self.state.unattested = self._unattested_in_replica()

    def close(self) -> None:
        self.auditor.close()

    def _unattested_in_replica(self) -> list[int]:
        replica = self.auditor.replica
        return [
            h for h in range(1, replica.head.height + 1)
            if not ledger.final_states(self.genesis, (a.state for a in replica.attestations(h)))
        ][-1000:]

    def round(self, progress: Callable[[int], None] | None = None) -> FollowState:
        """One pull: new blocks first, then attestations still missing."""
        first = max(1, self.auditor.replica.head.height)
        report = self.auditor.verify_raw(raw_blocks(self.client.stream_blocks(first), first), progress)
        self.state.height = report.height
        self.state.head_hash = report.head_hash
        self.state.documents += report.documents
        self.state.unattested.extend(h for h in report.unattested if h not in self.state.unattested)
        if report.failure is not None:
            self.state.failure = report.failure
            return self.state
        self._complete_attestations()
        return self.state

    def _complete_attestations(self) -> None:
        still: list[int] = []
        replica = self.auditor.replica
        for height in self.state.unattested:
            header = replica.header(height)
            if header is None:
                continue
            for obj in self.client.attestations(height):
                try:
                    att = ledger.Attestation.from_json(obj)
                except ledger.DecodeError:
                    att = None
                fits = att is not None and att.names(header)
                if att is None or not fits or not att.verify(self.genesis, self.verifier):
                    state = obj.get("state") if isinstance(obj, dict) else "?"
                    self.state.failure = ledger.AuditFailure(
                        height, "attestation", f"the attestation by {state!r} does not verify"
                    )
                    return
                replica.add_attestation(att, self.verifier)
            if not ledger.final_states(self.genesis, (a.state for a in replica.attestations(height))):
                still.append(height)
        self.state.unattested = still


def follow(
    follower: Follower,
    poll_s: float,
    rounds: int | None,
    on_round: Callable[[FollowState], None],
) -> FollowState:
    """Run rounds until a failure, `rounds` rounds, or Ctrl-C."""
    done = 0
    while True:
        state = follower.round()
        on_round(state)
        done += 1
        if state.failure is not None or (rounds is not None and done >= rounds):
            return state
        time.sleep(poll_s)


# Provenance proofs.


EVIDENCE_SHOWN_MAX = 256


def checked_evidence(client: SyncNodeClient, genesis: ledger.Genesis) -> list[dict[str, Any]]:
    """The equivocation evidence a node holds, each piece checked here against genesis
    (`verified`): the audit report shows which states signed two blocks at one height, or
    two entries at one Raft (term, index) as leader."""
    out = []
    verifier = ledger.Verifier()
    # A node sends what it likes: look at the first pieces only (a few per state is all an
    # honest node keeps, node._evidence.EVIDENCE_PER_STATE_MAX).
    for piece in client.evidence()[:EVIDENCE_SHOWN_MAX]:
        try:
            full = client.evidence_piece(str(piece.get("id", "")))
            parsed = ledger.decode_evidence(bytes.fromhex(str(full.get("bytes", ""))))
            verified = parsed.verify(genesis, verifier)
        except (ClientError, ledger.DecodeError, ValueError):
            verified = False
        # Two attestations name a height; two signed appends a Raft term and index.
        where: dict[str, Any] = {k: piece.get(k) for k in ("height", "term", "index") if k in piece}
        out.append({"id": piece.get("id"), "kind": piece.get("kind"), "state": piece.get("state"), **where,
                    "against": bool(piece.get("against")), "verified": verified})
    return out


# How long `audit prove` and `export epcis` wait by default for a code's blocks to become
# final: attestations follow a block within a gossip round, so seconds; a minute covers
# a node restarting, and longer means the member states do not attest (say so).
FINAL_WAIT_S = 60.0
# Pause between asks while the bundle is not final.
FINAL_POLL_S = 0.5


def fetch_bundle(client: SyncNodeClient, code_key: str,
                 final_wait_s: float = FINAL_WAIT_S) -> tuple[bytes, ledger.ProvenanceBundle]:
    """A code's provenance bundle once every block in it is final. The node refuses a
    bundle with blocks not final yet (`not_final`): ask again until `final_wait_s`, then
    say it is not final (a bundle that is not final does not verify)."""
    deadline = time.monotonic() + final_wait_s
    while True:
        try:
            data = client.provenance(code_key)
            break
        except NodeError as exc:
            if exc.code != "not_final":
                raise
            if time.monotonic() >= deadline:
                raise ClientError(f"not final after {final_wait_s:g} s: {exc.message}") from None
            time.sleep(FINAL_POLL_S)
    try:
        return data, ledger.ProvenanceBundle.decode(data)
    except ledger.DecodeError as exc:
        raise ClientError(f"the node sent a provenance bundle that does not decode: {exc}") from None


def read_bundle(path: Path) -> ledger.ProvenanceBundle:
    """A bundle file as `tamga audit prove` writes it (msgpack), or its JSON form."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if data.lstrip()[:1] == b"{":
            return ledger.ProvenanceBundle.from_json(json.loads(data))
        return ledger.ProvenanceBundle.decode(data)
    except (ledger.DecodeError, ValueError) as exc:
        raise ClientError(f"{path} is not a provenance bundle: {exc}") from None


def load_genesis(path: Path) -> ledger.Genesis:
    try:
        return ledger.Genesis.load(path)
    except ledger.DecodeError as exc:
        raise ClientError(str(exc)) from None

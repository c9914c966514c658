"""Signature checks for the auditor, in worker processes, ahead of the sequential replay.

Checking signatures is most of an audit's work and needs nothing from the replay but
the signers' public keys; the replay itself is sequential. So the auditor hands each
upcoming block's documents and attestations to worker processes and replays the
blocks in order as their verdicts come back.

A participant's public key never changes once registered (a registration of an id that
exists is refused, and revoking keeps the key), so a worker may check a signature with
any key it was ever told for that signer. A worker that does not know a signer yet,
because the registration is in a block not yet replayed, leaves the document unmarked
and the replay checks it itself: the verdict is the same, only slower.

Workers are started with 'spawn' so that none inherits the replica's LevelDB handle or
its threads, whatever the platform's default. Each worker has its own task queue, so
new keys reach every worker exactly once and verdicts come back in the order asked.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections import deque
from dataclasses import dataclass
from typing import Any

from ._chain import Attestation, BlockHeader
from ._documents import document_id
from ._encoding import unpack_trusted
from ._errors import DecodeError, LedgerError, invariant
from ._genesis import Genesis
from ._identity import DOMAIN_DOCUMENT, Verifier

# Documents per task: large enough that queueing costs little per document, small
# enough that a 30,000-code block's neighbours still spread over every worker.
CHUNK_DOCUMENTS = 256
# How long a wait for a verdict may take before checking that the worker still lives;
# a dead worker must fail the audit, not hang it.
WAIT_SLICE_S = 1.0
# A worker told to stop finishes its current chunk (well under a second); one that takes
# longer than this is stuck and is killed, so that closing an auditor never hangs.
STOP_WAIT_S = 5.0


class WorkerError(LedgerError):
    """A signature worker process died: the audit cannot go on (it can be rerun)."""


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What the workers found for one block: the verified keys (document id and
    signature) of the documents whose signatures hold, and whether each attestation
    holds."""

    verified: frozenset[bytes]
    attestations: list[bool]


def verified_keys(
    chain_id: str, keys: dict[str, bytes], verifier: Verifier, wires: list[bytes]
) -> list[bytes]:
    """The verified keys of the documents whose signatures hold under their signer's
    known key. Anything odd is left out: the replay decodes and checks it in full."""
    out = []
    for wire in wires:
        try:
            body, signature = unpack_trusted(wire)
            public_key = keys.get(unpack_trusted(body)[3])
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        if public_key is None or not isinstance(body, bytes) or not isinstance(signature, bytes):
            continue
        if verifier.verify(public_key, signature, DOMAIN_DOCUMENT, chain_id, body):
            out.append(document_id(body) + signature)
    return out


def attestations_hold(
    genesis: Genesis, verifier: Verifier, header: bytes, pairs: list[tuple[str, bytes]]
) -> list[bool]:
    try:
        decoded = BlockHeader.decode(header)
    except DecodeError:
        return [False] * len(pairs)  # the replay fails the block on its header first
    block_hash = decoded.hash
    return [Attestation(s, decoded.height, decoded.raft_term, block_hash, sig).verify(genesis, verifier)
            for s, sig in pairs]


def _work(genesis: Genesis, keys: dict[str, bytes], tasks: Any, verdicts: Any) -> None:
    """A worker's loop: tasks in, verdicts out, in order, until None."""
    verifier = Verifier()
    while (task := tasks.get()) is not None:
        kind, payload = task
        if kind == "keys":
            keys.update(payload)
        elif kind == "documents":
            verdicts.put(verified_keys(genesis.chain_id, keys, verifier, payload))
        else:
            verdicts.put(attestations_hold(genesis, verifier, *payload))


class SignatureWorkers:
    """Worker processes that check blocks' signatures; verdicts come back per block in
    the order the blocks were submitted."""

    def __init__(self, genesis: Genesis, count: int, keys: dict[str, bytes]) -> None:
        invariant(count >= 1, "at least one signature worker")
        context = multiprocessing.get_context("spawn")
        self._tasks = [context.Queue() for _ in range(count)]
        self._verdicts = [context.Queue() for _ in range(count)]
        self._processes = [
            context.Process(target=_work, args=(genesis, keys, t, v), daemon=True, name=f"audit-worker-{i}")
            for i, (t, v) in enumerate(zip(self._tasks, self._verdicts))
        ]
        for process in self._processes:
            process.start()
        self._next = 0
        self._submitted: deque[tuple[list[int], int]] = deque()  # per block: document tasks, attestation task

    def submit(self, documents: list[bytes], header: bytes, attestations: list[tuple[str, bytes]]) -> None:
        chunks = [self._send("documents", documents[i : i + CHUNK_DOCUMENTS])
                  for i in range(0, len(documents), CHUNK_DOCUMENTS)]
        self._submitted.append((chunks, self._send("attestations", (header, attestations))))

    def add_keys(self, keys: dict[str, bytes]) -> None:
        """Tell every worker keys registered since it started."""
        for tasks in self._tasks:
            tasks.put(("keys", keys))

    def next_verdicts(self) -> Verdicts:
        """The verdicts of the oldest block submitted and not yet collected."""
        chunks, attestations = self._submitted.popleft()
        verified: set[bytes] = set()
        for worker in chunks:
            verified.update(self._receive(worker))
        return Verdicts(frozenset(verified), self._receive(attestations))

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for process in self._processes:
            process.join(timeout=STOP_WAIT_S)
            if process.is_alive():
                process.kill()
        for q in (*self._tasks, *self._verdicts):
            q.close()
            q.cancel_join_thread()

    def _send(self, kind: str, payload: Any) -> int:
        worker = self._next
        self._next = (worker + 1) % len(self._tasks)
        self._tasks[worker].put((kind, payload))
        return worker

    def _receive(self, worker: int) -> Any:
        while True:
            try:
                return self._verdicts[worker].get(timeout=WAIT_SLICE_S)
            except queue.Empty:
                if not self._processes[worker].is_alive():
                    raise WorkerError(f"signature worker {worker} died") from None

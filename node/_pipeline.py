"""The apply pipeline: committed Raft entries become blocks of the ledger, in order.

The driver hands committed entries to `deliver`, which only queues them: the applier
task executes the blocks on a worker thread, so Raft keeps replicating, committing and
answering heartbeats while a large block is applied, and several blocks flow through
the pipeline at once. The queue is bounded: when the applier falls behind, `deliver`
waits, and Raft slows down with it.

After each block: its documents leave the mempool, waiting clients hear their outcome,
and `on_applied` is told (the node attests the block's hash, unless it refuses it).

Block time is the leader's proposal, which the ledger clamps to one genesis step
ahead of the previous block, on every node alike. A node also compares the proposal
with its own clock: a block whose time was clamped, or is ahead of its clock by more
than the genesis skew bound, raises an alarm, and the node does not attest it. It
still applies it, as every node does, so the chain goes on and stays identical; such
a block gets no attestation from an honest node that saw it so and is never final
through it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus import Entry, LogIndex
from ledger import (
    TIME_MS_MAX,
    AppliedBlock,
    ChainParams,
    DecodeLimits,
    LedgerStore,
    Reason,
    Result,
    SignedDocument,
    unpack_untrusted,
)

from ._admission import Verified
from ._mempool import Mempool
from ._metrics import Metrics
from ._waiters import Waiters

log = logging.getLogger(__name__)

# Committed blocks waiting for the applier. Enough to keep it busy through a burst,
# few enough that memory stays bounded (a block is at most a few MiB).
APPLY_QUEUE_MAX = 64


def encode_entry(time_ms: int, proposer: str, wires: Sequence[bytes]) -> bytes:
    """A Raft entry's data: one proposed block, [time ms, proposer state, [wires]]."""
    out: bytes = msgpack.packb([time_ms, proposer, list(wires)], use_bin_type=True)
    return out


# A Raft entry comes from the leader, who may be hostile: it is decoded with bounds.
# One entry is at most one Raft message (64 MiB on the wire); it is a flat array of
# document wires (depth 2), each at most one block's worth of bytes; the proposer is
# a member-state code.
ENTRY_LIMITS = DecodeLimits(
    bytes_max=64 << 20, depth_max=2, items_max=1_000_003, array_items_max=1_000_000,
    str_bytes_max=16, bin_bytes_max=16 << 20, int_min=0, int_max=TIME_MS_MAX,
)


def decode_entry(data: bytes) -> tuple[int, str, list[bytes]]:
    """An entry's block proposal; ValueError (a DecodeError) for anything else."""
    value = unpack_untrusted(data, ENTRY_LIMITS)
    if (
        not isinstance(value, list)
        or len(value) != 3
        or type(value[0]) is not int
        # Chain times are signed 64-bit milliseconds; an entry outside that is no block.
        or not 0 <= value[0] <= TIME_MS_MAX
        or not isinstance(value[1], str)
        or not isinstance(value[2], list)
        or not all(type(w) is bytes for w in value[2])
    ):
        raise ValueError("a block entry is [time_ms, proposer, [document wires]]")
    return value[0], value[1], value[2]


def block_time_alarm(proposed_ms: int, effective_ms: int, now_ms: int,
                     params: ChainParams) -> tuple[str, str] | None:
    """Why this node refuses to attest a block with this time, as (alarm kind, message);
    None when the time is one an honest leader proposes.

    A proposal behind the previous block is clamped up without alarm: honest clocks
    that differ by less than the skew give that at each change of leader, and it moves
    nothing."""
    if proposed_ms > effective_ms:
        return ("block_time_clamped",
                f"proposed time {proposed_ms} is more than {params.block_time_step_max_ms} ms ahead of "
                f"the previous block; the ledger clamped it to {effective_ms}")
    if proposed_ms > now_ms + params.clock_skew_max_ms:
        return ("block_time_ahead",
                f"proposed time {proposed_ms} is {proposed_ms - now_ms} ms ahead of this node's clock "
                f"(at most {params.clock_skew_max_ms} ms allowed)")
    return None


def _clock_ms() -> int:
    return int(time.time() * 1000)


def outcome_json(doc_id: bytes, height: int, position: int, result: Result) -> dict[str, Any]:
    view = result.to_json()
    return {
        "id": doc_id.hex(),
        "status": view["status"],
        "reason": view["reason"],
        "message": view["message"],
        "height": height,
        "position": position,
    }


@dataclass(frozen=True, slots=True)
class _Queued:
    index: int
    term: int
    time_ms: int
    proposer: str
    wires: list[bytes]
    decoded: dict[bytes, SignedDocument]  # those this node decoded at admission


class ApplyPipeline:
    """Queues committed entries and applies them as blocks, one at a time, in order."""

    def __init__(
        self,
        state: str,
        store: LedgerStore,
        mempool: Mempool,
        committed: set[bytes],
        verified: Verified,
        waiters: Waiters,
        metrics: Metrics,
        on_applied: Callable[[AppliedBlock, bool], None],
        fail: Callable[[str], None],
        clock_ms: Callable[[], int] = _clock_ms,
    ) -> None:
        """`on_applied(block, accepted)` after each block; `accepted` is False when this
        node refuses to attest it (its time: see `block_time_alarm`)."""
        self._store = store
        self._alarms = metrics.alarms
        self._clock_ms = clock_ms
        self._mempool = mempool
        self._committed = committed
        self._verified = verified
        self._waiters = waiters
        self._metrics = metrics
        self._on_applied = on_applied
        self._fail = fail
        self.delivered_term = 0  # term of the last entry the driver handed over
        self._delivered_index = 0
        self._restored_index = 0  # a snapshot restored up to here (raft index)
        self._last_queued = 0
        self._queue: collections.deque[_Queued] = collections.deque()
        self._queue_changed = asyncio.Event()
        self._applying: int | None = None
        # While healing (node/_healing.py): committed entries above this Raft index are
        # not queued, since Raft still calls them committed until its rewind is done.
        self._held_above: int | None = None
        # One worker applies blocks, so the event loop keeps answering meanwhile.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"apply-{state}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def deliver(self, entries: Sequence[Entry]) -> None:
        """Committed entries from the driver: queue the blocks they carry."""
        for entry in entries:
            self.delivered_term = entry.term
            self._delivered_index = max(self._delivered_index, entry.index)
            if not entry.data or entry.index <= max(self._store.head.raft_index, self._last_queued):
                continue
            if self._held_above is not None and entry.index > self._held_above:
                continue
            try:
                time_ms, proposer, wires = decode_entry(entry.data)
            except ValueError:
                # Every node sees the same bytes and skips them alike.
                log.error("raft entry %d is not a block proposal; skipped", entry.index)
                continue
            while len(self._queue) >= APPLY_QUEUE_MAX:
                self._queue_changed.clear()
                await self._queue_changed.wait()
            # Committed documents leave the mempool at once: the leader must not
            # propose them again while their block waits for the applier.
            decoded = self.take_committed(wires)
            self._queue.append(_Queued(entry.index, entry.term, time_ms, proposer, wires, decoded))
            self._last_queued = entry.index
            self._queue_changed.set()

    async def run(self) -> None:
        """The applier task."""
        while True:
            if not self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            item = self._queue[0]
            self._applying = item.index
            try:
                started = time.perf_counter()
                applied = await self.execute(item.wires, item.time_ms, item.proposer, item.term, item.index,
                                             item.decoded)
                self._metrics.apply_latency.observe(time.perf_counter() - started)
                self.finish(applied, accepted=self._judge_time(item.time_ms, applied))
            except Exception as exc:
                self._fail(f"applying the block of raft entry {item.index} failed: {exc!r}")
                raise
            finally:
                self._applying = None
            if self._queue and self._queue[0] is item:  # `hold` may have emptied the queue
                self._queue.popleft()
            self._queue_changed.set()

    async def idle(self) -> None:
        """Wait until every queued block is applied."""
        while self._queue or self._applying is not None:
            self._queue_changed.clear()
            await self._queue_changed.wait()

    async def hold(self, index: int) -> list[bytes]:
        """Healing begins: stop queueing entries above `index`, drop the queued blocks
        (all above the ledger's head) and wait for the block being applied, if any.
        Returns the documents of the dropped blocks (they left the mempool)."""
        self._held_above = index
        dropped = [wire for item in self._queue for wire in item.wires if self._applying != item.index]
        applying = [item for item in self._queue if item.index == self._applying]
        self._queue.clear()
        self._queue.extend(applying)
        while self._applying is not None:
            self._queue_changed.clear()
            await self._queue_changed.wait()
        self._last_queued = min(self._last_queued, index)
        self._delivered_index = min(self._delivered_index, index)
        return dropped

    def release(self) -> None:
        """Healing is done (Raft rewound): queue what Raft commits from here on."""
        self._held_above = None
        self._last_queued = min(self._last_queued, self._store.head.raft_index)

    def processed_index(self) -> int:
        """The Raft index up to which every entry is applied to the ledger."""
        if self._applying is not None:
            return self._applying - 1
        if self._queue:
            return self._queue[0].index - 1
        return max(self._delivered_index, self._store.head.raft_index, self._restored_index)

    def applied_index(self) -> LogIndex:
        return LogIndex(max(self._store.head.raft_index, self._restored_index))

    def note_restored(self, index: int) -> None:
        """A snapshot up to this Raft index is restored: entries up to it are done."""
        self._restored_index = max(self._restored_index, index)
        self._delivered_index = max(self._delivered_index, index)
        self._last_queued = max(self._last_queued, index)

    def take_committed(self, wires: Sequence[bytes]) -> dict[bytes, SignedDocument]:
        """Documents of a block about to be applied leave the mempool (see `deliver`);
        those we decoded already, by wire bytes."""
        ids, decoded = self._mempool.pop_wires(wires)
        self._committed.update(ids)
        return decoded

    async def execute(self, wires: list[bytes], time_ms: int, proposer: str, term: int, index: int,
                      decoded: dict[bytes, SignedDocument] | None = None) -> AppliedBlock:
        """Apply one block on the worker thread."""
        loop = asyncio.get_running_loop()
        verified = self._verified.__contains__
        store = self._store

        def run() -> AppliedBlock:
            return store.apply_block(wires, time_ms, proposer, raft_term=term, raft_index=index,
                                     verified=verified, decoded=decoded)

        return await loop.run_in_executor(self._pool, run)

    def _judge_time(self, proposed_ms: int, applied: AppliedBlock) -> bool:
        """Whether this node accepts the block's time; an alarm when it does not."""
        header = applied.header
        verdict = block_time_alarm(proposed_ms, header.time_ms, self._clock_ms(), self._store.params())
        if verdict is None:
            return True
        kind, message = verdict
        self._alarms.raise_alarm(kind, header.height, f"{message}; this node does not attest the block")
        return False

    def finish(self, applied: AppliedBlock, accepted: bool = True) -> None:
        """After a block: mempool, waiting clients, metrics, then `on_applied`."""
        header = applied.header
        self._mempool.remove(applied.document_ids)
        applied_count = 0
        for position, (doc_id, result) in enumerate(zip(applied.document_ids, applied.results)):
            if doc_id is None:
                self._metrics.rejected(result.reason.value).inc()
                continue
            self._verified.discard(doc_id)
            self._committed.discard(doc_id)
            if result.applied:
                applied_count += 1
            else:
                self._metrics.rejected(result.reason.value).inc()
            # A second copy of a document (proposed again after a lost answer) is only
            # a duplicate: the client waited for the first. Only the node a client
            # submitted to has someone waiting.
            if result.reason is not Reason.DUPLICATE and self._waiters.waiting(doc_id):
                self._waiters.resolve(doc_id, outcome_json(doc_id, header.height, position, result))
        self._metrics.documents_applied.inc(applied_count)
        self._metrics.height.set(header.height)
        self._metrics.mempool_documents.set(len(self._mempool))
        self._metrics.mempool_bytes.set(self._mempool.size_bytes)
        self._on_applied(applied, accepted)

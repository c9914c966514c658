"""The asyncio driver: the one task that owns a RawNode and does what its Ready says.

Everything that touches the core goes through a single task. Timers, the transport and
clients only put work into bounded queues and set an event; the task drains every queued
item, asks the core for one `Ready`, and handles it in the order Raft requires:

1. persist the snapshot, entries and hard state, and fsync them (in a worker thread, so
   other tasks keep running, but no message leaves before the fsync has finished);
2. hand the messages to the transport (consecutive appends to one follower merged);
3. apply the committed entries: normal ones to the application, configuration changes
   to the core; then resolve the proposals and reads that were waiting for them;
4. `advance()`.

One refinement of that order: committed entries that were already durable here before
this Ready (all of them, on a leader) are applied while the fsync runs, since applying
them depends on nothing this Ready writes.

Because the drain takes everything that arrived while the previous fsync ran, a busy
node persists hundreds of proposals with a single fsync; that batching, not the speed of
one write, is what gives throughput.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from ._codec import MalformedMessage, decode_conf_change
from ._core import Config, NotLeader, ProposalDropped, RawNode, Status
from ._storage import Storage
from ._types import (
    NONE,
    ConfChange,
    Entry,
    EntryType,
    LogIndex,
    Message,
    MessageType,
    NodeId,
    Ready,
    Role,
    Snapshot,
    Term,
)

log = logging.getLogger(__name__)


class Transport(Protocol):
    def send(self, messages: Sequence[Message]) -> None:
        """Queue messages for delivery: never blocks, may lose them (Raft retries)."""
        ...


class Application(Protocol):
    async def apply(self, entries: Sequence[Entry]) -> None:
        """Apply committed normal entries, in log order (empty ones included)."""
        ...

    def applied_index(self) -> LogIndex:
        """Index of the last entry applied and made durable by the application."""
        ...

    def snapshot(self) -> bytes:
        """The application's state as of its applied index, as opaque bytes.

        The log is compacted up to `applied_index()` right after this call, so the
        application must have made its state up to there durable by now."""
        ...

    async def restore(self, snapshot: Snapshot) -> None:
        """Replace the application's state by a snapshot's (its applied index included)."""
        ...


class ProposalTimeout(TimeoutError):
    """The proposal was not applied in time; it may still commit later."""


class ReadIndexTimeout(TimeoutError):
    """No read index was confirmed in time (no leader, or no quorum)."""


class TransferTimeout(TimeoutError):
    """Leadership did not move to the target in time."""


class DriverStopped(Exception):
    """The driver stopped (or failed) before the request completed."""


@dataclass(frozen=True, slots=True)
class DriverConfig:
    # Between 50 and 100 ms: with the core's default election timeout of 10 ticks a
    # leader is replaced within about a second, yet the timer costs nothing measurable.
    tick_interval_s: float = 0.05
    # Inbound messages waiting for the task. Beyond this the node is not keeping up and
    # a message more is worth less than the memory: Raft retransmits what is lost.
    inbox_messages_max: int = 20_000
    # Proposals waiting for the task; past this, callers are told to back off at once.
    proposals_queued_max: int = 20_000
    # Read-index, transfer and report requests waiting for the task.
    requests_queued_max: int = 1_024
    # Items taken from the queues per Ready: bounds the work (and the memory of one
    # append) between two fsyncs, and so the latency of a cycle.
    batch_items_max: int = 8_192
    # Proposals per Ready, within that. Large enough that an fsync carries hundreds of
    # entries, small enough that a thousand clients in flight form several batches
    # in the pipeline (one replicating while the next is written) instead of one
    # batch that makes every client wait for the whole round trip.
    proposals_per_ready_max: int = 512
    # Take a snapshot and compact the log every this many applied entries (0: never).
    snapshot_every_entries: int = 0
    # How long stop() lets the current cycle finish before it cancels the task.
    stop_grace_s: float = 5.0


@dataclass(slots=True)
class DriverStats:
    """Counters for the node to export; all monotonic."""

    proposals: int = 0
    proposals_applied: int = 0
    proposals_rejected: int = 0  # NotLeader or dropped by the core, or a queue was full
    proposals_lost: int = 0  # another entry committed at the proposal's index
    proposals_timed_out: int = 0
    messages_received: int = 0
    messages_dropped: int = 0  # inbox full
    messages_sent: int = 0
    ticks_missed: int = 0  # the task was busy for more than one tick interval
    readies: int = 0
    syncs: int = 0
    entries_persisted: int = 0
    entries_applied: int = 0
    snapshots_taken: int = 0
    snapshots_restored: int = 0
    # Committed CONF_CHANGE entries whose data is not a change; the core skips them too.
    conf_changes_skipped: int = 0
    rewinds: int = 0  # log suffixes discarded on the application's word (Driver.rewind)


@dataclass(slots=True, eq=False)
class _Proposal:
    data: bytes
    future: asyncio.Future[LogIndex]
    started_s: float
    # The proposals that time out together with this one (see `_deadline_bucket`).
    bucket: _Bucket | None = None
    term: Term = Term(0)
    index: LogIndex = LogIndex(0)
    # Set for a membership change; `data` is then empty.
    conf_change: ConfChange | None = None


# Proposals by insertion order (values unused): a set of them would iterate in the
# order of their addresses, and their timeouts would fire in a different order on
# every run of the same simulated seed.
_Bucket = dict[_Proposal, None]


@dataclass(slots=True, eq=False)
class _Read:
    future: asyncio.Future[LogIndex]
    timer: asyncio.TimerHandle | None = None


Request = Callable[[RawNode], None]


@dataclass(slots=True)
class _Queues:
    messages: collections.deque[Message] = field(default_factory=collections.deque)
    proposals: collections.deque[_Proposal] = field(default_factory=collections.deque)
    requests: collections.deque[Request] = field(default_factory=collections.deque)


class Driver:
    """Runs one Raft node: `await start()`, then propose, read and receive; `await stop()`."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        transport: Transport,
        app: Application,
        driver_config: DriverConfig | None = None,
        *,
        on_commit_latency: Callable[[float], None] | None = None,
        executor: concurrent.futures.Executor | None = None,
        clock_s: Callable[[], float] = time.perf_counter,
        compaction_limit: Callable[[], LogIndex] | None = None,
    ) -> None:
        """`executor` runs the fsyncs; by default the driver starts (and stops) a thread
        of its own. `clock_s` times proposals for `on_commit_latency`. Timers and ticks
        follow the running event loop's clock. A simulator injects all three, with a
        virtual-time loop, to run this driver deterministically from a seed."""
        self._config = config
        self._storage = storage
        self._transport = transport
        self._app = app
        self._dc = driver_config or DriverConfig()
        self._on_commit_latency = on_commit_latency
        self.stats = DriverStats()
        self._raw: RawNode | None = None
        self._queues = _Queues()
        self._wake = asyncio.Event()
        self._ticks_due = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = executor
        # Only an executor the driver started itself is the driver's to shut down.
        self._owns_executor = executor is None
        self._clock_s = clock_s
        # The log is never compacted past this index (Tamga: the last final entry), so
        # that a rewind to it (`rewind`) still finds the entries it keeps.
        self._compaction_limit = compaction_limit
        self._stopping = False
        self._stopped = False
        self._failure: BaseException | None = None
        # Proposals handed to the core, by log index, until their index is applied.
        self._pending: dict[int, _Proposal] = {}
        self._buckets: dict[float, _Bucket] = {}
        self._reads: dict[bytes, _Read] = {}
        # Confirmed reads waiting for the applied index to reach theirs, ties broken by
        # arrival (not by address, which differs between runs of one simulated seed).
        self._read_waiters: list[tuple[int, int, _Read]] = []
        self._read_arrivals = itertools.count()
        self._read_ids = itertools.count(1)
        # Read contexts must differ from those of this node's earlier lives too: a late
        # answer to a read of the process before a restart would otherwise complete a
        # new read with an old, stale index. Drawn from the injected random source.
        self._read_nonce = config.rng.getrandbits(64).to_bytes(8, "big")
        self._leader_waiters: list[tuple[NodeId, asyncio.Future[None]]] = []
        self._leader: NodeId = NONE
        self._role = Role.FOLLOWER
        self._applied = LogIndex(0)
        self._snapshot_index = LogIndex(0)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bring the application up to the stored snapshot, build the core, start the task."""
        if self._task is not None:
            raise RuntimeError("driver already started")
        snapshot = self._storage.snapshot()
        self._snapshot_index = snapshot.meta.index
        if self._app.applied_index() < snapshot.meta.index:
            await self._app.restore(snapshot)
            self.stats.snapshots_restored += 1
        # The core resumes handing out committed entries after what the application
        # already holds; it rebuilds the membership from the snapshot and the log alone.
        self._applied = self._app.applied_index()
        self._raw = RawNode(replace(self._config, applied=self._applied), self._storage)
        if self._owns_executor:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"raft-sync-{self._config.id}"
            )
        loop = asyncio.get_running_loop()
        self._schedule_tick(loop, loop.time())
        self._task = loop.create_task(self._run(), name=f"raft-driver-{self._config.id}")

    async def stop(self) -> None:
        """Finish the cycle under way, stop, and fail every request still waiting."""
        task = self._task
        if task is None or self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._wake.set()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        # asyncio.wait does not raise the task's own failure: that is in `failure`.
        done, _ = await asyncio.wait({task}, timeout=self._dc.stop_grace_s)
        if not done:
            task.cancel()
            await asyncio.wait({task})
        self._fail_everything(DriverStopped("the driver stopped"))
        if self._executor is not None and self._owns_executor:
            # Waits for a sync still running in the worker, so storage can be closed next.
            self._executor.shutdown(wait=True)

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the driver on its own, if any."""
        return self._failure

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._stopping

    # -- requests ----------------------------------------------------------------------

    async def propose(self, data: bytes, timeout_s: float = 5.0) -> LogIndex:
        """Commit `data` and wait until the application has applied it; return its index.

        Raises NotLeader (with the leader's id, when known) on a follower,
        ProposalDropped when the core refused it or another entry took its index, and
        ProposalTimeout when neither happened in time (then the outcome is unknown).
        """
        return await self._submit(data, None, timeout_s)

    async def propose_conf_change(self, cc: ConfChange, timeout_s: float = 5.0) -> LogIndex:
        """Commit one membership change and wait until it applies; errors as `propose`."""
        return await self._submit(b"", cc, timeout_s)

    async def _submit(self, data: bytes, cc: ConfChange | None, timeout_s: float) -> LogIndex:
        self._check_running()
        self.stats.proposals += 1
        if self._role != Role.LEADER and self._leader not in (NONE, self._config.id):
            self.stats.proposals_rejected += 1
            raise NotLeader(self._leader)
        if len(self._queues.proposals) >= self._dc.proposals_queued_max:
            self.stats.proposals_rejected += 1
            raise ProposalDropped("too many proposals queued")
        loop = asyncio.get_running_loop()
        proposal = _Proposal(data, loop.create_future(), self._clock_s(), conf_change=cc)
        proposal.bucket = self._deadline_bucket(loop, timeout_s)
        proposal.bucket[proposal] = None
        self._queues.proposals.append(proposal)
        self._wake.set()
        return await proposal.future

    async def read_index(self, timeout_s: float = 5.0) -> LogIndex:
        """Wait until a read of the application reflects every write committed before."""
        self._check_running()
        loop = asyncio.get_running_loop()
        ctx = self._read_nonce + next(self._read_ids).to_bytes(8, "big")
        read = _Read(loop.create_future())
        read.timer = loop.call_later(timeout_s, self._expire_read, ctx, read)
        self._reads[ctx] = read

        def request(raw: RawNode) -> None:
            try:
                raw.read_index(ctx)
            except ProposalDropped as exc:
                self._finish_read(ctx, exc)

        self._enqueue_request(request, lambda: self._reads.pop(ctx, None))
        return await read.future

    async def transfer_leadership(self, to: NodeId, timeout_s: float = 5.0) -> None:
        """Ask the leader to hand over to `to`; return once this node sees `to` lead."""
        self._check_running()
        if self._leader == to:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_waiters.append((to, future))
        try:
            self._enqueue_request(lambda raw: raw.transfer_leader(to), lambda: None)
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise TransferTimeout(f"node {to} did not become leader within {timeout_s} s") from None
        finally:
            self._leader_waiters = [(n, f) for n, f in self._leader_waiters if f is not future]

    def request_conf_change(self, cc: ConfChange) -> bool:
        """Ask the core to append a configuration change; False when it cannot be queued.

        Fire and forget: the core drops it when this node does not lead, a change is
        pending, or `Config.conf_change_authorized` refuses it. The caller compares the
        membership (`status()`) later and asks again."""
        if not self.running:
            return False

        def request(raw: RawNode) -> None:
            try:
                raw.propose_conf_change(cc)
            except ProposalDropped as exc:  # NotLeader included
                log.info("configuration change %s not proposed: %s", cc.type.name, exc)

        try:
            self._enqueue_request(request, lambda: None)
        except ProposalDropped:
            return False
        return True

    async def rewind(self, index: LogIndex, floor: LogIndex) -> None:
        """Discard the Raft log above `index` (never below `floor`, the index of the last
        final entry) even where a leader committed it, persisted atomically; the
        application must already have rolled back to `index` or below. Proposals
        above `index` fail with ProposalDropped (their clients may submit again).
        Raises RaftUsageError when the rewind is not allowed."""
        self._check_running()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def request(raw: RawNode) -> None:
            if future.done():
                return
            try:
                raw.rewind(index, floor)
            except Exception as exc:  # handed to the caller, not the driver's task
                future.set_exception(exc)
                return
            self._applied = LogIndex(min(self._applied, index))
            self.stats.rewinds += 1
            for at in sorted(i for i in self._pending if i > index):
                self._settle(self._pending.pop(at), ProposalDropped(f"entry {at} was rewound"))
            future.set_result(None)

        self._enqueue_request(request, future.cancel)
        await future

    def receive(self, message: Message) -> None:
        """Hand an inbound message to the node; dropped (and counted) when the inbox is full."""
        self.stats.messages_received += 1
        if len(self._queues.messages) >= self._dc.inbox_messages_max or not self.running:
            self.stats.messages_dropped += 1
            return
        self._queues.messages.append(message)
        self._wake.set()

    def campaign(self) -> None:
        """Stand for election now (a pre-vote first, when the core uses pre-vote)."""
        if self.running:
            self._enqueue_request(lambda raw: raw.campaign(), lambda: None)

    def report_unreachable(self, node: NodeId) -> None:
        """The transport could not reach `node`: the leader stops streaming to it for now."""
        if self.running:
            self._enqueue_request(lambda raw: raw.report_unreachable(node), lambda: None)

    def report_snapshot(self, node: NodeId, ok: bool) -> None:
        """The transport finished (or failed) sending a snapshot to `node`."""
        if self.running:
            self._enqueue_request(lambda raw: raw.report_snapshot(node, ok), lambda: None)

    def status(self) -> Status:
        if self._raw is None:
            raise RuntimeError("driver not started")
        return self._raw.status()

    @property
    def leader(self) -> NodeId:
        """The leader as this node last heard of it (NONE while unknown)."""
        return self._leader

    @property
    def node_id(self) -> NodeId:
        return self._config.id

    @property
    def is_leader(self) -> bool:
        return self._role == Role.LEADER

    @property
    def applied_index(self) -> LogIndex:
        return self._applied

    # -- the task ----------------------------------------------------------------------

    async def _run(self) -> None:
        raw = self._raw
        if raw is None:
            raise RuntimeError("driver not started")
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                self._process_inputs(raw)
                if raw.has_ready():
                    await self._handle_ready(raw, raw.ready())
                    self._wake.set()  # the core may hold more; inputs may have arrived
                # Yield once per cycle even when nothing above had to wait.
                await asyncio.sleep(0)
        except Exception as exc:
            log.exception("raft driver %s failed; the node must stop", self._config.id)
            self._failure = exc
            self._stopping = True
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            self._fail_everything(DriverStopped(f"the driver failed: {exc!r}"))
            raise

    def _process_inputs(self, raw: RawNode) -> None:
        if self._ticks_due:
            # One tick per cycle however long the cycle took: catching up on missed
            # ticks at once would fire election timeouts that only reflect our own
            # slowness. Logical time then runs slow, which is the safe direction.
            self.stats.ticks_missed += self._ticks_due - 1
            self._ticks_due = 0
            raw.tick()
        budget = self._dc.batch_items_max
        queues = self._queues
        while queues.messages and budget > 0:
            raw.step(queues.messages.popleft())
            budget -= 1
        while queues.requests and budget > 0:
            queues.requests.popleft()(raw)
            budget -= 1
        proposals = min(budget, self._dc.proposals_per_ready_max)
        while queues.proposals and proposals > 0:
            self._propose(raw, queues.proposals.popleft())
            proposals -= 1
        if queues.messages or queues.requests or queues.proposals:
            self._wake.set()

    def _propose(self, raw: RawNode, proposal: _Proposal) -> None:
        if proposal.future.done():
            return  # timed out or cancelled while queued: do not commit it after all
        try:
            if proposal.conf_change is None:
                proposal.term, proposal.index = raw.propose(proposal.data)
            else:
                proposal.term, proposal.index = raw.propose_conf_change(proposal.conf_change)
        except ProposalDropped as exc:
            self.stats.proposals_rejected += 1
            self._settle(proposal, exc)
            return
        stale = self._pending.get(proposal.index)
        if stale is not None:
            # Our own earlier entry at this index was overwritten by a newer leader.
            self.stats.proposals_lost += 1
            self._settle(stale, ProposalDropped(f"entry {proposal.index} was overwritten"))
        self._pending[proposal.index] = proposal

    async def _handle_ready(self, raw: RawNode, rd: Ready) -> None:
        self.stats.readies += 1
        if rd.soft_state is not None:
            self._leader, self._role = rd.soft_state.leader, rd.soft_state.role
            self._notify_leader_waiters()
        durable, rest = self._split_committed(rd)
        sync = self._persist(rd)
        if durable:
            # Committed, and durable here since an earlier Ready: applying them while
            # this Ready's fsync runs in the worker overlaps the two.
            await self._apply(raw, durable)
        if sync is not None:
            await sync
        if rd.messages:
            messages = coalesce_appends(rd.messages, self._config.max_size_per_msg)
            self.stats.messages_sent += len(messages)
            self._transport.send(messages)
        if rd.snapshot is not None:
            await self._app.restore(rd.snapshot)
            self.stats.snapshots_restored += 1
            self._applied = rd.snapshot.meta.index
            self._snapshot_index = rd.snapshot.meta.index
        if rd.committed_entries:
            await self._apply(raw, rest)
        for rs in rd.read_states:
            read = self._reads.pop(rs.request_ctx, None)
            if read is not None:
                heapq.heappush(self._read_waiters, (rs.index, next(self._read_arrivals), read))
        self._release_reads()
        raw.advance(rd)
        await self._maybe_snapshot(raw)

    def _split_committed(self, rd: Ready) -> tuple[Sequence[Entry], Sequence[Entry]]:
        """Split the committed entries into those already durable here and the rest.

        Every write of an earlier Ready that carried entries was synced before that
        Ready's messages left, so whatever the storage holds when a Ready arrives is
        durable, except what this Ready is about to replace.
        """
        committed = rd.committed_entries
        if not committed or rd.snapshot is not None:
            return (), committed
        durable_last = self._storage.last_index()
        if rd.entries:
            durable_last = LogIndex(min(durable_last, rd.entries[0].index - 1))
        split = max(0, min(len(committed), durable_last - committed[0].index + 1))
        return committed[:split], committed[split:]

    def _persist(self, rd: Ready) -> asyncio.Future[None] | None:
        """Write what the Ready asks for; return the fsync running in the worker, if any."""
        storage = self._storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            storage.append(list(rd.entries))
            self.stats.entries_persisted += len(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        # A commit index alone need not be synced: after a crash the core takes the
        # application's applied index as committed, and a lower commit is relearned.
        if not rd.must_sync:
            return None
        self.stats.syncs += 1
        return asyncio.get_running_loop().run_in_executor(self._executor, storage.sync)

    async def _sync(self) -> None:
        sync = asyncio.get_running_loop().run_in_executor(self._executor, self._storage.sync)
        self.stats.syncs += 1
        await sync

    async def _apply(self, raw: RawNode, entries: Sequence[Entry]) -> None:
        for kind, group in itertools.groupby(entries, key=_entry_type):
            run = list(group)
            if kind == EntryType.CONF_CHANGE:
                self._apply_conf_changes(raw, run)
            else:
                await self._app.apply(run)
            self._applied = run[-1].index
            self.stats.entries_applied += len(run)
            self._settle_applied(run)

    def _apply_conf_changes(self, raw: RawNode, entries: Sequence[Entry]) -> None:
        for entry in entries:
            try:
                cc = decode_conf_change(entry.data)
            except MalformedMessage as exc:
                # The entry is committed and will be handed out again after every
                # restart: raising would stop the node for good. The core ignores the
                # same entry on every node, so skipping it keeps all nodes alike.
                self.stats.conf_changes_skipped += 1
                log.warning("raft %s: skipping malformed conf change at %d: %s",
                            self._config.id, entry.index, exc)
                continue
            raw.apply_conf_change(cc)

    def _settle_applied(self, entries: Sequence[Entry]) -> None:
        pending = self._pending
        if not pending:
            return
        now = self._clock_s()
        for entry in entries:
            proposal = pending.pop(entry.index, None)
            if proposal is None:
                continue
            if proposal.term == entry.term:
                self.stats.proposals_applied += 1
                latency_s = now - proposal.started_s
                if self._on_commit_latency is not None:
                    self._on_commit_latency(latency_s)
                self._settle(proposal, entry.index)
            else:
                self.stats.proposals_lost += 1
                self._settle(
                    proposal,
                    ProposalDropped(f"another entry was committed at index {entry.index}"),
                )

    async def _maybe_snapshot(self, raw: RawNode) -> None:
        every = self._dc.snapshot_every_entries
        if every <= 0 or self._applied - self._snapshot_index < every:
            return
        # An application may take entries in and process them later (a queue); only
        # what it reports as applied may leave the log, or a crash before it processed
        # them would lose them on this node. Its snapshot() makes that prefix durable.
        index = LogIndex(min(self._applied, self._app.applied_index()))
        if self._compaction_limit is not None:
            index = LogIndex(min(index, self._compaction_limit()))
        if index <= self._snapshot_index:
            return
        raw.compact(index, self._app.snapshot())
        await self._sync()
        self._snapshot_index = index
        self.stats.snapshots_taken += 1

    # -- helpers -----------------------------------------------------------------------

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self._tick_handle = loop.call_at(due, self._on_tick, loop, due)

    def _on_tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._stopping:
            return
        self._ticks_due += 1
        self._wake.set()
        # A fixed schedule, so that the tick rate does not drift with the load.
        next_due = due + self._dc.tick_interval_s
        self._schedule_tick(loop, max(next_due, loop.time()))

    def _check_running(self) -> None:
        if self._failure is not None:
            raise DriverStopped(f"the driver failed: {self._failure!r}")
        if not self.running:
            raise DriverStopped("the driver is not running")

    def _enqueue_request(self, request: Request, undo: Callable[[], object]) -> None:
        if len(self._queues.requests) >= self._dc.requests_queued_max:
            undo()
            raise ProposalDropped("too many requests queued")
        self._queues.requests.append(request)
        self._wake.set()

    def _settle(self, proposal: _Proposal, outcome: LogIndex | BaseException) -> None:
        if proposal.bucket is not None:
            proposal.bucket.pop(proposal, None)
            proposal.bucket = None
        if proposal.future.done():
            return
        if isinstance(outcome, BaseException):
            proposal.future.set_exception(outcome)
        else:
            proposal.future.set_result(outcome)

    def _deadline_bucket(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> _Bucket:
        """The set of proposals expiring with the next tick after `timeout_s` from now.

        One timer per tick interval instead of one per proposal: at tens of thousands of
        proposals a second a timer each costs more than the rest of the driver's work.
        A timeout therefore fires up to one tick interval late.
        """
        interval = self._dc.tick_interval_s
        due = (int((loop.time() + timeout_s) / interval) + 1) * interval
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = {}
            loop.call_at(due, self._expire_bucket, due)
        return bucket

    def _expire_bucket(self, due: float) -> None:
        for proposal in self._buckets.pop(due, ()):
            proposal.bucket = None
            if proposal.future.done():
                continue
            self.stats.proposals_timed_out += 1
            if proposal.index and self._pending.get(proposal.index) is proposal:
                del self._pending[proposal.index]
            proposal.future.set_exception(ProposalTimeout("the proposal was not applied in time"))

    def _finish_read(self, ctx: bytes, outcome: LogIndex | BaseException) -> None:
        read = self._reads.pop(ctx, None)
        if read is not None:
            self._resolve_read(read, outcome)

    def _resolve_read(self, read: _Read, outcome: LogIndex | BaseException) -> None:
        if read.timer is not None:
            read.timer.cancel()
        if read.future.done():
            return
        if isinstance(outcome, BaseException):
            read.future.set_exception(outcome)
        else:
            read.future.set_result(outcome)

    def _expire_read(self, ctx: bytes, read: _Read) -> None:
        self._reads.pop(ctx, None)
        self._resolve_read(read, ReadIndexTimeout("no read index confirmed in time"))

    def _release_reads(self) -> None:
        waiters = self._read_waiters
        while waiters and waiters[0][0] <= self._applied:
            index, _, read = heapq.heappop(waiters)
            self._resolve_read(read, LogIndex(index))

    def _notify_leader_waiters(self) -> None:
        for target, future in self._leader_waiters:
            if target == self._leader and not future.done():
                future.set_result(None)

    def _fail_everything(self, exc: BaseException) -> None:
        queued = list(self._queues.proposals)
        self._queues.proposals.clear()
        for proposal in [*queued, *self._pending.values()]:
            self._settle(proposal, exc)
        self._pending.clear()
        for read in [*self._reads.values(), *(r for _, _, r in self._read_waiters)]:
            self._resolve_read(read, exc)
        self._reads.clear()
        self._read_waiters.clear()
        for _, future in self._leader_waiters:
            if not future.done():
                future.set_exception(exc)
        self._queues.messages.clear()
        self._queues.requests.clear()


def _entry_type(entry: Entry) -> EntryType:
    return entry.type


def coalesce_appends(messages: Sequence[Message], bytes_max: int) -> Sequence[Message]:
    """Merge each append into the previous message to the same node when it continues it.

    The core sends one append per proposal to each follower; a Ready carrying a batch
    of proposals holds hundreds of appends that each extend the one before. Merged, a
    follower receives (and answers) one message with the same effect: it would have
    appended the first and then the second. Only an append that directly follows an
    append to the same node, in the same term, starting where the previous one ended,
    and within `bytes_max` of entry data, is merged, so the order of all other
    messages to a node is unchanged.
    """
    if len(messages) < 2:
        return messages
    out: list[Message] = []
    last_to: dict[NodeId, int] = {}  # destination -> position in `out` of its last message
    grown: dict[int, tuple[list[Entry], LogIndex]] = {}  # position -> entries, commit
    sizes: dict[int, int] = {}
    for m in messages:
        i = last_to.get(m.to)
        if m.type == MessageType.APP and i is not None and out[i].type == MessageType.APP:
            head = out[i]
            entries, commit = grown.get(i) or (list(head.entries), head.commit)
            end_index = head.index + len(entries)
            end_term = entries[-1].term if entries else head.log_term
            size = sum(len(e.data) for e in m.entries)
            if (
                m.term == head.term
                and m.index == end_index
                and m.log_term == end_term
                and sizes[i] + size <= bytes_max
            ):
                entries.extend(m.entries)
                grown[i] = (entries, LogIndex(max(commit, m.commit)))
                sizes[i] += size
                continue
        last_to[m.to] = len(out)
        sizes[len(out)] = sum(len(e.data) for e in m.entries)
        out.append(m)
    for i, (entries, commit) in grown.items():
        out[i] = replace(out[i], entries=tuple(entries), commit=commit)
    return out

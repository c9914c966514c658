"""A seeded, deterministic simulator that runs the real `consensus.Driver` (after
TigerBeetle's VOPR, which runs the real replica rather than a model of it).

Each simulated node is the `Driver` that ships, over a `MemoryStorage`, with the three
sources of nondeterminism injected:

  the clock     every driver runs on one `SimLoop`, an asyncio event loop whose time is
                virtual: when nothing is ready it jumps to the next timer. Ticks,
                proposal deadlines and stop() grace periods all follow it, and a run
                takes only as long as its computation;
  the executor  `SimDisk` runs each fsync after a seeded delay on that clock (so the
                driver really applies while its fsync runs), can stall for a while
                (ticks pile up, as on a slow disk), and can crash the node just before
                or just after a sync;
  the network   `SimLink` hands messages to the seeded network, which loses,
                duplicates, delays, reorders and partitions them.

One `random.Random(seed)` drives all of it, and asyncio runs callbacks in a fixed
order, so a seed replays exactly; the trace hash proves it.

A crash severs a node at once: from that instant its transport, storage and
application ignore the old driver (which then winds down unseen), the storage is
replaced by what survives the crash (`MemoryStorage.crashed`, torn writes included),
and a restart builds a new `Driver` over it. The application is a hash chain over the
entries applied (`sim.App`); with `durable_app` it survives crashes as a ledger does,
otherwise it comes back from the snapshot in storage.

The same `Checker` as the RawNode simulator's verifies, as the run goes, election
safety, log matching, leader completeness, state machine safety and durability of
acknowledged proposals (see `sim.py`); it hooks the storage and application writes of
every live driver, so it sees exactly what the driver did, in the order it did it.
Clients see only what the Driver's futures say: a proposal counts as acknowledged when
`propose()` returns, and every `read_index()` answer must cover the writes
acknowledged before the read began. A driver that fails on its own fails the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from consensus import (
    NONE,
    Compacted,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Driver,
    DriverConfig,
    Entry,
    HardState,
    LogIndex,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    Status,
    Term,
    Unavailable,
)
from tests.consensus.sim import TICK_MS, App, Checker, Faults, SimFailure

# Virtual time between two looks at a `run_until` condition: a fifth of a tick, fine
# enough for every condition the tests wait for, and each look costs a loop iteration.
POLL_S = 0.002


class SimLoop(asyncio.BaseEventLoop):
    """An asyncio loop on a virtual clock: it never waits, it jumps to the next timer."""

    def __init__(self) -> None:
        super().__init__()
        self._now_s = 0.0
        self._selector = _JumpToNextTimer(self)

    def time(self) -> float:
        return self._now_s

    def jump(self, timeout_s: float | None) -> None:
        if timeout_s is None:
            raise SimFailure("deadlock: nothing is ready and no timer is set")
        if timeout_s > 0:
            # To the timer's own time, not now + timeout: float sums could fall short.
            self._now_s = max(self._now_s, self._scheduled[0]._when)  # type: ignore[attr-defined]

    def _process_events(self, event_list: list[Any]) -> None:
        pass  # there is no I/O: every event is a timer or a ready callback

    def _write_to_self(self) -> None:
        pass  # call_soon_threadsafe is only ever called from the loop's own thread


class _JumpToNextTimer:
    """The loop's selector: `select(timeout)` moves the clock instead of waiting."""

    def __init__(self, loop: SimLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None) -> list[Any]:
        self._loop.jump(timeout)
        return []


@dataclass
class Life:
    """One incarnation of a node, from start to crash; the crash sets `alive` False."""

    alive: bool = True
    driver: Driver | None = None


class StorageLog:
    """A storage as the checker's `LogView`."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage

    def first_index(self) -> LogIndex:
        return self.storage.first_index()

    def term_or_none(self, index: LogIndex) -> Term | None:
        try:
            return self.storage.term(index)
        except (Compacted, Unavailable):
            return None


class WatchedStorage(StorageLog):
    """The node's MemoryStorage, with every write of a live driver shown to the checker."""

    def __init__(self, sim: DriverSim, node: SimNode, storage: MemoryStorage, life: Life) -> None:
        super().__init__(storage)
        self.sim, self.node, self.life = sim, node, life

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.storage.initial_state()

    def entries(self, lo: LogIndex, hi: LogIndex, max_bytes: int | None = None) -> list[Entry]:
        return self.storage.entries(lo, hi, max_bytes)

    def term(self, index: LogIndex) -> Term:
        return self.storage.term(index)

    def last_index(self) -> LogIndex:
        return self.storage.last_index()

    def snapshot(self) -> Snapshot:
        return self.storage.snapshot()

    def append(self, entries: list[Entry]) -> None:
        self.storage.append(entries)
        if self.life.alive and self.sim.check and entries:
            self.sim.checker.on_persist(self, entries)
            self._check_leader()

    def _check_leader(self) -> None:
        # A new leader's first Ready appends its empty entry, so every leader passes
        # here, with its log complete, before any message of its term leaves.
        driver = self.life.driver
        if driver is not None and driver.is_leader:
            self.sim.on_leader(self.node, driver.status().term, self)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.storage.set_hard_state(hard_state)
        if self.life.alive and self.sim.check:
            self.sim.checker.on_commit(hard_state.commit, hard_state.term, self)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self.storage.apply_snapshot(snapshot)

    def compact(self, index: LogIndex, snapshot: Snapshot) -> None:
        self.storage.compact(index, snapshot)

    def sync(self) -> None:
        self.storage.sync()


class SimApp:
    """The `Application` of one life: the hash chain, fed only by a live driver."""

    def __init__(self, sim: DriverSim, node: SimNode, life: Life) -> None:
        self.sim, self.node, self.life = sim, node, life
        self.state = node.app

    async def apply(self, entries: Sequence[Entry]) -> None:
        if not self.life.alive:
            return  # a crashed node's state is what it was at the crash
        for e in entries:
            self.state.apply(e)
            if self.sim.check:
                self.sim.checker.on_apply(self.node.id, e, self.state.chain)

    def applied_index(self) -> LogIndex:
        return LogIndex(self.state.applied)

    def snapshot(self) -> bytes:
        return self.state.snapshot_data()

    async def restore(self, snapshot: Snapshot) -> None:
        if not self.life.alive:
            return
        self.state.restore(snapshot.data)
        if self.sim.check:
            self.sim.checker.on_restore(self.node.id, self.state)


class SimLink:
    """The `Transport` of one life: hands messages to the network while alive."""

    def __init__(self, sim: DriverSim, life: Life) -> None:
        self.sim, self.life = sim, life

    def send(self, messages: Sequence[Message]) -> None:
        if self.life.alive:
            for m in messages:
                self.sim.send(m)


class SimDisk(concurrent.futures.Executor):
    """The executor of one life: runs each fsync on the virtual clock, maybe late,
    maybe with a crash just before or just after it."""

    def __init__(self, sim: DriverSim, node: SimNode, life: Life) -> None:
        self.sim, self.node, self.life = sim, node, life

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        delay_ms = self.sim.disk_delay_ms(self.node)
        if delay_ms:
            self.sim.loop.call_later(delay_ms / 1000, self._run, future, fn, args, kwargs)
        else:
            self._run(future, fn, args, kwargs)
        return future

    def _run(self, future: concurrent.futures.Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        if not future.set_running_or_notify_cancel():
            return  # the driver stopped waiting (cancelled while it stopped)
        self.sim.maybe_crash_at_sync(self.node, self.life)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the driver, as a thread pool would
            future.set_exception(exc)
        else:
            future.set_result(result)
        self.sim.maybe_crash_at_sync(self.node, self.life)


class SimNode:
    def __init__(self, node_id: NodeId, storage: MemoryStorage, tick_ms: int, app: App) -> None:
        self.id = node_id
        self.storage = storage  # what the current life writes to, or what survived
        self.tick_ms = tick_ms
        self.app = app
        self.life: Life | None = None
        self.incarnation = 0
        self.crashes = 0
        self.stall_until_ms = 0  # the disk answers nothing before then

    @property
    def alive(self) -> bool:
        return self.life is not None

    @property
    def driver(self) -> Driver:
        if self.life is None or self.life.driver is None:
            raise SimFailure(f"node {self.id} is down")
        return self.life.driver


class DriverSim:
    """A cluster of real Drivers on one virtual-time loop; see the module docstring."""

    def __init__(
        self,
        seed: int,
        n: int = 3,
        *,
        faults: Faults | None = None,
        snapshot_every: int = 0,
        tick_skew: float = 0.0,
        durable_app: bool = False,
        check: bool = True,
        proposal_timeout_s: float = 1.0,
        **config: Any,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.loop = SimLoop()
        self.faults = faults or Faults()
        self.snapshot_every = snapshot_every
        self.tick_skew = tick_skew
        self.durable_app = durable_app
        self.check = check
        self.proposal_timeout_s = proposal_timeout_s
        self.config = config
        self.cut_links: set[tuple[int, int]] = set()
        self.trace = hashlib.blake2b(digest_size=16)
        self.sent: Counter[MessageType] = Counter()
        self.checker = Checker(self)
        self.acked_count = 0
        self.failed_proposals = 0
        self.reads = 0  # linearizable reads answered, each checked
        self.voters = tuple(NodeId(i) for i in range(1, n + 1))
        self.nodes: dict[NodeId, SimNode] = {}
        self.drivers: list[Driver] = []  # every life's, to catch a failure in any
        # An exception in a loop callback (a delivery, a disk job, a client) is only
        # logged by asyncio; it is kept here and raised when control returns.
        self.loop_error: BaseException | None = None
        self.loop.set_exception_handler(self._on_loop_error)
        for node_id in self.voters:
            self.add_node(node_id)

    @property
    def now(self) -> int:
        """Virtual time in milliseconds."""
        return round(self.loop.time() * 1000)

    def close(self) -> None:
        """Stop every driver (the dead ones are stopping already) and close the loop."""
        self.loop.run_until_complete(self._stop_all())
        self.loop.close()

    async def _stop_all(self) -> None:
        await asyncio.gather(*(driver.stop() for driver in self.drivers))
        rest = asyncio.all_tasks() - {asyncio.current_task()}
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- nodes -------------------------------------------------------------------------

    def add_node(self, node_id: int) -> SimNode:
        """Start a node with an empty log, bootstrapped with the initial membership."""
        skew = self.rng.uniform(-self.tick_skew, self.tick_skew) if self.tick_skew else 0.0
        app = App(contiguous=False)
        node = SimNode(NodeId(node_id), MemoryStorage(), max(1, round(TICK_MS * (1 + skew))), app)
        self.nodes[node.id] = node
        self._boot(node)
        return node

    def _boot(self, node: SimNode) -> None:
        node.incarnation += 1
        life = Life()
        config = Config(
            id=node.id, voters=self.voters, rng=random.Random(self.rng.getrandbits(64)), **self.config
        )
        dc = DriverConfig(
            tick_interval_s=node.tick_ms / 1000,
            snapshot_every_entries=self.snapshot_every,
            stop_grace_s=0.05,
        )
        storage = WatchedStorage(self, node, node.storage, life)
        driver = Driver(
            config, storage, SimLink(self, life), SimApp(self, node, life), dc,
            executor=SimDisk(self, node, life), clock_s=self.loop.time,
        )
        life.driver = driver
        node.life = life
        self.drivers.append(driver)
        self.loop.run_until_complete(driver.start())

    def crash(self, node_id: int) -> None:
        """Sever the node now; only what its storage had synced (maybe more) survives."""
        node = self.nodes[NodeId(node_id)]
        life = node.life
        if life is None or life.driver is None:
            return
        self._log("crash", node_id)
        life.alive = False
        node.life = None
        node.crashes += 1
        node.storage = node.storage.crashed(self.rng if self.faults.torn_writes else None)
        if not self.durable_app:
            node.app = App(contiguous=False, keep_values=node.app.keep_values)
        # The old driver winds down unseen: everything it could touch now ignores it.
        self.loop.create_task(life.driver.stop())

    def restart(self, node_id: int) -> None:
        node = self.nodes[NodeId(node_id)]
        if node.alive:
            return
        self._log("restart", node_id)
        self._boot(node)

    def crash_and_restart(self, node_id: int) -> None:
        self.crash(node_id)
        self.restart(node_id)

    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def on_leader(self, node: SimNode, term: int, log: StorageLog) -> None:
        if term not in self.checker.leaders:
            self._log("leader", node.id, term)
        self.checker.on_leader(node.id, term, log)

    # -- the disk ----------------------------------------------------------------------

    def disk_delay_ms(self, node: SimNode) -> int:
        lo, hi = self.faults.sync_ms
        delay_ms = self.rng.randint(lo, hi) if hi else 0
        return max(delay_ms, node.stall_until_ms - self.now)

    def stall_disk(self, node_id: int, ms: int) -> None:
        """The node's disk answers nothing for `ms`: its driver waits, its ticks pile up."""
        self._log("stall", node_id, ms)
        node = self.nodes[NodeId(node_id)]
        node.stall_until_ms = self.now + ms

    def maybe_crash_at_sync(self, node: SimNode, life: Life) -> None:
        p = self.faults.crash_in_ready
        if p and life.alive and self.rng.random() < p:
            self.crash(node.id)

    # -- network -----------------------------------------------------------------------

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut_link(node_id, other)

    def cut_link(self, a: int, b: int, *, one_way: bool = False) -> None:
        self.cut_links.add((a, b))
        if not one_way:
            self.cut_links.add((b, a))

    def partition(self, *groups: Iterable[int]) -> None:
        """From now on only nodes within one group can talk to each other."""
        self.cut_links.clear()
        sets = [set(g) for g in groups]
        for a in self.nodes:
            for b in self.nodes:
                if a != b and not any(a in s and b in s for s in sets):
                    self.cut_links.add((a, b))

    def heal(self) -> None:
        self.cut_links.clear()

    def connected(self, a: int, b: int) -> bool:
        return (a, b) not in self.cut_links

    def send(self, m: Message) -> None:
        self.sent[m.type] += 1
        f = self.faults
        rng = self.rng
        if (m.frm, m.to) in self.cut_links or (f.loss and rng.random() < f.loss):
            return
        copies = 2 if f.dup and rng.random() < f.dup else 1
        for _ in range(copies):
            if f.long_delay and rng.random() < f.long_delay:
                delay_ms = rng.randint(*f.long_delay_ms)
            else:
                delay_ms = rng.randint(*f.delay_ms)
            self.loop.call_later(delay_ms / 1000, self._deliver, m)

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.life is None or (m.frm, m.to) in self.cut_links:
            return
        self.trace.update(
            b"m%d>%d:%d:%d:%d:%d:%d@%d"
            % (m.frm, m.to, m.type, m.term, m.index, len(m.entries), m.reject, self.now)
        )
        node.driver.receive(m)

    # -- time --------------------------------------------------------------------------

    def _log(self, *what: object) -> None:
        self.trace.update(repr((self.now,) + what).encode())

    def run_for(self, ms: int) -> None:
        self.loop.run_until_complete(asyncio.sleep(ms / 1000))
        self._check_drivers()

    def run_until(self, pred: Callable[[], bool], max_ms: int = 10_000) -> bool:
        held = self.loop.run_until_complete(self._poll(pred, self.loop.time() + max_ms / 1000))
        self._check_drivers()
        return held

    async def _poll(self, pred: Callable[[], bool], end_s: float) -> bool:
        while not pred():
            if self.loop.time() >= end_s:
                return False
            await asyncio.sleep(POLL_S)
        return True

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if self.loop_error is None:
            self.loop_error = context.get("exception") or SimFailure(context["message"])

    def _check_drivers(self) -> None:
        """A driver that stopped on its own is a bug, whatever the faults."""
        if self.loop_error is not None:
            raise self.loop_error
        for driver in self.drivers:
            if driver.failure is not None:
                raise SimFailure(f"seed={self.seed}: driver {driver.node_id} failed: {driver.failure!r}")

    # -- clients -----------------------------------------------------------------------

    def leader(self) -> NodeId:
        """The live leader of the highest term, or NONE."""
        best: tuple[int, NodeId] = (-1, NONE)
        for n in self.alive():
            if n.driver.is_leader:
                term = n.driver.status().term
                if term > best[0]:
                    best = (term, n.id)
        return best[1]

    def status(self, node_id: int) -> Status:
        return self.nodes[NodeId(node_id)].driver.status()

    def wait_leader(self, max_ms: int = 5_000) -> NodeId:
        if not self.run_until(lambda: self.leader() != NONE and self._leader_stable(), max_ms):
            raise SimFailure(f"seed={self.seed}: no leader within {max_ms}ms")
        return self.leader()

    def _leader_stable(self) -> bool:
        """A majority of the nodes hear the leader and agree on it and its term."""
        lead = self.leader()
        st = self.status(lead)
        agree = 0
        for n in self.alive():
            if n.id == lead or (self.connected(lead, n.id) and self.connected(n.id, lead)):
                other = n.driver.status()
                agree += other.term == st.term and other.leader == lead
        return agree > len(st.voters) // 2

    def propose(self, data: bytes, node_id: int | None = None) -> bool:
        """Propose through the Driver at `node_id` (default: the leader); False if down."""
        target = self.leader() if node_id is None else NodeId(node_id)
        if target == NONE or not self.nodes[target].alive:
            return False
        node = self.nodes[target]
        task = self.loop.create_task(node.driver.propose(data, timeout_s=self.proposal_timeout_s))
        task.add_done_callback(functools.partial(self._on_proposal_done, data, node.life))
        return True

    def _on_proposal_done(self, data: bytes, life: Life, task: asyncio.Task[LogIndex]) -> None:
        if task.exception() is not None or not life.alive:
            # Refused, dropped, timed out or stopped: no promise. An answer from a
            # crashed node's driver (winding down unseen) never reaches a client.
            self.failed_proposals += 1
            return
        index = task.result()
        seen = self.checker.applied.get(index)
        if seen is None or seen[1] != data:
            self.checker.fail(f"proposal acknowledged at {index} but applied there: {seen}")
        else:
            self.checker.acked[index] = (seen[0], data)
            self.acked_count += 1
            self._log("acked", index)

    def read(self, node_id: int) -> bool:
        """Ask `node_id` for a linearizable read index; False if it is down.

        The answer must cover every write acknowledged before the read began, and the
        node must have applied up to it by the time the read returns."""
        node = self.nodes[NodeId(node_id)]
        if node.life is None:
            return False
        floor = max(self.checker.acked, default=0)
        task = self.loop.create_task(node.driver.read_index(timeout_s=self.proposal_timeout_s))
        task.add_done_callback(functools.partial(self._on_read_done, node.life, floor))
        return True

    def _on_read_done(self, life: Life, floor: int, task: asyncio.Task[LogIndex]) -> None:
        if task.exception() is not None or not life.alive or life.driver is None:
            return  # no answer reached the client
        index = task.result()
        if index < floor:
            self.checker.fail(f"read index {index} misses the write acknowledged at {floor}")
        if life.driver.applied_index < index:
            self.checker.fail(f"read index {index} returned before it was applied")
        self.reads += 1
        self._log("read", life.driver.node_id, index)

    def transfer(self, to: int) -> None:
        """Ask the leader to hand over to `to`; the outcome does not matter."""
        lead = self.leader()
        if lead != NONE and lead != to:
            task = self.loop.create_task(self.nodes[lead].driver.transfer_leadership(NodeId(to), 0.5))
            task.add_done_callback(_ignore_outcome)

    def propose_conf_change(self, cc: ConfChange) -> bool:
        lead = self.leader()
        if lead == NONE:
            return False
        task = self.loop.create_task(self.nodes[lead].driver.propose_conf_change(cc, timeout_s=1.0))
        task.add_done_callback(_ignore_outcome)
        return True

    def commit(self, data: bytes, max_ms: int = 5_000) -> LogIndex:
        """Propose through the leader until the proposal is acknowledged as committed."""
        end = self.now + max_ms
        while self.now < end:
            if self.propose(data):
                self.run_until(lambda: self._acked(data) is not None, min(1_500, end - self.now))
                index = self._acked(data)
                if index is not None:
                    return index
            self.run_for(20)
        raise SimFailure(f"seed={self.seed}: {data!r} did not commit within {max_ms}ms")

    def _acked(self, data: bytes) -> LogIndex | None:
        for index, (_, acked) in self.checker.acked.items():
            if acked == data:
                return LogIndex(index)
        return None

    def applied(self, node_id: int) -> int:
        return self.nodes[NodeId(node_id)].app.applied

    def trace_hash(self) -> str:
        return self.trace.hexdigest()

    # -- the end of a randomized run ---------------------------------------------------

    def converge(self, max_ms: int = 20_000) -> None:
        """Heal everything, restart the dead, commit a barrier, check the final state."""
        self.heal()
        self.faults = Faults(torn_writes=self.faults.torn_writes)
        for n in list(self.nodes.values()):
            n.stall_until_ms = 0
            if not n.alive:
                self.restart(n.id)
        self.commit(b"barrier-%d" % self.seed, max_ms)
        members = [n for n in self.alive() if n.id in self._members()]
        self._settle(members, max_ms)
        if self.check:
            logs = [(StorageLog(n.storage), n.driver.status().commit) for n in members]
            self.checker.check_final([n.app for n in members], logs)

    def _settle(self, members: Sequence[SimNode], max_ms: int) -> None:
        """Run until every member applied the same entries, at least up to the barrier.

        Proposals still in flight may commit after the barrier. And the loop finishes
        its iteration after a condition held, so one node may have moved on by the
        time `run_until` returns: wait again until it holds with the loop at rest."""
        top = max(n.app.applied for n in members)
        while not _same_applied(members, top):
            if not self.run_until(lambda: _same_applied(members, top), max_ms):
                state = {n.id: n.app.applied for n in members}
                raise SimFailure(f"seed={self.seed}: nodes did not catch up to {top}: {state}")

    def _members(self) -> set[int]:
        """The membership as the most advanced live node sees it."""
        best = max((n.driver.status() for n in self.alive()), key=lambda st: st.commit)
        return set(best.voters) | set(best.learners)


def _same_applied(nodes: Sequence[SimNode], at_least: int) -> bool:
    applied = {n.app.applied for n in nodes}
    return len(applied) == 1 and applied.pop() >= at_least


def _ignore_outcome(task: asyncio.Task[Any]) -> None:
    task.exception()  # retrieved, so asyncio does not log it as never retrieved


def run_random(seed: int, duration_ms: int = 1_000, *, spare: bool | None = None) -> DriverSim:
    """One randomized fault-injection run of real Drivers; raises SimFailure naming the seed.

    With a spare node (by default in about a third of the runs), membership changes
    join the faults: add it as a learner, promote, demote, remove (the leader too).
    """
    rng = random.Random(seed)
    n = rng.choice((3, 3, 5))
    sim = DriverSim(
        rng.getrandbits(64) ^ seed,
        n,
        faults=_random_faults(rng),
        snapshot_every=rng.choice((0, 8, 25)),
        tick_skew=rng.choice((0.0, 0.3)),
        durable_app=rng.random() < 0.5,
        # Production heartbeats every tick; every other tick halves the idle traffic
        # (and so the run's cost) and still keeps followers well within their timeout.
        heartbeat_tick=rng.choice((1, 2)),
        pre_vote=rng.random() < 0.7,
        check_quorum=rng.random() < 0.7,
        snapshot_chunk_bytes=rng.choice((64, 1 << 20)),
        max_size_per_msg=rng.choice((64, 1 << 20)),
        max_inflight_msgs=rng.choice((2, 256)),
    )
    sim.seed = seed
    try:
        _campaign(sim, rng, n, duration_ms, spare)
        sim.converge()
    finally:
        sim.close()
    return sim


def _random_faults(rng: random.Random) -> Faults:
    return Faults(
        loss=rng.choice((0.0, 0.05, 0.1)),
        dup=rng.choice((0.0, 0.05)),
        long_delay=rng.choice((0.0, 0.05, 0.2)),
        crash_in_ready=rng.choice((0.0, 0.0, 0.002, 0.01)),
        torn_writes=rng.random() < 0.5,
        sync_ms=rng.choice(((0, 0), (0, 2), (1, 5))),
    )


def _campaign(sim: DriverSim, rng: random.Random, n: int, duration_ms: int, spare: bool | None) -> None:
    if rng.random() < 0.3 if spare is None else spare:
        sim.add_node(n + 1)  # a spare, not a member until a change adds it
    figure8 = rng.random() < 0.3
    counter = 0
    next_chaos_ms = rng.randint(50, 200)
    while sim.now < duration_ms:
        sim.run_for(rng.randint(2, 30))
        counter += 1
        proposed = sim.propose(b"v%d-%d" % (sim.seed, counter))
        if rng.random() < 0.2:
            sim.read(rng.choice(sorted(sim.nodes)))
        if figure8:
            _figure8_step(sim, rng, proposed)
        elif sim.now >= next_chaos_ms:
            if len(sim.nodes) > n and rng.random() < 0.3:
                _change_membership(sim, rng)
            else:
                _chaos(sim, rng)
            next_chaos_ms = sim.now + rng.randint(30, 200)
        _restart_some(sim, rng)


def _figure8_step(sim: DriverSim, rng: random.Random, proposed: bool) -> None:
    """6.5840's Figure 8 test: the leader often dies right after it proposed."""
    lead = sim.leader()
    if proposed and lead and rng.random() < 0.5:
        sim.run_for(rng.randint(0, 3))  # let the proposal reach the driver, maybe further
        sim.crash(lead)


def _change_membership(sim: DriverSim, rng: random.Random) -> None:
    """Add, promote, demote or remove one node (the leader included)."""
    lead = sim.leader()
    if lead == NONE:
        return
    st = sim.status(lead)
    members = set(st.voters) | set(st.learners)
    options: list[ConfChange] = []
    options += [ConfChange(ConfChangeType.ADD_LEARNER, n) for n in sim.nodes if n not in members]
    options += [ConfChange(ConfChangeType.ADD_VOTER, n) for n in st.learners]
    if len(st.voters) > 3:
        options += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in st.voters]
        options += [ConfChange(ConfChangeType.ADD_LEARNER, n) for n in st.voters]
    if options:
        sim.propose_conf_change(rng.choice(options))


def _restart_some(sim: DriverSim, rng: random.Random) -> None:
    """Keep a majority up: dead nodes come back after a while."""
    down = [n.id for n in sim.nodes.values() if not n.alive]
    if down and (len(down) > (len(sim.nodes) - 1) // 2 or rng.random() < 0.1):
        sim.restart(rng.choice(down))


def _chaos(sim: DriverSim, rng: random.Random) -> None:
    """One random fault: partitions, crashes, restarts, one-way links, a stalled disk,
    or a leadership transfer."""
    ids = sorted(sim.nodes)
    action = rng.randrange(9)
    if action == 0:
        sim.heal()
    elif action == 1:
        sim.isolate(rng.choice(ids))
    elif action == 2:
        rng.shuffle(ids)
        cut = rng.randint(1, len(ids) // 2)
        sim.partition(ids[:cut], ids[cut:])
    elif action == 3:
        sim.cut_link(rng.choice(ids), rng.choice(ids), one_way=True)
    elif action == 4:
        sim.crash(rng.choice(ids))
    elif action == 5:
        sim.heal()
        sim.isolate(rng.choice(ids))
    elif action == 6:
        lead = sim.leader()
        if lead:
            sim.crash_and_restart(lead)
    elif action == 7:
        # The driver's task waits on the disk; its ticks are missed, then one is taken.
        sim.stall_disk(rng.choice(ids), rng.randint(20, 300))
    else:
        sim.transfer(rng.choice(ids))


"""A seeded, deterministic simulator of Raft clusters built from Tamga's RawNode.

The scenario tests use it where they need the core's internals at hand (a peer played
by hand, a Ready handled step by step). The randomized campaigns run the real Driver
instead, in `vopr.py`, checked by the same `Checker` defined here.

One `random.Random(seed)` drives everything: message delays, loss, duplication, the
nodes' election jitter (each node's rng is drawn from it), clock rates, crashes. Time
is virtual (milliseconds); events run in (time, sequence) order from a heap, so the
same seed gives the same run, and the trace hash proves it.

Each simulated node is a RawNode on a `MemoryStorage`, driven exactly as the driver
contract says: persist (snapshot, entries, hard state), sync if asked, send, apply,
advance. A crash throws the node away; a restart builds a new one from what its
storage had synced (plus, if torn writes are on, a random prefix of what it had not).
The application is a hash chain over applied entries; its snapshot is that chain.

After every event the `Checker` has verified, incrementally:
  election safety     at most one leader per term;
  log matching        the same (index, term) anywhere means the same entry and the
                      same term just before it, hence identical prefixes;
  leader completeness a new leader holds every entry known committed;
  state machine safety no two nodes apply different entries at one index, and a
                      snapshot's chain equals the chain every node computed there;
  durability          every acknowledged proposal is among those entries.
Any violation raises `SimFailure` with the seed in its message.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from consensus import (
    NONE,
    ConfChange,
    Config,
    Entry,
    EntryType,
    LogIndex,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    ProposalDropped,
    RawNode,
    ReadState,
    Ready,
    Role,
    Term,
    decode_conf_change,
)

TICK_MS = 10


class SimFailure(AssertionError):
    """A Raft invariant broke; the message names the seed to replay."""


@dataclass
class Faults:
    """The network's and the nodes' misbehaviour; all probabilities per message."""

    loss: float = 0.0
    dup: float = 0.0
    delay_ms: tuple[int, int] = (1, 4)
    # Probability that a message takes a long detour (and so arrives out of order).
    long_delay: float = 0.0
    long_delay_ms: tuple[int, int] = (20, 400)
    # A crash at a point inside the handling of a Ready (before sync, before send).
    crash_in_ready: float = 0.0
    # A crash may keep a random prefix of the writes not yet synced.
    torn_writes: bool = True
    # How long an fsync takes (the Driver simulator's disk; the RawNode one syncs at once).
    sync_ms: tuple[int, int] = (0, 0)


@dataclass
class App:
    """The replicated state machine: a hash chain over every applied entry."""

    applied: int = 0
    chain: bytes = b""
    values: list[bytes] = field(default_factory=list)
    keep_values: bool = True
    # Whether every entry reaches the application. The Driver keeps configuration
    # changes to the core, so its application sees gaps, but never goes back.
    contiguous: bool = True

    def apply(self, e: Entry) -> None:
        if e.index != self.applied + 1 if self.contiguous else e.index <= self.applied:
            raise SimFailure(f"applied {e.index} after {self.applied}")
        self.applied = e.index
        self.chain = _chain(self.chain, e)
        if self.keep_values and e.type == EntryType.NORMAL and e.data:
            self.values.append(e.data)

    def snapshot_data(self) -> bytes:
        out: bytes = msgpack.packb([self.applied, self.chain, self.values])
        return out

    def restore(self, data: bytes) -> None:
        applied, chain, values = msgpack.unpackb(data)
        self.applied, self.chain, self.values = applied, chain, list(values)


def _chain(prev: bytes, e: Entry) -> bytes:
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(b"%d:%d:%d:" % (e.index, e.term, e.type))
    h.update(e.data)
    return h.digest()


class SimNode:
    def __init__(self, node_id: NodeId, storage: MemoryStorage, tick_ms: int) -> None:
        self.id = node_id
        self.storage = storage
        self.tick_ms = tick_ms
        self.app = App()
        self.raw: RawNode | None = None
        self.incarnation = 0
        self.read_states: list[ReadState] = []
        self.crashes = 0
        self.overrides: dict[str, Any] = {}

    @property
    def alive(self) -> bool:
        return self.raw is not None

    def node(self) -> RawNode:
        if self.raw is None:
            raise SimFailure(f"node {self.id} is down")
        return self.raw


class LogView(Protocol):
    """What the checker reads of a node's log: a core's RaftLog or a `StorageLog`."""

    def first_index(self) -> LogIndex: ...

    def term_or_none(self, index: LogIndex) -> Term | None: ...


class Clocked(Protocol):
    """A simulator as the checker names it in a failure: its seed and virtual time."""

    seed: int

    @property
    def now(self) -> int: ...


class Checker:
    """The Raft safety properties, checked incrementally as the run goes.

    It sees nodes only through their logs and applied chains, so the RawNode simulator
    here and the Driver simulator (`vopr.py`) check exactly the same properties.
    """

    def __init__(self, sim: Clocked) -> None:
        self.sim = sim
        self.leaders: dict[int, NodeId] = {}
        self.entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        # index -> (entry term, data, term in which the commit was first seen)
        self.committed: dict[int, tuple[int, bytes, int]] = {}
        self.commit_max = 0
        self.applied: dict[int, tuple[int, bytes, bytes]] = {}
        self.acked: dict[int, tuple[int, bytes]] = {}

    def fail(self, what: str) -> None:
        raise SimFailure(f"seed={self.sim.seed}: {what} (t={self.sim.now}ms)")

    def on_leader(self, node_id: NodeId, term: int, log: LogView) -> None:
        holder = self.leaders.setdefault(term, node_id)
        if holder != node_id:
            self.fail(f"two leaders in term {term}: {holder} and {node_id}")
        first = log.first_index()
        for index, (t, _, commit_term) in self.committed.items():
            # Leader completeness covers entries committed in earlier terms only: a
            # vote granted long ago can still make a leader of an old term now.
            if commit_term < term and index >= first and log.term_or_none(LogIndex(index)) != t:
                self.fail(f"leader {node_id} of term {term} lacks committed entry {index}")

    def on_persist(self, log: LogView, entries: Iterable[Entry]) -> None:
        """`entries` were written to `log` (which holds them already)."""
        for e in entries:
            prev_term = log.term_or_none(LogIndex(e.index - 1))
            key = (e.index, e.term)
            seen = self.entries.get(key)
            if seen is None:
                self.entries[key] = (-1 if prev_term is None else prev_term, e.data, e.type)
                continue
            if seen[1] != e.data or seen[2] != e.type:
                self.fail(f"log matching: two different entries at {key}")
            if prev_term is not None and seen[0] not in (-1, prev_term):
                self.fail(f"log matching: entry {key} follows terms {seen[0]} and {prev_term}")

    def on_commit(self, commit: int, term: int, log: LogView) -> None:
        """A node in `term` learned that everything up to `commit` in `log` is committed."""
        if commit <= self.commit_max:
            return
        for index in range(self.commit_max + 1, commit + 1):
            entry_term = log.term_or_none(LogIndex(index))
            if entry_term is None:
                continue  # inside the node's snapshot: checked through the chains
            data = self.entries.get((index, entry_term), (0, b"", 0))[1]
            self.committed[index] = (entry_term, data, term)
        self.commit_max = commit

    def on_apply(self, node_id: NodeId, e: Entry, chain: bytes) -> None:
        seen = self.applied.get(e.index)
        if seen is None:
            self.applied[e.index] = (e.term, e.data, chain)
        elif seen[0] != e.term or seen[1] != e.data or seen[2] != chain:
            self.fail(f"state machine safety: node {node_id} applied a different entry {e.index}")

    def on_restore(self, node_id: NodeId, app: App) -> None:
        seen = self.applied.get(app.applied)
        if seen is not None and seen[2] != app.chain:
            self.fail(f"node {node_id} restored a snapshot whose chain differs")

    def check_final(self, apps: Sequence[App], logs: Sequence[tuple[LogView, int]]) -> None:
        """Fuzzy invariants once the cluster has converged (hashicorp's fuzzy tests):
        `apps` and `logs` (with each log's commit index) are those of the live members."""
        chains = {app.chain for app in apps}
        if len(chains) != 1 or len({app.applied for app in apps}) != 1:
            self.fail("nodes did not converge on one applied state")
        values = set(apps[0].values)
        for index, (term, data) in self.acked.items():
            if data and data not in values:
                self.fail(f"acknowledged entry {index} (term {term}) is lost")
            seen = self.applied.get(index)
            if seen is None or seen[0] != term or seen[1] != data:
                self.fail(f"acknowledged entry {index} was not applied as acknowledged")
        commit = min(committed for _, committed in logs)
        lo = max(log.first_index() for log, _ in logs)
        for index in range(lo, commit + 1):
            if len({log.term_or_none(LogIndex(index)) for log, _ in logs}) != 1:
                self.fail(f"logs differ at committed index {index}")


class Sim:
    def __init__(
        self,
        seed: int,
        n: int = 3,
        *,
        ids: Iterable[int] | None = None,
        learners: Iterable[int] = (),
        faults: Faults | None = None,
        snapshot_every: int = 0,
        tick_skew: float = 0.0,
        keep_values: bool = True,
        check: bool = True,
        durable: bool = True,
        **config: Any,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self._events: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.faults = faults or Faults()
        self.snapshot_every = snapshot_every
        self.keep_values = keep_values
        self.durable = durable
        self.config = config
        self.cut_links: set[tuple[int, int]] = set()
        self.link_loss: dict[tuple[int, int], float] = {}
        self.trace = hashlib.blake2b(digest_size=16)
        self.sent: Counter[MessageType] = Counter()
        self.rejected_appends = 0
        self.check = check
        self.checker = Checker(self)
        self.proposals: dict[tuple[int, int], bytes] = {}
        self.acked_count = 0
        self.after_event: Callable[[], None] | None = None
        voter_ids = [NodeId(i) for i in (ids if ids is not None else range(1, n + 1))]
        self.voters = tuple(voter_ids)
        self.learners = tuple(NodeId(i) for i in learners)
        self.nodes: dict[NodeId, SimNode] = {}
        for node_id in self.voters + self.learners:
            self.add_node(node_id, tick_skew=tick_skew)

    # -- nodes -------------------------------------------------------------------------

    def add_node(self, node_id: int, *, tick_skew: float = 0.0, **overrides: Any) -> SimNode:
        """Start a node with an empty log, bootstrapped with the initial membership."""
        skew = self.rng.uniform(-tick_skew, tick_skew) if tick_skew else 0.0
        storage = MemoryStorage(track_durability=self.durable)
        node = SimNode(NodeId(node_id), storage, max(1, round(TICK_MS * (1 + skew))))
        node.app.keep_values = self.keep_values
        self.nodes[node.id] = node
        self._boot(node, **overrides)
        return node

    def _make_config(self, node: SimNode, **overrides: Any) -> Config:
        kw = dict(self.config)
        kw.update(overrides)
        return Config(
            id=node.id,
            voters=self.voters,
            learners=self.learners,
            rng=random.Random(self.rng.getrandbits(64)),
            applied=LogIndex(node.app.applied),
            **kw,
        )

    def _boot(self, node: SimNode, **overrides: Any) -> None:
        node.incarnation += 1
        node.overrides = overrides
        node.raw = RawNode(self._make_config(node, **overrides), node.storage)
        self._schedule(node.tick_ms, "tick", (node.id, node.incarnation))

    def crash(self, node_id: int) -> None:
        node = self.nodes[NodeId(node_id)]
        if not node.alive:
            return
        self._log("crash", node_id)
        node.raw = None
        node.crashes += 1
        node.read_states = []

    def restart(self, node_id: int) -> None:
        node = self.nodes[NodeId(node_id)]
        if node.alive:
            return
        self._log("restart", node_id)
        tear = self.rng if self.faults.torn_writes else None
        node.storage = node.storage.crashed(tear)
        node.app = App(keep_values=self.keep_values)
        snap = node.storage.snapshot()
        if snap.meta.index > 0:
            node.app.restore(snap.data)
            if self.check:
                self.checker.on_restore(node.id, node.app)
        self._boot(node, **node.overrides)

    def crash_and_restart(self, node_id: int) -> None:
        self.crash(node_id)
        self.restart(node_id)

    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def raw(self, node_id: int) -> RawNode:
        return self.nodes[NodeId(node_id)].node()

    # -- network -----------------------------------------------------------------------

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut_link(node_id, other)

    def cut_link(self, a: int, b: int, *, one_way: bool = False) -> None:
        self.cut_links.add((a, b))
        if not one_way:
            self.cut_links.add((b, a))

    def cut(self, a: int, b: int) -> None:
        """Messages between a and b are lost both ways (etcd's network.cut)."""
        self.cut_link(a, b)

    def partition(self, *groups: Iterable[int]) -> None:
        """From now on only nodes within one group can talk to each other."""
        self.cut_links.clear()
        sets = [set(g) for g in groups]
        for a in self.nodes:
            for b in self.nodes:
                if a != b and not any(a in s and b in s for s in sets):
                    self.cut_links.add((a, b))

    def drop(self, a: int, b: int, rate: float) -> None:
        self.link_loss[(a, b)] = rate

    def heal(self) -> None:
        self.cut_links.clear()
        self.link_loss.clear()

    recover = heal  # etcd's name for it

    def connected(self, a: int, b: int) -> bool:
        return (a, b) not in self.cut_links

    def send(self, m: Message) -> None:
        self.sent[m.type] += 1
        if m.reject and m.type == MessageType.APP_RESP:
            self.rejected_appends += 1
        f = self.faults
        rng = self.rng
        if (m.frm, m.to) in self.cut_links:
            return
        loss = self.link_loss.get((m.frm, m.to), f.loss)
        if loss and rng.random() < loss:
            return
        copies = 2 if f.dup and rng.random() < f.dup else 1
        for _ in range(copies):
            if f.long_delay and rng.random() < f.long_delay:
                delay = rng.randint(*f.long_delay_ms)
            else:
                delay = rng.randint(*f.delay_ms)
            self._schedule(delay, "msg", m)

    def deliver(self, m: Message) -> None:
        """Hand a message to its receiver now (tests that play a peer by hand)."""
        node = self.nodes.get(m.to)
        if node is None or not node.alive:
            return
        node.node().step(m)
        self.handle_ready(node)

    # -- the event loop ----------------------------------------------------------------

    def _schedule(self, delay_ms: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now + delay_ms, self._seq, _KINDS[kind], payload))

    def _log(self, *what: object) -> None:
        self.trace.update(repr((self.now,) + what).encode())

    def step(self) -> bool:
        if not self._events:
            return False
        at, _, kind, payload = heapq.heappop(self._events)
        self.now = at
        if kind == _TICK:
            self._on_tick(*payload)
        else:
            self._on_message(payload)
        if self.after_event is not None:
            self.after_event()
        return True

    def _on_tick(self, node_id: NodeId, incarnation: int) -> None:
        node = self.nodes[node_id]
        if not node.alive or node.incarnation != incarnation:
            return
        self.trace.update(b"t%d@%d" % (node_id, self.now))
        node.node().tick()
        self.handle_ready(node)
        if node.alive and node.incarnation == incarnation:
            self._schedule(node.tick_ms, "tick", (node_id, incarnation))

    def _on_message(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or not node.alive or (m.frm, m.to) in self.cut_links:
            return
        self.trace.update(
            b"m%d>%d:%d:%d:%d:%d:%d@%d"
            % (m.frm, m.to, m.type, m.term, m.index, len(m.entries), m.reject, self.now)
        )
        node.node().step(m)
        self.handle_ready(node)

    def run_for(self, ms: int) -> None:
        end = self.now + ms
        while self._events and self._events[0][0] <= end:
            self.step()
        self.now = max(self.now, end)

    def run_until(self, pred: Callable[[], bool], max_ms: int = 10_000) -> bool:
        end = self.now + max_ms
        while not pred():
            if not self._events or self._events[0][0] > end:
                self.now = max(self.now, end)
                return pred()
            self.step()
        return True

    # -- the driver: what a node does with a Ready -------------------------------------

    def handle_ready(self, node: SimNode) -> None:
        while node.raw is not None and node.raw.has_ready():
            raw = node.raw
            rd = raw.ready()
            self._persist(node, rd)
            if self._crash_point(node):
                return
            if rd.must_sync:
                node.storage.sync()
            if self._crash_point(node):
                return
            for m in rd.messages:
                self.send(m)
            self._apply(node, rd)
            raw.advance(rd)
            self._maybe_compact(node)

    def _crash_point(self, node: SimNode) -> bool:
        p = self.faults.crash_in_ready
        if p and self.rng.random() < p:
            self.crash(node.id)
            return True
        return False

    def _persist(self, node: SimNode, rd: Ready) -> None:
        storage = node.storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            storage.append(list(rd.entries))
            if self.check:
                self.checker.on_persist(node.node().raft.log, rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
            if self.check:
                r = node.node().raft
                self.checker.on_commit(rd.hard_state.commit, r.term, r.log)
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            term = node.node().raft.term
            self._log("leader", node.id, term)
            if self.check:
                self.checker.on_leader(node.id, term, node.node().raft.log)

    def _apply(self, node: SimNode, rd: Ready) -> None:
        raw = node.node()
        if rd.snapshot is not None:
            node.app.restore(rd.snapshot.data)
            if self.check:
                self.checker.on_restore(node.id, node.app)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                raw.apply_conf_change(decode_conf_change(e.data))
            node.app.apply(e)
            if self.check:
                self.checker.on_apply(node.id, e, node.app.chain)
            data = self.proposals.pop((e.index, e.term), None)
            if data is not None:
                if data != e.data:
                    self.checker.fail(f"proposal at {e.index} applied with other data")
                self.checker.acked[e.index] = (e.term, e.data)
                self.acked_count += 1
        node.read_states.extend(rd.read_states)

    def _maybe_compact(self, node: SimNode) -> None:
        every = self.snapshot_every
        if not every or node.raw is None:
            return
        applied = node.app.applied
        if applied - (node.storage.first_index() - 1) >= every:
            node.raw.compact(LogIndex(applied), node.app.snapshot_data())

    # -- clients -----------------------------------------------------------------------

    def leader(self) -> NodeId:
        """The live leader of the highest term, or NONE."""
        best: tuple[int, NodeId] = (-1, NONE)
        for n in self.alive():
            r = n.node().raft
            if r.role == Role.LEADER and r.term > best[0]:
                best = (r.term, n.id)
        return best[1]

    def wait_leader(self, max_ms: int = 5_000) -> NodeId:
        if not self.run_until(lambda: self.leader() != NONE and self._leader_stable(), max_ms):
            raise SimFailure(f"seed={self.seed}: no leader within {max_ms}ms")
        return self.leader()

    def _leader_stable(self) -> bool:
        """A majority of the nodes hear the leader and agree on it and its term."""
        lead = self.leader()
        r = self.nodes[lead].node().raft
        agree = 0
        for n in self.alive():
            if n.id == lead or (self.connected(lead, n.id) and self.connected(n.id, lead)):
                other = n.node().raft
                agree += other.term == r.term and other.lead == lead
        return agree > len(r.tracker.voters) // 2

    def propose(self, data: bytes, node_id: int | None = None) -> tuple[Term, LogIndex] | None:
        """Propose at `node_id` (default: the leader); None if it is not accepted."""
        target = self.leader() if node_id is None else NodeId(node_id)
        if target == NONE or not self.nodes[target].alive:
            return None
        node = self.nodes[target]
        try:
            term, index = node.node().propose(data)
        except ProposalDropped:
            return None
        self.proposals[(index, term)] = data
        self._log("propose", target, term, index)
        self.handle_ready(node)
        return term, index

    def propose_conf_change(self, cc: ConfChange, node_id: int | None = None) -> LogIndex | None:
        target = self.leader() if node_id is None else NodeId(node_id)
        if target == NONE:
            return None
        node = self.nodes[target]
        try:
            _, index = node.node().propose_conf_change(cc)
        except ProposalDropped:
            return None
        self.handle_ready(node)
        return index

    def applied(self, node_id: int) -> int:
        return self.nodes[NodeId(node_id)].app.applied

    def committed_everywhere(self, index: int, nodes: Iterable[int] | None = None) -> bool:
        ids = nodes if nodes is not None else [n.id for n in self.alive()]
        return all(self.nodes[NodeId(i)].app.applied >= index for i in ids)

    def commit(self, data: bytes, max_ms: int = 5_000) -> LogIndex:
        """Propose through the leader until the proposal is acknowledged as committed."""
        end = self.now + max_ms
        while self.now < end:
            got = self.propose(data)
            if got is not None:
                index = got[1]
                acked = functools.partial(self._acked, index, data)
                self.run_until(acked, min(1_000, end - self.now))
                if acked():
                    return index
            self.run_for(20)
        raise SimFailure(f"seed={self.seed}: {data!r} did not commit within {max_ms}ms")

    def wait_applied(self, index: int, nodes: Iterable[int] | None = None, max_ms: int = 5_000) -> None:
        if not self.run_until(lambda: self.committed_everywhere(index, nodes), max_ms):
            ids = sorted(nodes) if nodes is not None else sorted(n.id for n in self.alive())
            state = {i: self.nodes[NodeId(i)].app.applied for i in ids}
            raise SimFailure(f"seed={self.seed}: {index} not applied everywhere: {state}")

    def _acked(self, index: int, data: bytes) -> bool:
        got = self.checker.acked.get(index)
        return got is not None and got[1] == data

    def trace_hash(self) -> str:
        return self.trace.hexdigest()

    # -- the end of a randomized run ---------------------------------------------------

    def converge(self, max_ms: int = 20_000) -> None:
        """Heal everything, restart the dead, commit a barrier, check the final state."""
        self.heal()
        self.faults = Faults(torn_writes=self.faults.torn_writes)
        for n in list(self.nodes.values()):
            if not n.alive:
                self.restart(n.id)
        barrier = b"barrier-%d" % self.seed
        index = self.commit(barrier, max_ms)
        members = [n for n in self.alive() if n.id in self._members()]
        self.wait_applied(index, [n.id for n in members], max_ms)
        top = max(n.app.applied for n in members)
        if not self.run_until(lambda: all(n.app.applied == top for n in members), max_ms):
            raise SimFailure(f"seed={self.seed}: nodes did not catch up")
        if self.check:
            members = self._members()
            alive = [n for n in self.nodes.values() if n.alive and n.id in members]
            logs = [(n.node().raft.log, n.node().raft.log.committed) for n in alive]
            self.checker.check_final([n.app for n in alive], logs)

    def _members(self) -> set[int]:
        """The membership as the most advanced live node sees it."""
        best = max(self.alive(), key=lambda n: n.node().raft.log.committed)
        conf = best.node().raft.conf_state()
        return set(conf.voters) | set(conf.learners)


_TICK = 0
_MSG = 1
_KINDS = {"tick": _TICK, "msg": _MSG}


# -- single-node helpers for unit tests ------------------------------------------------


def new_raw(
    node_id: int,
    voters: Iterable[int] = (1, 2, 3),
    storage: MemoryStorage | None = None,
    seed: int = 0,
    **config: Any,
) -> tuple[RawNode, MemoryStorage]:
    storage = storage if storage is not None else MemoryStorage()
    cfg = Config(
        id=NodeId(node_id),
        voters=tuple(NodeId(v) for v in voters),
        rng=random.Random(seed * 1000 + node_id),
        **config,
    )
    return RawNode(cfg, storage), storage


def drain(raw: RawNode, storage: MemoryStorage) -> list[Message]:
    """Handle every Ready as a driver would; return the messages it would send."""
    out: list[Message] = []
    while raw.has_ready():
        rd = raw.ready()
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            storage.append(list(rd.entries))
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        if rd.must_sync:
            storage.sync()
        out.extend(rd.messages)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                raw.apply_conf_change(decode_conf_change(e.data))
        raw.advance(rd)
    return out


def msg(kind: MessageType, frm: int, to: int, term: int, **fields: Any) -> Message:
    return Message(kind, NodeId(to), NodeId(frm), Term(term), **fields)


def ent(term: int, index: int, data: bytes = b"") -> Entry:
    return Entry(Term(term), LogIndex(index), EntryType.NORMAL, data)


def elect(raw: RawNode, storage: MemoryStorage, voters: Iterable[int]) -> list[Message]:
    """Make `raw` leader by campaigning and granting it every vote (pre-vote included)."""
    raw.campaign()
    pending = drain(raw, storage)
    sent: list[Message] = []
    for _ in range(2):
        votes = [m for m in pending if m.type in (MessageType.PRE_VOTE, MessageType.VOTE)]
        pending = []
        for m in votes:
            resp = MessageType.PRE_VOTE_RESP if m.type == MessageType.PRE_VOTE else MessageType.VOTE_RESP
            raw.step(msg(resp, m.to, raw.id, m.term))
            out = drain(raw, storage)
            pending.extend(out)
            sent.extend(out)
    if raw.status().role != Role.LEADER:
        raise SimFailure("elect() did not make the node leader")
    return sent

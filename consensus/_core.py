"""The Raft state machine and `RawNode`, its driver-facing wrapper.

After the design of etcd-io/raft: no I/O, no clock, no global random source. The driver
calls `tick()`, `step(message)` and `propose(data)`; the core answers with a `Ready`.

The driver's contract, for each `rd = ready()`:

1. persist `rd.snapshot` (storage.apply_snapshot, and hand it to the application),
   `rd.entries` (storage.append) and `rd.hard_state` (storage.set_hard_state);
2. `storage.sync()` if `rd.must_sync`;
3. only then send `rd.messages` (never addressed to this node itself);
4. apply `rd.committed_entries` in order (CONF_CHANGE entries through
   `apply_conf_change`), serve `rd.read_states` once applied that far;
5. `advance(rd)`. One Ready at a time: `ready()` again before `advance()` is an error.

Proposals made between two Readies leave in one append per follower when the driver
next calls `has_ready()` or `ready()`: that is where batching comes from.

Roles are dispatched through one step function per role (`_step_leader`,
`_step_candidate`, `_step_follower`); only the `_become_*` methods change the role.

Membership follows the Raft dissertation's single-server changes: a node uses the
latest configuration in its log, committed or not, and a leader appends a change only
when the previous one is committed and it has committed an entry of its own term (the
fix for the bug Ongaro described on raft-dev in 2015). Each change adds, removes,
promotes or demotes one node, so any two successive voter sets share a majority. A
leader whose removal commits hands over (TIMEOUT_NOW) and steps down. Every node must
be started with the same initial `voters`/`learners` (the genesis membership); a node
joining later starts with that too and learns the rest from the log or a snapshot.
When `Config.conf_change_authorized` is set, a change it refuses (judged on the entry
alone, so every node judges alike) stays in the log as a no-op: a hostile leader can
append it, but no node's membership moves. `Config.conf_change_follows` judges a change
against the context of the change before it in the log (or in the snapshot's metadata),
so an application can refuse a change that was already carried out (a replay).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._codec import MalformedMessage, decode_conf_change, encode_conf_change
from ._log import ConflictBelowCommit, RaftLog
from ._progress import Progress, ProgressState, Tracker, VoteResult
from ._storage import Compacted, Storage, StorageError
from ._types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    InvariantViolation,
    LogIndex,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
    Term,
    invariant,
)

# A vote request sent because the leader asked us to take over (TIMEOUT_NOW): voters
# grant it even while they still hear from the current leader.
CAMPAIGN_TRANSFER = b"transfer"
# Marks the rejects of a follower that rewound its log (RawNode.rewind) and has not
# taken an append since: its leader may have it matched beyond its log now.
REJECT_REWOUND = b"rewound"

# Read requests waiting for a heartbeat quorum. Each costs a little memory until a
# majority answers; past this many, new requests are dropped and the client retries.
READ_REQUESTS_MAX = 4096

# Snapshot chunks sent ahead of the follower's acknowledgement. A small window keeps a
# fast link busy without holding many megabytes in flight per follower.
SNAPSHOT_WINDOW_CHUNKS = 4
# A campaign skips at most this many refused terms (Config.term_refused): the node keeps
# at most 1,024 refused terms (node/_healing.py REFUSED_TERMS_MAX), so this always finds
# a free one, and a judge that refuses everything cannot loop for ever.
TERMS_SKIPPED_MAX = 2048

Step = Callable[[Message], None]


@dataclass(frozen=True, kw_only=True)
class Config:
    id: NodeId
    voters: tuple[NodeId, ...]  # initial membership when storage is empty
    learners: tuple[NodeId, ...] = ()
    # Ticks without a leader before a follower campaigns; randomized in [n, 2n).
    election_tick: int = 10
    heartbeat_tick: int = 1
    rng: random.Random  # election jitter comes only from here
    applied: LogIndex = LogIndex(0)  # index the application already applied (restart)
    # Bytes of entry data per append: bounds one message and one follower write.
    max_size_per_msg: int = 1 << 20
    # Appends in flight per follower: bounds memory and resends after a loss.
    max_inflight_msgs: int = 256
    # Data proposed but not committed: a leader cut off from its followers stops
    # accepting proposals instead of growing its log without end.
    max_uncommitted_entries_size: int = 64 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_chunk_bytes: int = 1 << 20
    # Committed entry data per Ready: bounds one apply batch of the application.
    max_committed_size_per_ready: int = 16 << 20
    # Whether a configuration change takes effect. A node counts a change from the
    # moment it is in its log (see the module docstring), so this must be decidable
    # from the change alone (its context included) and give the same answer on every
    # node: a pure function, no local view. A change it refuses stays in the log as a
    # no-op on every node alike. None: every well-formed change takes effect.
    conf_change_authorized: Callable[[ConfChange], bool] | None = None
    # Whether a change may follow the one before it: called with the context of the
    # last change that took effect before it (b"": none since the initial membership)
    # and the change. Pure, like `conf_change_authorized`; a change it refuses is a
    # no-op on every node alike. None: any authorized change may follow any other.
    conf_change_follows: Callable[[bytes, ConfChange], bool] | None = None
    # Whether this node refuses a peer as leader (the application holds evidence that
    # the peer lied). A refused peer gets no vote and no pre-vote from us, and its
    # appends, heartbeats and snapshots are ignored, as if lost: Raft's safety does not
    # depend on any message arriving, so a local, changing answer is safe here (unlike
    # conf_change_authorized); it only keeps the peer from leading while a quorum of
    # honest nodes refuses it. TIMEOUT_NOW from it is ignored too. None: nobody is refused.
    leader_refused: Callable[[NodeId], bool] | None = None
    # Whether an entry of this term at this index must not enter this node's log: after
    # a rewind over a hostile leader's entries (see `RawNode.rewind`), the entries of
    # its terms above the rewind point. Appends carrying one are dropped, and a
    # candidate whose log ends with one gets no vote or pre-vote (it has not rewound
    # yet, and its log would bring the hostile entries back). None: refuse nothing.
    entry_refused: Callable[[Term, LogIndex], bool] | None = None
    # Whether a term is one a refused (hostile) node claimed leadership in. Raft
    # followers take a leader's term without checking its election, so a hostile node
    # may append in term t without having won it; an honest node elected in that same
    # term afterwards would propose blocks of the same round as the hostile ones, and an
    # honest node that attested a hostile block there could never attest its (the round
    # rule: one block per round, ledger/_rounds.py). So no node campaigns in a refused
    # term (it skips to the next one that is not) and none grants a vote or pre-vote for
    # one. Skipping terms and refusing votes are always safe in Raft. None: refuse none.
    term_refused: Callable[[Term], bool] | None = None

    def __post_init__(self) -> None:
        if self.id == NONE:
            raise ValueError("a node id must not be 0 (it means 'nobody')")
        if not 0 < self.heartbeat_tick < self.election_tick:
            raise ValueError("need 0 < heartbeat_tick < election_tick")
        if NONE in self.voters or NONE in self.learners:
            raise ValueError("node id 0 cannot be a member")
        if set(self.voters) & set(self.learners):
            raise ValueError("a node cannot be both voter and learner")
        for name in ("max_size_per_msg", "max_inflight_msgs", "snapshot_chunk_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class ProposalDropped(Exception):
    """The proposal was not appended; the client may retry (elsewhere, or later)."""


class NotLeader(ProposalDropped):
    def __init__(self, leader: NodeId) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class RaftUsageError(Exception):
    """The driver broke the RawNode contract (a bug in the caller, not in a peer)."""


@dataclass(frozen=True, slots=True)
class Status:
    id: NodeId
    term: Term
    role: Role
    leader: NodeId
    commit: LogIndex
    applied: LogIndex
    last_index: LogIndex
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    lead_transferee: NodeId = NONE


def apply_change(conf: ConfState, cc: ConfChange) -> ConfState:
    """The membership after one change. Each change sets a node's membership outright,
    so applying a change twice is harmless."""
    voters = set(conf.voters)
    learners = set(conf.learners)
    voters.discard(cc.node)
    learners.discard(cc.node)
    if cc.type == ConfChangeType.ADD_VOTER:
        voters.add(cc.node)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        learners.add(cc.node)
    return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))


@dataclass(slots=True)
class _ReadRequest:
    index: LogIndex
    request: Message
    acks: set[NodeId]


class _ReadOnly:
    """ReadIndex requests waiting for a heartbeat round that proves we still lead."""

    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, _ReadRequest] = {}
        self.queue: deque[bytes] = deque()

    def add(self, index: LogIndex, request: Message) -> bool:
        ctx = request.context
        if ctx in self.pending or len(self.queue) >= READ_REQUESTS_MAX:
            return False
        self.pending[ctx] = _ReadRequest(index, request, set())
        self.queue.append(ctx)
        return True

    def ack(self, node: NodeId, ctx: bytes) -> set[NodeId] | None:
        req = self.pending.get(ctx)
        if req is None:
            return None
        req.acks.add(node)
        return req.acks

    def advance(self, ctx: bytes) -> list[_ReadRequest]:
        """Every request up to and including `ctx` is confirmed."""
        if ctx not in self.pending:
            return []
        done = []
        while self.queue:
            head = self.queue.popleft()
            done.append(self.pending.pop(head))
            if head == ctx:
                break
        return done

    def last_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""

    def reset(self) -> None:
        self.pending.clear()
        self.queue.clear()


@dataclass(slots=True)
class _IncomingSnapshot:
    meta: SnapshotMeta
    data: bytearray


class Raft:
    """The state machine. Drivers use `RawNode`; tests may look inside."""

    def __init__(self, config: Config, storage: Storage) -> None:
        self.id = config.id
        self.config = config
        self.log = RaftLog(storage)
        self.tracker = Tracker(config.max_inflight_msgs)
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        hard, _ = storage.initial_state()
        self.term = hard.term
        self.vote = hard.vote
        self.role = Role.FOLLOWER
        self.lead = NONE
        self._step: Step = self._step_follower
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee = NONE
        self.uncommitted_size = 0
        self.read_only = _ReadOnly()
        self.pending_reads: list[Message] = []
        self.snap_in: _IncomingSnapshot | None = None
        self.appends_pending = False
        # Peer messages that contradicted what this node knows (ignored, and counted
        # so that tests and metrics can see a broken peer).
        self.peer_faults = 0
        # Messages dropped because their sender is refused as leader (Config.leader_refused).
        self.refused_messages = 0
        # Set by a rewind until an append is taken: see REJECT_REWOUND.
        self.rewound = False
        self._load_conf(storage)
        self._load_commit(hard, config.applied)
        self._become_follower(self.term, NONE)

    # -- startup -----------------------------------------------------------------------

    def _load_conf(self, storage: Storage) -> None:
        snap_meta = storage.snapshot().meta
        if snap_meta.index > 0:
            self.conf_base = snap_meta.conf
            self.conf_base_context = snap_meta.conf_context
        else:
            self.conf_base = ConfState(voters=self.config.voters, learners=self.config.learners)
            self.conf_base_context = b""
        self.conf_base_index = snap_meta.index
        self.conf_log: list[tuple[LogIndex, ConfChange]] = []
        lo, hi = self.log.first_index(), LogIndex(self.log.last_index() + 1)
        while lo < hi:
            batch = self.log.slice(lo, hi, 8 << 20)
            self.conf_log.extend(self._conf_changes(batch))
            lo = LogIndex(batch[-1].index + 1)
        self.tracker.set_conf(self.conf_at(self.log.last_index()), self.id, hi)

    def _load_commit(self, hard: HardState, applied: LogIndex) -> None:
        log = self.log
        last = log.last_index()
        if hard.commit > last:
            raise StorageError(f"hard state commit {hard.commit} lies beyond the log ({last})")
        if applied > last:
            raise StorageError(f"the application applied {applied}, beyond the log ({last})")
        # An applied entry was committed, even if that commit index was not yet synced.
        log.committed = LogIndex(max(log.committed, hard.commit, applied))
        log.applied = LogIndex(max(log.applied, applied))

    # -- membership --------------------------------------------------------------------

    def conf_at(self, index: LogIndex) -> ConfState:
        conf = self.conf_base
        for at, cc in self.conf_log:
            if at > index:
                break
            conf = apply_change(conf, cc)
        return conf

    def conf_state(self) -> ConfState:
        return self.tracker.conf_state()

    def conf_context_at(self, index: LogIndex) -> bytes:
        """The context of the last change that took effect at or before `index`."""
        context = self.conf_base_context
        for at, cc in self.conf_log:
            if at > index:
                break
            context = cc.context
        return context

    def _conf_changes(self, entries: Sequence[Entry]) -> list[tuple[LogIndex, ConfChange]]:
        """The changes in `entries` that take effect, appended after `conf_log`."""
        prior = self.conf_log[-1][1].context if self.conf_log else self.conf_base_context
        config = self.config
        return _conf_changes(entries, config.conf_change_authorized, config.conf_change_follows, prior)

    def last_conf_index(self) -> LogIndex:
        return self.conf_log[-1][0] if self.conf_log else self.conf_base_index

    def fold_conf(self, index: LogIndex) -> None:
        """Entries up to `index` were compacted: their changes become the base."""
        if index <= self.conf_base_index:
            return
        self.conf_base = self.conf_at(index)
        self.conf_base_context = self.conf_context_at(index)
        self.conf_base_index = index
        self.conf_log = [(at, cc) for at, cc in self.conf_log if at > index]

    def _note_appended(self, entries: Sequence[Entry]) -> None:
        """`entries` were written to the log, replacing anything from entries[0] on."""
        start = entries[0].index
        changed = False
        if self.conf_log and self.conf_log[-1][0] >= start:
            self.conf_log = [(at, cc) for at, cc in self.conf_log if at < start]
            changed = True
        if any(e.type == EntryType.CONF_CHANGE for e in entries):
            self.conf_log.extend(self._conf_changes(entries))
            changed = True
        if changed:
            self._conf_changed()

    def _conf_changed(self) -> None:
        was_voters = self.tracker.voters
        self.tracker.set_conf(
            self.conf_at(self.log.last_index()), self.id, LogIndex(self.log.last_index() + 1)
        )
        if self.role != Role.LEADER:
            return
        if self.lead_transferee != NONE and not self.tracker.is_voter(self.lead_transferee):
            self._abort_transfer()
        if was_voters != self.tracker.voters and self._maybe_commit():
            self._on_commit_advanced()

    def promotable(self) -> bool:
        return self.tracker.is_voter(self.id) and self.log.unstable_snapshot is None

    # -- role changes ------------------------------------------------------------------

    def _reset(self, term: Term) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.config.rng.randrange(
            self.config.election_tick, 2 * self.config.election_tick
        )
        self.lead_transferee = NONE
        self.tracker.votes = {}
        last = self.log.last_index()
        for node in self.tracker.progress:
            pr = Progress(LogIndex(last + 1), self.config.max_inflight_msgs)
            if node == self.id:
                pr.match = last
            self.tracker.progress[node] = pr
        self.read_only.reset()
        self.pending_reads = []
        self.snap_in = None

    def _become_follower(self, term: Term, lead: NodeId) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER
        self._step = self._step_follower

    def _become_pre_candidate(self) -> None:
        invariant(self.role != Role.LEADER, "a leader cannot become a pre-candidate")
        # Pre-vote changes neither term nor vote: a node that cannot win disturbs nobody.
        self.tracker.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE
        self._step = self._step_candidate

    def _next_campaign_term(self) -> Term:
        """The term a campaign stands in: the next one that is not refused."""
        term = Term(self.term + 1)
        refused = self.config.term_refused
        if refused is not None:
            for _ in range(TERMS_SKIPPED_MAX):
                if not refused(term):
                    break
                term = Term(term + 1)
        return term

    def _become_candidate(self) -> None:
        invariant(self.role != Role.LEADER, "a leader cannot become a candidate")
        self._reset(self._next_campaign_term())
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step = self._step_candidate

    def _become_leader(self) -> None:
        invariant(self.role == Role.CANDIDATE, "only a candidate can become leader")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self._step = self._step_leader
        self.tracker.progress[self.id].become_replicate()
        self.uncommitted_size = 0
        # An empty entry of the new term: once it commits, everything before it is
        # committed too (entries of older terms never commit by counting, Figure 8).
        self._append([Entry(self.term, LogIndex(0))])

    # -- ticks -------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                if not self.tracker.quorum_active(self.id):
                    self._become_follower(self.term, NONE)
                    return
                self.tracker.reset_recent_active(self.id)
            # A transfer that did not finish within an election timeout is abandoned.
            self._abort_transfer()
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_only.last_ctx())

    # -- elections ---------------------------------------------------------------------

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER or not self.promotable():
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            vote_type, term = MessageType.PRE_VOTE, self._next_campaign_term()
        else:
            self._become_candidate()
            vote_type, term = MessageType.VOTE, self.term
        self.tracker.record_vote(self.id, True)
        if self.tracker.tally_votes()[2] == VoteResult.WON:
            self._won_election(pre, transfer)
            return
        last = self.log.last_index()
        last_term = self.log.last_term()
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for voter in sorted(self.tracker.voters):
            if voter != self.id:
                self._send(vote_type, voter, term=term, index=last, log_term=last_term, context=ctx)

    def _won_election(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._campaign(pre=False, transfer=transfer)
        else:
            self._become_leader()
            self._bcast_append()

    def _on_vote_request(self, m: Message) -> None:
        pre = m.type == MessageType.PRE_VOTE
        resp = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
        can_vote = (
            self.vote == m.frm or (self.vote == NONE and self.lead == NONE) or (pre and m.term > self.term)
        )
        refused = self.config.entry_refused
        if refused is not None and refused(m.log_term, m.index):
            can_vote = False
        term_refused = self.config.term_refused
        if term_refused is not None and term_refused(m.term):
            can_vote = False
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A granted answer carries the candidate's term, so it counts for that term.
            self._send(resp, m.frm, term=m.term)
            if not pre:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, m.frm, reject=True)

    # -- step: entry point and term rules ----------------------------------------------

    def step(self, m: Message) -> None:
        if self._refused_as_leader(m):
            # Dropped before the term rules: a refused node's higher term moves nobody.
            self.refused_messages += 1
            return
        if m.term == 0:
            pass  # a local message, or one forwarded as local (proposal, read, transfer)
        elif m.term > self.term:
            if not self._on_higher_term(m):
                return
        elif m.term < self.term:
            self._on_lower_term(m)
            return
        if m.type == MessageType.HUP:
            self._hup(transfer=False)
        elif m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._on_vote_request(m)
        else:
            self._step(m)

    def _refused_as_leader(self, m: Message) -> bool:
        """A vote request, or a leader's message, from a peer the application refuses as
        leader: dropped before it can change our term, vote or leader."""
        judge = self.config.leader_refused
        if judge is None or m.frm in (NONE, self.id) or m.type not in _LEADERSHIP_MESSAGES:
            return False
        return judge(m.frm)

    # -- rewind ------------------------------------------------------------------------

    def rewind(self, index: LogIndex, floor: LogIndex) -> HardState:
        """Forget the log above `index`, committed or not, never below `floor`.

        Raft never takes back a committed entry; this does, on purpose and narrowly:
        the application found that a hostile leader committed entries here that can
        never become final (Tamga: evidence of equivocation), rolled its own state back
        to its last final point, and passes that point's index as `floor`. Returns the
        hard state that the caller persists together with the truncation."""
        log = self.log
        if not floor <= index:
            raise RaftUsageError(f"cannot rewind to {index}: below the floor {floor}")
        if index > log.last_index():
            raise RaftUsageError(f"cannot rewind to {index}: beyond the last index {log.last_index()}")
        if index < log.first_index() - 1:
            raise RaftUsageError(f"cannot rewind to {index}: compacted (first index {log.first_index()})")
        if log.unstable_snapshot is not None or log.unstable_offset <= index:
            raise RaftUsageError("persist the log up to the rewind index first (advance the Ready)")
        log.unstable_entries = []
        log.unstable_offset = LogIndex(index + 1)
        log.committed = LogIndex(min(log.committed, index))
        log.applied = LogIndex(min(log.applied, index))
        self.uncommitted_size = 0
        self.conf_log = [(at, cc) for at, cc in self.conf_log if at <= index]
        self.tracker.set_conf(self.conf_at(index), self.id, LogIndex(index + 1))
        # A follower of nobody, in the same term with the same vote (Raft's vote rule
        # still holds); the next honest election decides who leads from here.
        self._become_follower(self.term, NONE)
        self.rewound = True
        return HardState(self.term, self.vote, log.committed)

    def _on_higher_term(self, m: Message) -> bool:
        """Adopt a higher term if the message warrants it; False to ignore the message."""
        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            forced = m.context == CAMPAIGN_TRANSFER
            in_lease = (
                self.config.check_quorum
                and self.lead != NONE
                and self.election_elapsed < self.config.election_tick
            )
            if in_lease and not forced:
                return False  # we heard from a leader recently: this candidate disrupts
        if m.type == MessageType.PRE_VOTE:
            return True  # answering a pre-vote never changes our term
        if m.type == MessageType.PRE_VOTE_RESP and not m.reject:
            return True  # a grant for our own pre-vote, carrying the future term
        leader_msg = m.type in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP)
        self._become_follower(m.term, m.frm if leader_msg else NONE)
        return True

    def _on_lower_term(self, m: Message) -> None:
        if m.type in (MessageType.APP, MessageType.HEARTBEAT) and (
            self.config.check_quorum or self.config.pre_vote
        ):
            # A stale leader (cut off while we moved on) would otherwise never learn of
            # the newer term, since with pre-vote and check-quorum we do not campaign
            # against it loudly. This answer makes it step down.
            self._send(MessageType.APP_RESP, m.frm)
        elif m.type == MessageType.PRE_VOTE:
            self._send(MessageType.PRE_VOTE_RESP, m.frm, reject=True)

    # -- step: followers ---------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP):
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_from_leader(m)
        elif t == MessageType.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t == MessageType.TRANSFER_LEADER and self.lead != NONE:
            self.msgs.append(Message(MessageType.TRANSFER_LEADER, to=self.lead, frm=m.frm))
        elif t == MessageType.READ_INDEX and self.lead != NONE:
            self.msgs.append(Message(MessageType.READ_INDEX, to=self.lead, frm=self.id, context=m.context))
        elif t == MessageType.READ_INDEX_RESP and m.frm == self.lead:
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP):
            self._become_follower(m.term, m.frm)
            self._handle_from_leader(m)
            return
        pre = self.role == Role.PRE_CANDIDATE
        if t != (MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP):
            return
        self.tracker.record_vote(m.frm, not m.reject)
        result = self.tracker.tally_votes()[2]
        if result == VoteResult.WON:
            self._won_election(pre, transfer=False)
        elif result == VoteResult.LOST:
            self._become_follower(self.term, NONE)

    def _handle_from_leader(self, m: Message) -> None:
        if m.type == MessageType.APP:
            self._handle_append(m)
        elif m.type == MessageType.HEARTBEAT:
            self._handle_heartbeat(m)
        else:
            self._handle_snapshot_chunk(m)

    def _handle_append(self, m: Message) -> None:
        log = self.log
        refused = self.config.entry_refused
        if refused is not None and any(refused(e.term, e.index) for e in m.entries):
            self.refused_messages += 1
            return
        if m.index < log.committed:
            self._send(MessageType.APP_RESP, m.frm, index=log.committed)
            return
        try:
            result = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        except ConflictBelowCommit:
            self.peer_faults += 1
            return
        if result is not None:
            self.rewound = False
            last_new, first_written = result
            if first_written:
                self._note_appended(m.entries[first_written - m.index - 1 :])
            self._send(MessageType.APP_RESP, m.frm, index=last_new)
            return
        hint = LogIndex(min(m.index, log.last_index()))
        hint, hint_term = log.find_conflict_by_term(hint, m.log_term)
        self._send(
            MessageType.APP_RESP,
            m.frm,
            index=m.index,
            reject=True,
            reject_hint=hint,
            log_term=hint_term,
            context=REJECT_REWOUND if self.rewound else b"",
        )

    def _handle_heartbeat(self, m: Message) -> None:
        # The leader sends min(our match, its commit), so this never exceeds our log
        # unless the leader is broken.
        if m.commit <= self.log.last_index():
            self.log.commit_to(m.commit)
        else:
            self.peer_faults += 1
        self._send(MessageType.HEARTBEAT_RESP, m.frm, context=m.context)

    def _handle_snapshot_chunk(self, m: Message) -> None:
        chunk = m.snapshot
        if chunk is None:
            self.peer_faults += 1
            return
        meta = chunk.meta
        if meta.index <= self.log.committed:
            # We already hold everything the snapshot covers: say how far we are.
            self.snap_in = None
            self._send(MessageType.APP_RESP, m.frm, index=self.log.committed)
            return
        buf = self.snap_in
        if m.snap_offset == 0 and (buf is None or buf.meta != meta):
            buf = self.snap_in = _IncomingSnapshot(meta, bytearray())
        if buf is None or buf.meta != meta or m.snap_offset > len(buf.data):
            # A chunk is missing (lost, or we restarted): ask for what comes next.
            have = len(buf.data) if buf is not None and buf.meta == meta else 0
            self._send(MessageType.SNAP_RESP, m.frm, index=meta.index, snap_offset=have, reject=True)
            return
        if m.snap_offset < len(buf.data) or not m.snap_done:
            if m.snap_offset == len(buf.data):
                buf.data += chunk.data
            self._send(MessageType.SNAP_RESP, m.frm, index=meta.index, snap_offset=len(buf.data))
            return
        buf.data += chunk.data
        self.snap_in = None
        if self._restore(Snapshot(meta, bytes(buf.data))):
            self._send(MessageType.APP_RESP, m.frm, index=self.log.last_index())
        else:
            self._send(MessageType.APP_RESP, m.frm, index=self.log.committed)

    def _restore(self, snap: Snapshot) -> bool:
        """Install a snapshot from the leader; False if our log already covers it."""
        meta = snap.meta
        if meta.index <= self.log.committed:
            return False
        invariant(self.role == Role.FOLLOWER, "only a follower installs a snapshot")
        if self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)  # our log has it: just move the commit
            return False
        self.log.restore(snap)
        self.conf_base = meta.conf
        self.conf_base_context = meta.conf_context
        self.conf_base_index = meta.index
        self.conf_log = []
        self._conf_changed()
        return True

    # -- step: leader ------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MessageType.APP_RESP:
            self._handle_append_response(m)
        elif t == MessageType.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m)
        elif t == MessageType.SNAP_RESP:
            self._handle_snapshot_response(m)
        elif t == MessageType.READ_INDEX:
            self._handle_read_index(m)
        elif t == MessageType.TRANSFER_LEADER:
            self._handle_transfer(m.frm)
        elif t == MessageType.PROPOSE:
            try:
                for e in m.entries:
                    self.propose(EntryType.NORMAL, e.data)
            except ProposalDropped:
                pass  # a forwarded proposal has no one to tell; its client times out

    def _handle_append_response(self, m: Message) -> None:
        pr = self.tracker.progress.get(m.frm)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            self._handle_append_reject(m, pr)
            return
        if m.index > self.log.last_index():
            self.peer_faults += 1
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._on_commit_advanced()
        elif was_paused:
            self._send_append(m.frm)
        if self.role != Role.LEADER:
            return  # stepped down after committing our own removal
        while self._send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(MessageType.TIMEOUT_NOW, m.frm)

    def _handle_append_reject(self, m: Message, pr: Progress) -> None:
        if m.context == REJECT_REWOUND and m.reject_hint < pr.match and pr.state != ProgressState.SNAPSHOT:
            # The follower rewound (RawNode.rewind) below what it had acknowledged. Raft
            # alone never loses a match, so a reject below it is otherwise taken as
            # stale; ignoring this one would leave the follower stuck for ever.
            pr.lost_entries(m.reject_hint)
            self._send_append(m.frm)
            return
        next_probe = m.reject_hint
        if m.log_term > 0:
            # Skip every entry of ours whose term is above the follower's term there.
            next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self._send_append(m.frm)

    def _handle_heartbeat_response(self, m: Message) -> None:
        pr = self.tracker.progress.get(m.frm)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.state == ProgressState.SNAPSHOT:
            self._resend_stalled_snapshot(m.frm, pr)
        elif pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            self._send_append(m.frm)
        if m.context:
            self._on_read_ack(m.frm, m.context)

    def _maybe_commit(self) -> bool:
        index = self.tracker.committed()
        if index <= self.log.committed or self.log.term_or_none(index) != self.term:
            return False
        self.log.commit_to(index)
        return True

    def _on_commit_advanced(self) -> None:
        if self.pending_reads and self._committed_in_term():
            reads, self.pending_reads = self.pending_reads, []
            for req in reads:
                self._start_read(req)
        self._bcast_append()
        if not self.tracker.is_voter(self.id) and self.last_conf_index() <= self.log.committed:
            self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Our own removal is committed: hand over to the most caught-up voter, go."""
        last = self.log.last_index()
        best = [v for v in sorted(self.tracker.voters) if self.tracker.progress[v].match == last]
        if best:
            self._send(MessageType.TIMEOUT_NOW, best[0])
        self._become_follower(self.term, NONE)

    # -- replication -------------------------------------------------------------------

    def _bcast_append(self) -> None:
        if self.role != Role.LEADER:
            return  # we stepped down on the way here (our removal committed)
        for node in self.tracker.progress:
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        committed = self.log.committed
        for node, pr in self.tracker.progress.items():
            if node != self.id:
                self._send(MessageType.HEARTBEAT, node, commit=min(pr.match, committed), context=ctx)

    def _send_append(self, to: NodeId, send_if_empty: bool = True) -> bool:
        """Send `to` what it lacks (or a snapshot); False if nothing could be sent."""
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        prev = LogIndex(pr.next - 1)
        try:
            prev_term = log.term(prev)
            entries = log.slice(pr.next, LogIndex(log.last_index() + 1), self.config.max_size_per_msg)
        except Compacted:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self._send(
            MessageType.APP,
            to,
            index=prev,
            log_term=prev_term,
            entries=tuple(entries),
            commit=log.committed,
        )
        if entries:
            pr.sent_entries(entries[-1].index)
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: NodeId, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # it may be down; do not ship a snapshot into the void
        snap = self.log.storage.snapshot()
        invariant(snap.meta.index > 0, "entries are compacted but there is no snapshot")
        pr.become_snapshot(snap)
        self._send_snapshot_chunks(to, pr)
        return True

    def _send_snapshot_chunks(self, to: NodeId, pr: Progress) -> None:
        tr = pr.transfer
        if tr is None:
            raise InvariantViolation("a progress in SNAPSHOT state has no transfer")
        data = tr.snapshot.data
        chunk_bytes = self.config.snapshot_chunk_bytes
        while not tr.done_sent and tr.sent_bytes - tr.acked_bytes < (SNAPSHOT_WINDOW_CHUNKS * chunk_bytes):
            offset = tr.sent_bytes
            piece = data[offset : offset + chunk_bytes]
            done = offset + len(piece) >= len(data)
            self._send(
                MessageType.SNAP,
                to,
                snapshot=Snapshot(tr.snapshot.meta, piece),
                snap_offset=offset,
                snap_done=done,
            )
            tr.sent_bytes = offset + len(piece)
            tr.done_sent = done

    def _handle_snapshot_response(self, m: Message) -> None:
        pr = self.tracker.progress.get(m.frm)
        if pr is None or pr.transfer is None or m.index != pr.pending_snapshot:
            return
        pr.recent_active = True
        tr = pr.transfer
        if m.snap_offset > len(tr.snapshot.data):
            self.peer_faults += 1
            return
        if m.reject:
            tr.acked_bytes = m.snap_offset  # the follower lost or missed chunks: go back
        elif m.snap_offset > tr.acked_bytes:
            tr.acked_bytes = m.snap_offset
        else:
            return  # a duplicate acknowledgement
        tr.sent_bytes = tr.acked_bytes
        tr.done_sent = False
        self._send_snapshot_chunks(m.frm, pr)

    def _resend_stalled_snapshot(self, to: NodeId, pr: Progress) -> None:
        """No acknowledgement since the last heartbeat: assume a chunk was lost."""
        tr = pr.transfer
        if tr is None:
            return
        if tr.acked_bytes == tr.acked_at_heartbeat:
            tr.sent_bytes = tr.acked_bytes
            tr.done_sent = False
            self._send_snapshot_chunks(to, pr)
        tr.acked_at_heartbeat = tr.acked_bytes

    # -- proposals ---------------------------------------------------------------------

    def propose(self, kind: EntryType, data: bytes) -> tuple[Term, LogIndex]:
        if self.role != Role.LEADER:
            raise NotLeader(self.lead)
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        if not self.tracker.is_voter(self.id):
            raise ProposalDropped("this leader is being removed from the cluster")
        if kind == EntryType.CONF_CHANGE:
            self._check_conf_change(data)
        size = len(data)
        limit = self.config.max_uncommitted_entries_size
        if self.uncommitted_size > 0 and size > 0 and self.uncommitted_size + size > limit:
            raise ProposalDropped("too much proposed data is not yet committed")
        self.uncommitted_size += size
        index = self._append([Entry(self.term, LogIndex(0), kind, data)])
        # Appends go out when the driver next asks for a Ready, so that every
        # proposal made in between travels in one message per follower.
        self.appends_pending = True
        return self.term, index

    def flush_appends(self) -> None:
        if self.appends_pending:
            self.appends_pending = False
            self._bcast_append()

    def _check_conf_change(self, data: bytes) -> None:
        if self.last_conf_index() > self.log.committed:
            raise ProposalDropped("a configuration change is already pending")
        if not self._committed_in_term():
            raise ProposalDropped("the leader has not yet committed an entry of its term")
        cc = decode_conf_change(data)
        if not _authorized(self.config.conf_change_authorized, cc):
            raise ProposalDropped("the configuration change is not authorized")
        prior = self.conf_log[-1][1].context if self.conf_log else self.conf_base_context
        if not _follows(self.config.conf_change_follows, prior, cc):
            raise ProposalDropped("the configuration change may not follow the one before it")
        new = apply_change(self.conf_state(), cc)
        if not new.voters:
            raise ProposalDropped("the last voter cannot be removed")

    def _append(self, entries: list[Entry]) -> LogIndex:
        """Append new entries of ours (their index fields are ignored)."""
        last = self.log.last_index()
        numbered = [Entry(self.term, LogIndex(last + 1 + i), e.type, e.data) for i, e in enumerate(entries)]
        last = self.log.append(numbered)
        self.tracker.progress[self.id].maybe_update(last)
        self._note_appended(numbered)
        if self._maybe_commit():
            self._on_commit_advanced()
        return last

    def reduce_uncommitted(self, committed: Sequence[Entry]) -> None:
        if self.role == Role.LEADER:
            size = sum(len(e.data) for e in committed)
            self.uncommitted_size = max(0, self.uncommitted_size - size)

    def _committed_in_term(self) -> bool:
        return self.log.term_or_none(self.log.committed) == self.term

    # -- ReadIndex ---------------------------------------------------------------------

    def _handle_read_index(self, m: Message) -> None:
        if self.tracker.voters == frozenset({self.id}):
            self._answer_read(m, self.log.committed)
        elif not self._committed_in_term():
            # Our commit index may lag the true one until our first entry commits.
            if len(self.pending_reads) < READ_REQUESTS_MAX:
                self.pending_reads.append(m)
        else:
            self._start_read(m)

    def _start_read(self, m: Message) -> None:
        if not self.read_only.add(self.log.committed, m):
            return
        self._on_read_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _on_read_ack(self, node: NodeId, ctx: bytes) -> None:
        acks = self.read_only.ack(node, ctx)
        if acks is None:
            return
        if sum(1 for v in self.tracker.voters if v in acks) < self.tracker.quorum():
            return
        for req in self.read_only.advance(ctx):
            self._answer_read(req.request, req.index)

    def _answer_read(self, m: Message, index: LogIndex) -> None:
        if m.frm == self.id:
            self.read_states.append(ReadState(index, m.context))
        else:
            self._send(MessageType.READ_INDEX_RESP, m.frm, index=index, context=m.context)

    # -- leadership transfer -----------------------------------------------------------

    def _handle_transfer(self, transferee: NodeId) -> None:
        if not self.tracker.is_voter(transferee):
            return  # learners and removed nodes cannot lead
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self._abort_transfer()
        if transferee == self.id:
            return
        # The transfer must finish within one election timeout (see _tick_heartbeat).
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if self.tracker.progress[transferee].match == self.log.last_index():
            self._send(MessageType.TIMEOUT_NOW, transferee)
        else:
            self._send_append(transferee)

    def _abort_transfer(self) -> None:
        self.lead_transferee = NONE

    # -- local requests from the RawNode -----------------------------------------------

    def report_unreachable(self, node: NodeId) -> None:
        pr = self.tracker.progress.get(node)
        if self.role == Role.LEADER and pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node: NodeId, ok: bool) -> None:
        pr = self.tracker.progress.get(node)
        if self.role != Role.LEADER or pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = LogIndex(0)
        pr.become_probe()
        pr.probe_sent = True  # wait for the next heartbeat answer before probing

    def _send(self, kind: MessageType, to: NodeId, **fields: Any) -> None:
        fields.setdefault("term", self.term)
        self.msgs.append(Message(kind, to, self.id, **fields))


def _conf_changes(
    entries: Sequence[Entry],
    authorized: Callable[[ConfChange], bool] | None,
    follows: Callable[[bytes, ConfChange], bool] | None,
    prior: bytes,
) -> list[tuple[LogIndex, ConfChange]]:
    # A malformed or unauthorized change is skipped; every node skips the same entry
    # the same way, since the verdicts depend on the log's bytes alone (the entry, and
    # the context of the change that took effect before it).
    out = []
    for index, cc in _pending_conf(entries):
        if cc is not None and _authorized(authorized, cc) and _follows(follows, prior, cc):
            out.append((index, cc))
            prior = cc.context
    return out


def _follows(follows: Callable[[bytes, ConfChange], bool] | None, prior: bytes, cc: ConfChange) -> bool:
    if follows is None:
        return True
    try:
        return follows(prior, cc) is True
    except Exception:  # noqa: BLE001 - a judge that fails refuses, alike on every node
        return False


def _authorized(authorized: Callable[[ConfChange], bool] | None, cc: ConfChange) -> bool:
    if authorized is None:
        return True
    try:
        return authorized(cc) is True
    except Exception:  # noqa: BLE001 - a judge that fails refuses, alike on every node
        return False


class RawNode:
    """The driver's handle on one Raft node; see the module docstring for the contract."""

    def __init__(self, config: Config, storage: Storage) -> None:
        self.raft = Raft(config, storage)
        r = self.raft
        self._prev_soft = SoftState(r.lead, r.role)
        self._prev_hard = HardState(r.term, r.vote, r.log.committed)
        self._outstanding: Ready | None = None
        # Index of the last committed entry handed out (applied once advance() comes).
        self._applying = r.log.applied
        # Configuration changes handed out in committed entries, to apply in order.
        self._conf_pending: deque[tuple[LogIndex, ConfChange | None]] = deque()

    @property
    def id(self) -> NodeId:
        return self.raft.id

    def tick(self) -> None:
        self.raft.tick()

    def step(self, msg: Message) -> None:
        """Feed a message from a peer; malformed or stale messages are ignored."""
        if _well_formed(msg, self.raft.id):
            self.raft.step(msg)

    def propose(self, data: bytes) -> tuple[Term, LogIndex]:
        return self.raft.propose(EntryType.NORMAL, data)

    def propose_conf_change(self, cc: ConfChange) -> tuple[Term, LogIndex]:
        if cc.node == NONE:
            raise ProposalDropped("a configuration change must name a node")
        return self.raft.propose(EntryType.CONF_CHANGE, encode_conf_change(cc))

    def campaign(self) -> None:
        self.raft.step(Message(MessageType.HUP, to=self.raft.id, frm=self.raft.id))

    def transfer_leader(self, to: NodeId) -> None:
        # As in etcd, a transfer request names the transferee in `frm`.
        self.raft.step(Message(MessageType.TRANSFER_LEADER, to=self.raft.id, frm=to))

    def read_index(self, ctx: bytes) -> None:
        if not ctx:
            raise RaftUsageError("a read request needs a non-empty context to match it")
        self.raft.step(Message(MessageType.READ_INDEX, to=self.raft.id, frm=self.raft.id, context=ctx))

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        r = self.raft
        r.flush_appends()
        log = r.log
        prev = self._prev_hard
        return bool(
            r.msgs
            or r.read_states
            or log.unstable_entries
            or log.unstable_snapshot is not None
            or log.has_next_committed()
            or r.lead != self._prev_soft.leader
            or r.role != self._prev_soft.role
            or r.term != prev.term
            or r.vote != prev.vote
            or log.committed != prev.commit
        )

    def ready(self) -> Ready:
        if self._outstanding is not None:
            raise RaftUsageError("advance() the previous Ready before asking for the next")
        r = self.raft
        r.flush_appends()
        log = r.log
        soft = SoftState(r.lead, r.role)
        hard = HardState(r.term, r.vote, log.committed)
        committed = log.next_committed(r.config.max_committed_size_per_ready)
        prev = self._prev_hard
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != prev else None,
            entries=tuple(log.unstable_entries),
            snapshot=log.unstable_snapshot,
            committed_entries=tuple(committed),
            messages=tuple(r.msgs),
            read_states=tuple(r.read_states),
            must_sync=bool(
                log.unstable_entries
                or log.unstable_snapshot is not None
                or hard.term != prev.term
                or hard.vote != prev.vote
            ),
        )
        r.msgs = []
        r.read_states = []
        self._prev_soft = soft
        self._prev_hard = hard
        if committed:
            self._applying = committed[-1].index
            self._conf_pending.extend(_pending_conf(committed))
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._outstanding:
            raise RaftUsageError("advance() takes the Ready that ready() returned last")
        log = self.raft.log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.meta.index)
            log.applied = LogIndex(max(log.applied, rd.snapshot.meta.index))
            self._applying = LogIndex(max(self._applying, log.applied))
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
            self.raft.reduce_uncommitted(rd.committed_entries)
        self._outstanding = None

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """The membership once the committed change `cc` (handed out in a Ready) applies.

        The core already uses the latest membership in its log; this tells the
        application what the membership is as of that entry, for its own records.
        """
        while self._conf_pending:
            index, pending = self._conf_pending.popleft()
            if pending == cc:
                return self.raft.conf_at(index)
        raise RaftUsageError(f"{cc} was not handed out as a committed entry to apply")

    def report_unreachable(self, node: NodeId) -> None:
        self.raft.report_unreachable(node)

    def report_snapshot(self, node: NodeId, ok: bool) -> None:
        self.raft.report_snapshot(node, ok)

    def compact(self, index: LogIndex, data: bytes) -> None:
        """The application took a snapshot (`data`) of its state at `index`."""
        r = self.raft
        storage = r.log.storage
        if index < storage.first_index():
            return  # already compacted that far
        if index > max(r.log.applied, self._applying):
            raise RaftUsageError(f"cannot snapshot at {index}: not applied yet")
        meta = SnapshotMeta(index=index, term=r.log.term(index), conf=r.conf_at(index),
                            conf_context=r.conf_context_at(index))
        storage.compact(index, Snapshot(meta, data))
        r.fold_conf(index)

    def rewind(self, index: LogIndex, floor: LogIndex) -> None:
        """Discard the log above `index` (>= `floor`, the last final point) even where it
        was committed, and persist that atomically: one storage write that truncates
        the log and lowers the commit index, synced before this returns. The
        application must already have rolled its state back to `index` or below.
        Only between Readies; see `Raft.rewind` for when this is legitimate."""
        if self._outstanding is not None:
            raise RaftUsageError("advance() the outstanding Ready before rewinding")
        r = self.raft
        hard = r.rewind(index, floor)
        r.log.storage.rewind(index, hard)
        self._applying = LogIndex(min(self._applying, index))
        self._conf_pending = deque((at, cc) for at, cc in self._conf_pending if at <= index)
        self._prev_hard = hard
        self._prev_soft = SoftState(r.lead, r.role)

    def status(self) -> Status:
        r = self.raft
        conf = r.conf_state()
        return Status(
            id=r.id,
            term=r.term,
            role=r.role,
            leader=r.lead,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            voters=conf.voters,
            learners=conf.learners,
            lead_transferee=r.lead_transferee,
        )


def _pending_conf(entries: Sequence[Entry]) -> list[tuple[LogIndex, ConfChange | None]]:
    out: list[tuple[LogIndex, ConfChange | None]] = []
    for e in entries:
        if e.type == EntryType.CONF_CHANGE:
            try:
                out.append((e.index, decode_conf_change(e.data)))
            except MalformedMessage:
                out.append((e.index, None))
    return out


# Message types that only the local node creates; a peer sending one is ignored.
_LOCAL_ONLY = frozenset({MessageType.HUP})
# What a peer sends to become or stay leader: refused from a peer the application
# refuses as leader (Config.leader_refused).
_LEADERSHIP_MESSAGES = frozenset({MessageType.VOTE, MessageType.PRE_VOTE, MessageType.APP,
                                  MessageType.HEARTBEAT, MessageType.SNAP, MessageType.TIMEOUT_NOW})
# Requests a follower forwards to the leader unchanged, without a term (as in etcd).
_FORWARDED = frozenset({MessageType.PROPOSE, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER})


def _well_formed(m: Message, self_id: NodeId) -> bool:
    """Whether a peer's message is shaped as Raft requires; anything else is dropped."""
    if m.to != self_id or m.frm == NONE or m.type in _LOCAL_ONLY:
        return False
    if m.type in _FORWARDED:
        return m.term == 0 and (m.type != MessageType.PROPOSE or _normal_entries(m))
    if m.term == 0 or m.frm == self_id:
        return False
    if m.type == MessageType.APP:
        return _entries_follow(m)
    if m.type == MessageType.SNAP:
        s = m.snapshot
        return s is not None and 0 < s.meta.term <= m.term and s.meta.index > 0
    return True



def _normal_entries(m: Message) -> bool:
    return bool(m.entries) and all(e.type == EntryType.NORMAL for e in m.entries)


def _entries_follow(m: Message) -> bool:
    """Entries of an append follow `index` without gaps, with terms that never drop."""
    prev_term = m.log_term
    expected = m.index + 1
    for e in m.entries:
        if e.index != expected or e.term < prev_term or e.term > m.term:
            return False
        prev_term = e.term
        expected += 1
    return True

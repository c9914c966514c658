"""What a leader knows about each follower: how far its log matches, and how to feed it.

After etcd's `tracker` package. A follower's `Progress` is in one of three states:

- PROBE: the leader does not know where the follower's log matches its own. It sends
  one append at a time and waits for the answer (or the next heartbeat) before it
  sends another, so a follower that is far behind does not receive a storm of appends
  that it will reject.
- REPLICATE: the logs match up to `match`; the leader streams appends optimistically,
  at most `Inflights.capacity` of them unacknowledged at once.
- SNAPSHOT: the entries the follower needs are compacted; the leader sends the
  snapshot in chunks and nothing else until the follower has installed it.

`Tracker` holds the membership and answers the quorum questions (what is committed,
who won the vote, is the leader still in touch with a majority).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from ._types import ConfState, LogIndex, NodeId, Snapshot, invariant


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class VoteResult(enum.IntEnum):
    PENDING = 0
    WON = 1
    LOST = 2


class Inflights:
    """The last index of each append sent to a follower in REPLICATE and not yet acked."""

    __slots__ = ("capacity", "_last_indexes")

    def __init__(self, capacity: int) -> None:
        invariant(capacity > 0, "inflights capacity must be positive")
        self.capacity = capacity
        self._last_indexes: deque[LogIndex] = deque()

    def add(self, last_index: LogIndex) -> None:
        invariant(not self.full(), "an append was sent while the inflight window was full")
        invariant(
            not self._last_indexes or self._last_indexes[-1] < last_index,
            "inflight appends must be sent in log order",
        )
        self._last_indexes.append(last_index)

    def free_le(self, index: LogIndex) -> None:
        """The follower acknowledged everything up to `index`."""
        pending = self._last_indexes
        while pending and pending[0] <= index:
            pending.popleft()

    def free_first_one(self) -> None:
        if self._last_indexes:
            self._last_indexes.popleft()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def count(self) -> int:
        return len(self._last_indexes)

    def reset(self) -> None:
        self._last_indexes.clear()


@dataclass(slots=True)
class SnapshotTransfer:
    """A snapshot being sent in chunks: the follower has acked `acked_bytes` of it."""

    snapshot: Snapshot
    acked_bytes: int = 0
    sent_bytes: int = 0
    # The last chunk went out (and has not been found lost since).
    done_sent: bool = False
    # `acked_bytes` at the previous heartbeat answer: no progress since means a loss.
    acked_at_heartbeat: int = -1


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "pending_snapshot",
        "recent_active",
        "inflights",
        "transfer",
    )

    def __init__(self, next_index: LogIndex, max_inflight: int) -> None:
        self.match = LogIndex(0)
        self.next = next_index
        self.state = ProgressState.PROBE
        # In PROBE: an append was sent and neither its answer nor a heartbeat came back.
        self.probe_sent = False
        self.pending_snapshot = LogIndex(0)
        # Whether the follower answered since the last check-quorum round.
        self.recent_active = True
        self.inflights = Inflights(max_inflight)
        self.transfer: SnapshotTransfer | None = None

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = LogIndex(0)
        self.state = state
        self.inflights.reset()
        self.transfer = None

    def become_probe(self) -> None:
        # Coming out of SNAPSHOT, the follower holds at least the snapshot: probe after it.
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = LogIndex(max(self.match + 1, pending + 1))
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = LogIndex(self.match + 1)

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = LogIndex(self.match + 1)

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot.meta.index
        self.transfer = SnapshotTransfer(snapshot)

    def lost_entries(self, index: LogIndex) -> None:
        """The follower no longer holds what it acknowledged beyond `index`: its
        application rewound its log (RawNode.rewind). Probe again from there."""
        self.match = index
        self._reset_state(ProgressState.PROBE)
        self.next = LogIndex(index + 1)

    def maybe_update(self, index: LogIndex) -> bool:
        """The follower's log matches up to `index`; False if that is old news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = LogIndex(index + 1)
        return updated

    def maybe_decr_to(self, rejected: LogIndex, match_hint: LogIndex) -> bool:
        """The follower rejected an append after `rejected`; False if the reject is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = LogIndex(self.match + 1)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = LogIndex(max(min(rejected, match_hint + 1), self.match + 1))
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: LogIndex) -> None:
        """An append carrying entries up to `last_index` left for this follower."""
        if self.state == ProgressState.REPLICATE:
            self.next = LogIndex(last_index + 1)
            self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True


class Tracker:
    """Membership and per-node progress, as seen by one node."""

    __slots__ = ("voters", "learners", "progress", "votes", "max_inflight")

    def __init__(self, max_inflight: int) -> None:
        self.voters: frozenset[NodeId] = frozenset()
        self.learners: frozenset[NodeId] = frozenset()
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self.max_inflight = max_inflight

    def conf_state(self) -> ConfState:
        return ConfState(voters=tuple(sorted(self.voters)), learners=tuple(sorted(self.learners)))

    def set_conf(self, conf: ConfState, self_id: NodeId, next_index: LogIndex) -> None:
        """Adopt a membership; new members get a fresh progress probing at `next_index`."""
        self.voters = frozenset(conf.voters)
        self.learners = frozenset(conf.learners)
        members = self.voters | self.learners | {self_id}
        for node in sorted(members):
            if node not in self.progress:
                self.progress[node] = Progress(next_index, self.max_inflight)
        for node in [n for n in self.progress if n not in members]:
            del self.progress[node]

    def is_voter(self, node: NodeId) -> bool:
        return node in self.voters

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def committed(self) -> LogIndex:
        """The highest index that a majority of voters holds."""
        invariant(bool(self.voters), "a configuration without voters cannot commit")
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        return matches[self.quorum() - 1]

    def quorum_active(self, self_id: NodeId) -> bool:
        active = sum(1 for v in self.voters if v == self_id or self.progress[v].recent_active)
        return active >= self.quorum()

    def reset_recent_active(self, self_id: NodeId) -> None:
        for node, pr in self.progress.items():
            pr.recent_active = node == self_id

    def record_vote(self, node: NodeId, granted: bool) -> None:
        if node not in self.votes:
            self.votes[node] = granted

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        quorum = self.quorum()
        if granted >= quorum:
            return granted, rejected, VoteResult.WON
        if rejected > len(self.voters) - quorum:
            return granted, rejected, VoteResult.LOST
        return granted, rejected, VoteResult.PENDING

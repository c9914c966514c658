"""The values the Raft core exchanges with its driver: entries, hard state, messages, Ready.

They are plain frozen dataclasses so that the core stays free of I/O; their wire form
(msgpack) lives in `_codec.py`. Entries carry opaque bytes: nothing here knows what the
application stores in them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

Term = NewType("Term", int)
LogIndex = NewType("LogIndex", int)
NodeId = NewType("NodeId", int)

# NodeId 0 means "nobody": no vote cast, no leader known.
NONE: NodeId = NodeId(0)


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    REMOVE_NODE = 1
    ADD_LEARNER = 2


class MessageType(enum.IntEnum):
    HUP = 0  # local: start an election now
    APP = 1  # AppendEntries
    APP_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9  # one chunk of InstallSnapshot
    SNAP_RESP = 10
    TRANSFER_LEADER = 11
    TIMEOUT_NOW = 12
    READ_INDEX = 13
    READ_INDEX_RESP = 14
    PROPOSE = 15  # a follower forwards a proposal to the leader


class Role(enum.IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(frozen=True, slots=True)
class Entry:
    term: Term
    index: LogIndex
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    term: Term = Term(0)
    vote: NodeId = NONE
    commit: LogIndex = LogIndex(0)


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node: NodeId
    # What the application attaches to justify the change (Tamga: the governance
    # document that authorizes it); opaque here, judged by `Config.conf_change_authorized`.
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: LogIndex = LogIndex(0)
    term: Term = Term(0)
    conf: ConfState = field(default_factory=ConfState)
    # The context of the last configuration change folded into `conf` (b"": none since
    # the initial membership): what `Config.conf_change_follows` judges the next change
    # against, so a node that restores this snapshot judges it as one that kept the log.
    conf_context: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the application decided a snapshot holds, opaque to Raft."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: NodeId
    frm: NodeId
    term: Term = Term(0)
    log_term: Term = Term(0)  # term of the entry at `index` (append) or last entry (vote)
    index: LogIndex = LogIndex(0)
    entries: tuple[Entry, ...] = ()
    commit: LogIndex = LogIndex(0)
    reject: bool = False
    reject_hint: LogIndex = LogIndex(0)  # fast backtracking: where the follower's log may match
    snapshot: Snapshot | None = None
    # InstallSnapshot is sent in chunks: offset of this chunk and whether it is the last.
    snap_offset: int = 0
    snap_done: bool = True
    context: bytes = b""  # ReadIndex request id, or a transfer marker on votes


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the applied index reaches `index`."""

    index: LogIndex
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    leader: NodeId
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the driver must do, in order: persist, then send, then apply.

    `hard_state`, `entries` and `snapshot` must be durable (fsynced) before any of
    `messages` is sent. `committed_entries` may be applied once persisted.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    must_sync: bool = False

    def contains_updates(self) -> bool:
        return bool(
            self.soft_state is not None
            or self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.committed_entries
            or self.messages
            or self.read_states
        )


class InvariantViolation(Exception):
    """One of our own invariants does not hold: a bug in Tamga, never a peer's fault.

    Raised by `invariant()`, which stays on under `python -O` (unlike `assert`), because a
    consensus node that has lost track of its own state must stop rather than go on.
    """


def invariant(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantViolation(message)

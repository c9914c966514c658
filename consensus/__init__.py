"""Tamga's Raft: a deterministic core, its log storage and an asyncio driver.

Entries are opaque bytes; nothing here knows about goods.
"""

from ._codec import (
    MalformedMessage,
    decode_conf_change,
    decode_message,
    encode_conf_change,
    encode_message,
)
from ._core import (
    Config,
    NotLeader,
    ProposalDropped,
    RaftUsageError,
    RawNode,
    Status,
    apply_change,
)
from ._memory import MemoryStorage
from ._progress import ProgressState
from ._storage import Compacted, Storage, StorageError, Unavailable
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
)

__all__ = [
    "NONE",
    "Compacted",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "InvariantViolation",
    "LogIndex",
    "MalformedMessage",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NodeId",
    "NotLeader",
    "ProgressState",
    "ProposalDropped",
    "RaftUsageError",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "Storage",
    "StorageError",
    "Term",
    "Unavailable",
    "apply_change",
    "decode_conf_change",
    "decode_message",
    "encode_conf_change",
    "encode_message",
]

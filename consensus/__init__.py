"""Tamga's Raft: a deterministic core, its log storage and an asyncio driver.

Entries are opaque bytes; nothing here knows about goods.
"""

from ._storage import Compacted, Storage, StorageError, Unavailable
from ._types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
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
    "Entry",
    "EntryType",
    "HardState",
    "LogIndex",
    "Message",
    "MessageType",
    "NodeId",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "Storage",
    "StorageError",
    "Term",
    "Unavailable",
]

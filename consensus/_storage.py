"""The log storage interface the Raft core reads from, after the model of etcd's Storage.

The core only reads stable state through `Storage`. The driver writes what a `Ready`
asks it to persist through the same object (`append`, `set_hard_state`,
`apply_snapshot`), and the core learns of compaction through `compact`. Two
implementations: `MemoryStorage` (tests, simulator) and `LevelDBStorage` (nodes).
"""

from __future__ import annotations

from typing import Protocol

from ._types import ConfState, Entry, HardState, LogIndex, Snapshot, Term


class StorageError(Exception):
    """Base of storage failures the core must handle."""


class Compacted(StorageError):
    """The requested index lies before the first index still held: use the snapshot."""


class Unavailable(StorageError):
    """The requested index lies beyond the last index held."""


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state and membership as last persisted."""
        ...

    def entries(self, lo: LogIndex, hi: LogIndex, max_bytes: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); at least one if any, at most `max_bytes` of data after that."""
        ...

    def term(self, index: LogIndex) -> Term:
        """Term of the entry at `index` (also valid for the snapshot's index)."""
        ...

    def first_index(self) -> LogIndex:
        """Index of the first entry still held (snapshot index + 1)."""
        ...

    def last_index(self) -> LogIndex:
        ...

    def snapshot(self) -> Snapshot:
        ...

    # Writes, made by the driver while handling a Ready.
    def append(self, entries: list[Entry]) -> None:
        """Append entries, first truncating any conflicting suffix of the held log."""
        ...

    def set_hard_state(self, hard_state: HardState) -> None:
        ...

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot (a follower installing one)."""
        ...

    def compact(self, index: LogIndex, snapshot: Snapshot) -> None:
        """Drop entries up to `index` now covered by `snapshot` (taken by the application)."""
        ...

    def rewind(self, index: LogIndex, hard_state: HardState) -> None:
        """Drop every entry above `index` and store `hard_state`, as one write made
        durable before returning: a crash leaves the old log or the rewound one."""
        ...

    def sync(self) -> None:
        """Make every write so far durable (fsync); a no-op in memory."""
        ...

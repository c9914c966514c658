"""The Raft log as the core sees it: what storage holds, plus a tail not yet persisted.

After etcd's `raftLog` and `unstable`. Entries (and a snapshot received from a leader)
first land in the unstable tail; a `Ready` hands them to the driver, which persists
them; `stable_to` then drops them from the tail. Until then the tail overrides
storage: a follower that truncated a conflicting suffix reads the new entries from
here while storage still holds the old ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._memory import take
from ._storage import Compacted, Storage, StorageError, Unavailable
from ._types import Entry, LogIndex, Snapshot, Term, invariant


class RaftLog:
    __slots__ = (
        "storage",
        "unstable_entries",
        "unstable_offset",
        "unstable_snapshot",
        "committed",
        "applied",
    )

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.first_index()
        self.unstable_entries: list[Entry] = []
        self.unstable_offset = LogIndex(storage.last_index() + 1)
        self.unstable_snapshot: Snapshot | None = None
        self.committed = LogIndex(first - 1)
        self.applied = LogIndex(first - 1)

    # -- reading -----------------------------------------------------------------------

    def first_index(self) -> LogIndex:
        if self.unstable_snapshot is not None:
            return LogIndex(self.unstable_snapshot.meta.index + 1)
        return self.storage.first_index()

    def last_index(self) -> LogIndex:
        if self.unstable_entries:
            return LogIndex(self.unstable_offset + len(self.unstable_entries) - 1)
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.meta.index
        return self.storage.last_index()

    def term(self, index: LogIndex) -> Term:
        """The term at `index`; raises Compacted or Unavailable."""
        if index >= self.unstable_offset:
            k = index - self.unstable_offset
            if k < len(self.unstable_entries):
                return self.unstable_entries[k].term
            raise Unavailable(f"index {index} is beyond the last index {self.last_index()}")
        snap = self.unstable_snapshot
        if snap is not None:
            if index == snap.meta.index:
                return snap.meta.term
            raise Compacted(f"index {index} is covered by the pending snapshot")
        return self.storage.term(index)

    def term_or_none(self, index: LogIndex) -> Term | None:
        try:
            return self.term(index)
        except (Compacted, Unavailable):
            return None

    def last_term(self) -> Term:
        return self.term(self.last_index())

    def match_term(self, index: LogIndex, term: Term) -> bool:
        return self.term_or_none(index) == term

    def is_up_to_date(self, last_index: LogIndex, last_term: Term) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as new as ours."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def slice(self, lo: LogIndex, hi: LogIndex, max_bytes: int | None = None) -> list[Entry]:
        """Entries in [lo, hi): at least one if any, then at most `max_bytes` of data."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise Compacted(f"index {lo} is compacted (first index {self.first_index()})")
        invariant(hi <= self.last_index() + 1, f"slice [{lo}, {hi}) beyond the last index")
        offset = self.unstable_offset
        if lo >= offset:
            tail = self.unstable_entries
            return take(tail, lo - offset, hi - offset, max_bytes)
        stored = self.storage.entries(lo, LogIndex(min(hi, offset)), max_bytes)
        if hi <= offset or len(stored) < offset - lo:
            return stored  # all from storage, or the byte limit stopped inside it
        left = None
        if max_bytes is not None:
            left = max_bytes - sum(len(e.data) for e in stored)
            if left <= 0:
                return stored
        extra = take(self.unstable_entries, 0, hi - offset, left)
        if left is not None and extra and len(extra[0].data) > left:
            return stored
        return stored + extra

    def find_conflict(self, entries: Sequence[Entry]) -> LogIndex:
        """Index of the first entry that is new or disagrees with our log; 0 if none."""
        if entries and entries[0].index > self.last_index():
            return entries[0].index
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return LogIndex(0)

    def find_conflict_by_term(self, index: LogIndex, term: Term) -> tuple[LogIndex, Term]:
        """The largest index <= `index` whose term is <= `term`, with that term.

        A follower answers a rejected append with it, so that the leader can skip a whole
        term of divergent entries per round trip instead of one entry. An unknown term
        (compacted or missing) is reported as 0: it may still match.
        """
        while index > 0:
            our = self.term_or_none(index)
            if our is None:
                return index, Term(0)
            if our <= term:
                return index, our
            index = LogIndex(index - 1)
        return LogIndex(0), Term(0)

    # -- changing ----------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> LogIndex:
        """Append after truncating whatever conflicts; returns the new last index."""
        if not entries:
            return self.last_index()
        after = entries[0].index
        invariant(after > self.committed, f"appending at {after} would overwrite a commit")
        self._truncate_and_append(entries)
        return self.last_index()

    def _truncate_and_append(self, entries: Sequence[Entry]) -> None:
        after = entries[0].index
        offset = self.unstable_offset
        if after == offset + len(self.unstable_entries):
            self.unstable_entries.extend(entries)
        elif after <= offset:
            # The new entries replace the whole unstable tail (and part of storage).
            self.unstable_offset = after
            self.unstable_entries = list(entries)
        else:
            del self.unstable_entries[after - offset :]
            self.unstable_entries.extend(entries)

    def maybe_append(
        self, index: LogIndex, log_term: Term, committed: LogIndex, entries: Sequence[Entry]
    ) -> tuple[LogIndex, LogIndex] | None:
        """Handle an append after (index, log_term).

        Returns None if our log does not hold (index, log_term); else (last new index,
        first index actually written or 0). Raises `ConflictBelowCommit` if the append
        contradicts an entry we know is committed (the sender is broken).
        """
        if not self.match_term(index, log_term):
            return None
        last_new = LogIndex(index + len(entries))
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise ConflictBelowCommit(f"entry {conflict} conflicts with a committed one")
            self._truncate_and_append(entries[conflict - index - 1 :])
        self.commit_to(LogIndex(min(committed, last_new)))
        return last_new, conflict

    def commit_to(self, index: LogIndex) -> None:
        if index > self.committed:
            invariant(index <= self.last_index(), f"commit {index} beyond the last index")
            self.committed = index

    def applied_to(self, index: LogIndex) -> None:
        invariant(
            self.applied <= index <= self.committed,
            f"applied index {index} out of range [{self.applied}, {self.committed}]",
        )
        self.applied = index

    def stable_to(self, index: LogIndex, term: Term) -> None:
        """Entries up to (index, term) are persisted; drop them from the unstable tail."""
        if index < self.unstable_offset:
            return
        k = index - self.unstable_offset
        if k >= len(self.unstable_entries) or self.unstable_entries[k].term != term:
            return  # replaced by a newer append meanwhile; those go out in the next Ready
        del self.unstable_entries[: k + 1]
        self.unstable_offset = LogIndex(index + 1)

    def stable_snap_to(self, index: LogIndex) -> None:
        snap = self.unstable_snapshot
        if snap is not None and snap.meta.index == index:
            self.unstable_snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        self.committed = snapshot.meta.index
        self.unstable_offset = LogIndex(snapshot.meta.index + 1)
        self.unstable_entries = []
        self.unstable_snapshot = snapshot

    def has_next_committed(self) -> bool:
        return self.unstable_snapshot is None and self.committed > self.applied

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet applied, up to `max_bytes` of data (at least one)."""
        if not self.has_next_committed():
            return []
        lo = LogIndex(max(self.applied + 1, self.first_index()))
        return self.slice(lo, LogIndex(self.committed + 1), max_bytes)


class ConflictBelowCommit(StorageError):
    """A peer's append contradicts an entry this node knows to be committed."""

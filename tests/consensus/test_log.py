"""The raft log (stable storage plus unstable tail) and MemoryStorage, unit by unit."""

from __future__ import annotations

import pytest

from consensus import (
    Compacted,
    ConfState,
    LogIndex,
    MemoryStorage,
    NodeId,
    Snapshot,
    SnapshotMeta,
    StorageError,
    Term,
    Unavailable,
)
from consensus._log import ConflictBelowCommit, RaftLog
from tests.consensus.sim import ent


def _log(*terms: int) -> RaftLog:
    st = MemoryStorage()
    st.append([ent(t, i + 1) for i, t in enumerate(terms)])
    return RaftLog(st)


def test_unstable_tail_overrides_storage_until_persisted() -> None:
    """Entries that replace a stored suffix are read from the tail until stable_to."""
    log = _log(1, 1, 1)
    log.append([ent(2, 2), ent(2, 3), ent(2, 4)])
    assert [log.term(LogIndex(i)) for i in (1, 2, 3, 4)] == [1, 2, 2, 2]
    assert log.last_index() == 4
    log.storage.append(log.unstable_entries)  # type: ignore[attr-defined]
    log.stable_to(LogIndex(4), Term(2))
    assert log.unstable_entries == [] and log.unstable_offset == 5


def test_stable_to_ignores_replaced_entries() -> None:
    """stable_to for an entry that a newer append replaced does nothing."""
    log = _log()
    log.append([ent(1, 1), ent(1, 2)])
    log.append([ent(2, 2)])
    log.stable_to(LogIndex(2), Term(1))
    assert len(log.unstable_entries) == 2


def test_find_conflict() -> None:
    """The first new or disagreeing entry is found (etcd TestFindConflict)."""
    log = _log(1, 2, 3)
    assert log.find_conflict([ent(1, 1), ent(2, 2)]) == 0
    assert log.find_conflict([ent(2, 2), ent(3, 3), ent(4, 4)]) == 4
    assert log.find_conflict([ent(1, 1), ent(4, 2)]) == 2


def test_find_conflict_by_term() -> None:
    """The largest index at or below a point whose term is at most the given term
    (etcd TestFindConflictByTerm)."""
    log = _log(1, 1, 2, 2, 5, 5)
    assert log.find_conflict_by_term(LogIndex(6), Term(4)) == (4, 2)
    assert log.find_conflict_by_term(LogIndex(6), Term(1)) == (2, 1)
    assert log.find_conflict_by_term(LogIndex(6), Term(0)) == (0, 0)
    assert log.find_conflict_by_term(LogIndex(3), Term(9)) == (3, 2)


def test_maybe_append_and_commit() -> None:
    """An append after a matching point truncates conflicts and moves the commit no
    further than its last new entry (etcd TestLogMaybeAppend)."""
    log = _log(1, 2, 3)
    assert log.maybe_append(LogIndex(3), Term(9), LogIndex(3), [ent(4, 4)]) is None
    assert log.maybe_append(LogIndex(1), Term(1), LogIndex(9), [ent(4, 2)]) == (2, 2)
    assert log.last_index() == 2 and log.committed == 2
    with pytest.raises(ConflictBelowCommit):
        log.maybe_append(LogIndex(0), Term(0), LogIndex(0), [ent(7, 1)])


def test_up_to_date() -> None:
    """Last term first, then length (paper section 5.4.1)."""
    log = _log(1, 2, 2)
    assert log.is_up_to_date(LogIndex(3), Term(2))
    assert not log.is_up_to_date(LogIndex(2), Term(2))
    assert log.is_up_to_date(LogIndex(1), Term(3))
    assert not log.is_up_to_date(LogIndex(9), Term(1))


def test_slice_limits_size_across_storage_and_tail() -> None:
    """A slice spanning storage and tail respects the byte limit but returns one entry."""
    st = MemoryStorage()
    st.append([ent(1, 1, b"aaaa"), ent(1, 2, b"bbbb")])
    log = RaftLog(st)
    log.append([ent(1, 3, b"cccc"), ent(1, 4, b"dddd")])
    assert [e.index for e in log.slice(LogIndex(1), LogIndex(5), 10)] == [1, 2]
    assert [e.index for e in log.slice(LogIndex(2), LogIndex(5), 9)] == [2, 3]
    assert [e.index for e in log.slice(LogIndex(1), LogIndex(5), 1)] == [1]
    assert len(log.slice(LogIndex(1), LogIndex(5))) == 4


def test_restore_replaces_log() -> None:
    """A restored snapshot becomes the whole log; older indexes read as compacted."""
    log = _log(1, 1)
    meta = SnapshotMeta(LogIndex(10), Term(3), ConfState(voters=(NodeId(1),)))
    log.restore(Snapshot(meta, b""))
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(LogIndex(10)) == 3
    with pytest.raises(Compacted):
        log.term(LogIndex(5))
    with pytest.raises(Unavailable):
        log.term(LogIndex(11))
    assert not log.has_next_committed()


def test_memory_storage_compact_and_snapshot() -> None:
    """Compaction drops entries up to the index; reads below it raise Compacted; an
    older snapshot cannot be applied (etcd TestStorageCompact, TestStorageApplySnapshot)."""
    st = MemoryStorage()
    st.append([ent(1, i) for i in range(1, 6)])
    meta = SnapshotMeta(LogIndex(3), Term(1), ConfState(voters=(NodeId(1),)))
    st.compact(LogIndex(3), Snapshot(meta, b"s"))
    assert (st.first_index(), st.last_index()) == (4, 5)
    assert st.term(LogIndex(3)) == 1
    with pytest.raises(Compacted):
        st.entries(LogIndex(3), LogIndex(5))
    with pytest.raises(Unavailable):
        st.entries(LogIndex(4), LogIndex(7))
    with pytest.raises(Compacted):
        st.compact(LogIndex(2), Snapshot(meta, b""))
    with pytest.raises(StorageError):
        st.apply_snapshot(Snapshot(meta, b""))
    assert st.initial_state()[1] == meta.conf


def test_memory_storage_append_truncates_and_refuses_gaps() -> None:
    """Appending overwrites a conflicting suffix; a gap is refused (etcd TestStorageAppend)."""
    st = MemoryStorage()
    st.append([ent(1, 1), ent(1, 2), ent(1, 3)])
    st.append([ent(2, 2)])
    assert st.last_index() == 2 and st.term(LogIndex(2)) == 2
    with pytest.raises(StorageError):
        st.append([ent(2, 5)])
    st.sync()
    assert st.crashed().last_index() == 2


def test_memory_storage_entries_byte_limit() -> None:
    """entries() returns at least one entry and stops at the byte limit."""
    st = MemoryStorage()
    st.append([ent(1, i, b"xx") for i in range(1, 6)])
    assert len(st.entries(LogIndex(1), LogIndex(6), 5)) == 2
    assert len(st.entries(LogIndex(1), LogIndex(6), 0)) == 1

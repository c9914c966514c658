"""LevelDBStorage: the Storage semantics, durability at sync, and recovery after SIGKILL."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from consensus import (
    Compacted,
    ConfState,
    Entry,
    EntryType,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    StorageError,
    Term,
    Unavailable,
    _leveldb,
)
from consensus._leveldb import LevelDBStorage, StorageCorrupt
from consensus._memory import MemoryStorage


def ents(first: int, last: int, term: int, size: int = 8) -> list[Entry]:
    return [
        Entry(Term(term), LogIndex(i), EntryType.NORMAL, payload(i, term, size))
        for i in range(first, last + 1)
    ]


def payload(index: int, term: int, size: int = 8) -> bytes:
    digest = hashlib.blake2b(f"{index}:{term}".encode(), digest_size=16).digest()
    return (digest * (size // 16 + 1))[:size]


def snap(index: int, term: int, data: bytes = b"app-state") -> Snapshot:
    conf = ConfState(voters=(NodeId(1), NodeId(2), NodeId(3)), learners=(NodeId(9),))
    return Snapshot(SnapshotMeta(LogIndex(index), Term(term), conf), data)


def reopen(st: LevelDBStorage) -> LevelDBStorage:
    st.close()
    return LevelDBStorage(st.path)


def all_entries(st: LevelDBStorage) -> list[Entry]:
    return st.entries(st.first_index(), LogIndex(st.last_index() + 1))


def test_empty_store(tmp_path: Path) -> None:
    """A new store is an empty log after index 0 with a zero hard state."""
    st = LevelDBStorage(tmp_path / "log")
    assert st.initial_state() == (HardState(), ConfState())
    assert (st.first_index(), st.last_index()) == (1, 0)
    assert st.term(LogIndex(0)) == 0
    assert st.entries(LogIndex(1), LogIndex(1)) == []
    assert st.snapshot() == Snapshot()
    with pytest.raises(Unavailable):
        st.term(LogIndex(1))
    with pytest.raises(Unavailable):
        st.entries(LogIndex(1), LogIndex(2))
    st.close()


def test_append_read_and_reopen(tmp_path: Path) -> None:
    """Appended entries read back identically, before and after a reopen."""
    st = LevelDBStorage(tmp_path / "log")
    written = ents(1, 50, 1) + ents(51, 100, 2)
    st.append(written[:50])
    st.append(written[50:])
    st.set_hard_state(HardState(Term(2), NodeId(3), LogIndex(90)))
    st.sync()
    assert all_entries(st) == written
    st = reopen(st)
    assert all_entries(st) == written
    assert st.initial_state()[0] == HardState(Term(2), NodeId(3), LogIndex(90))
    assert [st.term(LogIndex(i)) for i in (1, 50, 51, 100)] == [1, 1, 2, 2]
    with pytest.raises(Unavailable):
        st.entries(LogIndex(1), LogIndex(102))
    st.close()


def test_reads_beyond_the_memory_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny tail, reads that span the database and memory agree with what was written."""
    monkeypatch.setattr(_leveldb, "TAIL_ENTRIES_MAX", 4)
    st = LevelDBStorage(tmp_path / "log")
    written = ents(1, 40, 1)
    for i in range(0, 40, 5):
        st.append(written[i : i + 5])
        st.sync()
    assert all_entries(st) == written
    st = reopen(st)
    assert all_entries(st) == written
    assert st.entries(LogIndex(3), LogIndex(38)) == written[2:37]
    assert [st.term(LogIndex(i)) for i in range(1, 41)] == [1] * 40
    st.close()


def test_max_bytes_limits_but_returns_at_least_one(tmp_path: Path) -> None:
    """entries() stops before exceeding max_bytes, yet always returns the first entry."""
    st = LevelDBStorage(tmp_path / "log")
    st.append(ents(1, 10, 1, size=100))
    assert len(st.entries(LogIndex(1), LogIndex(11), max_bytes=0)) == 1
    assert len(st.entries(LogIndex(1), LogIndex(11), max_bytes=250)) == 2
    assert len(st.entries(LogIndex(1), LogIndex(11), max_bytes=1000)) == 10
    st.close()


def test_conflicting_suffix_is_truncated(tmp_path: Path) -> None:
    """An append at an existing index replaces that entry and drops everything after it."""
    st = LevelDBStorage(tmp_path / "log")
    st.append(ents(1, 10, 1))
    st.sync()
    st.append(ents(6, 7, 2))
    assert st.last_index() == 7
    assert all_entries(st) == ents(1, 5, 1) + ents(6, 7, 2)
    st.sync()
    st = reopen(st)
    assert all_entries(st) == ents(1, 5, 1) + ents(6, 7, 2)
    with pytest.raises(Unavailable):
        st.term(LogIndex(8))
    with pytest.raises(StorageError):
        st.append(ents(9, 9, 2))  # would leave a gap at 8
    st.close()


def test_compact_drops_covered_entries(tmp_path: Path) -> None:
    """Compaction keeps the snapshot, drops the entries it covers, and survives a reopen."""
    st = LevelDBStorage(tmp_path / "log")
    st.append(ents(1, 20, 1) + ents(21, 30, 2))
    st.compact(LogIndex(25), snap(25, 2, b"state@25"))
    st.sync()
    check_compacted(st)
    check_compacted(reopen(st))
    st = LevelDBStorage(tmp_path / "log")
    # Appending entries that the snapshot already covers only keeps the new part.
    st.append(ents(24, 32, 2))
    assert all_entries(st) == ents(26, 32, 2)
    st.close()


def check_compacted(s: LevelDBStorage) -> None:
    assert (s.first_index(), s.last_index()) == (26, 30)
    assert s.term(LogIndex(25)) == 2
    assert s.snapshot() == snap(25, 2, b"state@25")
    assert all_entries(s) == ents(26, 30, 2)
    with pytest.raises(Compacted):
        s.term(LogIndex(24))
    with pytest.raises(Compacted):
        s.entries(LogIndex(25), LogIndex(27))
    with pytest.raises(Compacted):
        s.compact(LogIndex(20), snap(20, 1))
    s.close()


def test_apply_snapshot_replaces_the_log(tmp_path: Path) -> None:
    """Installing a snapshot discards the whole log and adopts the snapshot's membership."""
    st = LevelDBStorage(tmp_path / "log")
    st.append(ents(1, 10, 1))
    st.sync()
    st.apply_snapshot(snap(50, 3, b"state@50"))
    st.set_hard_state(HardState(Term(3), NodeId(0), LogIndex(50)))
    st.sync()
    check_installed(st)
    check_installed(reopen(st))
    st = LevelDBStorage(tmp_path / "log")
    st.append(ents(51, 55, 3))
    assert all_entries(st) == ents(51, 55, 3)
    with pytest.raises(StorageError):
        st.apply_snapshot(snap(40, 3))
    st.close()


def check_installed(s: LevelDBStorage) -> None:
    assert (s.first_index(), s.last_index()) == (51, 50)
    assert s.term(LogIndex(50)) == 3
    hard_state = HardState(Term(3), NodeId(0), LogIndex(50))
    assert s.initial_state() == (hard_state, snap(50, 3).meta.conf)
    assert s.snapshot().data == b"state@50"
    s.close()


def test_unknown_format_and_corrupt_values_are_refused(tmp_path: Path) -> None:
    """A store from another format, or a mangled entry, is refused rather than served."""
    path = tmp_path / "log"
    st = LevelDBStorage(path)
    st.append(ents(1, 3, 1))
    st.close()
    db = plyvel.DB(str(path))
    db.put(_leveldb._entry_key(2), b"\x07garbage")
    db.close()
    with pytest.raises(StorageCorrupt, match="entry 2"):
        LevelDBStorage(path)

    db = plyvel.DB(str(path))
    db.put(_leveldb._KEY_META, b"\x09")
    db.close()
    with pytest.raises(StorageCorrupt, match="unknown store format"):
        LevelDBStorage(path)

    other = tmp_path / "other"
    db = plyvel.DB(str(other), create_if_missing=True)
    db.put(b"someone else's key", b"value")
    db.close()
    with pytest.raises(StorageCorrupt):
        LevelDBStorage(other)


def test_a_gap_in_the_log_is_refused_on_open(tmp_path: Path) -> None:
    """A log with a missing entry in the middle does not open."""
    path = tmp_path / "log"
    st = LevelDBStorage(path)
    st.append(ents(1, 5, 1))
    st.close()
    db = plyvel.DB(str(path))
    db.delete(_leveldb._entry_key(3))
    db.close()
    with pytest.raises(StorageCorrupt, match="entry 4 found where 3"):
        LevelDBStorage(path)


# -- crash recovery ---------------------------------------------------------------------


def _state_line(st: LevelDBStorage, tag: str) -> str:
    hs, _ = st.initial_state()
    last = st.last_index()
    return (
        f"{tag} {st.first_index()} {last} {st.term(last)} {hs.term} {hs.commit} {st.snapshot().meta.index}\n"
    )


def _crash_child(path: str, seed: int, fd: int, sync_every: int) -> None:
    """Append, truncate and compact forever, announcing each state before and after its sync."""
    rng = random.Random(seed)
    st = LevelDBStorage(path)
    hs, _ = st.initial_state()
    term, commit = max(1, hs.term), hs.commit
    step = 0
    while True:
        step += 1
        last = st.last_index()
        if rng.random() < 0.15 and last > commit + 1:
            start = rng.randint(commit + 1, last)  # never truncate below the commit index
            term += 1
        else:
            start = last + 1
        new = ents(start, start + rng.randint(0, 60), term, size=rng.choice((8, 200, 3000)))
        st.append(new)
        commit = max(commit, min(start - 1, new[-1].index - rng.randint(0, 5)))
        if rng.random() < 0.05 and commit - st.first_index() > 20:
            index = LogIndex(commit - rng.randint(0, 10))
            st.compact(index, snap(index, st.term(index), payload(index, 0, 64)))
        st.set_hard_state(HardState(Term(term), NodeId(1), LogIndex(commit)))
        if step % sync_every == 0:
            os.write(fd, _state_line(st, "P").encode())
            st.sync()
            os.write(fd, _state_line(st, "S").encode())


def _verify_log(st: LevelDBStorage) -> None:
    hs, _ = st.initial_state()
    entries = all_entries(st)
    assert [e.index for e in entries] == list(range(st.first_index(), st.last_index() + 1))
    terms = [e.term for e in entries]
    assert terms == sorted(terms), "terms must not decrease along the log"
    for e in entries:
        assert len(e.data) in (8, 200, 3000)
        assert e.data == payload(e.index, e.term, len(e.data))
    assert hs.commit <= st.last_index()
    s = st.snapshot()
    if s.meta.index:
        assert s.meta.index == st.first_index() - 1
        assert s.data == payload(s.meta.index, 0, 64)


def test_sigkill_recovers_exactly_the_synced_state(tmp_path: Path) -> None:
    """Killed at random moments, a store reopens at its last sync (or the one under way)."""
    path = str(tmp_path / "log")
    rng = random.Random(20240601)
    ctx = multiprocessing.get_context("fork")
    previous = " 1 0 0 0 0 0\n"  # the empty store, as _state_line prints it without a tag
    for round_ in range(20):
        read_fd, write_fd = os.pipe()
        seed = rng.getrandbits(32)
        child = ctx.Process(target=_crash_child, args=(path, seed, write_fd, rng.choice((1, 1, 3))))
        child.start()
        os.close(write_fd)
        lines = _read_then_kill(read_fd, child, kill_after_lines=rng.randint(0, 80))
        # Each line is one atomic pipe write; they alternate P (about to sync), S (synced).
        synced = [i for i, line in enumerate(lines) if line[0] == "S"]
        allowed = {lines[synced[-1]][1:] if synced else previous}
        under_way = synced[-1] + 1 if synced else 0
        if under_way < len(lines):
            allowed.add(lines[under_way][1:])

        st = LevelDBStorage(path)
        now = _state_line(st, "")
        _verify_log(st)
        st.close()
        assert now in allowed, f"round {round_} (seed {seed}): reopened at {now!r}, not {allowed}"
        previous = now


def _read_then_kill(
    read_fd: int, child: multiprocessing.process.BaseProcess, kill_after_lines: int
) -> list[str]:
    """Read the child's reports, SIGKILL it after some of them, and return every report."""
    lines: list[str] = []
    with os.fdopen(read_fd, "r") as reader:
        deadline = time.monotonic() + 10
        while len(lines) < kill_after_lines and time.monotonic() < deadline:
            line = reader.readline()
            if not line:
                break
            lines.append(line)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        lines.extend(reader.readlines())
    return lines


def test_unsynced_writes_vanish_after_a_crash(tmp_path: Path) -> None:
    """Writes never synced are absent after the process dies without closing the store."""
    path = str(tmp_path / "log")
    st = LevelDBStorage(path)
    st.append(ents(1, 5, 1))
    st.close()

    def child() -> None:
        s = LevelDBStorage(path)
        s.append(ents(4, 9, 2))
        s.set_hard_state(HardState(Term(2), NodeId(1), LogIndex(3)))
        os._exit(0)  # no sync, no close

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join()
    assert proc.exitcode == 0
    st = LevelDBStorage(path)
    assert all_entries(st) == ents(1, 5, 1)
    assert st.initial_state()[0] == HardState()
    st.close()


# -- the same semantics as MemoryStorage -------------------------------------------------

_ops = st_.lists(
    st_.one_of(
        st_.tuples(
            st_.just("append"),
            st_.integers(-6, 0),  # start relative to last index + 1 (< 0: overwrite)
            st_.integers(1, 12),
            st_.integers(0, 2),  # term bump
        ),
        st_.tuples(st_.just("hard_state"), st_.integers(0, 3), st_.integers(0, 3), st_.just(0)),
        st_.tuples(st_.just("compact"), st_.integers(0, 8), st_.just(0), st_.just(0)),
        st_.tuples(st_.just("snapshot"), st_.integers(1, 20), st_.just(0), st_.just(0)),
        st_.tuples(st_.just("sync"), st_.just(0), st_.just(0), st_.just(0)),
        st_.tuples(st_.just("crash"), st_.just(0), st_.just(0), st_.just(0)),
    ),
    max_size=40,
)


def _crash(st: LevelDBStorage) -> LevelDBStorage:
    """Reopen without syncing: what a killed process leaves (unsynced writes are gone)."""
    st._db.close()
    st._closed = True
    return LevelDBStorage(st.path)


def _apply_op(
    op: tuple[str, int, int, int], mem: MemoryStorage, st: LevelDBStorage, term: int
) -> tuple[MemoryStorage, LevelDBStorage, int]:
    kind, a, b, c = op
    if kind == "append":
        term += c
        start = max(mem.first_index(), mem.last_index() + 1 + a)
        new = ents(start, start + b - 1, term)
        mem.append(new)
        st.append(new)
    elif kind == "hard_state":
        hs = HardState(Term(term + a), NodeId(b), min(mem.last_index(), mem.hard_state().commit + 1))
        mem.set_hard_state(hs)
        st.set_hard_state(hs)
    elif kind == "compact":
        index = LogIndex(mem.first_index() + a)
        if index <= mem.last_index():
            s = snap(index, mem.term(index), payload(index, 0, 32))
            mem.compact(index, s)
            st.compact(index, s)
    elif kind == "snapshot":
        index = LogIndex(mem.snapshot().meta.index + a)
        term += 1
        mem.apply_snapshot(snap(index, term))
        st.apply_snapshot(snap(index, term))
    elif kind == "sync":
        mem.sync()
        st.sync()
    else:
        mem = mem.crashed()
        st = _crash(st)
    return mem, st, term


def _same_reads(mem: MemoryStorage, st: LevelDBStorage) -> None:
    assert (st.first_index(), st.last_index()) == (mem.first_index(), mem.last_index())
    assert st.initial_state() == mem.initial_state()
    assert st.snapshot() == mem.snapshot()
    lo, hi = mem.first_index(), LogIndex(mem.last_index() + 1)
    assert st.entries(lo, hi) == mem.entries(lo, hi)
    assert st.entries(lo, hi, max_bytes=20) == mem.entries(lo, hi, max_bytes=20)
    for i in range(lo - 1, hi):
        assert st.term(LogIndex(i)) == mem.term(LogIndex(i))
    for bad in (lo - 2, hi):
        if bad >= 0:
            with pytest.raises((Compacted, Unavailable)):
                mem.term(LogIndex(bad))
            with pytest.raises((Compacted, Unavailable)):
                st.term(LogIndex(bad))


@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_behaves_like_memory_storage(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    """Any sequence of writes, syncs and crashes reads the same as MemoryStorage."""
    mem = MemoryStorage()
    st = LevelDBStorage(tmp_path_factory.mktemp("prop") / "log")
    term = 1
    try:
        for op in ops:
            mem, st, term = _apply_op(op, mem, st, term)
            _same_reads(mem, st)
    finally:
        st.close()

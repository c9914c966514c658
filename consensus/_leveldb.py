"""The durable Raft log: hard state, entries, snapshot and membership in LevelDB (plyvel).

Every write the driver makes while handling a `Ready` goes into one pending LevelDB
write batch; `sync()` writes that batch with `sync=True`, which LevelDB turns into one
append to its log file and one fsync. So a Ready carrying a thousand entries costs one
fsync, and a crash leaves the store exactly at the last completed `sync()`: LevelDB
replays whole batches from its log and drops a torn tail, so a batch is either all there
or not there at all.

Until it is synced, a write is visible to readers through an in-memory overlay: the
tail of the log (recent entries, always including every entry not yet synced) and the
current hard state, membership and snapshot metadata. The core therefore sees its own
appends at once, as with `MemoryStorage`.

Layout. Every key starts with the key format byte, then a kind byte; every value starts
with the value format byte. A store written by another format is refused, not guessed at.

    KEY_FORMAT b"F"                      -> VALUE_FORMAT     (written when the store is created)
    KEY_FORMAT b"h"                      -> term, vote, commit
    KEY_FORMAT b"s"                      -> snapshot index, term, membership
    KEY_FORMAT b"d"                      -> snapshot data (opaque, the application's)
    KEY_FORMAT b"e" index (8 bytes, BE)  -> term, entry type, data

Big-endian indexes make LevelDB's byte order the log order, so a range of the log is
one iterator and the last entry is the first key of a reverse iterator.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import plyvel

from ._storage import Compacted, StorageError, Unavailable
from ._types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
    invariant,
)

KEY_FORMAT = 1
VALUE_FORMAT = 1

_KEY_META = bytes([KEY_FORMAT]) + b"F"
_KEY_HARD_STATE = bytes([KEY_FORMAT]) + b"h"
_KEY_SNAPSHOT_META = bytes([KEY_FORMAT]) + b"s"
_KEY_SNAPSHOT_DATA = bytes([KEY_FORMAT]) + b"d"
_ENTRY_PREFIX = bytes([KEY_FORMAT]) + b"e"

_INDEX = struct.Struct(">Q")
_ENTRY_KEY = struct.Struct(f">{len(_ENTRY_PREFIX)}sQ")  # prefix, index
_ENTRY_HEAD = struct.Struct(">BQB")  # value format, term, entry type; the data follows
_HARD_STATE = struct.Struct(">BQQQ")  # value format, term, vote, commit
_SNAPSHOT_HEAD = struct.Struct(">BQQ")  # value format, index, term; the membership follows
_CONF_HEAD = struct.Struct(">HH")  # number of voters, number of learners; the ids follow

# Recent entries are served from memory, because the leader reads what it has just
# appended to replicate it and followers that keep up only ever need the tail. The bound
# keeps memory flat; entries not yet synced are never evicted (they exist nowhere else
# readable), and their number is bounded by what one Ready carries.
TAIL_ENTRIES_MAX = 8192

# LevelDB's write buffer (memtable) size. The default 4 MiB makes the log, which is
# written at tens of MiB/s under load, flush and compact level-0 files every few
# hundred milliseconds; 32 MiB keeps that background work rare at a bounded memory cost.
WRITE_BUFFER_BYTES = 32 << 20


class StorageCorrupt(StorageError):
    """The store holds bytes that this format cannot have written: refuse to serve them."""


class LevelDBStorage:
    """A `Storage` kept in a LevelDB directory; durable at each `sync()`.

    Not thread-safe, except that `sync()` may run in a worker thread while the owning
    thread only reads (the driver awaits the sync before it writes again).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._db = plyvel.DB(str(self._path), create_if_missing=True, write_buffer_size=WRITE_BUFFER_BYTES)
        self._closed = False
        self._sync_lock = threading.Lock()
        self._batch = self._db.write_batch(sync=True)
        self._dirty = False
        # Lowest entry index written since the last sync, if any: from there on the
        # tail may hold the only readable copy.
        self._unsynced_from: int | None = None
        # The data of a snapshot written but not yet synced, so `snapshot()` can serve it.
        self._pending_snapshot_data: bytes | None = None
        try:
            self._load()
        except BaseException:
            self._db.close()
            raise

    # -- opening -------------------------------------------------------------------

    def _load(self) -> None:
        meta = self._db.get(_KEY_META)
        if meta is None:
            if any(True for _ in self._db.iterator(include_value=False)):
                raise StorageCorrupt(f"{self._path}: keys without a format marker")
            self._db.put(_KEY_META, bytes([VALUE_FORMAT]), sync=True)
        elif meta != bytes([VALUE_FORMAT]):
            raise StorageCorrupt(f"{self._path}: unknown store format {meta!r}")

        raw_hard = self._db.get(_KEY_HARD_STATE)
        self._hard = _decode_hard_state(raw_hard) if raw_hard is not None else HardState()
        raw_snap = self._db.get(_KEY_SNAPSHOT_META)
        self._snap_meta = _decode_snapshot_meta(raw_snap) if raw_snap is not None else SnapshotMeta()

        self._first = self._snap_meta.index + 1
        self._last = self._check_entry_keys()
        invariant(
            self._hard.commit <= self._last,
            f"{self._path}: commit {self._hard.commit} beyond last index {self._last}",
        )
        self._tail: list[Entry] = []
        self._tail_start = self._last + 1
        self._reload_tail()

    def _check_entry_keys(self) -> int:
        """Walk the entry keys once: they must run without a gap from the first index."""
        expected = self._first
        for key in self._db.iterator(prefix=_ENTRY_PREFIX, include_value=False):
            index = _decode_entry_key(key)
            if index != expected:
                raise StorageCorrupt(f"{self._path}: entry {index} found where {expected} was expected")
            expected += 1
        return expected - 1

    def _reload_tail(self) -> None:
        start = max(self._first, self._last + 1 - TAIL_ENTRIES_MAX)
        self._tail = self._read_entries_from_db(start, self._last + 1, None)
        self._tail_start = start

    # -- reads (the Storage protocol) -------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        # The membership as of the snapshot, as in etcd: the core rebuilds the current
        # one by replaying the configuration changes committed after it.
        return self._hard, self._snap_meta.conf

    def first_index(self) -> LogIndex:
        return LogIndex(self._first)

    def last_index(self) -> LogIndex:
        return LogIndex(self._last)

    def term(self, index: LogIndex) -> Term:
        if index == self._snap_meta.index:
            return self._snap_meta.term
        if index < self._first:
            raise Compacted(f"index {index} is compacted (first index {self._first})")
        if index > self._last:
            raise Unavailable(f"index {index} is beyond the last index {self._last}")
        if index >= self._tail_start:
            return self._tail[index - self._tail_start].term
        raw = self._db.get(_entry_key(index))
        if raw is None:
            raise StorageCorrupt(f"{self._path}: entry {index} is missing")
        return _decode_entry(index, raw).term

    def entries(self, lo: LogIndex, hi: LogIndex, max_bytes: int | None = None) -> list[Entry]:
        if lo < self._first:
            raise Compacted(f"index {lo} is compacted (first index {self._first})")
        if hi > self._last + 1:
            raise Unavailable(f"index {hi - 1} is beyond the last index {self._last}")
        if lo >= hi:
            return []
        out: list[Entry] = []
        if lo < self._tail_start:
            out = self._read_entries_from_db(lo, min(hi, self._tail_start), max_bytes)
            if len(out) < min(hi, self._tail_start) - lo:
                return out  # the byte limit was reached inside the database part
        start = max(lo, self._tail_start)
        if start < hi:
            size = sum(len(e.data) for e in out)
            for entry in self._tail[start - self._tail_start : hi - self._tail_start]:
                size += len(entry.data)
                if out and max_bytes is not None and size > max_bytes:
                    break
                out.append(entry)
        return out

    def snapshot(self) -> Snapshot:
        if self._snap_meta.index == 0:
            return Snapshot(meta=self._snap_meta)
        raw = self._pending_snapshot_data
        if raw is None:
            stored = self._db.get(_KEY_SNAPSHOT_DATA)
            if stored is None or stored[:1] != bytes([VALUE_FORMAT]):
                raise StorageCorrupt(f"{self._path}: snapshot data missing or malformed")
            raw = stored[1:]
        return Snapshot(meta=self._snap_meta, data=raw)

    def _read_entries_from_db(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        out: list[Entry] = []
        if lo >= hi:
            return out
        size = 0
        expected = lo
        for key, value in self._db.iterator(start=_entry_key(lo), stop=_entry_key(hi)):
            index = _decode_entry_key(key)
            if index != expected:
                raise StorageCorrupt(f"{self._path}: entry {expected} is missing")
            entry = _decode_entry(index, value)
            size += len(entry.data)
            if out and max_bytes is not None and size > max_bytes:
                break
            out.append(entry)
            expected += 1
        else:
            if expected != hi:
                raise StorageCorrupt(f"{self._path}: entry {expected} is missing")
        return out

    # -- writes (buffered until sync) --------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries, replacing everything from the first new index onwards."""
        if not entries:
            return
        first_new = entries[0].index
        if entries[-1].index < self._first:
            return  # all of them are already covered by the snapshot
        if first_new < self._first:
            entries = entries[self._first - first_new :]
            first_new = entries[0].index
        if first_new > self._last + 1:
            raise StorageError(f"append at {first_new} would leave a gap after {self._last}")
        new_last = entries[-1].index
        batch = self._batch
        for stale in range(new_last + 1, self._last + 1):
            batch.delete(_entry_key(stale))
        # The hot loop of the log (every entry of every node passes here): names bound
        # locally, and the contiguity check folded into the one pass.
        put, pack_key, pack_head = batch.put, _ENTRY_KEY.pack, _ENTRY_HEAD.pack
        index: int = first_new
        for entry in entries:
            invariant(entry.index == index, "appended entries are not contiguous")
            value = pack_head(VALUE_FORMAT, entry.term, entry.type) + entry.data
            put(pack_key(_ENTRY_PREFIX, index), value)
            index += 1
        self._mark_unsynced(first_new)

        # The tail stays contiguous up to the new last index.
        if first_new < self._tail_start:
            self._tail = list(entries)
            self._tail_start = first_new
        else:
            del self._tail[first_new - self._tail_start :]
            self._tail.extend(entries)
        self._last = new_last
        self._trim_tail()

    def set_hard_state(self, hard_state: HardState) -> None:
        self._batch.put(_KEY_HARD_STATE, _encode_hard_state(hard_state))
        self._hard = hard_state
        self._dirty = True

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        meta = snapshot.meta
        if meta.index <= self._snap_meta.index:
            raise StorageError(
                f"snapshot at {meta.index} is older than the one held at {self._snap_meta.index}"
            )
        for index in range(self._first, self._last + 1):
            self._batch.delete(_entry_key(index))
        self._write_snapshot(snapshot)
        self._first = meta.index + 1
        self._last = meta.index
        self._tail = []
        self._tail_start = self._last + 1
        self._unsynced_from = None

    def compact(self, index: LogIndex, snapshot: Snapshot) -> None:
        """Keep `snapshot` and drop the entries up to `index`, which it covers."""
        if index <= self._snap_meta.index:
            raise Compacted(f"index {index} is already compacted")
        if index > self._last:
            raise Unavailable(f"cannot compact up to {index} beyond the last index {self._last}")
        invariant(snapshot.meta.index == index, "a snapshot must end where the log resumes")
        invariant(snapshot.meta.term == self.term(index), "the snapshot's term disagrees with the log")
        for stale in range(self._first, index + 1):
            self._batch.delete(_entry_key(stale))
        self._write_snapshot(snapshot)
        self._first = index + 1
        if self._unsynced_from is not None:
            self._unsynced_from = max(self._unsynced_from, self._first)
        if self._tail_start < self._first:
            del self._tail[: self._first - self._tail_start]
            self._tail_start = self._first

    def rewind(self, index: LogIndex, hard_state: HardState) -> None:
        """Drop the entries above `index` and store `hard_state` in the one batch that
        `sync()` writes now, so a crash leaves the old log or the rewound one."""
        if index < self._snap_meta.index:
            raise Compacted(f"cannot rewind to {index}: compacted up to {self._snap_meta.index}")
        for stale in range(index + 1, self._last + 1):
            self._batch.delete(_entry_key(stale))
        if index < self._last:
            self._mark_unsynced(index + 1)
        if self._tail_start <= index + 1:
            del self._tail[index + 1 - self._tail_start :]
        else:
            self._tail = []
            self._tail_start = index + 1
        self._last = index
        self.set_hard_state(hard_state)
        self.sync()

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        self._batch.put(_KEY_SNAPSHOT_META, _encode_snapshot_meta(snapshot.meta))
        self._batch.put(_KEY_SNAPSHOT_DATA, bytes([VALUE_FORMAT]) + snapshot.data)
        self._snap_meta = snapshot.meta
        self._pending_snapshot_data = snapshot.data
        self._dirty = True

    def _mark_unsynced(self, index: int) -> None:
        if self._unsynced_from is None or index < self._unsynced_from:
            self._unsynced_from = index
        self._dirty = True

    def _trim_tail(self) -> None:
        # Trim only once the tail is well past its bound, so that trimming (a copy of
        # the list) happens once per many appends.
        excess = len(self._tail) - TAIL_ENTRIES_MAX
        if excess < TAIL_ENTRIES_MAX // 2:
            return
        if self._unsynced_from is not None:
            excess = min(excess, self._unsynced_from - self._tail_start)
        if excess > 0:
            del self._tail[:excess]
            self._tail_start += excess

    # -- durability -----------------------------------------------------------------

    def sync(self) -> None:
        """Write every buffered change in one batch and fsync it; nothing to do if none."""
        with self._sync_lock:
            if not self._dirty:
                return
            if self._closed:
                raise StorageError(f"{self._path}: storage is closed")
            batch, self._batch = self._batch, self._db.write_batch(sync=True)
            batch.write()
            self._dirty = False
            self._unsynced_from = None
            self._pending_snapshot_data = None

    def close(self) -> None:
        """Sync what is buffered and close the database; a second call does nothing."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._closed = True
            self._db.close()

    @property
    def path(self) -> Path:
        return self._path


# -- encoding -------------------------------------------------------------------------


def _entry_key(index: int) -> bytes:
    return _ENTRY_KEY.pack(_ENTRY_PREFIX, index)


def _decode_entry_key(key: bytes) -> int:
    if len(key) != len(_ENTRY_PREFIX) + _INDEX.size:
        raise StorageCorrupt(f"malformed entry key {key!r}")
    return int(_INDEX.unpack_from(key, len(_ENTRY_PREFIX))[0])


def _encode_entry(entry: Entry) -> bytes:
    return _ENTRY_HEAD.pack(VALUE_FORMAT, entry.term, entry.type) + entry.data


def _decode_entry(index: int, raw: bytes) -> Entry:
    try:
        fmt, term, kind = _ENTRY_HEAD.unpack_from(raw)
        if fmt != VALUE_FORMAT:
            raise StorageCorrupt(f"entry {index}: unknown value format {fmt}")
        return Entry(Term(term), LogIndex(index), EntryType(kind), raw[_ENTRY_HEAD.size :])
    except (struct.error, ValueError) as exc:
        raise StorageCorrupt(f"entry {index}: {exc}") from exc


def _encode_hard_state(hs: HardState) -> bytes:
    return _HARD_STATE.pack(VALUE_FORMAT, hs.term, hs.vote, hs.commit)


def _decode_hard_state(raw: bytes) -> HardState:
    try:
        fmt, term, vote, commit = _HARD_STATE.unpack(raw)
    except struct.error as exc:
        raise StorageCorrupt(f"hard state: {exc}") from exc
    if fmt != VALUE_FORMAT:
        raise StorageCorrupt(f"hard state: unknown value format {fmt}")
    return HardState(Term(term), NodeId(vote), LogIndex(commit))


def _encode_conf(conf: ConfState) -> bytes:
    ids = (*conf.voters, *conf.learners)
    head = _CONF_HEAD.pack(len(conf.voters), len(conf.learners))
    return head + b"".join(_INDEX.pack(node) for node in ids)


def _decode_conf(raw: bytes, offset: int) -> tuple[ConfState, int]:
    """Decode a membership starting at `offset`; return it and where it ends."""
    try:
        n_voters, n_learners = _CONF_HEAD.unpack_from(raw, offset)
        pos = offset + _CONF_HEAD.size
        ids = [
            NodeId(_INDEX.unpack_from(raw, pos + i * _INDEX.size)[0]) for i in range(n_voters + n_learners)
        ]
    except struct.error as exc:
        raise StorageCorrupt(f"membership: {exc}") from exc
    end = pos + len(ids) * _INDEX.size
    return ConfState(voters=tuple(ids[:n_voters]), learners=tuple(ids[n_voters:])), end


def _encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    # The configuration's context follows the membership to the end of the value (none
    # in metadata written before it existed).
    head = _SNAPSHOT_HEAD.pack(VALUE_FORMAT, meta.index, meta.term)
    return head + _encode_conf(meta.conf) + meta.conf_context


def _decode_snapshot_meta(raw: bytes) -> SnapshotMeta:
    try:
        fmt, index, term = _SNAPSHOT_HEAD.unpack_from(raw)
    except struct.error as exc:
        raise StorageCorrupt(f"snapshot metadata: {exc}") from exc
    if fmt != VALUE_FORMAT:
        raise StorageCorrupt(f"snapshot metadata: unknown value format {fmt}")
    conf, end = _decode_conf(raw, _SNAPSHOT_HEAD.size)
    if end > len(raw):
        raise StorageCorrupt("snapshot metadata: truncated membership")
    return SnapshotMeta(LogIndex(index), Term(term), conf, bytes(raw[end:]))

"""An in-memory `Storage` for tests and the simulator, with a model of what a crash loses.

Every write lands at once in the live state that the core reads. With durability
tracking on (the default), each write is also journaled; `sync()` replays the journal
onto a second, durable state. `crashed()` builds the storage a node finds after a
power loss: the durable state, plus (when given a random source) some prefix of the
writes that were not yet synced, because a disk may have written part of its cache
before the power went. Writes are whole; a torn write inside one call is the LevelDB
store's concern (its log drops a torn batch).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._storage import Compacted, StorageError, Unavailable
from ._types import (
    ConfState,
    Entry,
    HardState,
    LogIndex,
    Snapshot,
    Term,
    invariant,
)


@dataclass(slots=True)
class _State:
    """A log: `entries[0]` is a dummy standing for the snapshot's index and term."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=Snapshot)
    entries: list[Entry] = field(default_factory=lambda: [Entry(Term(0), LogIndex(0))])

    def offset(self) -> int:
        return self.entries[0].index

    def last_index(self) -> LogIndex:
        return LogIndex(self.entries[0].index + len(self.entries) - 1)

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = self.offset() + 1
        if entries[-1].index < first:
            return  # everything is already covered by the snapshot
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        start = entries[0].index
        if start > self.last_index() + 1:
            raise StorageError(f"append at {start} would leave a gap after {self.last_index()}")
        del self.entries[start - self.offset() :]
        self.entries.extend(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if meta.index <= self.snapshot.meta.index:
            raise StorageError(
                f"snapshot at {meta.index} is not newer than the one at {self.snapshot.meta.index}"
            )
        self.snapshot = snapshot
        self.entries = [Entry(meta.term, meta.index)]

    def compact(self, index: LogIndex, snapshot: Snapshot) -> None:
        if index <= self.offset():
            raise Compacted(f"index {index} is already compacted")
        if index > self.last_index():
            raise Unavailable(f"cannot compact to {index} beyond {self.last_index()}")
        term = self.entries[index - self.offset()].term
        invariant(snapshot.meta.index == index, "a snapshot must end where the log resumes")
        invariant(snapshot.meta.term == term, "the snapshot's term disagrees with the log")
        self.snapshot = snapshot
        self.entries = [Entry(term, index)] + self.entries[index - self.offset() + 1 :]

    def rewind(self, index: LogIndex, hard_state: HardState) -> None:
        if index < self.offset():
            raise Compacted(f"cannot rewind to {index}: compacted up to {self.offset()}")
        del self.entries[index - self.offset() + 1 :]
        self.hard_state = hard_state

    def copy(self) -> _State:
        return _State(self.hard_state, self.snapshot, list(self.entries))


# A journaled write, replayed onto the durable state at sync().
_Write = Callable[[_State], None]


class MemoryStorage:
    """`Storage` in memory; see the module docstring for the crash model."""

    def __init__(self, *, track_durability: bool = True) -> None:
        self._live = _State()
        self._durable: _State | None = _State() if track_durability else None
        self._journal: list[_Write] = []
        self.sync_count = 0

    # -- reads -------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._live.hard_state, self._live.snapshot.meta.conf

    def first_index(self) -> LogIndex:
        return LogIndex(self._live.offset() + 1)

    def last_index(self) -> LogIndex:
        return self._live.last_index()

    def term(self, index: LogIndex) -> Term:
        live = self._live
        offset = live.entries[0].index
        if index < offset:
            raise Compacted(f"index {index} is compacted (first index {offset + 1})")
        if index - offset >= len(live.entries):
            raise Unavailable(f"index {index} is beyond the last index {live.last_index()}")
        return live.entries[index - offset].term

    def entries(self, lo: LogIndex, hi: LogIndex, max_bytes: int | None = None) -> list[Entry]:
        live = self._live
        offset = live.entries[0].index
        if lo <= offset:
            raise Compacted(f"index {lo} is compacted (first index {offset + 1})")
        if hi > live.last_index() + 1:
            raise Unavailable(f"index {hi - 1} is beyond the last index {live.last_index()}")
        return take(live.entries, lo - offset, hi - offset, max_bytes)

    def snapshot(self) -> Snapshot:
        return self._live.snapshot

    def hard_state(self) -> HardState:
        return self._live.hard_state

    # -- writes ------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        entries = list(entries)
        self._live.append(entries)
        self._record(lambda state: state.append(entries))

    def set_hard_state(self, hard_state: HardState) -> None:
        self._live.hard_state = hard_state
        self._record(lambda state: state.set_hard_state(hard_state))

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._live.apply_snapshot(snapshot)
        self._record(lambda state: state.apply_snapshot(snapshot))

    def compact(self, index: LogIndex, snapshot: Snapshot) -> None:
        self._live.compact(index, snapshot)
        self._record(lambda state: state.compact(index, snapshot))

    def rewind(self, index: LogIndex, hard_state: HardState) -> None:
        self._live.rewind(index, hard_state)
        # One journaled write, so the crash model keeps both halves or neither.
        self._record(lambda state: state.rewind(index, hard_state))
        self.sync()

    def sync(self) -> None:
        self.sync_count += 1
        if self._durable is None:
            return
        for write in self._journal:
            write(self._durable)
        self._journal.clear()

    def unsynced_writes(self) -> int:
        return len(self._journal)

    def _record(self, write: _Write) -> None:
        if self._durable is not None:
            self._journal.append(write)

    # -- crash model -------------------------------------------------------------------

    def crashed(self, rng: random.Random | None = None) -> MemoryStorage:
        """The storage as found after a crash: synced writes, plus maybe some later ones."""
        if self._durable is None:
            raise ValueError("crashed() needs a MemoryStorage that tracks durability")
        state = self._durable.copy()
        if rng is not None and self._journal:
            for write in self._journal[: rng.randrange(len(self._journal) + 1)]:
                write(state)
        restarted = MemoryStorage()
        restarted._live = state
        restarted._durable = state.copy()
        return restarted


def take(entries: list[Entry], start: int, stop: int, max_bytes: int | None) -> list[Entry]:
    """entries[start:stop], cut after `max_bytes` of data but holding at least one.

    Walks only as far as the limit, so a follower far behind costs one message's worth
    of work per append, not the length of the log.
    """
    if max_bytes is None or stop - start <= 1:
        return entries[start:stop]
    size = 0
    for i in range(start, stop):
        size += len(entries[i].data)
        if size > max_bytes and i > start:
            return entries[start:i]
    return entries[start:stop]

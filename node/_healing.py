"""Healing: a node on a branch that cannot become final returns to its last final block.

Issue 11's rule, carried out on one node. Its triggers are evidence that a state's node
equivocated (two leader-signed appends, or two attestations, for different things at
one slot) and a Byzantine quorum attesting another block at a height this node applied
above its final height (at or below it the node stops: a final block is never undone).
Then, in this order:

1. the equivocating state is refused as leader (no vote, no pre-vote, its appends
   ignored: the node's `leader_refused` judge reads the evidence store), and so are the
   entries of the terms it equivocated in above the final point
   (`consensus.Config.entry_refused` asks `entry_refused`): an honest node that has not
   healed yet would otherwise win an election with its longer log and bring them back;
2. a marker names the Raft index of the last final block (see crash safety below);
3. the applier stops queueing entries above that index and drops its queue;
4. the ledger rolls back to the final height in one write batch (undo data,
   `LedgerStore.rollback_to`), which refuses to go below it;
5. the Raft log is rewound to the index of that final block (`Driver.rewind`, with the
   same index as its floor), so the entries above it are forgotten even where the
   hostile leader had them committed; the applier resumes;
6. the documents of the undone and dropped blocks are offered to the mempool again:
   they were committed (not final) and their clients may have been told so; a document
   is idempotent by id, so proposing it again never applies it twice;
7. the marker goes.

Crash safety: the marker is written (synced) before the ledger changes and removed after
Raft is rewound. A node that starts with the marker present finishes the job before its
Raft driver starts (`finish_at_start`): the ledger is rolled back if it was not yet, and
the Raft storage is rewound directly, so the driver never hands the applier the entries
that were being undone.

What this node attested survives a rollback and a crash: each of its attestations of a
block that a rollback undid (height, round, hash, signature, and the block's parent) is
kept in the same file until its height is final, and handed to the round book at start
(`undone()`, node/_attestations.py). A different block applied there later is signed only
as the round rule allows (ledger/_rounds.py): of a later round, and once what we attested
there is proven dead; two attestations by one state at one height *in one round* are
evidence (ledger/_finality.py), in different rounds they are not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus import HardState, LogIndex, Storage
from ledger import Attestation, BlockHeader, LedgerStore, Vote

log = logging.getLogger(__name__)

# Terms refused for entries are kept while they matter (above the final point); a
# hostile state equivocates in a handful of terms before every honest node refuses it.
REFUSED_TERMS_MAX = 1_024
# Our undone attestations kept per height: the round rule reads the highest rounds only
# (ledger/_rounds.py VOTES_PER_STATE_MAX); each heal at a height adds one.
UNDONE_PER_HEIGHT_MAX = 2


@dataclass(frozen=True, slots=True)
class Undone:
    """One of our attestations of a block a rollback undid, with that block's parent."""

    attestation: Attestation
    parent: Vote | None


@dataclass(frozen=True, slots=True)
class Healed:
    from_height: int
    to_height: int
    raft_index: int
    documents_offered: int


class Healing:
    """Carries out the healing rule; the node wires it to its evidence and attestations."""

    def __init__(
        self,
        store: LedgerStore,
        path: Path,
        rewind: Callable[[LogIndex, LogIndex], Awaitable[None]],
        offer_again: Callable[[Sequence[bytes]], None],
        hold: Callable[[int], Awaitable[list[bytes]]] | None = None,
        release: Callable[[], None] = lambda: None,
        own_state: str = "",
    ) -> None:
        """`hold(index)` stops the applier queueing entries above `index` and returns the
        documents of the blocks it dropped; `release()` resumes it."""
        self._store = store
        self._path = path
        self._rewind = rewind
        self._offer_again = offer_again
        self._hold = hold
        self._release = release
        self._own_state = own_state
        self._lock = asyncio.Lock()
        self.refused_terms: set[int] = set()  # terms in which a refused leader equivocated
        self.undone_attestations: dict[int, list[Undone]] = {}  # height -> ours of undone blocks there
        self.pending: int | None = None  # Raft index of a heal not finished (the marker)
        self.heals = 0
        self._load()

    # -- what Raft and the attester ask ------------------------------------------------

    def refuse_terms(self, terms: set[int]) -> None:
        """Terms a state proven hostile claimed leadership in: their entries above the
        final block stay out of the log (`entry_refused`), and no honest node campaigns
        or votes in them (`term_refused`). Kept across restarts, bounded.

        Over the bound, what goes first is what cannot matter: a term below the last
        final block's (Raft's terms never decrease along the log, so all its entries are
        final, and no campaign or vote stands in a past term). Then the highest: a
        hostile state can sign evidence against itself for any number of terms, and
        dropping the lowest, as this did before, let such a flood of invented future
        terms push out the term it really led in. The terms it really claimed are the
        ones nodes have reached; an invented one above them is a claim nobody took (a
        proven state's appends are ignored)."""
        if terms - self.refused_terms:
            self.refused_terms |= terms
            floor = self._final_term() if len(self.refused_terms) > REFUSED_TERMS_MAX else 0
            while len(self.refused_terms) > REFUSED_TERMS_MAX:
                lowest = min(self.refused_terms)
                self.refused_terms.discard(lowest if lowest < floor else max(self.refused_terms))
            self._save()

    def _final_term(self) -> int:
        """The Raft term of the last final block's entry (0: none)."""
        header = self._final_header()
        return header.raft_term if header is not None else 0

    def term_refused(self, term: int) -> bool:
        return term in self.refused_terms

    def entry_refused(self, term: int, index: int) -> bool:
        """Whether a Raft entry must stay out of the log: of a term a refused leader
        equivocated in, above the last final block (final entries are never taken back)."""
        return term in self.refused_terms and index > self.final_raft_index()

    def final_raft_index(self) -> LogIndex:
        """The Raft index of the last final block this ledger holds: the floor of any
        rewind, and the Driver's compaction limit."""
        header = self._final_header()
        return LogIndex(header.raft_index if header is not None else 0)

    def _final_header(self) -> BlockHeader | None:
        """The header of the last final block this ledger holds."""
        store = self._store
        return store.header(min(store.final_height, store.head.height))

    def undone(self) -> list[Undone]:
        """Our attestations of blocks a rollback undid, above the final height: the round
        rule must know them (node/_attestations.py `remember`)."""
        return [u for height in sorted(self.undone_attestations) for u in self.undone_attestations[height]]

    def final_moved(self, final_height: int) -> None:
        """Heights at or below the final height can never be applied again."""
        stale = [h for h in self.undone_attestations if h <= final_height]
        if stale:
            for h in stale:
                del self.undone_attestations[h]
            self._save()

    # -- triggers ----------------------------------------------------------------------

    async def on_evidence(self, state: str, term: int = 0) -> Healed | None:
        """A checked proof that `state`'s node equivocated (the caller refuses it as
        leader). `term`: the Raft term it equivocated in, when the proof names one (an
        AppendEquivocation); otherwise the terms of the non-final blocks it proposed."""
        terms = {term} if term else set()
        store = self._store
        for height in range(store.final_height + 1, store.head.height + 1):
            header = store.header(height)
            if header is not None and header.proposer == state:
                terms.add(header.raft_term)
        self.refuse_terms(terms)
        log.error("evidence against %s (terms %s refused above the final block): returning to the last "
                  "final block", state, sorted(terms))
        return await self.heal()

    async def on_conflicting_quorum(self, height: int) -> Healed | None:
        """A Byzantine quorum attests another block at `height` (above the final height),
        which this node applied."""
        log.error("a quorum attests another block at height %d: returning to the last final block", height)
        return await self.heal()

    # -- the heal ----------------------------------------------------------------------

    async def heal(self) -> Healed | None:
        """Roll the ledger back to the final height and rewind Raft to match; None when
        nothing above the final height is held (nothing to undo)."""
        async with self._lock:
            store = self._store
            final = store.final_height
            head = store.head.height
            target = self.final_raft_index()
            dropped: list[bytes] = []
            if self._hold is not None:
                dropped = await self._hold(target)
                head = store.head.height  # the applier may have finished one more block
            if head <= final and not dropped:
                self._release()
                return None
            self._remember_own_attestations(final)
            self.pending = target
            self._save()
            undone = store.rollback_to(final) if head > final else []
            try:
                await self._rewind(target, target)
            finally:
                self._release()
            documents = [wire for block in undone for wire in block.documents] + dropped
            self._offer_again(documents)
            self.pending = None
            self._save()
            self.heals += 1
            log.warning("healed: ledger %d -> %d, raft rewound to %d, %d documents offered again",
                        head, final, target, len(documents))
            return Healed(head, final, target, len(documents))

    def finish_at_start(self, raft_log: Storage) -> list[bytes]:
        """Finish a heal a crash interrupted, before the Raft driver starts: roll the
        ledger back (if not yet) and rewind the Raft storage to the marker's index.
        Returns the documents undone here (to offer again)."""
        target = self.pending
        if target is None:
            return []
        store = self._store
        undone = store.rollback_to(store.final_height) if store.head.height > store.final_height else []
        if raft_log.last_index() > target:
            hard, _ = raft_log.initial_state()
            commit = LogIndex(min(hard.commit, target))
            raft_log.rewind(LogIndex(target), HardState(hard.term, hard.vote, commit))
        log.warning("finished an interrupted heal: ledger at %d, raft log rewound to %d",
                    store.head.height, target)
        self.pending = None
        self._save()
        return [wire for block in undone for wire in block.documents]

    # -- inside ------------------------------------------------------------------------

    def _remember_own_attestations(self, final: int) -> None:
        store = self._store
        if not self._own_state:
            return
        for height in range(final + 1, store.head.height + 1):
            header = store.header(height)
            if header is None or not store.has_attestation(height, self._own_state):
                continue
            ours = next(a for a in store.attestations(height) if a.state == self._own_state)
            prev = store.header(height - 1)
            parent = (prev.raft_term, prev.hash) if prev is not None and height > 1 else None
            kept = self.undone_attestations.setdefault(height, [])
            if all(u.attestation.block != ours.block for u in kept):
                kept.append(Undone(ours, parent))
                # The round rule needs the highest rounds only (ledger/_rounds.py): a node
                # healed many times at one height keeps the last few.
                kept.sort(key=lambda u: u.attestation.round, reverse=True)
                del kept[UNDONE_PER_HEIGHT_MAX:]

    def _load(self) -> None:
        try:
            raw: Any = json.loads(self._path.read_text(encoding="ascii"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Only this node writes the file, atomically; unreadable means a disk fault.
            raise RuntimeError(f"cannot read the healing state {self._path}: {exc}") from exc
        pending = raw.get("pending")
        self.pending = int(pending) if pending is not None else None
        self.refused_terms = {int(t) for t in raw.get("refused_terms", [])}
        self.undone_attestations = {int(h): [_undone_from_json(self._own_state, int(h), u) for u in us]
                                    for h, us in raw.get("attested", {}).items()}

    def _save(self) -> None:
        data = {"pending": self.pending, "refused_terms": sorted(self.refused_terms),
                "attested": {str(h): [_undone_json(u) for u in us]
                             for h, us in sorted(self.undone_attestations.items())}}
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        # The rename is durable once the directory is: the marker must survive a crash.
        fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _undone_json(u: Undone) -> dict[str, Any]:
    a = u.attestation
    return {"round": a.round, "hash": a.block_hash.hex(), "signature": a.signature.hex(),
            "parent": [u.parent[0], u.parent[1].hex()] if u.parent is not None else None}


def _undone_from_json(state: str, height: int, raw: Any) -> Undone:
    if not isinstance(raw, dict):
        # Only this node writes the file: a file of the format before rounds. Its
        # attestations named no round and verify no more; a height is kept locked by
        # refusing to start rather than by guessing (delete the file after a check).
        raise RuntimeError("the healing state holds attestations without a round (an older format)")
    parent = raw.get("parent")
    att = Attestation(state, height, int(raw["round"]), bytes.fromhex(raw["hash"]),
                      bytes.fromhex(raw["signature"]))
    return Undone(att, (int(parent[0]), bytes.fromhex(parent[1])) if parent is not None else None)

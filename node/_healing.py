"""Healing: a node on a branch that cannot become final returns to its last final block.

Issue 11's rule, carried out on one node. Its triggers are evidence that a state's node
equivocated as leader (two leader-signed appends, or two attestations, for different
things at one slot) and a Byzantine quorum attesting another block at a height this node
applied. Then, in this order:

1. the equivocating state is refused as leader (no vote, no pre-vote, its appends
   ignored: `consensus.Config.leader_refused` asks `is_refused`), and so are the
   entries of the term it equivocated in above the final point
   (`consensus.Config.entry_refused` asks `entry_refused`): an honest node that has not
   healed yet would otherwise win an election with its longer log and bring them back;
2. the ledger rolls back to the final height in one write batch (undo data,
   `LedgerStore.rollback_to`), which refuses to go below it;
3. the Raft log is rewound to the index of that final block (`Driver.rewind`, with the
   same index as its floor), so the entries above it are forgotten even where the
   hostile leader had them committed;
4. the documents of the undone blocks are offered to the mempool again: they were
   committed (not final) and their clients may have been told so; a document is
   idempotent by id, so proposing it again never applies it twice.

The ledger goes first: a crash between 2 and 3 leaves a ledger behind its Raft log,
which a restart re-applies from (and heals again, the evidence being stored); the
other order would leave a ledger ahead of its log, which Raft refuses to start with.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from consensus import LogIndex
from ledger import LedgerStore

log = logging.getLogger(__name__)


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
        rewind: Callable[[LogIndex, LogIndex], Awaitable[None]],
        offer_again: Callable[[Sequence[bytes]], None],
    ) -> None:
        self._store = store
        self._rewind = rewind
        self._offer_again = offer_again
        self.refused: set[str] = set()  # states refused as leader, by evidence
        self.refused_terms: set[int] = set()  # terms in which they equivocated as leader
        self.heals = 0

    def is_refused(self, state: str) -> bool:
        return state in self.refused

    def entry_refused(self, term: int, index: int) -> bool:
        """Whether a Raft entry must stay out of the log: of a term a refused leader
        equivocated in, above the last final block (final entries are taken back)."""
        return term in self.refused_terms and index > self._final_raft_index()

    def _final_raft_index(self) -> int:
        store = self._store
        header = store.header(min(store.final_height, store.head.height))
        return header.raft_index if header is not None else 0

    async def on_evidence(self, state: str, term: int) -> Healed | None:
        """A checked proof that `state`'s node equivocated as leader in `term` (from an
        AppendEquivocation; an attestation equivocation names no term): refuse it, then heal."""
        if state not in self.refused:
            log.error("evidence against %s: refused as leader; returning to the last final block", state)
        self.refused.add(state)
        if term:
            self.refused_terms.add(term)
        return await self.heal()

    async def on_conflicting_quorum(self, height: int) -> Healed | None:
        """A quorum attests another block at `height`, which this node applied."""
        log.error("a quorum attests another block at height %d: returning to the last final block", height)
        return await self.heal()

    async def heal(self) -> Healed | None:
        """Roll the ledger back to the final height and rewind Raft to match; None when
        the head is final already (nothing to undo)."""
        store = self._store
        final = store.final_height
        head = store.head.height
        if head <= final:
            return None
        undone = store.rollback_to(final)
        floor = LogIndex(store.head.raft_index)
        await self._rewind(floor, floor)
        documents = [wire for block in undone for wire in block.documents]
        self._offer_again(documents)
        self.heals += 1
        return Healed(head, final, floor, len(documents))

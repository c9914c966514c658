"""Equivocation evidence this node holds: kept on disk, shown, and held against a state.

Evidence is two attestations signed by one state's node for different blocks at one
height (ledger.Evidence), or two appends its node signed as leader for different
entries at one Raft (term, index) (ledger.AppendEquivocation); anyone checks either with
genesis alone. This node keeps
each piece it built or received (after checking it) as one small file under
`<data dir>/evidence/`, named by its id, written atomically and fsynced, since it is
what stops the state's node from leading again after a restart.

Bounded: at most `EVIDENCE_PER_STATE_MAX` pieces per state (one is enough to hold it
against the state; a few more show a pattern), so a hostile state that signs
conflicting attestations at every height cannot fill the disk or the status page.

`against(state)` says whether this node holds evidence against a state that the
member states have not cleared: a CLEAR_EVIDENCE governance document (a Byzantine
quorum of regulators) for that state, applied at block height H, clears every piece
about heights below H, and every append equivocation in a Raft term up to that of
block H (in block H's own term only when another state's node proposed it: a state
whose node leads in that term and equivocates after the clearing block is held again).
Evidence of a later equivocation holds again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ledger import AnyEvidence, AppendEquivocation, DecodeError, Genesis, Verifier, decode_evidence

log = logging.getLogger(__name__)

# Pieces kept per state: one suffices to refuse the state's node as leader; a few more
# let people see whether it keeps doing it. Beyond this, new evidence is only counted.
EVIDENCE_PER_STATE_MAX = 16
_SUFFIX = ".evidence"


class EvidenceStore:
    """The evidence this node holds, by id, on disk and in memory."""

    def __init__(self, directory: Path, genesis: Genesis, verifier: Verifier,
                 cleared_below: Callable[[str], int],
                 block_at: Callable[[int], tuple[int, str]] = lambda height: (0, "")) -> None:
        """`block_at(height)`: the Raft term and the proposer of the block at `height`
        ((0, "") if not held), to clear append evidence of the terms up to a clearing block."""
        self._dir = directory
        self._genesis = genesis
        self._verifier = verifier
        self._cleared_below = cleared_below
        self._block_at = block_at
        self._by_id: dict[bytes, AnyEvidence] = {}
        self.refused = 0  # pieces that did not verify (from peers) or did not fit the bound
        self._load()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, evidence: AnyEvidence) -> bool:
        """Keep a piece of evidence that verifies; True when it is new (gossip it then)."""
        if evidence.id in self._by_id:
            return False
        # The bound first: a flood of conflicts from a state already full costs no
        # signature checks. Only pieces that still hold count: after the regulators
        # clear a state, new evidence against it must be kept again.
        cleared = self._cleared_below(evidence.state)
        if not self._holds(evidence, cleared):
            return False  # about what the regulators cleared: nothing to hold
        holding = [e for e in self._by_id.values() if e.state == evidence.state and self._holds(e, cleared)]
        if len(holding) >= EVIDENCE_PER_STATE_MAX:
            self.refused += 1
            return False
        if not evidence.verify(self._genesis, self._verifier):
            self.refused += 1
            return False
        self._prune_cleared(evidence.state, cleared)
        self._write(evidence)
        self._by_id[evidence.id] = evidence
        return True

    def _prune_cleared(self, state: str, cleared: int) -> None:
        """Keep at most the bound of cleared pieces per state too (the latest), so that
        clearing and equivocating again, round after round, stays bounded on disk."""
        old = sorted((e for e in self._by_id.values() if e.state == state and not self._holds(e, cleared)),
                     key=_order)
        for gone in old[: max(0, len(old) - EVIDENCE_PER_STATE_MAX + 1)]:
            del self._by_id[gone.id]
            with contextlib.suppress(OSError):
                (self._dir / (gone.id.hex() + _SUFFIX)).unlink()

    def wants(self, state: str) -> bool:
        """Whether a new piece against `state` would be kept (below the bound): when not,
        the caller need not build one."""
        cleared = self._cleared_below(state)
        holding = sum(1 for e in self._by_id.values() if e.state == state and self._holds(e, cleared))
        return holding < EVIDENCE_PER_STATE_MAX

    def get(self, evidence_id: bytes) -> AnyEvidence | None:
        return self._by_id.get(evidence_id)

    def all(self) -> list[AnyEvidence]:
        """Every piece, by state, then kind, then height or index, then id: the same
        order on every node."""
        return sorted(self._by_id.values(), key=_order)

    def against(self, state: str) -> bool:
        """Whether evidence against `state` holds: some piece about a height at or above
        the height where the member states last cleared it (or, for an append
        equivocation, about a term no earlier than that clearing block's)."""
        cleared = self._cleared_below(state)
        return any(e.state == state and self._holds(e, cleared) for e in self._by_id.values())

    def holds(self, evidence: AnyEvidence) -> bool:
        """Whether this piece still counts against its state (the regulators did not clear it)."""
        return self._holds(evidence, self._cleared_below(evidence.state))

    def _holds(self, evidence: AnyEvidence, cleared: int) -> bool:
        if cleared <= 0:
            return True
        if isinstance(evidence, AppendEquivocation):
            # Raft orders terms: a term before the clearing block's came before the
            # clearing. In the clearing block's own term only its proposer leads: if that
            # is the state itself, what it signed in that term still holds.
            term, proposer = self._block_at(cleared)
            return evidence.term > term or (evidence.term == term and proposer == evidence.state)
        return evidence.height >= cleared

    def states_against(self) -> list[str]:
        return sorted({e.state for e in self._by_id.values() if self.against(e.state)})

    def to_json(self) -> dict[str, object]:
        return {"pieces": len(self._by_id), "against": self.states_against(), "refused": self.refused}

    # -- disk --------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            names = sorted(os.listdir(self._dir))
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(_SUFFIX):
                continue
            path = self._dir / name
            try:
                evidence = decode_evidence(path.read_bytes())
            except (OSError, DecodeError) as exc:
                log.error("ignoring the evidence file %s: %s", path, exc)
                continue
            if evidence.verify(self._genesis, self._verifier):
                self._by_id[evidence.id] = evidence

    def _write(self, evidence: AnyEvidence) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / (evidence.id.hex() + _SUFFIX)
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(evidence.encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            # Kept in memory all the same: it still counts until the node restarts.
            log.error("cannot keep evidence %s on disk: %s", evidence.id.hex()[:16], exc.strerror)


def _order(evidence: AnyEvidence) -> tuple[str, int, int, bytes]:
    if isinstance(evidence, AppendEquivocation):
        return evidence.state, 1, evidence.index, evidence.id
    return evidence.state, 0, evidence.height, evidence.id


__all__ = ["EVIDENCE_PER_STATE_MAX", "EvidenceStore"]

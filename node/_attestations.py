"""Attestations: this node signs each block hash it computed, and checks its peers'.

A peer's attestation of a block we hold is stored when it agrees with our hash (and
`on_stored` tells finality about it). One that disagrees is logged and remembered;
when a Byzantine quorum of member states attests another hash than ours at some
height, that other block is final. Above our final height our block was never final:
`on_conflicting_quorum` heals (node/_healing.py: back to the last final block, then
follow the final branch). At or below it, a block we hold as final has a final rival,
which takes more than f hostile states: this node has diverged and stops loudly rather
than serve or spread a wrong state. Attestations for heights we have not reached yet
wait, bounded, until we apply that block.

Two attestations signed by one state for different hashes at one height are
*evidence* (ledger.Evidence): whichever arrives second, this node builds the proof and
hands it to `on_evidence` (which stores, shows and gossips it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ledger import (
    Attestation,
    BlockHeader,
    Evidence,
    Genesis,
    KeyPair,
    LedgerStore,
    Verifier,
    finality_quorum,
)

from ._gossip import attestation_item

log = logging.getLogger(__name__)

# Attestations for blocks we have not applied yet wait here, bounded in heights ahead
# and in number, so that a peer far ahead cannot fill our memory.
EARLY_ATTESTATIONS_MAX = 20_000
EARLY_ATTESTATION_HEIGHTS_AHEAD = 10_000
# Our latest attestations sent again to a peer whose link comes back: enough to cover
# what a crash or a broken connection may have lost, cheap to check for the peer.
ATTESTATIONS_RESENT = 256
# Attestations of another hash than ours are kept for this many heights below our head,
# to count whether a majority attests it. A divergence shows within a few blocks of its
# height; outside the window a conflict is only logged. Each height holds at most one
# entry per member state, so the table holds at most (window + 1) x states entries,
# however many old heights a hostile state signs conflicting attestations for.
CONFLICT_HEIGHTS_KEPT = 1_024


class Attestations:
    def __init__(
        self,
        genesis: Genesis,
        state: str,
        key: KeyPair,
        store: LedgerStore,
        verifier: Verifier,
        gossip_all: Callable[[bytes], None],
        gossip_to: Callable[[str, bytes], None],
        fail: Callable[[str], None],
        on_stored: Callable[[int], None] = lambda height: None,
        on_evidence: Callable[[Evidence], None] = lambda evidence: None,
        wants_evidence: Callable[[str], bool] = lambda state: True,
        on_conflicting_quorum: Callable[[int], None] | None = None,
    ) -> None:
        self._genesis = genesis
        self._state = state
        self._key = key
        self._store = store
        self._verifier = verifier
        self._gossip_all = gossip_all
        self._gossip_to = gossip_to
        self._fail = fail
        self._on_stored = on_stored
        self._on_evidence = on_evidence
        self._wants_evidence = wants_evidence
        self._on_conflicting_quorum = on_conflicting_quorum
        # (height, state) pairs we already built evidence for: a state that floods
        # conflicting attestations at a few heights costs one piece per height, not a
        # proof built and hashed per attestation (the hostile flood row: 5,000 of them).
        self._evidenced: set[tuple[int, str]] = set()
        self._early: dict[int, list[Attestation]] = {}
        self._early_count = 0
        self._conflicts: dict[int, dict[str, Attestation]] = {}

    def attest(self, header: BlockHeader, sign: bool = True) -> None:
        """Sign a block we applied, store and gossip the signature, then check the
        peers' attestations of it that arrived early. `sign` is False for a block this
        node applied but refuses to vouch for (its time): the peers' attestations of it
        are still checked and kept."""
        if sign:
            att = Attestation.make(self._key, self._genesis.chain_id, self._state, header)
            self._store.add_attestation(att, self._verifier)
            self._gossip_all(attestation_item(att))
            self._on_stored(header.height)
        self._forget_conflicts_below(header.height - CONFLICT_HEIGHTS_KEPT)
        early = self._early.pop(header.height, None)
        if early:
            self._early_count -= len(early)
            for other in early:
                self._check(other, header)

    def resend(self, peer: str) -> None:
        """A gossip link (re)connected: send it our latest attestations again, since
        those in flight when it broke (or the peer crashed) are lost."""
        head = self._store.head.height
        for height in range(max(1, head - ATTESTATIONS_RESENT + 1), head + 1):
            for att in self._store.attestations(height):
                if att.state == self._state:
                    self._gossip_to(peer, attestation_item(att))

    def receive(self, peer: str, att: Attestation) -> None:
        if att.state != peer:
            return  # each node speaks for itself only
        header = self._store.header(att.height)
        if header is not None:
            self._check(att, header)
            return
        head = self._store.head.height
        soon = head < att.height <= head + EARLY_ATTESTATION_HEIGHTS_AHEAD
        if soon and self._early_count < EARLY_ATTESTATIONS_MAX:
            self._early.setdefault(att.height, []).append(att)
            self._early_count += 1

    def _check(self, att: Attestation, header: BlockHeader) -> None:
        if att.block_hash == header.hash:
            fresh = not self._store.has_attestation(att.height, att.state)
            if fresh and self._store.add_attestation(att, self._verifier):
                self._on_stored(att.height)
                earlier = self._conflicts.get(att.height, {}).get(att.state)
                if earlier is not None:
                    self._evidence(earlier, att)
            return
        # The member table's key: governance may have replaced or removed this node's.
        if not self._store.members().verify_attestation(att, self._verifier):
            return
        log.error("%s attests block %d as %s..., we hold %s...", att.state, att.height,
                  att.block_hash.hex()[:16], header.hash.hex()[:16])
        self._equivocation(att, header)
        if att.height < self._store.head.height - CONFLICT_HEIGHTS_KEPT:
            return
        others = self._conflicts.setdefault(att.height, {})
        others.setdefault(att.state, att)
        agreeing = sum(1 for other in others.values() if other.block_hash == att.block_hash)
        if agreeing >= finality_quorum(len(self._genesis.states)):
            if self._on_conflicting_quorum is not None and att.height > self._store.final_height:
                log.error("a Byzantine quorum attests another block at height %d, above our final height "
                          "%d: healing", att.height, self._store.final_height)
                self._on_conflicting_quorum(att.height)
                return
            self._fail(
                f"DIVERGED at block {att.height}: a Byzantine quorum of member states attested "
                f"{att.block_hash.hex()[:16]}... (final), this node holds {header.hash.hex()[:16]}..."
            )

    def rolled_back(self, height: int) -> None:
        """The ledger rolled back to `height`: the attestations of other blocks above it
        wait for the blocks we apply there next (the final branch's, often)."""
        for h in sorted(h for h in self._conflicts if h > height):
            for att in self._conflicts.pop(h).values():
                if self._early_count < EARLY_ATTESTATIONS_MAX:
                    self._early.setdefault(h, []).append(att)
                    self._early_count += 1

    def _equivocation(self, att: Attestation, header: BlockHeader) -> None:
        """A verified attestation of another hash than ours: evidence if the same state
        also signed ours, or signed a third hash we remember."""
        if (att.height, att.state) in self._evidenced or not self._wants_evidence(att.state):
            return
        if self._store.has_attestation(att.height, att.state):
            ours = next((a for a in self._store.attestations(att.height) if a.state == att.state), None)
            if ours is not None:
                self._evidence(ours, att)
                return
        earlier = self._conflicts.get(att.height, {}).get(att.state)
        if earlier is not None and earlier.block_hash != att.block_hash:
            self._evidence(earlier, att)

    def _evidence(self, a: Attestation, b: Attestation) -> None:
        if (a.height, a.state) in self._evidenced:
            return
        self._evidenced.add((a.height, a.state))
        self._on_evidence(Evidence.of(a, b))

    def _forget_conflicts_below(self, height: int) -> None:
        if self._conflicts and min(self._conflicts) < height:
            for old in [h for h in self._conflicts if h < height]:
                del self._conflicts[old]
        if self._evidenced:
            self._evidenced = {(h, s) for h, s in self._evidenced if h >= height}

    def conflicts(self) -> int:
        """How many conflicting attestations are kept (for tests and status)."""
        return sum(len(states) for states in self._conflicts.values())

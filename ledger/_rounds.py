"""The round rule: when an honest node may attest a block at a height where it attested another.

An attestation names a block's height, its *round* (the Raft term of the entry that
carried it) and its hash; a block, one (height, round, hash), is final when a Byzantine
quorum q = ceil((n + f + 1) / 2) of the n member states attests it (ledger/_finality.py),
with f = floor((n - 1) / 3) hostile states at most.

A hostile leader can split the honest states: half of them apply and attest block X at
height h, the other half block Y, both in its round r. Neither reaches q. The honest
states then heal (back to the last final block) and follow an honest leader, whose
block Z at h is of a later round. If an honest state never attested a second block at
one height, nobody could attest Z and no block would ever be final again. If it
attested whatever it applies, a hostile state could make X final (its own attestation
plus the honest ones of X plus ...) and Z final too. The rule in between, for an honest
state at one height:

1. never in a round lower than one it attested in there before, and never two hashes
   in one round (two hashes in one round are evidence: ledger/_finality.py);
2. a block of a later round only once every block it attested there before is *proven
   dead*, or when the new block is final already (attesting a final block adds nothing
   that could conflict with it);
3. a block only once it has attested the block's parent (height - 1), or the parent is
   final: an attestation vouches for the chain below it, and rule 4's second clause
   counts on it.
4. A block B = (h, r, H) is *proven dead* when k distinct member states attested other
   blocks at h in rounds >= r and (n - k) + min(k, f - e) < q, where e is the number of
   states outside those k that are proven hostile (evidence against them; 0 without
   any); or when B's parent is proven dead.

Why this is safe with at most f hostile states: two claims, (a) a block proven dead
never becomes final and (b) no two blocks at one height are both final. Suppose one
fails, and look at the first attestation after which one does.

(a) Let B = (h, r, H) be proven dead by k states. Each attested some C != B at h in a
round >= r, so an honest one among them never attests B after C (rule 1). Before C?
Then it moved from B to C, which rule 2 allows only when B was proven dead earlier (take
that earlier proof instead: the first proof has no such state) or when C was final, and
B final too would be two final blocks at h, which (b) excludes up to the first failure.
So B's attesters are among the n - k states outside the k, plus the hostile states
among the k: at most min(k, f - e), since e hostile states are known to be outside.
Fewer than q: never final. The parent clause: by rule 3, every honest state that
attests B before B is final attested B's parent P (which is dead, so never final), so
B's attesters are P's honest attesters plus hostile states, bounded by P's count.

(b) Let A and B be final at h, A first. The quorums that made each final (the states
that attested each before it was final) share at least f + 1 states, so an honest
state X. X attested both, each before it was final, so rule 2's "already final" did not
apply to its second one: it moved from the first to the second only once the first was
proven dead, and by (a) a dead block never becomes final. With more than f hostile
states, min(k, f - e) undercounts them and both claims fail (a 1/1 split of n = 4 with
two hostile states finalizes both blocks: tests/ledger/test_rounds.py).

Liveness after a split: every honest state that attested X at h in round r sees k
states attest other blocks (Y, and the hostile leader's second attestation) in rounds
>= r. With a 2/2 split of the honest four and the hostile leader attesting both, k = 3
of n = 5: 2 + 1 < 4, X is dead, and the honest four attest Z: final. When the hostile
state attests only one side, evidence against it (e = 1) completes the proof.

This module is the rule, pure (no clock, no store); `RoundBook` is what one node knows
(verified attestations at heights above its final height, bounded), and the node
(node/_attestations.py) asks `RoundBook.verdict` before it signs, again whenever more
attestations or evidence arrive, so that a block waiting for a proof is signed as soon
as the proof is complete.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from ._chain import Attestation
from ._governance import byzantine_quorum, faults_tolerated

Vote = tuple[int, bytes]  # (round, block hash) at one height

# Per state and height, the attestations kept: the two of the highest rounds. Whether a
# state attested something other than a block B = (r, H) in a round >= r is decided by
# them (the highest, unless that is B itself, then the second, of round r if any), and
# a hostile state that signs a hundred rounds at one height costs two entries.
VOTES_PER_STATE_MAX = 2


class Verdict(enum.Enum):
    SIGN = "sign"
    WAIT = "wait"    # not yet: a proof is incomplete (re-asked when more attestations arrive)
    NEVER = "never"  # a round not above one attested there (rule 1): this block is never signed


def proof_bound(n: int, k: int, known_hostile_outside: int = 0) -> int:
    """How many states could still attest a block when k states attested other blocks
    at its height in rounds >= its own: the n - k others, and the hostile among the k."""
    f = faults_tolerated(n)
    return (n - k) + min(k, max(0, f - known_hostile_outside))


class RoundBook:
    """Verified attestations one node knows, per height and state, with the parent of
    each block the node applied: what the round rule reads. Callers add only attestations
    whose signatures verified; the book forgets heights below a floor the caller moves."""

    def __init__(self, states: Iterable[str]) -> None:
        self._states = frozenset(states)
        self.n = len(self._states)
        self.f = faults_tolerated(self.n)
        self.quorum = byzantine_quorum(self.n)
        self._votes: dict[int, dict[str, list[Attestation]]] = {}
        self._parents: dict[tuple[int, int, bytes], Vote] = {}
        self._dead: set[tuple[int, int, bytes]] = set()

    # -- what the book holds -----------------------------------------------------------

    def add(self, att: Attestation) -> Attestation | None:
        """Remember a verified attestation. Returns an attestation the same state made
        at the same height and round for another hash (the two are evidence), or None.
        A non-member's attestation is not kept."""
        if att.state not in self._states:
            return None
        kept = self._votes.setdefault(att.height, {}).setdefault(att.state, [])
        rival = None
        for other in kept:
            if other.block == att.block:
                return None
            if other.round == att.round:
                rival = other
        kept.append(att)
        kept.sort(key=lambda a: (a.round, a.block_hash), reverse=True)
        del kept[VOTES_PER_STATE_MAX:]
        return rival

    def link(self, height: int, vote: Vote, parent: Vote) -> None:
        """The block (height, vote) extends the block (height - 1, parent)."""
        self._parents[(height, *vote)] = parent

    def attestations(self, height: int) -> list[Attestation]:
        return [a for atts in self._votes.get(height, {}).values() for a in atts]

    def votes(self, height: int, state: str) -> list[Vote]:
        """What `state` attested at `height` (the highest rounds first)."""
        return [(a.round, a.block_hash) for a in self._votes.get(height, {}).get(state, ())]

    def attesters(self, height: int, vote: Vote) -> frozenset[str]:
        return frozenset(s for s, atts in self._votes.get(height, {}).items()
                         if any((a.round, a.block_hash) == vote for a in atts))

    def is_final(self, height: int, vote: Vote) -> bool:
        return len(self.attesters(height, vote)) >= self.quorum

    def heights(self) -> list[int]:
        return sorted(self._votes)

    def forget_below(self, height: int) -> None:
        """Heights below `height` are no longer asked about (final, or out of the window)."""
        for h in [h for h in self._votes if h < height]:
            del self._votes[h]
        if self._parents and min(k[0] for k in self._parents) < height:
            self._parents = {k: v for k, v in self._parents.items() if k[0] >= height}
        if self._dead:
            self._dead = {k for k in self._dead if k[0] >= height}

    def size(self) -> int:
        return sum(len(atts) for states in self._votes.values() for atts in states.values())

    # -- the rule ------------------------------------------------------------------------

    def proven_dead(self, height: int, vote: Vote, hostile: Iterable[str] = ()) -> bool:
        """Whether the block (height, round, hash) can never become final (rule 4): by
        what this book holds, and `hostile`, the states proven to have equivocated."""
        known = frozenset(hostile) & self._states
        chain: list[tuple[int, int, bytes]] = []
        key: tuple[int, int, bytes] | None = (height, *vote)
        dead = False
        while key is not None:
            if key in self._dead:
                dead = True
                break
            chain.append(key)
            h, r, block_hash = key
            others = {s for s, atts in self._votes.get(h, {}).items()
                      if any(a.round >= r and (a.round, a.block_hash) != (r, block_hash) for a in atts)}
            if proof_bound(self.n, len(others), len(known - others)) < self.quorum:
                dead = True
                break
            parent = self._parents.get(key)
            key = (h - 1, *parent) if parent is not None and h > 1 else None
        if dead:
            self._dead.update(chain)  # everything above a dead block on this chain is dead
        return dead

    def verdict(self, state: str, height: int, vote: Vote, parent: Vote | None = None,
                hostile: Iterable[str] = ()) -> Verdict:
        """May `state` (honest, following the rule) attest the block (height, vote) now?

        `parent`: the block at height - 1 this one extends, when the caller does not
        already know that `state` attested it or that it is final (rule 3); None when it
        does (or at height 1)."""
        if self.is_final(height, vote):
            return Verdict.SIGN
        own = self.votes(height, state)
        if vote in own:
            return Verdict.SIGN  # the same block again: the same signature
        if any(vote[0] <= r for r, _ in own):
            return Verdict.NEVER
        if parent is not None and parent not in self.votes(height - 1, state) \
                and not self.is_final(height - 1, parent):
            return Verdict.WAIT
        hostile = frozenset(hostile)
        if all(self.proven_dead(height, before, hostile) for before in own):
            return Verdict.SIGN
        return Verdict.WAIT


__all__ = ["VOTES_PER_STATE_MAX", "RoundBook", "Verdict", "Vote", "proof_bound"]

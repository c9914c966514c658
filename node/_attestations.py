"""Attestations: this node signs each block it applied, when the round rule allows, and checks its peers'.

A peer's attestation of a block we hold (its height, round and hash) is stored, and
`on_stored` tells finality about it. Every verified attestation, ours, agreeing or
not, also goes to the `RoundBook` (ledger/_rounds.py), bounded to a window of heights
below our head. When a Byzantine quorum of member states attests another block at some
height, that other block is final. Above our final height our block was never final:
`on_conflicting_quorum` heals (node/_healing.py: back to the last final block, then
follow the final branch). At or below it, a block we hold as final has a final rival,
which takes more than f hostile states: this node has diverged and stops loudly rather
than serve or spread a wrong state. Attestations for heights we have not reached yet
wait, bounded, until we apply that block.

What we sign follows the round rule (`RoundBook.verdict`): at a height where we
attested another block (before a heal undid it), only a later round's block, and only
once every block we attested there is proven dead; and only a block whose parent we
attested or is final. When the rule says "not yet", the block waits in `_unsigned` and
is asked about again whenever an attestation or evidence arrives, so it is signed as
soon as the proof is complete (liveness does not depend on the order things arrive in);
after a restart `resume` puts such blocks back. Our own attestations survive a crash:
those of blocks we hold are in the store (and, if lost with the block in a power cut,
made again identical from the same durable Raft entry); those of blocks a heal undid
are in the healing file, synced before the rollback (node/_healing.py).

Two attestations signed by one state for different hashes at one height in one round
are *evidence* (ledger.Evidence): whichever arrives second, this node builds the proof
and hands it to `on_evidence` (which stores, shows and gossips it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ledger import (
    AnyEvidence,
    Attestation,
    BlockHeader,
    Evidence,
    Genesis,
    KeyPair,
    LedgerStore,
    RoundBook,
    Verdict,
    Verifier,
    Vote,
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
# Verified attestations (of our blocks and of others) are kept in the round book for this
# many heights below our head: to count whether a quorum attests another block, and for
# the round rule's proofs. A divergence shows within a few blocks of its height; outside
# the window a conflict is only logged. Each height holds at most VOTES_PER_STATE_MAX
# (2) entries per member state, so the book holds at most 2 x (window + 1) x states
# entries, however many old heights or rounds a hostile state signs attestations for.
CONFLICT_HEIGHTS_KEPT = 1_024
# Blocks waiting for the round rule's proof, held at once: one per height above the final
# height, so the gap bounds them (its alarm is at 256 blocks); past this many, newer ones
# are picked up again from the store once the held ones are signed (`_refill`).
UNSIGNED_BLOCKS_MAX = 4_096


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
        hostile: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        """`hostile()`: the states this node holds evidence against (the round rule's
        proofs count them as hostile, which completes a proof sooner)."""
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
        self._hostile = hostile
        # (height, state) pairs we already built evidence for: a state that floods
        # conflicting attestations at a few heights costs one piece per height, not a
        # proof built and hashed per attestation (the hostile flood row: 5,000 of them).
        self._evidenced: set[tuple[int, str]] = set()
        self._early: dict[int, list[Attestation]] = {}
        self._early_count = 0
        self._book = RoundBook(s.code for s in genesis.states)
        # Blocks we applied and would sign once the round rule allows (bounded by the
        # heights between the final height and the head: a heal drops those above it).
        self._unsigned: dict[int, BlockHeader] = {}
        self._overflow = False  # blocks past UNSIGNED_BLOCKS_MAX were left in the store
        self._retrying = False
        self._load_book()

    def _load_book(self) -> None:
        """At start: what the store holds above the final height (ours and the peers'
        agreeing attestations, and each block's parent), within the window."""
        store = self._store
        head = store.head.height
        for height in range(max(store.final_height + 1, head - CONFLICT_HEIGHTS_KEPT, 1), head + 1):
            header = store.header(height)
            if header is None:
                continue
            self._link(header)
            for att in store.attestations(height):
                self._book.add(att)

    def remember(self, att: Attestation, parent: Vote | None) -> None:
        """One of our own attestations of a block a heal undid (kept by the healing file
        across restarts): the round rule must know we signed it."""
        self._book.add(att)
        if parent is not None:
            self._book.link(att.height, (att.round, att.block_hash), parent)

    def resume(self) -> None:
        """At start, after `remember`: blocks we applied above a height where we are
        locked (we attested a block there that a heal undid) and have not signed wait
        again for the rule's proof, as they did before the restart. (A block whose time
        this node refused is among them only above such a height: its alarm was raised
        when it was applied.)"""
        store = self._store
        locked = [h for h in self._book.heights()
                  if h > store.final_height and self._book.votes(h, self._state)
                  and not store.has_attestation(h, self._state)]
        if not locked:
            return
        self._refill(min(locked))
        self._retry()

    def _hold_unsigned(self, header: BlockHeader) -> None:
        if len(self._unsigned) < UNSIGNED_BLOCKS_MAX:
            self._unsigned[header.height] = header
        else:
            self._overflow = True

    def _refill(self, lowest: int) -> None:
        """Blocks from `lowest` up that we hold and have not signed wait for the rule."""
        store = self._store
        for height in range(lowest, store.head.height + 1):
            header = store.header(height)
            if header is not None and not store.has_attestation(height, self._state):
                self._hold_unsigned(header)

    def attest(self, header: BlockHeader, sign: bool = True) -> None:
        """Check the peers' attestations of a block we applied that arrived early or that
        the round book holds, then sign it when the round rule allows (else it waits for
        the proof), store and gossip the signature. `sign` is False for a block this node
        applied but refuses to vouch for (its time): the peers' attestations of it are
        still checked and kept."""
        self._link(header)
        self._unsigned.pop(header.height, None)
        self._forget_below(header.height - CONFLICT_HEIGHTS_KEPT)
        # Attestations of this very block the book already holds (they came while we held
        # another block here, before a heal) now agree: store them.
        for att in self._book.attestations(header.height):
            if att.names(header) and att.state != self._state:
                self._store_agreeing(att)
        early = self._early.pop(header.height, None)
        if early:
            self._early_count -= len(early)
            for other in early:
                self._check(other, header)
        if sign and not self._store.has_attestation(header.height, self._state):
            verdict = self._verdict(header)
            if verdict is Verdict.SIGN:
                self._sign(header)
            elif verdict is Verdict.WAIT:
                log.info("block %d (round %d) waits for the round rule's proof before we sign it",
                         header.height, header.raft_term)
                self._hold_unsigned(header)
            else:
                log.warning("block %d is of round %d, not above one we attested there: not signed",
                            header.height, header.raft_term)
        self._retry()

    def learn_evidence(self, evidence: AnyEvidence) -> None:
        """Checked evidence (built here, gossiped, or kept on disk across a restart): the
        state is now known hostile (`hostile()`), and an attestation equivocation's two
        attestations are verified votes the round rule's proofs count. Ask again about the
        blocks waiting to be signed."""
        kept_from = self._store.head.height - CONFLICT_HEIGHTS_KEPT
        if isinstance(evidence, Evidence) and evidence.height >= kept_from:
            self._book.add(evidence.first)
            self._book.add(evidence.second)
        self._retry()

    def _link(self, header: BlockHeader) -> None:
        if header.height > 1:
            parent = self._store.header(header.height - 1)
            if parent is not None and parent.hash == header.prev_hash:
                self._book.link(header.height, (header.raft_term, header.hash),
                                (parent.raft_term, parent.hash))

    def _verdict(self, header: BlockHeader) -> Verdict:
        store = self._store
        parent: Vote | None = None
        # Rule 3: the parent attested by us, or final; the book asks only when we do not know.
        below = header.height - 1
        if below > store.final_height and not store.has_attestation(below, self._state):
            prev = store.header(header.height - 1)
            parent = (prev.raft_term, prev.hash) if prev is not None else None
        return self._book.verdict(self._state, header.height, (header.raft_term, header.hash), parent,
                                  self._hostile())

    def _sign(self, header: BlockHeader) -> None:
        att = Attestation.make(self._key, self._genesis.chain_id, self._state, header)
        self._store.add_attestation(att, self._verifier)
        self._book.add(att)
        self._gossip_all(attestation_item(att))
        self._on_stored(header.height)

    def _retry(self) -> None:
        """Ask the round rule again about the blocks waiting to be signed, lowest first
        (a parent signed lets its child be signed in the same pass). The first that still
        waits ends the pass: it is not final (else it could be signed), so every block
        above it waits for it (rule 3), and one pass costs one proof, not one per block
        of a long wait."""
        if not self._unsigned or self._retrying:
            return
        self._retrying = True
        try:
            while self._unsigned:
                self._retry_pass()
                if not (self._overflow and not self._unsigned):
                    break
                self._overflow = False  # all held ones signed: pick up those left in the store
                self._refill(self._store.final_height + 1)
        finally:
            self._retrying = False

    def _retry_pass(self) -> None:
        for height in sorted(self._unsigned):
            header = self._unsigned[height]
            held = self._store.header(height)
            if held is None or held.hash != header.hash:
                del self._unsigned[height]  # a heal undid it
                continue
            verdict = self._verdict(header)
            if verdict is Verdict.WAIT:
                return
            del self._unsigned[height]
            if verdict is Verdict.SIGN:
                log.warning("block %d (round %d): the proof is complete, we sign it", height,
                            header.raft_term)
                self._sign(header)

    def unsigned(self) -> list[int]:
        """Heights of blocks we applied that wait for the round rule (status and tests)."""
        return sorted(self._unsigned)

    def resend(self, peer: str) -> None:
        """A gossip link (re)connected: send it our latest attestations again, since
        those in flight when it broke (or the peer crashed) are lost; and ours of blocks
        a heal undid, which the peer's round-rule proofs may need."""
        head = self._store.head.height
        for height in range(max(1, head - ATTESTATIONS_RESENT + 1), head + 1):
            for att in self._store.attestations(height):
                if att.state == self._state:
                    self._gossip_to(peer, attestation_item(att))
        for height in self._book.heights():
            header = self._store.header(height)
            for att in self._book.attestations(height):
                if att.state == self._state and (header is None or not att.names(header)):
                    self._gossip_to(peer, attestation_item(att))

    def receive(self, peer: str, att: Attestation) -> None:
        if att.state != peer:
            return  # each node speaks for itself only
        # The head before the header: the apply worker may write this very block between
        # the two reads. Read the other way round, the header was still missing and the
        # head already past it, so the attestation was neither checked nor kept early,
        # and lost for good (a block short of one attestation is never final here).
        head = self._store.head.height
        header = self._store.header(att.height)
        if header is not None:
            self._check(att, header)
            return
        # Not held when read, so above `head` (the block `attest` will take it from
        # `_early`), or undone by a heal meanwhile (then nothing waits for it).
        soon = head < att.height <= head + EARLY_ATTESTATION_HEIGHTS_AHEAD
        if soon and self._early_count < EARLY_ATTESTATIONS_MAX:
            self._early.setdefault(att.height, []).append(att)
            self._early_count += 1

    def _store_agreeing(self, att: Attestation) -> bool:
        """Store a peer's attestation of the block we hold there; True when it is new."""
        fresh = not self._store.has_attestation(att.height, att.state)
        if fresh and self._store.add_attestation(att, self._verifier):
            self._on_stored(att.height)
            return True
        return False

    def _check(self, att: Attestation, header: BlockHeader) -> None:
        if att.names(header):
            if self._store_agreeing(att):
                self._book_add(att)
                self._retry()
            return
        # The member table's key: governance may have replaced or removed this node's.
        if not self._store.members().verify_attestation(att, self._verifier):
            return
        if att.height < self._store.head.height - CONFLICT_HEIGHTS_KEPT:
            log.error("%s attests block %d as %s..., we hold %s... (below the window: not kept)",
                      att.state, att.height, att.block_hash.hex()[:16], header.hash.hex()[:16])
            return
        log.error("%s attests block %d round %d as %s..., we hold round %d %s...", att.state, att.height,
                  att.round, att.block_hash.hex()[:16], header.raft_term, header.hash.hex()[:16])
        self._book_add(att)
        agreeing = len(self._book.attesters(att.height, (att.round, att.block_hash)))
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
            return
        self._retry()

    def _book_add(self, att: Attestation) -> None:
        """Into the round book; a second hash by the same state in the same round is
        evidence."""
        rival = self._book.add(att)
        if rival is not None and (att.height, att.state) not in self._evidenced \
                and self._wants_evidence(att.state):
            self._evidence(rival, att)

    def rolled_back(self, height: int) -> None:
        """The ledger rolled back to `height`: blocks above it no longer wait to be
        signed; the book keeps what it verified (the blocks we apply there next are
        checked against it in `attest`)."""
        for h in [h for h in self._unsigned if h > height]:
            del self._unsigned[h]

    def _evidence(self, a: Attestation, b: Attestation) -> None:
        if (a.height, a.state) in self._evidenced:
            return
        self._evidenced.add((a.height, a.state))
        self._on_evidence(Evidence.of(a, b))

    def _forget_below(self, height: int) -> None:
        self._book.forget_below(height)
        if self._evidenced:
            self._evidenced = {(h, s) for h, s in self._evidenced if h >= height}

    def conflicts(self) -> int:
        """How many attestations of other blocks than ours are kept (tests and status)."""
        out = 0
        for height in self._book.heights():
            header = self._store.header(height)
            out += sum(1 for a in self._book.attestations(height) if header is None or not a.names(header))
        return out

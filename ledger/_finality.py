"""Finality: when a block can no longer be replaced, and the proof that a state lied.

A block is *final* when a Byzantine quorum of member states attests it:
ceil((n + f + 1) / 2) of n states with f = floor((n - 1) / 3), 4 of 5, 2 of 3. Any
two such quorums share at least f + 1 states, so at least one honest state. An
attestation names the block's height, round (the Raft term of the entry that carried
it) and hash, and a block is final when a quorum attests the same (height, round,
hash). An honest state attests a second block at one height only in a later round and
only once the block it attested there before is proven never to become final (the
round rule, ledger/_rounds.py, whose docstring has the whole argument); so two final
blocks at one height need more than f hostile states. A simple majority (3 of 5) is
not enough: a hostile leader that sends one block to two followers and another to the
other two, and attests both, gets three attestations on each.

This is the one place that says it: the node, catch-up, the auditor, proofs and the
CLI all call `finality_quorum` / `finality_verdict`. (`Genesis.raft_majority` is the
other count, Raft's: it orders and commits, it does not make anything final.)

*Evidence* is two attestations signed by one state's node for different block hashes
at one height in one round: a proof anyone can check with genesis alone, which no
honest node ever gives. (Two hashes at one height in different rounds are what an
honest node signs after a hostile leader's split: not evidence.) It is canonical
msgpack, so its id (a hash of its bytes) is the same wherever it is built, whichever
of the two attestations arrived first.

Pure: no clock, no store writes, no environment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._chain import Attestation
from ._encoding import DecodeLimits, pack, unpack_untrusted
from ._errors import DecodeError
from ._genesis import Genesis
from ._governance import byzantine_quorum
from ._identity import Verifier

# Version 2: attestations name their round (version 1 evidence does not decode).
EVIDENCE_VERSION = 2
# Evidence is two attestations: a version, and twice [state, height, round, hash, signature].
# State codes are two letters, hashes 32 bytes, signatures 64: well under 512 bytes.
# Peers send evidence in gossip; anything larger than this is not evidence.
EVIDENCE_BYTES_MAX = 512
_EVIDENCE_LIMITS = DecodeLimits(
    bytes_max=EVIDENCE_BYTES_MAX, depth_max=2, items_max=16, array_items_max=5,
    str_bytes_max=8, bin_bytes_max=64, int_min=0, int_max=(1 << 63) - 1,
)
_HASH_BYTES = 32


def finality_quorum(n: int) -> int:
    """How many of n member states must attest a block to make it final: the
    Byzantine quorum (not a majority: see the module's docstring)."""
    return byzantine_quorum(n)


@dataclass(frozen=True, slots=True)
class FinalityVerdict:
    """Whether attestations make one block final, who signed, and what is wrong."""

    final: bool
    states: tuple[str, ...]  # distinct member states whose attestation verified, sorted
    needed: int
    problem: str | None = None  # an attestation that is for another block or does not verify

    def message(self, height: int) -> str:
        """One sentence for people: why the block is or is not final."""
        if self.problem is not None:
            return f"block {height}: {self.problem}"
        have = f"{len(self.states)} of the member states attest block {height}"
        if self.final:
            return f"{have}; {self.needed} make it final"
        return (f"{have}; {self.needed} (a Byzantine quorum) are needed to make it final, "
                "so it is NOT final")


def finality_verdict(
    genesis: Genesis, height: int, round: int, block_hash: bytes, attestations: Iterable[Attestation],
    verifier: Verifier,
) -> FinalityVerdict:
    """Do these attestations make the block (height, round, block_hash) final?

    Counts distinct member states whose signature verifies against genesis and who
    attest exactly this block (its height, its round, its hash). An attestation for
    another block, or one that does not verify, is reported as the problem (whoever
    assembled the set added something that is not what it claims) and the verdict is
    not final."""
    needed = finality_quorum(len(genesis.states))
    states: set[str] = set()
    for att in attestations:
        if att.block != (height, round, block_hash):
            return FinalityVerdict(False, tuple(sorted(states)), needed,
                                   f"the attestation by {att.state} is for another block")
        if not att.verify(genesis, verifier):
            return FinalityVerdict(False, tuple(sorted(states)), needed,
                                   f"the attestation by {att.state} does not verify")
        states.add(att.state)
    return FinalityVerdict(len(states) >= needed, tuple(sorted(states)), needed)


def final_states(genesis: Genesis, states: Iterable[str]) -> bool:
    """Whether these (already verified, agreeing) attesting states make a quorum: for
    callers that hold only checked attestations of one block, one (height, round,
    hash) (a node's own store, which keeps only those naming its own header)."""
    members = {s.code for s in genesis.states}
    return len(set(states) & members) >= finality_quorum(len(genesis.states))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two attestations by one state for different blocks at one height in one round.

    Stored in canonical order (the smaller block hash first), so the same two
    attestations give the same bytes and id on every node."""

    first: Attestation
    second: Attestation

    @classmethod
    def of(cls, a: Attestation, b: Attestation) -> Evidence:
        """The evidence two attestations make; ValueError if they are not a conflict
        (use `conflict` to ask first). Signatures are checked by `verify`."""
        if not conflict(a, b):
            raise ValueError("two attestations by one state for different blocks at one height and round "
                             "are needed")
        return cls(a, b) if a.block_hash < b.block_hash else cls(b, a)

    @property
    def state(self) -> str:
        return self.first.state

    @property
    def height(self) -> int:
        return self.first.height

    @property
    def round(self) -> int:
        return self.first.round

    @property
    def id(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def encode(self) -> bytes:
        return pack([EVIDENCE_VERSION, self.first.to_list(), self.second.to_list()])

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        """Decode bytes nobody vouches for (a peer's gossip, a file): bounded, and only
        the canonical form of a well-shaped conflict; DecodeError otherwise."""
        value = unpack_untrusted(data, _EVIDENCE_LIMITS)
        if not isinstance(value, list) or len(value) != 3 or value[0] != EVIDENCE_VERSION:
            raise DecodeError(f"evidence is [{EVIDENCE_VERSION}, attestation, attestation]")
        a, b = Attestation.from_list(value[1]), Attestation.from_list(value[2])
        for att in (a, b):
            if len(att.block_hash) != _HASH_BYTES:
                raise DecodeError("an attested block hash has 32 bytes")
        if not conflict(a, b) or not a.block_hash < b.block_hash:
            raise DecodeError("evidence holds two attestations by one state for different "
                              "blocks at one height and round, the smaller hash first")
        evidence = cls(a, b)
        if evidence.encode() != bytes(data):
            raise DecodeError("evidence is not in canonical form")
        return evidence

    def verify(self, genesis: Genesis, verifier: Verifier) -> bool:
        """Both signatures verify against the state's node key in genesis: the state
        signed two blocks at one height in one round, which no honest node does."""
        return (conflict(self.first, self.second)
                and self.first.verify(genesis, verifier) and self.second.verify(genesis, verifier))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id.hex(),
            "kind": "attestation_equivocation",
            "state": self.state,
            "height": self.height,
            "round": self.round,
            "attestations": [self.first.to_json(), self.second.to_json()],
        }


def conflict(a: Attestation, b: Attestation) -> bool:
    """Two attestations by one state for different blocks at one height in one round.
    Different rounds are not a conflict: the round rule (ledger/_rounds.py) lets an
    honest state attest a later round's block once the earlier one is proven dead."""
    return (a.state == b.state and a.height == b.height and a.round == b.round
            and a.block_hash != b.block_hash)


__all__ = [
    "EVIDENCE_BYTES_MAX",
    "Evidence",
    "FinalityVerdict",
    "conflict",
    "final_states",
    "finality_quorum",
    "finality_verdict",
]

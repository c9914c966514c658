"""Leader-signed appends and the evidence two of them make.

A leader signs, for every entry it appends, the statement (term, index, entry hash)
with its node key, under its own domain. Raft's log matching assumes one entry per
(term, index); a hostile leader breaks it by sending different entries to different
followers, and two such signed statements from one state are a proof of it that anyone
checks with genesis alone: `AppendEquivocation.check`. Pure: no clock, no store.

Consensus never imports this module: the node hands the Raft layer a signer and a
verifier as callables (see the report of issue 11 for the wiring).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ._encoding import pack
from ._errors import DecodeError, LedgerError
from ._genesis import Genesis
from ._identity import KeyPair, Verifier

DOMAIN_APPEND = b"tamga/append/v1"
ENTRY_HASH_BYTES = 32
SIGNATURE_BYTES = 64
# Raft terms and indexes are unsigned 64-bit on the wire (consensus/_codec.py).
U64_MAX = (1 << 64) - 1


class EvidenceRefused(LedgerError):
    """What was offered as evidence proves nothing (the reason says why)."""


def entry_hash(data: bytes) -> bytes:
    """The hash a leader signs for an entry's bytes."""
    return hashlib.sha256(data).digest()


def append_message(term: int, index: int, hashed_entry: bytes) -> bytes:
    return pack([term, index, hashed_entry])


def _is_u64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


@dataclass(frozen=True, slots=True)
class SignedAppend:
    """A member state's node, as leader, saying: at (term, index) I appended this entry."""

    state: str
    term: int
    index: int
    entry_hash: bytes
    signature: bytes

    @classmethod
    def make(
        cls, key: KeyPair, chain_id: str, state: str, term: int, index: int, data: bytes
    ) -> SignedAppend:
        hashed = entry_hash(data)
        signature = key.sign(DOMAIN_APPEND, chain_id, append_message(term, index, hashed))
        return cls(state, term, index, hashed, signature)

    def verify(self, genesis: Genesis, verifier: Verifier) -> bool:
        try:
            member = genesis.state(self.state)
        except KeyError:
            return False
        return verifier.verify(
            member.node_public_key, self.signature, DOMAIN_APPEND, genesis.chain_id,
            append_message(self.term, self.index, self.entry_hash),
        )

    def to_list(self) -> list[Any]:
        return [self.state, self.term, self.index, self.entry_hash, self.signature]

    @classmethod
    def from_list(cls, value: Any) -> SignedAppend:
        """From untrusted bytes already unpacked with bounds: checked field by field."""
        if (
            not isinstance(value, list)
            or len(value) != 5
            or not isinstance(value[0], str)
            or not 0 < len(value[0]) <= 8
            or not all(_is_u64(v) for v in value[1:3])
            or not isinstance(value[3], bytes)
            or len(value[3]) != ENTRY_HASH_BYTES
            or not isinstance(value[4], bytes)
            or len(value[4]) != SIGNATURE_BYTES
        ):
            raise DecodeError("a signed append is [state, term, index, entry hash, signature]")
        return cls(value[0], value[1], value[2], value[3], value[4])


@dataclass(frozen=True, slots=True)
class AppendEquivocation:
    """Two signed appends by one state for different entries at one (term, index)."""

    first: SignedAppend
    second: SignedAppend

    def check(self, genesis: Genesis, verifier: Verifier) -> str:
        """The state this proves hostile; EvidenceRefused when it proves nothing."""
        a, b = self.first, self.second
        if a.state != b.state:
            raise EvidenceRefused("the two appends are signed by different states")
        if (a.term, a.index) != (b.term, b.index):
            raise EvidenceRefused("the two appends are at different (term, index)")
        if a.entry_hash == b.entry_hash:
            raise EvidenceRefused("the two appends name the same entry")
        if not (a.verify(genesis, verifier) and b.verify(genesis, verifier)):
            raise EvidenceRefused(f"a signature does not verify against {a.state}'s node key in genesis")
        return a.state

    def key(self) -> tuple[str, int, int]:
        """What the proof is about, to keep one proof per (state, term, index)."""
        return self.first.state, self.first.term, self.first.index

    def to_list(self) -> list[Any]:
        # Canonical order, so that one equivocation has one encoding whoever found it.
        pair = sorted([self.first.to_list(), self.second.to_list()], key=lambda v: v[3])
        return ["append-equivocation", pair[0], pair[1]]

    @classmethod
    def from_list(cls, value: Any) -> AppendEquivocation:
        if not isinstance(value, list) or len(value) != 3 or value[0] != "append-equivocation":
            raise DecodeError("append equivocation evidence is ['append-equivocation', append, append]")
        return cls(SignedAppend.from_list(value[1]), SignedAppend.from_list(value[2]))

"""Leader-signed appends and the evidence two of them make.

A leader signs, for every entry it appends, the statement (term, index, entry hash)
with its node key, under its own domain. Raft's log matching assumes one entry per
(term, index); a hostile leader breaks it by sending different entries to different
followers, and two such signed statements from one state are a proof of it that anyone
checks with genesis alone: `AppendEquivocation.check`. Pure: no clock, no store.

Consensus never imports this module: the node signs and checks appends in its own
frame envelope beside the encoded Raft message (node/_appends.py).

An `AppendEquivocation` is evidence as attestation `Evidence` is (ledger/_finality.py):
canonical bytes, an id, `verify` against genesis, a JSON view; `decode_evidence` reads
either kind from bytes nobody vouches for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ._encoding import DecodeLimits, pack, unpack_untrusted
from ._errors import DecodeError, LedgerError
from ._finality import EVIDENCE_BYTES_MAX, Evidence
from ._genesis import Genesis
from ._identity import KeyPair, Verifier

DOMAIN_APPEND = b"tamga/append/v1"
ENTRY_HASH_BYTES = 32
SIGNATURE_BYTES = 64
# Raft terms and indexes are unsigned 64-bit on the wire (consensus/_codec.py).
U64_MAX = (1 << 64) - 1
APPEND_EVIDENCE_TAG = "append-equivocation"
# Append evidence is a tag and twice [state, term, index, hash, signature]: about 260
# bytes with 64-bit terms and indexes; what peers gossip as evidence is bounded by the
# one evidence limit (EVIDENCE_BYTES_MAX, 512 bytes).
_APPEND_EVIDENCE_LIMITS = DecodeLimits(
    bytes_max=EVIDENCE_BYTES_MAX, depth_max=2, items_max=16, array_items_max=5,
    str_bytes_max=32, bin_bytes_max=64, int_min=0, int_max=U64_MAX,
)


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
        return cls.of_hash(key, chain_id, state, term, index, entry_hash(data))

    @classmethod
    def of_hash(
        cls, key: KeyPair, chain_id: str, state: str, term: int, index: int, hashed: bytes
    ) -> SignedAppend:
        """Sign an entry hash the caller computed (the node hashes an entry's type and
        data without copying a large block into one byte string first)."""
        signature = key.sign(DOMAIN_APPEND, chain_id, append_message(term, index, hashed))
        return cls(state, term, index, hashed, signature)

    def verify(self, genesis: Genesis, verifier: Verifier) -> bool:
        """Against the genesis key of its state (what evidence is checked with; a node
        checks what its peers send against the member table, `verify_key`)."""
        try:
            member = genesis.state(self.state)
        except KeyError:
            return False
        return self.verify_key(member.node_public_key, genesis.chain_id, verifier)

    def verify_key(self, public_key: bytes, chain_id: str, verifier: Verifier) -> bool:
        return verifier.verify(
            public_key, self.signature, DOMAIN_APPEND, chain_id,
            append_message(self.term, self.index, self.entry_hash),
        )

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "term": self.term, "index": self.index,
                "entry_hash": self.entry_hash.hex(), "signature": self.signature.hex()}

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

    @property
    def state(self) -> str:
        return self.first.state

    @property
    def term(self) -> int:
        return self.first.term

    @property
    def index(self) -> int:
        return self.first.index

    @property
    def id(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def to_list(self) -> list[Any]:
        # Canonical order, so that one equivocation has one encoding whoever found it.
        pair = sorted([self.first.to_list(), self.second.to_list()], key=lambda v: v[3])
        return [APPEND_EVIDENCE_TAG, pair[0], pair[1]]

    @classmethod
    def from_list(cls, value: Any) -> AppendEquivocation:
        if not isinstance(value, list) or len(value) != 3 or value[0] != APPEND_EVIDENCE_TAG:
            raise DecodeError("append equivocation evidence is ['append-equivocation', append, append]")
        return cls(SignedAppend.from_list(value[1]), SignedAppend.from_list(value[2]))

    def encode(self) -> bytes:
        return pack(self.to_list())

    @classmethod
    def decode(cls, data: bytes) -> AppendEquivocation:
        """Decode bytes nobody vouches for (a peer's gossip, a file): bounded, and only the
        canonical form of two appends by one state at one (term, index) for different
        entries; DecodeError otherwise. Signatures are checked by `verify`."""
        proof = cls.from_list(unpack_untrusted(data, _APPEND_EVIDENCE_LIMITS))
        a, b = proof.first, proof.second
        if a.state != b.state or (a.term, a.index) != (b.term, b.index) or a.entry_hash == b.entry_hash:
            raise DecodeError("append evidence holds two appends by one state at one (term, index) "
                              "for different entries")
        if proof.encode() != bytes(data):
            raise DecodeError("append evidence is not in canonical form")
        return proof

    def verify(self, genesis: Genesis, verifier: Verifier) -> bool:
        """Whether it proves its state's node equivocated (`check`, as a yes or no)."""
        try:
            self.check(genesis, verifier)
        except EvidenceRefused:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        pair = sorted([self.first, self.second], key=lambda a: a.entry_hash)
        return {
            "id": self.id.hex(),
            "kind": "append_equivocation",
            "state": self.state,
            "term": self.term,
            "index": self.index,
            "appends": [a.to_json() for a in pair],
        }


# The canonical encoding of append evidence starts with these bytes: an array of three
# whose first element is the tag (attestation evidence starts with its version number).
_APPEND_EVIDENCE_PREFIX = b"\x93" + pack(APPEND_EVIDENCE_TAG)
# Either kind of equivocation evidence: two attestations, or two signed appends.
AnyEvidence = Evidence | AppendEquivocation


def decode_evidence(data: bytes) -> AnyEvidence:
    """Evidence of either kind from bytes nobody vouches for; DecodeError otherwise.
    The kind is told by the first element: append evidence starts with its tag."""
    if len(data) > EVIDENCE_BYTES_MAX:
        raise DecodeError(f"evidence is at most {EVIDENCE_BYTES_MAX} bytes")
    if bytes(data[: len(_APPEND_EVIDENCE_PREFIX)]) == _APPEND_EVIDENCE_PREFIX:
        return AppendEquivocation.decode(data)
    return Evidence.decode(data)

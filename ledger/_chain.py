"""Blocks and attestations.

A block header commits to everything a block did: the documents (RFC 6962 Merkle
root over their signed wire bytes), their results (a root over the encoded results),
the state after the block, its time, who proposed it and where Raft committed it.
Its hash, over the canonical header bytes, is what the next block links to and what
each member state's node signs once it has applied the block itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._encoding import pack, pack_trusted, unpack
from ._errors import DecodeError
from ._genesis import Genesis
from ._identity import DOMAIN_ATTESTATION, KeyPair, Verifier
from ._merkle import leaf_hash, root_from_hashes
from ._state import Reason, Result

HEADER_VERSION = 1


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_hash: bytes
    documents_root: bytes
    results_root: bytes
    state_hash: bytes
    time_ms: int
    proposer: str  # member state code of the proposing node
    raft_term: int
    raft_index: int
    documents: int  # how many documents the block holds
    # The hash, computed on first use: a block's header is hashed by every part that
    # handles it (attestations, proofs, the store), a dozen times or more per block.
    _hash: bytes = field(default=b"", init=False, compare=False, repr=False)

    def to_list(self) -> list[Any]:
        return [
            HEADER_VERSION,
            self.chain_id,
            self.height,
            self.prev_hash,
            self.documents_root,
            self.results_root,
            self.state_hash,
            self.time_ms,
            self.proposer,
            self.raft_term,
            self.raft_index,
            self.documents,
        ]

    def encode(self) -> bytes:
        return pack(self.to_list())

    @property
    def hash(self) -> bytes:
        if not self._hash:
            object.__setattr__(self, "_hash", hashlib.sha256(b"tamga/block/v1" + self.encode()).digest())
        return self._hash

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        value = unpack(data)
        if not isinstance(value, list) or len(value) != 12 or value[0] != HEADER_VERSION:
            raise DecodeError("not a version 1 block header")
        fields = value[1:]
        types = (str, int, bytes, bytes, bytes, bytes, int, str, int, int, int)
        if not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(fields, types)):
            raise DecodeError("block header fields have the wrong types")
        for name, digest in zip(("prev", "documents", "results", "state"), fields[2:6]):
            if len(digest) != 32:
                raise DecodeError(f"block header {name} hash is not 32 bytes")
        return cls(*fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "hash": self.hash.hex(),
            "prev_hash": self.prev_hash.hex(),
            "documents_root": self.documents_root.hex(),
            "results_root": self.results_root.hex(),
            "state_hash": self.state_hash.hex(),
            "time_ms": self.time_ms,
            "proposer": self.proposer,
            "raft_term": self.raft_term,
            "raft_index": self.raft_index,
            "documents": self.documents,
        }


def documents_root(wires: Sequence[bytes]) -> bytes:
    return root_from_hashes([leaf_hash(w) for w in wires])


def encode_result(result: Result) -> bytes:
    return pack_trusted(result.to_list())


_APPLIED_LEAF = leaf_hash(encode_result(Result(Reason.APPLIED)))


def results_root(results: Sequence[Result]) -> bytes:
    # Most results are the same "applied": hash that leaf once.
    return root_from_hashes(
        [_APPLIED_LEAF if r.reason is Reason.APPLIED and not r.message else leaf_hash(encode_result(r))
         for r in results]
    )


def attestation_message(height: int, round: int, block_hash: bytes) -> bytes:
    """What a node signs (under DOMAIN_ATTESTATION and the chain id): the block's
    height, its round (the Raft term of the entry that carried it) and its hash. The
    round is what lets an honest node attest a replacement block at a height after a
    hostile leader's split without that being evidence (ledger/_rounds.py)."""
    return pack([height, round, block_hash])


@dataclass(frozen=True, slots=True)
class Attestation:
    """A member state's node saying: I applied this block, of this round, and got this
    hash. Attestations count towards finality only for the exact (height, round,
    block_hash) they name (ledger/_finality.py)."""

    state: str
    height: int
    round: int  # the Raft term of the entry that carried the block (its header's raft_term)
    block_hash: bytes
    signature: bytes

    @classmethod
    def make(cls, key: KeyPair, chain_id: str, state: str, header: BlockHeader) -> Attestation:
        message = attestation_message(header.height, header.raft_term, header.hash)
        return cls(state, header.height, header.raft_term, header.hash,
                   key.sign(DOMAIN_ATTESTATION, chain_id, message))

    @property
    def block(self) -> tuple[int, int, bytes]:
        """(height, round, block hash): what finality counts attestations of."""
        return self.height, self.round, self.block_hash

    def names(self, header: BlockHeader) -> bool:
        """Whether this attests exactly that block (its height, round and hash)."""
        return (self.height == header.height and self.round == header.raft_term
                and self.block_hash == header.hash)

    def verify(self, genesis: Genesis, verifier: Verifier) -> bool:
        """Against the genesis key of its state (the auditor's check; a node checks
        against the member table governance keeps, `Membership.verify_attestation`)."""
        try:
            member = genesis.state(self.state)
        except KeyError:
            return False
        return self.verify_key(member.node_public_key, genesis.chain_id, verifier)

    def verify_key(self, public_key: bytes, chain_id: str, verifier: Verifier) -> bool:
        return verifier.verify(
            public_key,
            self.signature,
            DOMAIN_ATTESTATION,
            chain_id,
            attestation_message(self.height, self.round, self.block_hash),
        )

    def to_list(self) -> list[Any]:
        return [self.state, self.height, self.round, self.block_hash, self.signature]

    @classmethod
    def from_list(cls, value: Any) -> Attestation:
        if (
            not isinstance(value, list)
            or len(value) != 5
            or not isinstance(value[0], str)
            or not _is_int(value[1])
            or not _is_int(value[2])
            or not isinstance(value[3], bytes)
            or not isinstance(value[4], bytes)
        ):
            raise DecodeError("an attestation is [state, height, round, block hash, signature]")
        return cls(value[0], value[1], value[2], value[3], value[4])

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Attestation:
        try:
            height, round_ = obj["height"], obj["round"]
            if not _is_int(height) or not _is_int(round_):
                raise ValueError("height and round are integers")
            return cls(
                str(obj["state"]),
                height,
                round_,
                bytes.fromhex(obj["block_hash"]),
                bytes.fromhex(obj["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"malformed attestation: {exc!r}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Block:
    """A whole block as stored and streamed: header, documents, results."""

    header: BlockHeader
    documents: list[bytes]
    results: list[Result]

    def encode(self) -> bytes:
        return pack(
            [self.header.encode(), self.documents, [r.to_list() for r in self.results]]
        )

    @classmethod
    def decode(cls, data: bytes) -> Block:
        value = unpack(data)
        if not isinstance(value, list) or len(value) != 3:
            raise DecodeError("a block is [header, documents, results]")
        header_bytes, documents, results = value
        if not isinstance(header_bytes, bytes) or not isinstance(documents, list):
            raise DecodeError("a block is [header, documents, results]")
        if not all(isinstance(d, bytes) for d in documents) or not isinstance(results, list):
            raise DecodeError("block documents must be bytes")
        try:
            decoded_results = [Result.from_list(r) for r in results]
        except (ValueError, TypeError, IndexError) as exc:
            raise DecodeError(f"block results are malformed: {exc!r}") from exc
        return cls(BlockHeader.decode(header_bytes), documents, decoded_results)

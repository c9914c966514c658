"""Genesis: the chain's root of trust, read from a JSON file.

It names the chain, the member states, each state's node key, TLS certificate
fingerprint and addresses, each state's regulator key, and the chain parameters.
Its hash (over canonical bytes, not the JSON text) is what block 1 links to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._catalogue import ProductGroup, groups_from_json
from ._encoding import pack
from ._errors import DecodeError
from ._identity import PUBLIC_KEY_BYTES, ParticipantId, participant_id

MEMBER_STATES = {
    "AM": "Armenia",
    "BY": "Belarus",
    "KZ": "Kazakhstan",
    "KG": "Kyrgyzstan",
    "RU": "Russia",
}


# Every time on the chain (genesis, block, document expiry window) is a signed 64-bit
# count of milliseconds since the Unix epoch, so that it fits every store and language.
TIME_MS_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ChainParams:
    """The chain's limits, fixed by genesis and hashed into it.

    A genesis file written before a limit existed loads with its default (and so hashes
    differently: the limits are part of what the member states agreed)."""

    # A block is bounded so that applying, storing and shipping it stays bounded too.
    block_documents_max: int = 10_000
    block_bytes_max: int = 16 << 20
    # How far one block's time may run ahead of the previous block's. A leader cannot
    # move chain time further in one block, so a wrong clock or a hostile leader moves
    # it only step by step, visibly (honest nodes alarm and do not attest). One minute
    # is far more than honest clocks disagree by and than a busy chain's blocks are apart;
    # an idle chain's leader catches up with empty blocks (node/_proposer.py).
    block_time_step_max_ms: int = 60_000
    # How far ahead of the block time (of the node's clock at admission) a document may
    # expire. Without a bound a signed document stays valid for ever; a day covers any
    # client that signs and submits the same day.
    document_expiry_window_max_ms: int = 24 * 3600 * 1000
    # How far ahead of a node's own clock a block's proposed time may be before that
    # node refuses to attest it. NTP keeps honest clocks within a few tens of ms; five
    # seconds leaves room for a badly synchronised one without letting time run away.
    clock_skew_max_ms: int = 5_000

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if type(value) is not int or not 0 < value <= TIME_MS_MAX:
                raise DecodeError(f"chain parameter {name} must be a positive 64-bit integer")

    def to_list(self) -> list[int]:
        return [
            self.block_documents_max,
            self.block_bytes_max,
            self.block_time_step_max_ms,
            self.document_expiry_window_max_ms,
            self.clock_skew_max_ms,
        ]

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def block_time(self, proposed_ms: int, previous_ms: int) -> int:
        """A block's time: the proposed one, clamped to [previous, previous + step].

        Every node and auditor applies this same rule, so the chain stays identical
        whatever the leader proposed; time never goes back and moves at most one step
        per block, so no single proposal can make every later document expire."""
        upper = min(previous_ms + self.block_time_step_max_ms, TIME_MS_MAX)
        return min(max(proposed_ms, previous_ms), upper)


def _is_sha256_hex(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True, slots=True)
class MemberState:
    code: str
    name: str
    node_id: int  # Raft node id, 1..n
    node_public_key: bytes
    regulator_public_key: bytes
    tls_cert_sha256: str  # hex fingerprint of the node's TLS certificate (DER)
    peer_address: str  # host:port of the mutual-TLS peer API
    api_url: str  # base URL of the client API
    # Hex SHA-256 of the client API's TLS certificate (DER), which clients pin; empty in
    # a genesis from before HTTPS: no pin, and the API is plain HTTP on loopback only.
    api_cert_sha256: str = ""

    def __post_init__(self) -> None:
        pin = self.api_cert_sha256
        if not isinstance(pin, str) or (pin and not _is_sha256_hex(pin)):
            raise DecodeError(f"{self.code}: api_cert_sha256 must be 64 lower-case hex characters")

    @property
    def regulator_id(self) -> ParticipantId:
        return participant_id(self.regulator_public_key)

    def to_list(self) -> list[Any]:
        return [
            self.code,
            self.name,
            self.node_id,
            self.node_public_key,
            self.regulator_public_key,
            self.tls_cert_sha256,
            self.peer_address,
            self.api_url,
            # Only when pinned: a genesis from before HTTPS keeps its hash, so the chains
            # and proofs that link to it stay valid.
            *([self.api_cert_sha256] if self.api_cert_sha256 else []),
        ]


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    time_ms: int
    states: tuple[MemberState, ...]
    params: ChainParams = field(default_factory=ChainParams)
    # The catalogue's product-group table (see _catalogue.py). Empty in a genesis from
    # before the catalogue, which then hashes as it did and keeps its rules.
    product_groups: tuple[ProductGroup, ...] = ()
    # Public keys of union-wide auditors: each is a participant from block 0 with an
    # audit grant covering every member state (docs/ACCESS.md).
    auditors: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        codes = [s.code for s in self.states]
        if not codes:
            raise DecodeError("genesis names no member state")
        if len(set(codes)) != len(codes):
            raise DecodeError("genesis names a member state twice")
        group_names = [g.name for g in self.product_groups]
        if len(set(group_names)) != len(group_names):
            raise DecodeError("genesis names a product group twice")
        if type(self.time_ms) is not int or not 0 <= self.time_ms <= TIME_MS_MAX:
            raise DecodeError("genesis time_ms must be within 0..2^63-1")
        ids = [s.node_id for s in self.states]
        if len(set(ids)) != len(ids) or min(ids) < 1:
            raise DecodeError("node ids in genesis must be distinct and positive")
        for s in self.states:
            if s.code not in MEMBER_STATES:
                raise DecodeError(f"{s.code} is not a member state of the Union")
            for key in (s.node_public_key, s.regulator_public_key):
                if len(key) != PUBLIC_KEY_BYTES:
                    raise DecodeError(f"{s.code}: a public key has {PUBLIC_KEY_BYTES} bytes")
        keys = self.auditors
        if any(len(k) != PUBLIC_KEY_BYTES for k in keys) or len(set(keys)) != len(keys):
            raise DecodeError(f"genesis auditors must be distinct public keys of {PUBLIC_KEY_BYTES} bytes")

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()

    def canonical_bytes(self) -> bytes:
        return pack(
            [
                b"tamga/genesis/v1",
                self.chain_id,
                self.time_ms,
                [s.to_list() for s in self.states],
                self.params.to_list(),
                # Only when named, so a genesis from before the catalogue or without
                # auditors keeps its hash; the groups are named (empty) whenever the
                # auditors are, so the two fields never stand in each other's place.
                *([[g.to_list() for g in self.product_groups]]
                  if self.product_groups or self.auditors else []),
                *([list(self.auditors)] if self.auditors else []),
            ]
        )

    def product_group(self, name: str) -> ProductGroup | None:
        for group in self.product_groups:
            if group.name == name:
                return group
        return None

    @property
    def raft_majority(self) -> int:
        """How many member states make a simple majority: Raft's count for electing and
        committing. It is NOT the finality rule: a block is final only with a Byzantine
        quorum of attestations (ledger.finality_quorum, 4 of 5), since a hostile leader
        can gather a majority on each of two blocks at one height."""
        return len(self.states) // 2 + 1

    def state(self, code: str) -> MemberState:
        for s in self.states:
            if s.code == code:
                return s
        raise KeyError(code)

    def state_by_node(self, node_id: int) -> MemberState:
        for s in self.states:
            if s.node_id == node_id:
                return s
        raise KeyError(node_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "time_ms": self.time_ms,
            "params": self.params.to_json(),
            "states": [
                {
                    "code": s.code,
                    "name": s.name,
                    "node_id": s.node_id,
                    "node_public_key": s.node_public_key.hex(),
                    "regulator_public_key": s.regulator_public_key.hex(),
                    "tls_cert_sha256": s.tls_cert_sha256,
                    "peer_address": s.peer_address,
                    "api_url": s.api_url,
                    **({"api_cert_sha256": s.api_cert_sha256} if s.api_cert_sha256 else {}),
                }
                for s in self.states
            ],
            **({"product_groups": [g.to_json() for g in self.product_groups]} if self.product_groups else {}),
            **({"auditors": [k.hex() for k in self.auditors]} if self.auditors else {}),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Genesis:
        try:
            # Parameters a genesis file does not name take their defaults.
            params = ChainParams(**obj.get("params", {}))
            states = tuple(
                MemberState(
                    code=s["code"],
                    name=s["name"],
                    node_id=int(s["node_id"]),
                    node_public_key=bytes.fromhex(s["node_public_key"]),
                    regulator_public_key=bytes.fromhex(s["regulator_public_key"]),
                    tls_cert_sha256=s["tls_cert_sha256"],
                    peer_address=s["peer_address"],
                    api_url=s["api_url"],
                    api_cert_sha256=s.get("api_cert_sha256", ""),
                )
                for s in obj["states"]
            )
            groups = groups_from_json(obj.get("product_groups", []))
            auditors = tuple(bytes.fromhex(k) for k in obj.get("auditors", []))
            return cls(str(obj["chain_id"]), int(obj["time_ms"]), states, params, groups, auditors)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(f"genesis is malformed: {exc!r}") from exc

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Genesis:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DecodeError(f"cannot read genesis file {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise DecodeError(f"genesis file {path} is not JSON: {exc}") from exc
        return cls.from_json(obj)

"""The member table: each member state's node as genesis and governance make it now.

Genesis names each state's node; governance documents add, remove and replace them
(_governance.py). Everything a node trusts a peer for follows this one table, read from
the ledger state at the head: which nodes it links to and at what address, which TLS
certificate it pins for each, who may send on a peer link, and whose key signs a
state's attestations. A pure function of the ledger state, so every honest node that
applied the same blocks holds the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._chain import Attestation
from ._genesis import Genesis
from ._governance import ACTIVE, Reader, governed_member, membership_changed, membership_epoch
from ._identity import Verifier


@dataclass(frozen=True, slots=True)
class Member:
    """One member state's node. A removed node is listed, inactive: the state is still a
    member (its regulator still signs governance), but its node is trusted for nothing."""

    code: str
    node_id: int  # the Raft node id genesis gave the state; governance never changes it
    active: bool
    node_public_key: bytes
    tls_cert_sha256: str
    peer_address: str
    api_url: str


@dataclass(frozen=True, slots=True)
class Membership:
    chain_id: str
    epoch: int  # how many membership changes governance applied (0: genesis's table)
    members: tuple[Member, ...]  # genesis order, removed nodes included

    def member(self, code: str) -> Member | None:
        for m in self.members:
            if m.code == code:
                return m
        return None

    def active(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.active)

    def node_key(self, code: str) -> bytes | None:
        """The key that signs `code`'s attestations now; None for a removed node."""
        m = self.member(code)
        return m.node_public_key if m is not None and m.active else None

    def pins(self) -> dict[str, str]:
        """State -> the TLS certificate fingerprint pinned for its node, active nodes only."""
        return {m.code: m.tls_cert_sha256.lower() for m in self.members if m.active}

    def verify_attestation(self, att: Attestation, verifier: Verifier) -> bool:
        """Whether `att` is signed by its state's node key in this table (an unknown or
        removed state's attestation verifies never)."""
        key = self.node_key(att.state)
        return key is not None and att.verify_key(key, self.chain_id, verifier)

    def to_json(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "members": [
                {
                    "code": m.code,
                    "node_id": m.node_id,
                    "active": m.active,
                    "node_public_key": m.node_public_key.hex(),
                    "tls_cert_sha256": m.tls_cert_sha256,
                    "peer_address": m.peer_address,
                    "api_url": m.api_url,
                }
                for m in self.members
            ],
        }


def governed_membership(reader: Reader, genesis: Genesis) -> Membership:
    """The member table as of the ledger state `reader` reads."""
    members = []
    for s in genesis.states:
        record = governed_member(reader, genesis, s.code)
        node = record.node
        members.append(
            Member(s.code, s.node_id, record.status == ACTIVE, node.public_key, node.tls_cert_sha256,
                   node.peer_address, node.api_url)
        )
    return Membership(genesis.chain_id, membership_epoch(reader), tuple(members))


class _After:
    """Reads the state after a block: its writes over the state before it."""

    def __init__(self, writes: Mapping[bytes, bytes | None], before: Reader) -> None:
        self._writes = writes
        self._before = before

    def get(self, key: bytes) -> bytes | None:
        return self._writes[key] if key in self._writes else self._before.get(key)


def membership_after(writes: Mapping[bytes, bytes | None], before: Reader, genesis: Genesis) -> Membership:
    """The member table after a block whose writes are `writes`, over the state `before`."""
    return governed_membership(_After(writes, before), genesis)


__all__ = ["Member", "Membership", "governed_membership", "membership_after", "membership_changed"]

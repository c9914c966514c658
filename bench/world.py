"""A ledger without a network, for benchmarks: a five-state genesis, keys from labels.

Everything is derived from fixed labels (keys, nonces, serials, block times), so two
runs build the same chain and their figures compare. Documents are applied straight
to a `LedgerStore`, one block per `apply`, as a node would after Raft committed them.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import (
    DOMAIN_DOCUMENT,
    MEMBER_STATES,
    TAXPAYING_ROLES,
    DocType,
    Genesis,
    KeyPair,
    LedgerStore,
    MemberState,
    Result,
    SignedDocument,
    make_document,
    signing_bytes,
)
from testnet import demo_tax_id

CHAIN_ID = "tamga-bench"
GENESIS_TIME_MS = 1_790_000_000_000
GTIN = "04680029460908"  # a real GTIN with a valid check digit
STATES = ("AM", "BY", "KZ", "KG", "RU")
# Blocks are a second apart, so that documents never expire within a run.
BLOCK_INTERVAL_MS = 1_000
DOCUMENT_LIFETIME_MS = 3_600_000


def labelled_key(label: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(label.encode()).digest())


def make_genesis(states: tuple[str, ...] = STATES) -> Genesis:
    """A genesis whose node and regulator keys come from labels; nothing listens at its addresses."""
    members = tuple(
        MemberState(
            code=code,
            name=MEMBER_STATES[code],
            node_id=i + 1,
            node_public_key=labelled_key(f"node-{code}").public_key,
            regulator_public_key=labelled_key(f"regulator-{code}").public_key,
            tls_cert_sha256="00" * 32,
            peer_address=f"127.0.0.1:{7000 + i}",
            api_url=f"http://127.0.0.1:{8000 + i}",
        )
        for i, code in enumerate(states)
    )
    return Genesis(CHAIN_ID, GENESIS_TIME_MS, members)


class World:
    """A ledger store plus the helpers to build, sign and apply documents."""

    def __init__(self, path: Path, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or make_genesis()
        self.store = LedgerStore(path, self.genesis, sync=False)
        self.time_ms = self.genesis.time_ms + BLOCK_INTERVAL_MS
        self._nonce = 0
        self._serial = 0

    def regulator(self, state: str) -> KeyPair:
        return labelled_key(f"regulator-{state}")

    def node_key(self, state: str) -> KeyPair:
        return labelled_key(f"node-{state}")

    def doc(self, key: KeyPair, doc_type: DocType | str, **fields: Any) -> SignedDocument:
        self._nonce += 1
        document = make_document(
            self.genesis.chain_id, doc_type, key.participant_id, self._nonce,
            self.time_ms + DOCUMENT_LIFETIME_MS, **fields,
        )
        return document.sign(key)

    def next_block_time(self) -> int:
        self.time_ms += BLOCK_INTERVAL_MS
        return self.time_ms

    def apply(self, *docs: SignedDocument | bytes, proposer: str = "RU") -> list[Result]:
        wires = [d if isinstance(d, bytes) else d.wire() for d in docs]
        return self.store.apply_block(wires, self.next_block_time(), proposer).results

    def apply_ok(self, *docs: SignedDocument) -> None:
        """Apply one block; every document in it must apply (a benchmark measures success)."""
        bad = [r for r in self.apply(*docs) if not r.applied]
        if bad:
            raise RuntimeError(f"{len(bad)} documents did not apply, the first: {bad[0]}")

    def register(self, state: str, roles: list[str], name: str) -> KeyPair:
        key = labelled_key(f"participant-{state}-{name}-{self._nonce}")
        self.apply_ok(
            self.doc(
                self.regulator(state), DocType.REGISTER_PARTICIPANT,
                public_key=key.public_key, state=state, roles=sorted(roles), name=name,
                # Businesses give a tax id on a chain with the catalogue (ledger/_tax_ids.py).
                **({"tax_id": demo_tax_id(state, self._nonce)}
                   if TAXPAYING_ROLES.intersection(roles) and self.genesis.product_groups else {}),
            )
        )
        return key

    def serials(self, count: int) -> list[str]:
        start = self._serial
        self._serial += count
        return [f"S{n:012d}" for n in range(start + 1, start + count + 1)]

    def emit(self, state: str, owner: KeyPair, count: int, gtin: str = GTIN) -> list[str]:
        serials = self.serials(count)
        self.apply_ok(
            self.doc(
                self.regulator(state), DocType.EMIT, owner=owner.participant_id, gtin=gtin, serials=serials
            )
        )
        return ["01" + gtin + "21" + s for s in serials]

    def introduced(self, state: str, owner: KeyPair, count: int) -> list[str]:
        codes = self.emit(state, owner, count)
        self.apply_ok(self.doc(owner, DocType.INTRODUCE, codes=codes))
        return codes


def raw_verify_seconds(public_key: bytes, chain_id: str, docs: list[SignedDocument]) -> float:
    """Seconds to verify `docs`' signatures with one parsed Ed25519 key and nothing else.

    The comparison point for every apply and audit rate: what the signatures alone cost.
    """
    key = Ed25519PublicKey.from_public_bytes(public_key)
    messages = [(d.signature, signing_bytes(DOMAIN_DOCUMENT, chain_id, d.body)) for d in docs]
    start = time.perf_counter()
    for signature, message in messages:
        key.verify(signature, message)
    return time.perf_counter() - start

"""A small world for ledger tests: a five-state genesis, keys from seeds, a store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ledger import (
    MEMBER_STATES,
    TAXPAYING_ROLES,
    DocType,
    Genesis,
    KeyPair,
    LedgerStore,
    MemberState,
    ProductGroup,
    Result,
    SignedDocument,
    make_document,
)
from testnet import demo_tax_id

CHAIN_ID = "tamga-test"
GENESIS_TIME_MS = 1_790_000_000_000
GTIN = "04680029460908"  # a real GTIN from shared/data/codes/valid.tsv
GTIN_2 = "02900002317701"


def seeded_key(label: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(label.encode()).digest())


def make_genesis(
    states: tuple[str, ...] = ("AM", "BY", "KZ", "KG", "RU"), groups: tuple[ProductGroup, ...] = ()
) -> Genesis:
    """A genesis of these states; with `groups`, a chain with the product catalogue."""
    members = tuple(
        MemberState(
            code=code,
            name=MEMBER_STATES[code],
            node_id=i + 1,
            node_public_key=seeded_key(f"node-{code}").public_key,
            regulator_public_key=seeded_key(f"regulator-{code}").public_key,
            tls_cert_sha256="00" * 32,
            peer_address=f"127.0.0.1:{7000 + i}",
            api_url=f"http://127.0.0.1:{8000 + i}",
        )
        for i, code in enumerate(states)
    )
    return Genesis(CHAIN_ID, GENESIS_TIME_MS, members, product_groups=groups)


class World:
    """A ledger store plus the helpers to build, sign and apply documents."""

    def __init__(self, path: Path, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or make_genesis()
        self.store = LedgerStore(path, self.genesis, sync=False)
        self.time_ms = self.genesis.time_ms + 1_000
        self._nonce = 0
        self._serial = 0
        self._products: set[str] = set()

    def regulator(self, state: str) -> KeyPair:
        return seeded_key(f"regulator-{state}")

    def node_key(self, state: str) -> KeyPair:
        return seeded_key(f"node-{state}")

    def doc(
        self, key: KeyPair, doc_type: DocType | str, *, expires_ms: int = 3_600_000,
        chain_id: str = CHAIN_ID, **fields: Any,
    ) -> SignedDocument:
        self._nonce += 1
        document = make_document(
            chain_id, doc_type, key.participant_id, self._nonce, self.time_ms + expires_ms, **fields
        )
        return document.sign(key)

    def apply(self, *docs: SignedDocument | bytes, proposer: str = "RU") -> list[Result]:
        self.time_ms += 1_000
        wires = [d if isinstance(d, bytes) else d.wire() for d in docs]
        return self.store.apply_block(wires, self.time_ms, proposer).results

    def apply_ok(self, *docs: SignedDocument) -> None:
        results = self.apply(*docs)
        bad = [r for r in results if not r.applied]
        assert not bad, bad

    def register(self, state: str, roles: list[str], name: str = "Org", tax_id: str | None = None) -> KeyPair:
        """A participant; on a chain with the catalogue a business gets an invented tax id
        of its state's shape unless `tax_id` names one ("" for none). A chain without it
        registers as before, with none."""
        key = seeded_key(f"participant-{state}-{name}-{self._nonce}")
        if tax_id is None:
            business = TAXPAYING_ROLES.intersection(roles) and self.genesis.product_groups
            tax_id = demo_tax_id(state, self._nonce) if business else ""
        self.apply_ok(
            self.doc(
                self.regulator(state), DocType.REGISTER_PARTICIPANT,
                public_key=key.public_key, state=state, roles=sorted(roles), name=name,
                **({"tax_id": tax_id} if tax_id else {}),
            )
        )
        return key

    def serials(self, count: int) -> list[str]:
        out = []
        for _ in range(count):
            self._serial += 1
            out.append(f"S{self._serial:012d}")
        return out

    def register_product(
        self, state: str, producer: KeyPair, gtin: str = GTIN, group: str = "water", tnved: str = "2201"
    ) -> None:
        """Enter a GTIN in the catalogue (the regulator of the producer's state)."""
        self.apply_ok(
            self.doc(self.regulator(state), DocType.REGISTER_PRODUCT, gtin=gtin, group=group,
                     name=f"Product {gtin}", tnved=tnved, producer=producer.participant_id)
        )
        self._products.add(gtin)

    def emit(self, state: str, owner: KeyPair, count: int, gtin: str = GTIN) -> list[str]:
        """Codes emitted to `owner`; on a chain with the catalogue, the GTIN is registered
        first (as packaged water, whose serials of 13 characters `serials` makes)."""
        if self.genesis.product_groups and gtin not in self._products:
            self.register_product(state, owner, gtin)
        serials = self.serials(count)
        self.apply_ok(
            self.doc(self.regulator(state), DocType.EMIT, owner=owner.participant_id, gtin=gtin,
                     serials=serials)
        )
        return ["01" + gtin + "21" + s for s in serials]

    def introduced(self, state: str, owner: KeyPair, count: int) -> list[str]:
        codes = self.emit(state, owner, count)
        self.apply_ok(self.doc(owner, DocType.INTRODUCE, codes=codes))
        return codes

"""Signed documents for driving a testnet: registrations, codes, shipments.

A thin layer over `ledger.make_document` that numbers nonces, sets an expiry and
makes serials, for tests and the benchmark (the CLI builds its own documents).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence

from ledger import TAX_ID_DIGITS, TAXPAYING_ROLES, DocType, KeyPair, SignedDocument, make_document

from ._groups import DEMO_GROUP, DEMO_TNVED

# A real GTIN with a valid check digit, registered as packaged water (testnet/_groups.py).
GTIN = "04680029460908"
# Packaged water prints serials of 13 characters: 4 of the run, 9 of a counter.
SERIAL_RUN_CHARS = 4
SERIAL_COUNTER_CHARS = 9
EXPIRY_MS = 3_600_000


def code_key(gtin: str, serial: str) -> str:
    return f"01{gtin}21{serial}"


def demo_tax_id(state: str, n: int) -> str:
    """An invented tax id of `state`'s shape (ledger.TAX_ID_DIGITS: RU INN of 10 digits,
    KZ BIN of 12, BY UNP of 9, AM TIN of 8, KG INN of 14), numbered by `n`."""
    digits = TAX_ID_DIGITS.get(state, (10,))[0]
    return f"9{n % 10 ** (digits - 1):0{digits - 1}d}"


class DocFactory:
    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        # Nonces start from the clock so that two factories of one run never collide.
        self._nonce = itertools.count(time.time_ns())
        self._serial = itertools.count(1)
        self._tax_ids = itertools.count(1)
        self._run = os.urandom(SERIAL_RUN_CHARS // 2).hex().upper()

    def doc(self, key: KeyPair, doc_type: DocType | str, *, expires_in_ms: int = EXPIRY_MS,
            chain_id: str | None = None, **fields: object) -> SignedDocument:
        document = make_document(
            chain_id or self.chain_id, doc_type, key.participant_id, next(self._nonce),
            int(time.time() * 1000) + expires_in_ms, **fields,
        )
        return document.sign(key)

    def serials(self, count: int) -> list[str]:
        return [f"{self._run}{next(self._serial):0{SERIAL_COUNTER_CHARS}d}" for _ in range(count)]

    def register(self, regulator: KeyPair, key: KeyPair, state: str, roles: Sequence[str],
                 name: str, tax_id: str | None = None) -> SignedDocument:
        """A registration; a business gets an invented tax id of its state's shape unless
        `tax_id` names one ("" for none: refused for a business on a chain with the catalogue)."""
        if tax_id is None:
            tax_id = demo_tax_id(state, next(self._tax_ids)) if TAXPAYING_ROLES.intersection(roles) else ""
        if tax_id:
            return self.doc(regulator, DocType.REGISTER_PARTICIPANT, public_key=key.public_key, state=state,
                            roles=sorted(roles), name=name, tax_id=tax_id)
        return self.doc(regulator, DocType.REGISTER_PARTICIPANT, public_key=key.public_key, state=state,
                        roles=sorted(roles), name=name)

    def register_product(
        self, regulator: KeyPair, producer: KeyPair, gtin: str = GTIN, group: str = DEMO_GROUP,
        name: str = "Drinking water 0.5 l", tnved: str = DEMO_TNVED,
    ) -> SignedDocument:
        """The catalogue entry `emit` needs on a chain with product groups (regulator of
        the producer's state)."""
        return self.doc(regulator, DocType.REGISTER_PRODUCT, gtin=gtin, group=group, name=name,
                        tnved=tnved, producer=producer.participant_id)

    def emit(
        self, regulator: KeyPair, owner: KeyPair, serials: list[str], gtin: str = GTIN
    ) -> SignedDocument:
        return self.doc(regulator, DocType.EMIT, owner=owner.participant_id, gtin=gtin, serials=serials)

    def introduce(self, owner: KeyPair, codes: list[str]) -> SignedDocument:
        return self.doc(owner, DocType.INTRODUCE, codes=codes)

    def ship(self, owner: KeyPair, receiver: KeyPair, codes: list[str]) -> SignedDocument:
        return self.doc(owner, DocType.SHIP, receiver=receiver.participant_id, codes=codes)

    def accept(self, receiver: KeyPair, shipment: bytes) -> SignedDocument:
        return self.doc(receiver, DocType.ACCEPT, shipment=shipment, codes=[])

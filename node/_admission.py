"""Admission: which documents this node takes into its mempool, from clients and peers.

Both paths apply the ledger's one admission rule (`ledger.admission`) against the
head of our ledger, with "known" meaning recorded in a block, pending in the mempool,
or in a committed block the applier has not reached yet. A client hears the refusal;
a peer's refused document is dropped and counted (its own client heard already).
Each signature is checked once per node: a document admitted here is remembered as
verified, so applying its block does not check it again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ledger import (
    DOMAIN_DOCUMENT,
    DecodeError,
    Genesis,
    LedgerStore,
    ParticipantRecord,
    Result,
    SignedDocument,
    Verifier,
    admission,
    decode_signed,
)

from ._errors import Refusal
from ._mempool import Mempool, MempoolFull
from ._metrics import Metrics

# Ids of documents whose signature this node checked at admission, so that applying
# their block skips the check. Bounded: a document forgotten here is checked at apply,
# which is slower but still right. Twice the default mempool covers every pending one.
VERIFIED_IDS_MAX = 200_000


class Verified:
    """The documents whose signatures this node checked, bounded, oldest forgotten first.

    Remembered by id with the signature that was checked: a forged copy of a document
    has the same id but another signature, and must be checked again at apply."""

    def __init__(self, bound: int = VERIFIED_IDS_MAX) -> None:
        self._ids: OrderedDict[bytes, bytes] = OrderedDict()
        self._bound = bound

    def add(self, signed: SignedDocument) -> None:
        self._ids[signed.id] = signed.signature
        if len(self._ids) > self._bound:
            self._ids.popitem(last=False)

    def discard(self, doc_id: bytes) -> None:
        self._ids.pop(doc_id, None)

    def __contains__(self, verified_key: object) -> bool:
        """`verified_key` is a document's id followed by its signature."""
        if not isinstance(verified_key, bytes):
            return False
        return self._ids.get(verified_key[:32]) == verified_key[32:]


class Admission:
    """Checks documents against the admission rule and keeps the admitted ones."""

    def __init__(
        self,
        genesis: Genesis,
        store: LedgerStore,
        mempool: Mempool,
        committed: set[bytes],
        verifier: Verifier,
        verified: Verified,
        metrics: Metrics,
        on_admitted: Callable[[SignedDocument, bytes, bool], None],
    ) -> None:
        """`committed` holds the ids of documents in committed blocks the applier has not
        reached; `on_admitted(signed, wire, from_client)` passes an admitted document on."""
        self._chain_id = genesis.chain_id
        self._store = store
        self._mempool = mempool
        self._committed = committed
        self._verifier = verifier
        self._verified = verified
        self._metrics = metrics
        self._on_admitted = on_admitted

    def check(self, signed: SignedDocument, now_ms: int) -> Result | None:
        """The admission rule against our ledger's head; None if the document may enter."""
        doc_id = signed.id
        verified, verifier = self._verified, self._verifier

        def signature_ok(signer: ParticipantRecord) -> bool:
            return signed.verified_key in verified or verifier.verify(
                signer.public_key, signed.signature, DOMAIN_DOCUMENT, self._chain_id, signed.body
            )

        def known() -> bool:
            return doc_id in self._mempool or doc_id in self._committed or self._store.is_recorded(doc_id)

        return admission(
            signed, chain_id=self._chain_id, time_ms=now_ms,
            signer=self._store.participant_record(signed.document.signer),
            signature_ok=signature_ok, known=known,
        )

    def admit(self, signed: SignedDocument, wire: bytes, now_ms: int) -> bytes:
        """Admit a client's document; its id, or a `Refusal` saying why not."""
        refusal = self.check(signed, now_ms)
        if refusal is not None:
            raise Refusal(refusal.reason.value, refusal.message)
        try:
            self._mempool.add(signed.id, wire, signed.document.expires_at_ms, time.monotonic(), signed)
        except MempoolFull as exc:
            raise Refusal("mempool_full", str(exc)) from exc
        self._verified.add(signed)
        self._on_admitted(signed, wire, True)
        return signed.id

    def admit_from_peer(self, wire: bytes) -> None:
        """A peer's document: the same rule; a refusal is dropped and counted."""
        try:
            signed = decode_signed(wire)
        except DecodeError:
            self._metrics.frames_dropped.inc()
            return
        refusal = self.check(signed, int(time.time() * 1000))
        if refusal is not None:
            self._metrics.peer_refused(refusal.reason.value).inc()
            return
        try:
            self._mempool.add(signed.id, wire, signed.document.expires_at_ms, time.monotonic(), signed)
        except MempoolFull:
            self._metrics.peer_refused("mempool_full").inc()
            return  # the origin still holds it and sends it again
        self._verified.add(signed)
        self._on_admitted(signed, wire, False)

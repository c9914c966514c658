"""Admission: which documents this node takes into its mempool, from clients and peers.

Both paths apply the ledger's one admission rule (`ledger.admission`) against the
head of our ledger, with "known" meaning recorded in a block, pending in the mempool,
or in a committed block the applier has not reached yet. A client hears the refusal;
a peer's refused document is dropped and counted (its own client heard already).
Each signature is checked once per node: a document admitted here is remembered as
verified, so applying its block does not check it again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from ledger import (
    DOMAIN_DOCUMENT,
    DecodeError,
    Genesis,
    LedgerStore,
    ParticipantRecord,
    Reason,
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
# Peer documents refused for a reason the same bytes always meet again, remembered by
# the hash of their bytes so that junk sent again is dropped without decoding or
# verifying it. A hundred thousand entries (about 15 MB) outlast any honest resend and
# bound what a flood of distinct junk can make us hold; the oldest is forgotten first.
REFUSED_WIRES_MAX = 100_000
# Reasons that never change for the same bytes: they do not decode, name another chain,
# carry a signature the signer's key (which never changes) refutes, or expired (time
# only moves on). `not_registered` changes when the signer registers: it is remembered
# with the signer and checked again, cheaply, on each repeat.
_FINAL_REASONS = frozenset((Reason.MALFORMED, Reason.WRONG_CHAIN, Reason.BAD_SIGNATURE, Reason.EXPIRED))


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


class RefusedWires:
    """Peer documents refused before, by the SHA-256 of their bytes: the reason, and
    the signer for `not_registered` (None: the bytes did not decode). Bounded, oldest
    forgotten first."""

    def __init__(self, bound: int = REFUSED_WIRES_MAX) -> None:
        self._seen: OrderedDict[bytes, tuple[Reason, str]] = OrderedDict()
        self._bound = bound

    @staticmethod
    def key(wire: bytes) -> bytes:
        return hashlib.sha256(wire).digest()

    def remember(self, key: bytes, reason: Reason, signer: str = "") -> None:
        if reason not in _FINAL_REASONS and reason is not Reason.NOT_REGISTERED:
            return
        self._seen[key] = (reason, signer)
        self._seen.move_to_end(key)
        if len(self._seen) > self._bound:
            self._seen.popitem(last=False)

    def get(self, key: bytes) -> tuple[Reason, str] | None:
        return self._seen.get(key)

    def forget(self, key: bytes) -> None:
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)


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
        self.refused = RefusedWires()

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
            expiry_window_ms=self._store.params().document_expiry_window_max_ms,
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
        """A peer's document: the same rule; a refusal is dropped and counted, and
        remembered when the same bytes would always be refused (see `RefusedWires`)."""
        key = RefusedWires.key(wire)
        if self._refused_before(key):
            return
        try:
            signed = decode_signed(wire)
        except DecodeError:
            self._metrics.frames_dropped.inc()
            self.refused.remember(key, Reason.MALFORMED)
            return
        refusal = self.check(signed, int(time.time() * 1000))
        if refusal is not None:
            self._metrics.peer_refused(refusal.reason.value).inc()
            self.refused.remember(key, refusal.reason, signed.document.signer)
            return
        try:
            self._mempool.add(signed.id, wire, signed.document.expires_at_ms, time.monotonic(), signed)
        except MempoolFull:
            self._metrics.peer_refused("mempool_full").inc()
            return  # the origin still holds it and sends it again
        self._verified.add(signed)
        self._on_admitted(signed, wire, False)

    def _refused_before(self, key: bytes) -> bool:
        """Whether these bytes were refused before for a reason that still holds: then
        they are dropped and counted again, without decoding or verifying."""
        seen = self.refused.get(key)
        if seen is None:
            return False
        reason, signer = seen
        if reason is Reason.NOT_REGISTERED and self._store.participant_record(signer) is not None:
            self.refused.forget(key)  # the signer registered since: check it afresh
            return False
        if reason is Reason.MALFORMED:
            self._metrics.frames_dropped.inc()
        else:
            self._metrics.peer_refused(reason.value).inc()
        return True

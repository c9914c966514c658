"""The admission rule: may this signed document enter the chain at all?

One pure function, called by the state machine for every document of a block and by
a node for every document a client or a peer hands it, so that both refuse the same
documents for the same reasons. It reads nothing itself: the caller says who the
signer is, whether the document is already known, and how to check the signature;
the last two are callables so that a caller pays for them only when the rule gets
that far.

The order of the checks is part of the chain's rules (the first failing check names
the reason, and reasons are hashed into blocks): chain, signer, signature, duplicate,
expiry, expiry window, signer's status. The signature comes before the duplicate check because only
a correctly signed document may claim its id: a forged copy must not be able to
block the genuine one.
"""

from __future__ import annotations

from collections.abc import Callable

from ._documents import SignedDocument
from ._reasons import Reason, Result
from ._records import ACTIVE, ParticipantRecord

# A refused document that is nevertheless recorded under its id, so that it can never
# be ordered again: its signature is good, only its moment or its signer's standing is
# wrong. The other refusals leave no trace.
RECORDED_REFUSALS = frozenset((Reason.EXPIRED, Reason.REVOKED))


def admission(
    signed: SignedDocument,
    *,
    chain_id: str,
    time_ms: int,
    expiry_window_ms: int,
    signer: ParticipantRecord | None,
    signature_ok: Callable[[ParticipantRecord], bool],
    known: Callable[[], bool],
) -> Result | None:
    """None if the document may enter; otherwise the refusal, with its reason.

    `time_ms` is the block's time for the state machine and the node's clock at
    admission; `expiry_window_ms` how far beyond `time_ms` the document may expire
    (genesis `document_expiry_window_max_ms`); `signer` is the signer's record as of
    that moment (None: unknown);
    `signature_ok(signer)` checks the signature against that signer's key; `known()`
    says whether a document with this id is already recorded (or, for a node,
    pending)."""
    doc = signed.document
    if doc.chain_id != chain_id:
        return Result(Reason.WRONG_CHAIN, f"document is for chain {doc.chain_id!r}")
    if signer is None:
        return Result(Reason.NOT_REGISTERED, f"signer {doc.signer} is not registered")
    if not signature_ok(signer):
        return Result(Reason.BAD_SIGNATURE, "the signature does not match the signer's key")
    if known():
        return Result(Reason.DUPLICATE, "this document was already recorded")
    if doc.expires_at_ms < time_ms:
        return Result(Reason.EXPIRED, "document expired before it was ordered")
    if doc.expires_at_ms - time_ms > expiry_window_ms:
        return Result(Reason.EXPIRY_TOO_FAR,
                      f"the document expires more than {expiry_window_ms} ms ahead")
    if signer.status != ACTIVE:
        return Result(Reason.REVOKED, "the signer's registration is revoked")
    return None

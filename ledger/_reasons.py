"""Why a document was applied or rejected: the reason codes every node and auditor share.

A reason is hashed into each block's results root, so its value never changes once a
chain uses it; new reasons are only ever added.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Reason(enum.StrEnum):
    APPLIED = "applied"
    MALFORMED = "malformed"
    WRONG_CHAIN = "wrong_chain"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    NOT_REGISTERED = "not_registered"
    REVOKED = "revoked"
    FORBIDDEN_ROLE = "forbidden_role"
    WRONG_STATE = "wrong_state"
    NOT_OWNER = "not_owner"
    UNKNOWN_CODE = "unknown_code"
    INVALID_CODE = "invalid_code"
    ALREADY_EXISTS = "already_exists"
    WRONG_STATUS = "wrong_status"
    IN_TRANSIT = "in_transit"
    IN_AGGREGATE = "in_aggregate"
    SUSPENDED = "suspended"
    TOO_DEEP = "too_deep"
    UNKNOWN_SHIPMENT = "unknown_shipment"
    NOT_IN_SHIPMENT = "not_in_shipment"
    INVALID_RECEIVER = "invalid_receiver"
    REPEATED_CODE = "repeated_code"
    # The document expires further ahead of the block time than genesis allows
    # (`document_expiry_window_max_ms`). Not recorded: the same document may be ordered
    # again once it is within the window.
    EXPIRY_TOO_FAR = "expiry_too_far"
    # The document lies beyond the block's genesis limits (`block_documents_max`,
    # `block_bytes_max`): only a leader that ignores them builds such a block. It is
    # not executed nor recorded, so it may be ordered again in a later block.
    BLOCK_FULL = "block_full"
    NO_QUORUM = "no_quorum"  # a governance document without a Byzantine quorum of regulators
    # A membership certificate made for another membership epoch than the ledger's: it
    # was carried already, or membership moved on since the regulators signed it.
    STALE_EPOCH = "stale_epoch"
    # The product catalogue (issue 13).
    UNKNOWN_PRODUCT = "unknown_product"  # a GTIN the catalogue does not hold
    INVALID_PRODUCT = "invalid_product"  # a product registration with a bad group, name or tariff code
    WRONG_LAYOUT = "wrong_layout"  # a serial the product's group does not print
    BAD_ATTRIBUTE = "bad_attribute"  # a malformed attribute, or one the product's group does not use
    MISSING_ATTRIBUTE = "missing_attribute"  # an attribute the product's group requires is not given
    NOT_FOR_GROUP = "not_for_group"  # a document or withdrawal reason the product's group does not use
    # The lifecycle of real goods (issue 13).
    FUTURE_DATE = "future_date"  # a business date after the block time
    MISSING_DOCUMENT = "missing_document"  # a withdrawal reason that needs a supporting document
    BAD_DETAIL = "bad_detail"  # a detail (price, VAT, ...) the document type does not take
    NOT_IN_AGGREGATE = "not_in_aggregate"  # a code taken out of an aggregate it is not in
    AGGREGATE_FULL = "aggregate_full"  # a reaggregate would hold more than one aggregate document may list
    # A read the access rule (ledger/_access.py) does not allow this reader; never a
    # document's result.
    NOT_ENTITLED = "not_entitled"
    # Recalls and customs imports (issue 13, ledger/_recall.py).
    RECALLED = "recalled"  # a move of a code an active recall holds, other than the allowed ones
    UNKNOWN_RECALL = "unknown_recall"  # a release of a recall the chain does not hold
    UNKNOWN_IMPORT = "unknown_import"  # a confirmation of an import the chain does not hold
    # Tax ids (issue 13): a registration's tax id of the wrong shape for its state, or a
    # business registering without one on a chain with the catalogue.
    BAD_TAX_ID = "bad_tax_id"


@dataclass(frozen=True, slots=True)
class Result:
    reason: Reason
    message: str = ""

    @property
    def applied(self) -> bool:
        return self.reason is Reason.APPLIED

    def to_list(self) -> list[str]:
        return [self.reason.value, self.message]

    @classmethod
    def from_list(cls, value: list[str]) -> Result:
        return cls(Reason(value[0]), value[1])

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "applied" if self.applied else "rejected",
            "reason": None if self.applied else self.reason.value,
            "message": self.message,
        }


APPLIED = Result(Reason.APPLIED)

"""Why the node will not do what was asked: a domain error carrying a stable reason.

Code inside the node raises `Refusal(reason, message)` and never thinks about HTTP;
the HTTP edge (`_app.py` today, the route table later) maps each reason to a status
through one table, `HTTP_STATUS`, and answers `{"error": reason, "message": text}`.
A reason that is missing from the table is a bug in the node, answered as a 500.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the node refuses, with a stable machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# The one table from reason to HTTP status. Reasons of the ledger's admission rule
# (`ledger.Reason`) appear here under the same names.
HTTP_STATUS: dict[str, int] = {
    # The request itself is malformed.
    "malformed": 400,
    "unknown_field": 400,
    "invalid_code": 400,
    "bad_request": 400,
    # Who is asking.
    "unsigned": 401,
    "bad_request_signature": 401,
    "stale_request": 401,
    "not_registered": 403,
    "revoked": 403,
    "not_a_peer": 403,
    "forbidden": 403,
    # What is asked for.
    "not_found": 404,
    "unknown_code": 404,
    "unknown_document": 404,
    "unknown_participant": 404,
    "unknown_shipment": 404,
    "unknown_block": 404,
    "method_not_allowed": 405,
    "duplicate": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    # The document cannot enter.
    "wrong_chain": 422,
    "expired": 422,
    "bad_signature": 422,
    "refused": 422,
    # The node cannot serve now; try again or elsewhere.
    "mempool_full": 503,
    "stopping": 503,
    "diverged": 503,
    "unavailable": 503,
}


def http_status(reason: str) -> int:
    """The HTTP status of a refusal; 500 for a reason the table lacks (a node bug)."""
    return HTTP_STATUS.get(reason, 500)


# The status-carrying errors below are being replaced by `Refusal`.
class ApiError(Refusal):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(code or self.code, message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class Malformed(ApiError):
    status = 400
    code = "malformed"


class Unauthorized(ApiError):
    status = 401
    code = "unsigned"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "duplicate"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class UnsupportedMedia(ApiError):
    status = 415
    code = "unsupported_media_type"


class Refused(ApiError):
    status = 422
    code = "refused"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"

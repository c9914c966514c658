"""Why the node will not do what was asked: a domain error carrying a stable reason.

Code inside the node raises `Refusal(reason, message)` and never thinks about HTTP;
the HTTP edge (`_http.py`) maps each reason to a status through one table,
`HTTP_STATUS`, and answers `{"error": reason, "message": text}`.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the node refuses, with a stable machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# The status-carrying errors below are being replaced by `Refusal`; only the node core
# still raises them, and they are Refusals so that the edge maps them by their reason
# through the same table (their `status` is no longer read).
class ApiError(Refusal):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        super().__init__(self.code, message)


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

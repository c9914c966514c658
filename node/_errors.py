"""Errors the node answers clients with: an HTTP status, a stable code and a text.

Handlers raise these; one middleware turns them into `{"error": code, "message": text}`.
"""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
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

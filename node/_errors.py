"""Why the node will not do what was asked: a domain error carrying a stable reason.

Code inside the node raises `Refusal(reason, message)` and never thinks about HTTP;
the HTTP edge (`_http.py`) maps each reason to a status through one table,
`HTTP_STATUS`, and answers `{"error": reason, "message": text}`. A reason missing from
the table is a bug in the node, answered as a 500 (a test keeps the table complete).
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the node refuses, with a stable machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_SHOWN_CHARS_MAX = 40


def shown(raw: str) -> str:
    """A client's value, cut short, to quote in an error message."""
    return repr(raw if len(raw) <= _SHOWN_CHARS_MAX else raw[:_SHOWN_CHARS_MAX] + "...")

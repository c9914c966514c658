"""Errors of the ledger: invariant breaks (our bug) versus bad input (the caller's)."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""


class InvariantError(LedgerError):
    """One of our own invariants does not hold: a bug, never a user's fault."""


class DecodeError(LedgerError, ValueError):
    """Bytes or fields from outside are not a well-formed value of the expected kind."""


def invariant(condition: bool, message: str) -> None:
    """Check an invariant of our own that must hold in production too (unlike `assert`)."""
    if not condition:
        raise InvariantError(message)

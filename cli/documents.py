"""Building and signing documents, reading codes as scanned, and saying results in words.

Pure helpers over `ledger`: no HTTP and no click, so they are tested directly.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ledger

# A document is good for a quarter of an hour: long enough to sit in a busy node's
# queue or wait out a leader change, short enough that a lost copy cannot turn up
# much later and surprise its signer.
DOCUMENT_LIFETIME_MS = 15 * 60 * 1000
# Chestny ZNAK serials for most categories are 13 characters of this alphabet.
SERIAL_CHARS = 13
SERIAL_ALPHABET = string.ascii_letters + string.digits
# One emission is one document.
EMIT_COUNT_MAX = ledger.CODES_PER_DOCUMENT_MAX

# Each ledger reason as a few words; the node's message then says exactly what and where.
REASON_WORDS: dict[str, str] = {
    "applied": "applied",
    "malformed": "malformed document",
    "wrong_chain": "document for another chain",
    "bad_signature": "bad signature",
    "expired": "expired before it was ordered",
    "duplicate": "already recorded",
    "not_registered": "not registered",
    "revoked": "registration revoked",
    "forbidden_role": "role not allowed to do this",
    "wrong_state": "another member state's business",
    "not_owner": "not the owner",
    "unknown_code": "unknown code",
    "invalid_code": "invalid code",
    "already_exists": "already exists",
    "wrong_status": "wrong status",
    "in_transit": "in transit",
    "in_aggregate": "packed in an aggregate",
    "suspended": "suspended by a regulator",
    "too_deep": "aggregates nested too deep",
    "unknown_shipment": "unknown shipment",
    "not_in_shipment": "not in the shipment",
    "invalid_receiver": "receiver cannot take goods",
    "repeated_code": "a code listed twice",
    "expiry_too_far": "expires too far ahead",
    "block_full": "beyond the block limits; submit again",
    "no_quorum": "not signed by a Byzantine quorum of member states' regulators",
    "stale_epoch": "made for another membership epoch (carried out already, or membership moved on)",
    "unknown_product": "GTIN not in the product catalogue",
    "invalid_product": "not a valid product registration",
    "wrong_layout": "serial not of the product group's layout",
    "bad_attribute": "attribute malformed or not used by the product group",
    "missing_attribute": "attribute the product group requires is missing",
    "not_for_group": "not used by the product group",
    "not_entitled": "not entitled to read this (docs/ACCESS.md)",
    # The lifecycle of real goods (issue 13).
    "future_date": "a business date after the block time",
    "missing_document": "the withdrawal reason needs its supporting document (type, number, date)",
    "bad_detail": "a detail this document type does not take",
    "not_in_aggregate": "not packed in that aggregate",
    "aggregate_full": "the aggregate would hold more codes than one document may list",
    # Recalls and customs imports (issue 13).
    "recalled": "recalled: it may only go back to its producer or be destroyed",
    "unknown_recall": "unknown recall",
    "unknown_import": "unknown customs import",
    "bad_tax_id": "tax id missing or of the wrong shape for its state",
}


def reason_words(reason: str | None) -> str:
    return REASON_WORDS.get(reason or "", (reason or "unknown reason").replace("_", " "))


def rejection(reason: str | None, message: str = "") -> str:
    """A rejection as a person reads it: "rejected (the reason in words): the node's detail"."""
    words = reason_words(reason)
    return f"rejected ({words}): {message}" if message else f"rejected ({words})"


class InputError(Exception):
    """Codes or other input the user gave cannot be used (the command exits 1)."""


class TooManyCodes(InputError):
    """More codes than one document may carry (misuse: the command exits 2)."""


class Signer:
    """Makes signed documents for one participant on one chain."""

    def __init__(self, key: ledger.KeyPair, chain_id: str, lifetime_ms: int = DOCUMENT_LIFETIME_MS) -> None:
        self.key = key
        self.chain_id = chain_id
        self.lifetime_ms = lifetime_ms

    def make(self, doc_type: ledger.DocType | str, **fields: Any) -> ledger.SignedDocument:
        # A random nonce makes every document distinct, so two identical actions (ship
        # the same code twice after a cancel) are two documents, never a duplicate.
        nonce = secrets.randbits(63)
        expires = int(time.time() * 1000) + self.lifetime_ms
        document = ledger.make_document(
            self.chain_id, doc_type, self.key.participant_id, nonce, expires, **fields
        )
        return document.sign(self.key)


# Codes as given by people and scanners.


@dataclass(frozen=True, slots=True)
class ScannedLine:
    source: str  # "argument 2", "codes.txt line 7", "stdin line 3"
    raw: bytes


def split_lines(data: bytes, source: str) -> list[ScannedLine]:
    """One code per line exactly as scanned: GS bytes kept, CR/LF and blank lines dropped."""
    out: list[ScannedLine] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if line.strip(b" \t"):
            out.append(ScannedLine(f"{source} line {number}", line))
    return out


def parse_codes(lines: Iterable[ScannedLine], limit: int = ledger.CODES_PER_DOCUMENT_MAX) -> list[str]:
    """Canonical keys of scanned codes, in the given order; every bad line is named."""
    keys: list[str] = []
    bad: list[str] = []
    for line in lines:
        try:
            keys.append(ledger.parse_code(line.raw).key)
        except ledger.CodeError as exc:
            bad.append(f"{line.source}: {exc.message}")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise InputError(f"{bad[0]}{more}")
    if len(keys) > limit:
        raise TooManyCodes(
            f"one document carries at most {limit:,} codes, got {len(keys):,}: split the list"
        )
    return keys


def parse_one(raw: str | bytes) -> str:
    try:
        return ledger.parse_code(raw).key
    except ledger.CodeError as exc:
        raise InputError(exc.message) from None


def parse_sscc(raw: str | bytes) -> str:
    code = _parse_marking(raw)
    if not isinstance(code, ledger.Sscc):
        raise InputError(f"{code.key} is a unit code, not an SSCC (AI 00)")
    return code.key


def _parse_marking(raw: str | bytes) -> ledger.MarkingCode:
    try:
        return ledger.parse_code(raw)
    except ledger.CodeError as exc:
        raise InputError(exc.message) from None


def describe_code(raw: str | bytes) -> dict[str, Any]:
    """What the ledger understands a scanned code to be (raises CodeError when it refuses)."""
    code = ledger.parse_code(raw)
    if isinstance(code, ledger.Sscc):
        return {
            "kind": "aggregate",
            "key": code.key,
            "sscc": code.value,
            "element_string": f"(00){code.value}",
            "digital_link": code.digital_link(),
        }
    scanned = ledger.read_code(raw)
    out: dict[str, Any] = {
        "kind": "unit",
        "key": code.key,
        "gtin": code.gtin,
        "serial": code.serial,
        "element_string": code.element_string(),
        "digital_link": code.digital_link(),
    }
    if scanned.form != "gs1":
        out["layout"] = scanned.form  # the 29-character pack code, the 27-character SGTIN
    if scanned.attributes:
        out["attributes"] = scanned.attributes_json()
    return out


# Emission: the regulator makes the serials.


def check_gtin(raw: str) -> str:
    """A GTIN-8/12/13/14 as the 14 digits the ledger keys on."""
    digits = raw.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        raise InputError(f"GTIN must be 8, 12, 13 or 14 digits, got {raw!r}")
    gtin = digits.zfill(14)
    if not ledger.is_valid_gtin(gtin):
        expected = ledger.gs1_check_digit(gtin[:-1])
        raise InputError(f"GTIN {raw} has check digit {gtin[-1]}, expected {expected}")
    return gtin


def random_serials(gtin: str, count: int, length: int = SERIAL_CHARS) -> list[str]:
    """`count` distinct random serials whose keys read back unambiguously.

    A serial whose end looks like a crypto tail (``93`` plus four characters) would be
    refused by `parse_code` when typed back without GS, so such serials are drawn again.
    """
    if not 1 <= count <= EMIT_COUNT_MAX:
        raise TooManyCodes(f"one emission issues 1 to {EMIT_COUNT_MAX:,} codes, not {count:,}")
    serials: list[str] = []
    seen: set[str] = set()
    while len(serials) < count:
        serial = "".join(secrets.choice(SERIAL_ALPHABET) for _ in range(length))
        if serial in seen:
            continue
        try:
            ledger.parse_code("01" + gtin + "21" + serial)
        except ledger.CodeError:
            continue
        seen.add(serial)
        serials.append(serial)
    return serials


def make_sscc(company_prefix: str = "4600000", extension: int = 0) -> str:
    """A fresh SSCC key: extension digit, company prefix, random serial reference, check digit."""
    body_digits = 16 - len(company_prefix)
    if not company_prefix.isdigit() or body_digits < 1:
        raise InputError("an SSCC company prefix is 6 to 12 digits")
    reference = "".join(secrets.choice(string.digits) for _ in range(body_digits))
    payload = f"{extension}{company_prefix}{reference}"
    return "00" + payload + str(ledger.gs1_check_digit(payload))

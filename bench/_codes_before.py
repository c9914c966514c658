"""The marking-code parser as it was before issue 13 (ledger/_codes.py at 03fbba6, its
docstring left out), kept only as the baseline of bench.codes_bench: it read 01 + 21
(+ 91, 92, 93) and 00, and refused every other AI and layout."""


from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NoReturn, TypeAlias
from urllib.parse import quote, unquote, urlsplit

from biip import ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.symbology import GS1Symbology

from ledger import LedgerError

GS = "\x1d"

# The longest real input is a Digital Link with crypto attributes in its query
# (a few hundred characters); the bound keeps hostile input cheap to refuse.
RAW_CHARS_MAX = 2048
# GS1 General Specifications: AI 21 is X..20, AI 91/92/93 are X..90.
SERIAL_CHARS_MAX = 20
TAIL_CHARS_MAX = 90
# Many codes of one document share a GTIN; the cache is bounded so memory stays flat.
_GTIN_CACHE_MAX = 4096

DIGITAL_LINK_HOST = "https://id.gs1.org"

# GS1 AI encodable character set 82: ! " % & ' ( ) * + , - . / 0-9 : ; < = > ? A-Z _ a-z
_CSET82 = r"""[!"%-?A-Z_a-z]"""
_CSET82_RE = re.compile(_CSET82 + "*")
_SERIAL_RE = re.compile(f"{_CSET82}{{1,{SERIAL_CHARS_MAX}}}")
_DIGITS_RE = re.compile("[0-9]*")
_PERCENT_RE = re.compile("(?:[^%]|%[0-9A-Fa-f]{2})*")
_HRI_AI_RE = re.compile(r"\(([0-9]{2,4})\)")
_SYMBOLOGY_RE = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_URI_SCHEMES = ("http://", "https://")

# Symbologies that carry GS1 element strings, plus plain DataMatrix and QR,
# which is where a Digital Link URI is printed.
_SYMBOLOGIES = frozenset({"]" + s.value for s in GS1Symbology.with_gs1_messages()} | {"]d1", "]Q1"})
_CRYPTO_AIS = ("91", "92", "93")
_FIXED_LENGTH = {"00": 18, "01": 14}
_VARIABLE_AIS = ("21", *_CRYPTO_AIS)
_TAIL_SHAPED = 4  # Russian crypto key (AI 91) and short tail (AI 93) are 4 characters.
_SHOWN_CHARS_MAX = 48
_FIELD_NAMES = {"00": "the SSCC", "01": "the GTIN", "21": "the serial"}


class CodeError(LedgerError, ValueError):
    """A marking code is malformed; `reason` is a stable machine code, `message` a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _show(text: str) -> str:
    """Quote a piece of input for a message, bounded so a huge input gives a short message."""
    if len(text) > _SHOWN_CHARS_MAX:
        return repr(text[:_SHOWN_CHARS_MAX]) + "..."
    return repr(text)


def gs1_check_digit(payload: str) -> int:
    """The GS1 check digit of a digit string: weights 3,1,3,1,... from the right."""
    if not (payload.isascii() and payload.isdigit()):
        raise ValueError(f"a GS1 check digit needs a payload of digits, got {_show(payload)}")
    weighted = 3 * sum(map(int, payload[-1::-2])) + sum(map(int, payload[-2::-2]))
    return (10 - weighted % 10) % 10


def _has_check_digit(number: str, length: int) -> bool:
    return (
        len(number) == length
        and number.isascii()
        and number.isdigit()
        and gs1_check_digit(number[:-1]) == int(number[-1])
    )


def is_valid_gtin(gtin14: str) -> bool:
    """True for 14 ASCII digits whose last digit is the GS1 check digit."""
    return _has_check_digit(gtin14, 14)


def is_valid_sscc(sscc18: str) -> bool:
    """True for 18 ASCII digits whose last digit is the GS1 check digit."""
    return _has_check_digit(sscc18, 18)


_gtin_ok = functools.lru_cache(maxsize=_GTIN_CACHE_MAX)(is_valid_gtin)


def _check_number(what: str, number: str, length: int, reason: str) -> None:
    """Refuse a GTIN or SSCC of the wrong shape or with a wrong check digit."""
    if len(number) != length or not _DIGITS_RE.fullmatch(number):
        raise CodeError(
            reason, f"{what} must be {length} digits, got {_show(number)} ({len(number)} chars)"
        )
    expected = gs1_check_digit(number[:-1])
    if expected != int(number[-1]):
        raise CodeError(
            "bad_check_digit",
            f"{what} {number} has check digit {number[-1]}, expected {expected}",
        )


def _check_serial(serial: str) -> None:
    if _SERIAL_RE.fullmatch(serial):
        return
    if not serial:
        raise CodeError("missing_serial", "the serial (AI 21) is empty")
    if len(serial) > SERIAL_CHARS_MAX:
        raise CodeError(
            "serial_too_long",
            f"serial {_show(serial)} has {len(serial)} characters, at most "
            f"{SERIAL_CHARS_MAX} are allowed",
        )
    position, char = _first_outside_cset82(serial)
    raise CodeError(
        "bad_serial",
        f"serial {_show(serial)} has {char!r} at position {position + 1}, which is not "
        "in the GS1 character set 82",
    )


def _first_outside_cset82(text: str) -> tuple[int, str]:
    match = _CSET82_RE.match(text)
    end = match.end() if match else 0
    return end, text[end]


@dataclass(frozen=True, slots=True)
class UnitCode:
    """A marked unit: GTIN-14 (AI 01) and serial (AI 21); checked on construction."""

    gtin: str
    serial: str

    def __post_init__(self) -> None:
        if not _gtin_ok(self.gtin):
            _check_number("GTIN", self.gtin, 14, "bad_gtin")
        if not _SERIAL_RE.fullmatch(self.serial):
            _check_serial(self.serial)

    @property
    def key(self) -> str:
        """The canonical identity: "01" + GTIN + "21" + serial, no separators."""
        return "01" + self.gtin + "21" + self.serial

    def element_string(self) -> str:
        """The human-readable form, "(01)...(21)..."."""
        return f"(01){self.gtin}(21){self.serial}"

    def digital_link(self) -> str:
        """The GS1 Digital Link URI on id.gs1.org, serial percent-encoded."""
        return f"{DIGITAL_LINK_HOST}/01/{self.gtin}/21/{quote(self.serial, safe='')}"


@dataclass(frozen=True, slots=True)
class Sscc:
    """An aggregate (box, pallet): SSCC-18 (AI 00); checked on construction."""

    value: str

    def __post_init__(self) -> None:
        _check_number("SSCC", self.value, 18, "bad_sscc")

    @property
    def key(self) -> str:
        """The canonical identity: "00" + SSCC."""
        return "00" + self.value

    def digital_link(self) -> str:
        """The GS1 Digital Link URI on id.gs1.org."""
        return f"{DIGITAL_LINK_HOST}/00/{self.value}"


MarkingCode: TypeAlias = UnitCode | Sscc


def parse_key(key: str) -> MarkingCode:
    """Read the canonical key form ("01" + GTIN + "21" + serial, or "00" + SSCC)."""
    if key.startswith("01"):
        if key[16:18] != "21":
            return _bad_unit_key(key)
        return UnitCode(key[2:16], key[18:])
    if key.startswith("00"):
        return Sscc(key[2:])
    raise CodeError(
        "not_a_code", f"{_show(key)} is not a code key: a key starts with 01 (unit) or 00 (SSCC)"
    )


def _bad_unit_key(key: str) -> NoReturn:
    gtin = key[2:16]
    if len(gtin) < 14 or not _DIGITS_RE.fullmatch(gtin):
        raise CodeError("bad_gtin", f"GTIN must be 14 digits, got {_show(gtin)}")
    if len(key) == 16:
        raise CodeError("missing_serial", f"key {_show(key)} has no serial (AI 21) after the GTIN")
    raise CodeError(
        "missing_serial", f"key {_show(key)} has {_show(key[16:18])} where AI 21 must follow"
    )


def parse_code(raw: str | bytes) -> MarkingCode:
    """Read a marking code in any form a scanner or another system delivers."""
    text = _strip_symbology(_to_text(raw))
    if text[:8].lower().startswith(_URI_SCHEMES):
        return _parse_digital_link(text)
    if text.startswith("("):
        return _parse_hri(text)
    return _parse_element_string(text)


def _to_text(raw: str | bytes) -> str:
    if len(raw) > RAW_CHARS_MAX:
        raise CodeError(
            "not_a_code", f"not a code: {len(raw)} characters, at most {RAW_CHARS_MAX} are read"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CodeError(
                "not_a_code",
                f"not a code: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not ASCII",
            ) from None
    # Not str.strip(): Python counts GS as whitespace, and GS is data here.
    text = raw.strip(" \t\r\n")
    if not text:
        raise CodeError("not_a_code", "not a code: the input is empty")
    if not text.isascii():
        position, char = next((i, c) for i, c in enumerate(text) if not c.isascii())
        raise CodeError(
            "not_a_code", f"not a code: {char!r} at position {position + 1} is not ASCII"
        )
    return text


def _strip_symbology(text: str) -> str:
    if not text.startswith("]"):
        return text
    if not _SYMBOLOGY_RE.match(text) or text[:3] not in _SYMBOLOGIES:
        raise CodeError(
            "not_a_code",
            f"not a code: symbology identifier {_show(text[:3])} does not carry a marking "
            f"code (expected one of {', '.join(sorted(_SYMBOLOGIES))})",
        )
    rest = text[3:]
    if not rest.strip(GS):
        raise CodeError("not_a_code", f"not a code: nothing follows {text[:3]}")
    return rest


# --- element strings -------------------------------------------------------------------------

Pairs: TypeAlias = list[tuple[str, str]]


def _parse_element_string(text: str) -> MarkingCode:
    text = text.lstrip(GS)  # FNC1 in first position arrives as GS.
    if len(text) == 18 and text.isdigit():
        return Sscc(text)
    pairs, serial_ended_by_gs = _read_elements(text)
    seen = {ai for ai, _ in pairs}
    suspect = not serial_ended_by_gs or ("92" in seen and "91" not in seen)
    return _build(pairs, serial_suspect=suspect)


def _read_elements(text: str) -> tuple[Pairs, bool]:
    """Split an element string into (AI, value) pairs; variable fields end at GS."""
    pairs: Pairs = []
    serial_ended_by_gs = False
    position = 0
    while position < len(text):
        if text[position] == GS:
            position += 1
            continue
        ai = text[position : position + 2]
        start = position + 2
        if ai in _FIXED_LENGTH:
            value = text[start : start + _FIXED_LENGTH[ai]].split(GS, 1)[0]
            end = start + len(value)
        elif ai in _VARIABLE_AIS:
            end = text.find(GS, start)
            end = len(text) if end == -1 else end
            value = text[start:end]
            if ai == "21":
                serial_ended_by_gs = end < len(text)
        else:
            raise _unexpected(text[position:], pairs)
        pairs.append((ai, value))
        position = end
    return pairs, serial_ended_by_gs


def _unexpected(rest: str, pairs: Pairs) -> CodeError:
    """Name the AI (or the junk) found where an AI Tamga reads was expected."""
    where = (
        f"after {_FIELD_NAMES.get(pairs[-1][0], 'AI ' + pairs[-1][0])}" if pairs else "at the start"
    )
    try:
        ai = GS1ApplicationIdentifier.extract(rest)
    except ParseError:
        if not pairs:
            return CodeError(
                "not_a_code",
                f"not a code: {_show(rest)} does not start with AI 01 (GTIN) or 00 (SSCC)",
            )
        return CodeError("trailing_data", f"unexpected data {_show(rest)} {where}")
    return _unknown_ai(ai.ai, ai.data_title, where)


def _unknown_ai(ai: str, title: str, where: str) -> CodeError:
    return CodeError(
        "unknown_ai",
        f"AI {ai} ({title}) {where} is not part of a marking code; Tamga reads "
        "01 + 21 (+ 91, 92, 93) for a unit and 00 for an SSCC",
    )


def _ai_title(ai: str) -> str:
    try:
        return GS1ApplicationIdentifier.extract(ai).data_title
    except ParseError:
        return "not a GS1 AI"


# --- assembling a code from (AI, value) pairs ------------------------------------------------


def _build(pairs: Pairs, *, serial_suspect: bool) -> MarkingCode:
    """Turn read pairs into a code; `serial_suspect` when a GS could have been dropped."""
    if not pairs:
        raise CodeError("not_a_code", "not a code: no application identifier found")
    first_ai, first_value = pairs[0]
    if first_ai == "00":
        if len(pairs) > 1:
            raise CodeError(
                "trailing_data", f"an SSCC (AI 00) stands alone, but AI {pairs[1][0]} follows it"
            )
        return Sscc(first_value)
    if first_ai != "01":
        raise _unknown_ai(first_ai, _ai_title(first_ai), "at the start")
    gtin = first_value
    _check_number("GTIN", gtin, 14, "bad_gtin")
    if len(pairs) == 1 or pairs[1][0] != "21":
        raise _missing_serial(gtin, pairs[1:])
    serial = pairs[1][1]
    _check_tails(pairs[2:])
    if serial_suspect:
        _refuse_hidden_tail(serial)
    return UnitCode(gtin, serial)


def _missing_serial(gtin: str, rest: Pairs) -> CodeError:
    if not rest:
        return CodeError("missing_serial", f"GTIN {gtin} has no serial (AI 21) after it")
    ai = rest[0][0]
    if ai in _CRYPTO_AIS:
        return CodeError(
            "missing_serial", f"GTIN {gtin} is followed by AI {ai}, not a serial (AI 21)"
        )
    if ai == "01":
        return CodeError("duplicate_ai", "AI 01 (GTIN) appears twice")
    return _unknown_ai(ai, _ai_title(ai), "after the GTIN")


def _check_tails(tails: Pairs) -> None:
    """The crypto part is dropped, but only after checking it is well formed."""
    seen: set[str] = set()
    for ai, value in tails:
        if ai not in _CRYPTO_AIS:
            if ai in ("01", "21"):
                raise CodeError("duplicate_ai", f"AI {ai} appears twice")
            raise _unknown_ai(ai, _ai_title(ai), "after the serial")
        if ai in seen:
            raise CodeError("duplicate_ai", f"AI {ai} appears twice")
        seen.add(ai)
        if not value or len(value) > TAIL_CHARS_MAX or not _CSET82_RE.fullmatch(value):
            raise CodeError(
                "bad_tail",
                f"crypto field AI {ai} value {_show(value)} must be 1 to {TAIL_CHARS_MAX} "
                "characters of the GS1 character set 82",
            )


def _refuse_hidden_tail(serial: str) -> None:
    """Refuse a serial that looks like it swallowed the crypto part behind a dropped GS."""
    hidden = _hidden_tail_at(serial)
    if hidden is None:
        return
    ai = serial[hidden : hidden + 2]
    raise CodeError(
        "missing_gs",
        f"serial {_show(serial)} looks like it contains a crypto tail ({ai}"
        f"...); the scanner may be dropping the GS separator. If this really is the serial, "
        f"give the code as (01)...(21)... or as a Digital Link",
    )


def _hidden_tail_at(serial: str) -> int | None:
    """Where a crypto AI seems to start inside a serial, or None."""
    if len(serial) > SERIAL_CHARS_MAX:
        # Too long to be a serial: any crypto AI where a serial could end gives it away.
        for position in range(1, min(len(serial) - 2, SERIAL_CHARS_MAX) + 1):
            if serial[position : position + 2] in _CRYPTO_AIS:
                return position
        return None
    position = len(serial) - 2 - _TAIL_SHAPED
    if position >= 1 and serial[position : position + 2] in ("91", "93"):
        return position
    return None


# --- human-readable form and Digital Link ----------------------------------------------------


def _parse_hri(text: str) -> MarkingCode:
    text = text.replace(" ", "")
    matches = list(_HRI_AI_RE.finditer(text))
    if not matches or matches[0].start() != 0:
        raise CodeError(
            "not_a_code", f"not a code: {_show(text)} does not start with an AI in parentheses"
        )
    ends = [m.start() for m in matches[1:]] + [len(text)]
    pairs = [(m.group(1), text[m.end() : end]) for m, end in zip(matches, ends)]
    return _build(pairs, serial_suspect=False)


def _parse_digital_link(text: str) -> MarkingCode:
    try:
        path = urlsplit(text).path
    except ValueError as exc:
        raise CodeError(
            "bad_uri", f"Digital Link {_show(text)} is not a valid URI: {exc}"
        ) from None
    segments = path.split("/")
    start = next((i for i, s in enumerate(segments) if s in _FIXED_LENGTH), None)
    if start is None:
        raise CodeError(
            "bad_uri", f"Digital Link {_show(text)} has no /01/ (GTIN) or /00/ (SSCC) in its path"
        )
    keyed = segments[start:]
    if len(keyed) == 1:
        raise CodeError("bad_uri", f"Digital Link {_show(text)} ends at /{keyed[0]}/ with no value")
    limit = 2 if keyed[0] == "00" else 4
    if len(keyed) > limit or (len(keyed) > 2 and keyed[2] != "21"):
        return _refuse_link_qualifier(keyed, limit)
    values = [_percent_decode(s) for s in keyed[1::2]]
    pairs = list(zip(keyed[0::2], values))
    if keyed[0] == "01" and len(pairs[0][1]) in (8, 12, 13):
        pairs[0] = ("01", pairs[0][1].zfill(14))
    if len(keyed) == 3:
        raise CodeError("missing_serial", f"Digital Link {_show(text)} has /21/ but no serial")
    return _build(pairs, serial_suspect=False)


def _refuse_link_qualifier(keyed: list[str], limit: int) -> NoReturn:
    if limit == 4 and keyed[2] != "21":
        ai = keyed[2]
        raise _unknown_ai(ai, _ai_title(ai), "in the Digital Link path")
    extra = "/".join(keyed[limit:])
    raise CodeError("trailing_data", f"Digital Link path continues after the code: {_show(extra)}")


def _percent_decode(segment: str) -> str:
    if not _PERCENT_RE.fullmatch(segment):
        raise CodeError("bad_uri", f"path segment {_show(segment)} has a malformed %-escape")
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise CodeError(
            "bad_serial", f"path segment {_show(segment)} decodes to bytes that are not text"
        ) from None

"""Marking codes: reading GS1 codes as scanners deliver them, and the ledger's key for each.

A unit is identified by AI 01 (GTIN-14) and AI 21 (serial); an aggregate (box,
pallet) by AI 00 (SSCC-18). The ledger keys a code by its canonical *key*:
``"01" + gtin + "21" + serial`` for a unit and ``"00" + sscc`` for an
aggregate. The serial is the last field of a unit key, so a key never needs a
GS separator and reads back unambiguously (`parse_key`).

`parse_code` accepts what scanners and other systems deliver:

- GS1 element strings, fields separated by GS (ASCII 29), optionally led by
  FNC1 sent as GS, and optionally by one of the symbology identifiers ``]d2``
  (GS1 DataMatrix), ``]C1`` (GS1-128), ``]Q3`` (GS1 QR), ``]e0`` (GS1 DataBar),
  ``]J1`` (GS1 DotCode), or ``]d1`` / ``]Q1`` (plain DataMatrix / QR, which is
  how a Digital Link URI is printed). Surrounding spaces, tabs, CR and LF (as
  keyboard-wedge scanners append) are ignored, and so are trailing GS.
- The parenthesised human-readable form ``(01)...(21)...`` (spaces ignored).
- GS1 Digital Link URIs, ``https://id.gs1.org/01/{gtin}/21/{serial}`` or the
  same path on any host, http or https, behind any path prefix. The serial is
  percent-decoded. A GTIN-8/12/13 in the path is zero-padded to 14 digits, as
  the Digital Link standard allows. The path must end with the serial: the
  standard puts key qualifiers only in the path, so the query string (data
  attributes such as ``?91=..&92=..``) and any fragment are ignored, while a
  further path segment or another qualifier (``/10/``, ``/22/``) is refused.
- AI 00 SSCC in each of these forms, and a bare 18-digit SSCC: warehouse staff
  type SSCCs from labels without the ``(00)``, and no valid element string is
  18 digits long, so the bare form cannot be mistaken for anything else. The
  check digit still guards it.

The crypto key and code (AI 91 + 92) or crypto tail (AI 93) may follow the
serial; they are checked for their character set and length and dropped, since
the national code operator checks them and documents never carry them. The
attributes that product groups print after the serial (`ATTRIBUTE_AIS`: price
8005, expiry 17, batch 10, production date 11, expiry time 7003, net weight
3103, additional id / tariff code 240) are read, checked against biip's AI
table and returned apart from the identification by `read_code`. Any other AI
is refused as ``unknown_ai`` with its GS1 name: silently dropping data would
hide scanner faults. Given a product group's layouts (`Layout`, from the
catalogue's group table in genesis), `read_code` also refuses an AI the group
does not use, by name, and a serial of a length the group does not print.

Two layouts are not GS1 element strings (see `read_code`): the 29-character
cigarette pack code (GTIN 14 + serial 7 + price 4 in base 80 + check 4) and the
27-character SGTIN that medicine documents use (GTIN 14 + serial 13); and the
fur control sign ``CC-TTTTMM-SSSSSSSSSS`` carries no GTIN at all, so
`read_code` reads it but `parse_code`, which gives what the ledger keys by,
refuses it (``no_gtin``).

Missing GS policy. A scanner set to drop GS makes AI 21 swallow the crypto
part: ``21 5w9EJp 93 abc1`` arrives as the serial ``5w9EJp93abc1``. The true
serial is then ambiguous (a real serial may contain ``93``), so a ledger must
not guess. When an element string's serial is not ended by a GS and looks like
it hides a tail (``93`` or ``91`` plus four characters at its end, or a 91/92
pair inside an over-long serial), or when AI 92 follows a GS but its AI 91 is
missing and the serial ends like ``91`` plus four characters, the code is
refused with reason ``missing_gs`` and a hint about the scanner. A serial that
really ends that way can be given unambiguously in the parenthesised form or
as a Digital Link, whose explicit delimiters are trusted. The serial length is
not known per product category here, so no length-based guessing is done.

In the parenthesised form a ``(`` followed by 2 to 4 digits and ``)`` always
starts a new element; a serial containing such text is refused in that form
(never misread) and must be given as an element string or a Digital Link.

Every refusal is a `CodeError` with a stable ``reason`` and a ``message`` that
names what is wrong. `parse_key` is the hot path of the state machine: plain
slicing, one regular expression and a cached check digit, no biip. biip gives
the AI table (names, lengths, value patterns), read from its data file once, at
import, without importing the biip package (its GS1 prefix tables cost about 0.3 s
of every process start and the ledger does not use them); its date reading
is not used, because it picks the century from the wall clock (GS1's sliding
window), which would make the ledger's verdict depend on the day it runs:
`attribute_date` reads YYMMDD as 20YY instead.
"""


from __future__ import annotations

import calendar
import datetime
import functools
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeAlias
from urllib.parse import quote, unquote, urlsplit

from ._errors import LedgerError

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
# (biip's GS1Symbology.with_gs1_messages(): GS1-128, DataBar, DataMatrix, QR, DotCode.)
_SYMBOLOGIES = frozenset({"]C1", "]e0", "]d2", "]Q3", "]J1", "]d1", "]Q1"})
_TAIL_SHAPED = 4  # Russian crypto key (AI 91) and short tail (AI 93) are 4 characters.
_SHOWN_CHARS_MAX = 48


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


# --- the AI table, from biip -------------------------------------------------------------------

CRYPTO_AIS = ("91", "92", "93")
# The attributes product groups print after the serial (DOMAIN.md, "Code layouts").
ATTRIBUTE_AIS = ("10", "11", "17", "240", "3103", "7003", "8005")
ATTRIBUTE_NAMES = {
    "10": "batch",
    "11": "production_date",
    "17": "expiry",
    "240": "additional_id",
    "3103": "net_weight_kg",
    "7003": "expiry_time",
    "8005": "price",
}
_DATE_AIS = ("11", "17")
# At most one of each attribute AI, so a code or a document carries at most this many.
ATTRIBUTES_MAX = len(ATTRIBUTE_AIS)


@dataclass(frozen=True, slots=True)
class _AiSpec:
    ai: str
    title: str
    fixed_chars: int  # the value's length when fixed, 0 when it ends at a GS
    chars_max: int
    value: re.Pattern[str]


def _biip_table() -> list[dict[str, Any]]:
    """biip's AI table: its bundled data file, read without importing the biip package,
    whose import also loads GS1 prefix tables the ledger never uses (about 0.3 s of every
    process start, bench/README.md)."""
    spec = importlib.util.find_spec("biip")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        raise ImportError("biip is not installed; the ledger reads its AI table")
    folder = Path(next(iter(spec.submodule_search_locations))) / "gs1_application_identifiers"
    table: list[dict[str, Any]] = json.loads((folder / "_application_identifiers.json").read_text("utf-8"))
    return table


_TABLE = {entry["ai"]: entry for entry in _biip_table()}


def _extract(value: str) -> dict[str, Any] | None:
    """The AI of biip's table that starts `value` (biip's own `extract` rule), if any."""
    for ai, entry in _TABLE.items():
        if value.startswith(ai):
            return entry
    return None


def _ai_spec(ai: str) -> _AiSpec:
    """One AI as biip's table describes it: name, value length and value pattern."""
    known = _TABLE.get(ai)
    if known is None:  # pragma: no cover - a biip table without one of our AIs
        raise ImportError(f"biip's AI table has no AI {ai}")
    data = known["format"].split("+", 1)[1]  # "N14", "X..20", "N6"
    chars = int(data.lstrip("NX."))
    value = re.compile("^" + known["pattern"][1 + len(ai) :])
    return _AiSpec(ai, known["data_title"], 0 if ".." in data else chars, chars, value)


# Read once at import: the hot paths look AIs up in a dict, never in biip.
_SPECS = {ai: _ai_spec(ai) for ai in ("00", "01", "21", *CRYPTO_AIS, *ATTRIBUTE_AIS)}
# The ledger's verdicts depend on these formats, so every node must read the same ones:
# a biip whose table says otherwise stops the import (and the node) rather than letting
# one node's ledger refuse what another's applies.
_FORMATS = {
    "00": "N2+N18", "01": "N2+N14", "21": "N2+X..20", "91": "N2+X..90", "92": "N2+X..90",
    "93": "N2+X..90", "10": "N2+X..20", "11": "N2+N6", "17": "N2+N6", "240": "N3+X..30",
    "3103": "N4+N6", "7003": "N4+N10", "8005": "N4+N6",
}
_drift = {ai: _TABLE[ai]["format"] for ai in _FORMATS} != _FORMATS
if _drift:  # pragma: no cover - another biip release
    raise ImportError("biip's AI table differs from the formats Tamga's ledger was built on")
_KNOWN_AFTER_SERIAL = frozenset((*CRYPTO_AIS, *ATTRIBUTE_AIS))
_FIELD_NAMES = {"00": "the SSCC", "01": "the GTIN", "21": "the serial"}


def _ai_at(text: str, position: int) -> _AiSpec | None:
    """The AI Tamga reads that starts at `position`, if any (GS1 AIs are prefix-free)."""
    for width in (2, 3, 4):
        spec = _SPECS.get(text[position : position + width])
        if spec is not None:
            return spec
    return None


def ai_title(ai: str) -> str:
    """An AI's GS1 data title ("BATCH/LOT"), or a note that it is none."""
    spec = _SPECS.get(ai)
    if spec is not None:
        return spec.title
    known = _extract(ai)
    return str(known["data_title"]) if known is not None and known["ai"] == ai else "not a GS1 AI"


def attribute_date(value: str) -> datetime.date:
    """A GS1 YYMMDD date, day 00 meaning the month's last day, in 2000..2099.

    Not GS1's sliding century window: it depends on today's date, and a ledger's verdict
    must not. Marking in the Union started in 2019, so every date it meets is 20YY."""
    year, month, day = 2000 + int(value[0:2]), int(value[2:4]), int(value[4:6])
    if not 1 <= month <= 12:
        raise CodeError("bad_attribute", f"date {value} has month {month:02d}")
    last = calendar.monthrange(year, month)[1]
    if day > last:
        raise CodeError("bad_attribute", f"date {value}: {year}-{month:02d} has {last} days")
    return datetime.date(year, month, day or last)


def check_attribute(ai: str, value: str) -> None:
    """Refuse an attribute that is not one Tamga reads, or whose value is malformed."""
    spec = _SPECS.get(ai)
    if spec is None or ai not in ATTRIBUTE_AIS:
        raise _unknown_ai(ai, ai_title(ai), "as an attribute")
    if not spec.value.match(value):
        shape = f"{spec.fixed_chars} digits" if spec.fixed_chars else (
            f"1 to {spec.chars_max} characters of the GS1 character set 82"
        )
        raise CodeError(
            "bad_attribute", f"AI {ai} ({spec.title}) value {_show(value)} must be {shape}"
        )
    if ai in _DATE_AIS or ai == "7003":
        attribute_date(value[:6])
        if ai == "7003" and not (int(value[6:8]) < 24 and int(value[8:10]) < 60):
            raise CodeError("bad_attribute", f"AI 7003 time {value[6:]} is not HHMM")


def attribute_json(ai: str, value: str) -> Any:
    """An attribute's value as people read it: kopecks, ISO dates, kilograms."""
    if ai in _DATE_AIS:
        return attribute_date(value).isoformat()
    if ai == "7003":
        return f"{attribute_date(value[:6]).isoformat()}T{value[6:8]}:{value[8:10]}"
    if ai == "8005":
        return int(value)
    if ai == "3103":
        grams = int(value)
        return f"{grams // 1000}.{grams % 1000:03d}"
    return value


# --- what was scanned: the identification, the attributes, the layout -------------------------

Attributes: TypeAlias = tuple[tuple[str, str], ...]
FORMS = ("gs1", "pack29", "sgtin27")


@dataclass(frozen=True, slots=True)
class FurSign:
    """A fur control sign (the Union's first marked group): no GTIN, not GS1."""

    country: str
    tnved: str  # the 4-digit customs tariff heading
    input_method: str
    serial: str

    @property
    def key(self) -> str:
        return f"{self.country}-{self.tnved}{self.input_method}-{self.serial}"


@dataclass(frozen=True, slots=True)
class Layout:
    """One way a product group prints its codes: part of the group table in genesis.

    `form` is "gs1" (an element string, its HRI or Digital Link), "pack29" (the
    cigarette pack code) or "sgtin27" (the medicine documents' GTIN + serial);
    `serial_chars` is the serial's length; `ais` the AIs after the serial it may carry
    (crypto and attributes). A code in element-string form may match a layout of any
    form, since every layout's identification is also written as 01 + GTIN + 21 + serial."""

    form: str
    serial_chars: int
    ais: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise CodeError("bad_layout", f"layout form {self.form!r} is not one of {', '.join(FORMS)}")
        if type(self.serial_chars) is not int or not 1 <= self.serial_chars <= SERIAL_CHARS_MAX:
            raise CodeError("bad_layout", f"a layout's serial has 1 to {SERIAL_CHARS_MAX} characters")
        unknown = [ai for ai in self.ais if ai not in _KNOWN_AFTER_SERIAL]
        if unknown or list(self.ais) != sorted(set(self.ais)):
            raise CodeError(
                "bad_layout", f"layout AIs must be sorted, distinct and among "
                f"{', '.join(sorted(_KNOWN_AFTER_SERIAL))}; got {', '.join(self.ais)}",
            )

    def to_list(self) -> list[Any]:
        return [self.form, self.serial_chars, list(self.ais)]

    def to_json(self) -> dict[str, Any]:
        return {"form": self.form, "serial_chars": self.serial_chars, "ais": list(self.ais)}

    @classmethod
    def from_json(cls, obj: Any) -> Layout:
        return cls(str(obj["form"]), obj["serial_chars"], tuple(obj.get("ais", ())))


@dataclass(frozen=True, slots=True)
class Scanned:
    """A code as read: the identification the ledger keys by, its attributes (sorted
    (AI, value) pairs), the crypto AIs it carried (checked and dropped) and its form."""

    code: MarkingCode | FurSign
    attributes: Attributes = ()
    crypto: tuple[str, ...] = ()
    form: str = "gs1"

    @property
    def key(self) -> str:
        return self.code.key

    def attributes_json(self) -> dict[str, Any]:
        return {ATTRIBUTE_NAMES[ai]: attribute_json(ai, value) for ai, value in self.attributes}

    def element_string(self) -> str:
        """The GS1 element string of the identification and the attributes (no crypto)."""
        code = self.code
        if not isinstance(code, UnitCode):
            return code.key
        return code.key + "".join(GS + ai + value for ai, value in self.attributes)

    def digital_link(self) -> str:
        """The Digital Link: the batch as key qualifier, other attributes as data attributes."""
        code = self.code
        if isinstance(code, FurSign):
            raise CodeError("no_gtin", f"fur sign {code.key} has no GS1 Digital Link")
        if isinstance(code, Sscc):
            return code.digital_link()
        attributes = dict(self.attributes)
        lot = attributes.pop("10", None)
        path = f"{DIGITAL_LINK_HOST}/01/{code.gtin}"
        if lot is not None:
            path += f"/10/{quote(lot, safe='')}"
        path += f"/21/{quote(code.serial, safe='')}"
        query = "&".join(f"{ai}={quote(value, safe='')}" for ai, value in attributes.items())
        return path + ("?" + query if query else "")


def parse_code(raw: str | bytes) -> MarkingCode:
    """Read a marking code in any form a scanner or another system delivers: the
    identification the ledger keys by (attributes and crypto part left out)."""
    code = read_code(raw).code
    if isinstance(code, FurSign):
        raise CodeError(
            "no_gtin",
            f"fur control sign {code.key} carries no GTIN; the ledger keys codes by GTIN + serial",
        )
    return code


def read_code(
    raw: str | bytes, layouts: Sequence[Layout] | None = None, group: str = ""
) -> Scanned:
    """Read a code in any form, with its attributes apart; given a product group's
    layouts, also refuse an AI the group does not use and a serial it does not print."""
    text = _strip_symbology(_to_text(raw))
    if text[:8].lower().startswith(_URI_SCHEMES):
        scanned = _parse_digital_link(text)
    elif text.startswith("("):
        scanned = _parse_hri(text)
    else:
        scanned = _parse_element_string(text)
    if layouts is not None:
        fit_layout(scanned, layouts, group)
    return scanned


def fit_layout(scanned: Scanned, layouts: Sequence[Layout], group: str) -> None:
    """Refuse a code that none of a product group's layouts prints."""
    code = scanned.code
    if not isinstance(code, UnitCode):
        return  # aggregates are not per group; a fur sign has no group table yet
    allowed = {ai for layout in layouts for ai in layout.ais}
    for ai in sorted((*scanned.crypto, *(ai for ai, _ in scanned.attributes))):
        if ai not in allowed:
            raise _unknown_ai(ai, ai_title(ai), f"is not used by product group {group},")
    forms = {"gs1", scanned.form}
    lengths = sorted({lay.serial_chars for lay in layouts if lay.form in forms})
    if len(code.serial) not in lengths:
        _refuse_glued(code.serial, lengths, allowed)
        raise CodeError(
            "wrong_layout",
            f"serial {_show(code.serial)} has {len(code.serial)} characters; product group "
            f"{group} prints serials of {' or '.join(map(str, lengths)) or 'no such form'}",
        )


def _refuse_glued(serial: str, lengths: list[int], allowed: set[str]) -> None:
    """A serial longer than the group prints that goes on with an AI the group uses,
    where its serial would end, is a scan whose GS was dropped."""
    for length in lengths:
        found = _ai_at(serial, length)
        if length < len(serial) and found is not None and found.ai in allowed:
            raise _missing_gs("serial", serial, found.ai)


# --- element strings -------------------------------------------------------------------------

Pairs: TypeAlias = list[tuple[str, str]]
_FUR_RE = re.compile(r"([A-Z]{2})-([0-9]{4})([0-9]{2})-([0-9A-Za-z]{10})")
# The cigarette pack's price is kopecks in base 80 over this alphabet (DOMAIN.md).
BASE80 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"%&'*+-./_,:;=<>?"
_BASE80_RE = re.compile("[" + re.escape(BASE80) + "]*")
# MDLP's XSD sign_sgtin_type: GTIN 14 + 13 characters of this set.
_SGTIN_RE = re.compile(r"""[!"%&'()*+,\-./0-9A-Z_a-z]*""")
PACK_CHARS = 29
SGTIN_CHARS = 27
_PACK_NO_PRICE = "AAAA"  # other tobacco products print zero in the price slot


def _parse_element_string(text: str) -> Scanned:
    text = text.lstrip(GS)  # FNC1 in first position arrives as GS.
    if len(text) == 18 and text.isdigit():
        return Scanned(Sscc(text))
    match = _UNIT_ES_RE.fullmatch(text)
    if match is not None and _gtin_ok(match[1]):
        return _unit_element_string(match, len(text))
    fixed = _fixed_form(text)
    if fixed is not None:
        return fixed
    fur = _FUR_RE.fullmatch(text) if len(text) == _FUR_CHARS else None
    if fur is not None:
        return Scanned(FurSign(*fur.groups()), form="fur")
    pairs, unterminated = _read_elements(text)
    seen = {ai for ai, _ in pairs}
    suspect = unterminated == "21" or ("92" in seen and "91" not in seen)
    return _build(pairs, serial_suspect=suspect, unterminated=unterminated)


# The shapes nearly every scanner and system delivers, read with one regular expression
# each: a unit's element string with no tail, the Russian crypto pair (91 + 92) or the
# short tail (93); the same in parentheses; and a Digital Link on a host's root path
# with no query. They read exactly what the general path reads (which a test checks over
# the shared tables and random inputs); anything else (attributes, other forms, every
# refusal but a swallowed tail) takes the general path, which says what is wrong.
_CRYPTO_VALUE = _CSET82 + f"{{1,{TAIL_CHARS_MAX}}}"
_UNIT_ES_RE = re.compile(
    rf"01([0-9]{{14}})21({_CSET82}{{1,{SERIAL_CHARS_MAX}}})"
    rf"(?:\x1d91({_CRYPTO_VALUE})\x1d92({_CRYPTO_VALUE})|\x1d93({_CRYPTO_VALUE}))?\x1d*"
)
# In parentheses: no value holds a parenthesis, so none can hide an AI.
_HRI_CHAR = r"""[!"%&'*-?A-Z_a-z]"""
_HRI_VALUE = _HRI_CHAR + f"{{1,{TAIL_CHARS_MAX}}}"
_UNIT_HRI_RE = re.compile(
    rf"\(01\)([0-9]{{14}})\(21\)({_HRI_CHAR}{{1,{SERIAL_CHARS_MAX}}})"
    rf"(?:\(91\)({_HRI_VALUE})\(92\)({_HRI_VALUE})|\(93\)({_HRI_VALUE}))?"
)
# A serial path segment with nothing to percent-decode and nothing urlsplit would drop
# or split on; a host with nothing urlsplit refuses (brackets) or drops (tab, CR, LF).
_LINK_SERIAL = r"""[!"&-.0-9:->A-Z_a-z]"""
_UNIT_LINK_RE = re.compile(
    rf"[Hh][Tt][Tt][Pp][Ss]?://[^/?#\[\]\t\r\n]*/01/([0-9]{{14}})/21/({_LINK_SERIAL}{{1,{SERIAL_CHARS_MAX}}})"
)
_FUR_CHARS = 20  # CC-TTTTMM-SSSSSSSSSS


def _unit_element_string(match: re.Match[str], length: int) -> Scanned:
    """A unit's element string that `_UNIT_ES_RE` matched, with a valid GTIN."""
    gtin, serial, key91, _, tail93 = match.groups()
    if key91 is not None:
        return Scanned(UnitCode(gtin, serial), (), _RUSSIAN_CRYPTO)
    if tail93 is not None:
        return Scanned(UnitCode(gtin, serial), (), _SHORT_TAIL)
    if match.end(2) == length:  # the serial ran to the end: a dropped GS may hide behind it
        _refuse_hidden_tail(serial)
    return Scanned(UnitCode(gtin, serial))


def _unit_in_parentheses(match: re.Match[str]) -> Scanned:
    gtin, serial, key91, _, tail93 = match.groups()
    crypto = _RUSSIAN_CRYPTO if key91 is not None else _SHORT_TAIL if tail93 is not None else ()
    return Scanned(UnitCode(gtin, serial), (), crypto)


_RUSSIAN_CRYPTO = ("91", "92")
_SHORT_TAIL = ("93",)


def _fixed_form(text: str) -> Scanned | None:
    """The 29-character pack code or the 27-character SGTIN, neither with AIs.

    Both start with 14 digits. Text that reads as 01 + 14 digits + 21 is an element
    string (no group prints the 9- or 11-character serial it would then have), so a
    key or a scan is never taken for one of these."""
    if len(text) not in (PACK_CHARS, SGTIN_CHARS) or not _DIGITS_RE.fullmatch(text, 0, 14):
        return None
    if text.startswith("01") and text[16:18] == "21":
        return None
    if len(text) == PACK_CHARS and _BASE80_RE.fullmatch(text, 14):
        return _pack29(text)
    if len(text) == SGTIN_CHARS and _SGTIN_RE.fullmatch(text, 14):
        _check_number("GTIN", text[:14], 14, "bad_gtin")
        return Scanned(UnitCode(text[:14], text[14:]), form="sgtin27")
    return None


def _pack29(text: str) -> Scanned:
    """GTIN 14 + serial 7 + price 4 (kopecks, base 80) + check 4."""
    _check_number("GTIN", text[:14], 14, "bad_gtin")
    price = text[21:25]
    code = UnitCode(text[:14], text[14:21])
    if price == _PACK_NO_PRICE:
        return Scanned(code, form="pack29")
    kopecks = 0
    for char in price:
        kopecks = kopecks * len(BASE80) + BASE80.index(char)
    if kopecks > 999_999:  # AI 8005 has six digits
        raise CodeError("bad_attribute", f"pack price {price} reads as {kopecks} kopecks, over 999999")
    return Scanned(code, (("8005", f"{kopecks:06d}"),), form="pack29")


def _read_elements(text: str) -> tuple[Pairs, str]:
    """Split an element string into (AI, value) pairs; variable fields end at GS. Also
    names the variable field that ran to the end of the text ("" when none did): a
    dropped GS hides behind it."""
    pairs: Pairs = []
    unterminated = ""
    position = 0
    while position < len(text):
        if text[position] == GS:
            position += 1
            continue
        spec = _ai_at(text, position)
        if spec is None:
            raise _unexpected(text[position:], pairs)
        start = position + len(spec.ai)
        if spec.fixed_chars:
            value = text[start : start + spec.fixed_chars].split(GS, 1)[0]
            end = start + len(value)
        else:
            end = text.find(GS, start)
            if end == -1:
                end = len(text)
                unterminated = spec.ai
            value = text[start:end]
        pairs.append((spec.ai, value))
        position = end
    return pairs, unterminated


def _unexpected(rest: str, pairs: Pairs) -> CodeError:
    """Name the AI (or the junk) found where an AI Tamga reads was expected."""
    where = (
        f"after {_FIELD_NAMES.get(pairs[-1][0], 'AI ' + pairs[-1][0])}" if pairs else "at the start"
    )
    known = _extract(rest)
    if known is None:
        if not pairs:
            return CodeError(
                "not_a_code",
                f"not a code: {_show(rest)} does not start with AI 01 (GTIN) or 00 (SSCC)",
            )
        return CodeError("trailing_data", f"unexpected data {_show(rest)} {where}")
    return _unknown_ai(known["ai"], known["data_title"], where)


def _unknown_ai(ai: str, title: str, where: str) -> CodeError:
    return CodeError(
        "unknown_ai",
        f"AI {ai} ({title}) {where} is not part of a marking code; Tamga reads 01 + 21, the "
        f"crypto part 91, 92, 93, the attributes {', '.join(ATTRIBUTE_AIS)}, and 00 for an SSCC",
    )


# --- assembling a code from (AI, value) pairs ------------------------------------------------


def _build(pairs: Pairs, *, serial_suspect: bool, unterminated: str = "") -> Scanned:
    """Turn read pairs into a code; `serial_suspect` when a GS could have been dropped."""
    if not pairs:
        raise CodeError("not_a_code", "not a code: no application identifier found")
    first_ai, first_value = pairs[0]
    if first_ai == "00":
        if len(pairs) > 1:
            raise CodeError(
                "trailing_data", f"an SSCC (AI 00) stands alone, but AI {pairs[1][0]} follows it"
            )
        return Scanned(Sscc(first_value))
    if first_ai != "01":
        raise _unknown_ai(first_ai, ai_title(first_ai), "at the start")
    gtin = first_value
    if not _gtin_ok(gtin):  # a document's codes share a few GTINs: the check is cached
        _check_number("GTIN", gtin, 14, "bad_gtin")
    if len(pairs) == 1 or pairs[1][0] != "21":
        raise _missing_serial(gtin, pairs[1:])
    serial = pairs[1][1]
    if unterminated and unterminated != "21":
        _refuse_swallowed(pairs, unterminated)
    attributes, crypto = _split_tail(pairs[2:])
    if serial_suspect:
        _refuse_hidden_tail(serial)
    return Scanned(UnitCode(gtin, serial), attributes, crypto)


def _missing_serial(gtin: str, rest: Pairs) -> CodeError:
    if not rest:
        return CodeError("missing_serial", f"GTIN {gtin} has no serial (AI 21) after it")
    ai = rest[0][0]
    if ai in _KNOWN_AFTER_SERIAL:
        return CodeError(
            "missing_serial",
            f"GTIN {gtin} is followed by AI {ai} ({ai_title(ai)}), not a serial (AI 21)",
        )
    if ai == "01":
        return CodeError("duplicate_ai", "AI 01 (GTIN) appears twice")
    return _unknown_ai(ai, ai_title(ai), "after the GTIN")


def _split_tail(tail: Pairs) -> tuple[Attributes, tuple[str, ...]]:
    """The attributes, checked and kept, and the crypto AIs, checked and dropped."""
    seen: set[str] = set()
    attributes: Pairs = []
    crypto: list[str] = []
    for ai, value in tail:
        if ai in ("01", "21") or ai in seen:
            raise CodeError("duplicate_ai", f"AI {ai} appears twice")
        seen.add(ai)
        if ai in CRYPTO_AIS:
            if not value or len(value) > TAIL_CHARS_MAX or not _CSET82_RE.fullmatch(value):
                raise CodeError(
                    "bad_tail",
                    f"crypto field AI {ai} value {_show(value)} must be 1 to {TAIL_CHARS_MAX} "
                    "characters of the GS1 character set 82",
                )
            crypto.append(ai)
        elif ai in ATTRIBUTE_AIS:
            check_attribute(ai, value)
            attributes.append((ai, value))
        else:
            raise _unknown_ai(ai, ai_title(ai), "after the serial")
    return tuple(sorted(attributes)), tuple(sorted(crypto))


def _refuse_swallowed(pairs: Pairs, ai: str) -> None:
    """A variable field after the serial ran to the end of the text: when it is too long
    for its AI and holds an AI Tamga reads, the GS before that AI was dropped."""
    value = dict(pairs)[ai]
    spec = _SPECS[ai]
    limit = 4 if ai == "91" else spec.chars_max  # the crypto key is four characters
    if len(value) <= limit:
        return
    for position in range(1, min(len(value) - 2, limit) + 1):
        found = _ai_at(value, position)
        if found is not None and found.ai in _KNOWN_AFTER_SERIAL:
            raise _missing_gs(f"AI {ai} value", value, found.ai)


def _missing_gs(what: str, value: str, found: str) -> CodeError:
    return CodeError(
        "missing_gs",
        f"{what} {_show(value)} looks like it contains AI {found}; the scanner may be "
        f"dropping the GS separator. If this really is the value, give the code as "
        f"(01)...(21)... or as a Digital Link",
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
    """Where a crypto AI (or, in an over-long serial, any AI after the serial) seems to
    start inside a serial, or None."""
    if len(serial) > SERIAL_CHARS_MAX:
        # Too long to be a serial: an AI where a serial could end gives it away.
        for position in range(1, min(len(serial) - 2, SERIAL_CHARS_MAX) + 1):
            spec = _ai_at(serial, position)
            if spec is not None and spec.ai in _KNOWN_AFTER_SERIAL:
                return position
        return None
    position = len(serial) - 2 - _TAIL_SHAPED
    if position >= 1 and serial[position : position + 2] in ("91", "93"):
        return position
    return None


# --- human-readable form and Digital Link ----------------------------------------------------


def _parse_hri(text: str) -> Scanned:
    text = text.replace(" ", "")
    match = _UNIT_HRI_RE.fullmatch(text)
    if match is not None and _gtin_ok(match[1]):
        return _unit_in_parentheses(match)
    matches = list(_HRI_AI_RE.finditer(text))
    if not matches or matches[0].start() != 0:
        raise CodeError(
            "not_a_code", f"not a code: {_show(text)} does not start with an AI in parentheses"
        )
    ends = [m.start() for m in matches[1:]] + [len(text)]
    pairs = [(m.group(1), text[m.end() : end]) for m, end in zip(matches, ends)]
    return _build(pairs, serial_suspect=False)


def _parse_digital_link(text: str) -> Scanned:
    match = _UNIT_LINK_RE.fullmatch(text)
    if match is not None and _gtin_ok(match[1]):
        return Scanned(UnitCode(match[1], match[2]))
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise CodeError(
            "bad_uri", f"Digital Link {_show(text)} is not a valid URI: {exc}"
        ) from None
    segments = parts.path.split("/")
    start = next((i for i, s in enumerate(segments) if s in ("00", "01")), None)
    if start is None:
        raise CodeError(
            "bad_uri", f"Digital Link {_show(text)} has no /01/ (GTIN) or /00/ (SSCC) in its path"
        )
    keyed = segments[start:]
    if len(keyed) == 1:
        raise CodeError("bad_uri", f"Digital Link {_show(text)} ends at /{keyed[0]}/ with no value")
    if keyed[0] == "00":
        if len(keyed) > 2:
            extra = "/".join(keyed[2:])
            raise CodeError("trailing_data", f"Digital Link path continues after the code: {_show(extra)}")
        return _build([("00", _percent_decode(keyed[1]))], serial_suspect=False)
    gtin = _percent_decode(keyed[1])
    if len(gtin) in (8, 12, 13):
        gtin = gtin.zfill(14)
    qualifiers = _link_qualifiers(text, keyed[2:])
    pairs = [("01", gtin), *qualifiers, *_link_attributes(parts.query)]
    return _build(pairs, serial_suspect=False)


def _link_qualifiers(text: str, rest: list[str]) -> Pairs:
    """The key qualifiers after the GTIN: an optional batch (/10/), then the serial
    (/21/), which must end the path, as the Digital Link standard orders them. The
    serial comes first in the result, where `_build` expects it."""
    lot: Pairs = []
    while rest:
        ai = rest[0]
        if ai == "10" and not lot and len(rest) > 2:
            lot = [("10", _percent_decode(rest[1]))]
            rest = rest[2:]
            continue
        if ai != "21":
            if ai.isdigit():
                raise _unknown_ai(ai, ai_title(ai), "in the Digital Link path")
            extra = "/".join(rest)
            raise CodeError("trailing_data", f"Digital Link path continues after the code: {_show(extra)}")
        if len(rest) == 1:
            raise CodeError("missing_serial", f"Digital Link {_show(text)} has /21/ but no serial")
        if len(rest) > 2:
            extra = "/".join(rest[2:])
            raise CodeError("trailing_data", f"Digital Link path continues after the code: {_show(extra)}")
        return [("21", _percent_decode(rest[1])), *lot]
    return lot  # no serial: `_build` says so


def _link_attributes(query: str) -> Pairs:
    """Data attributes in the query (?17=...&91=...): AIs are read and checked like
    printed ones; other parameters (linkType, ...) are for resolvers and are ignored."""
    pairs: Pairs = []
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        if name.isascii() and name.isdigit():
            if name not in _KNOWN_AFTER_SERIAL:
                raise _unknown_ai(name, ai_title(name), "in the Digital Link query")
            pairs.append((name, _percent_decode(value)))
    return pairs


def _percent_decode(segment: str) -> str:
    if not _PERCENT_RE.fullmatch(segment):
        raise CodeError("bad_uri", f"path segment {_show(segment)} has a malformed %-escape")
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise CodeError(
            "bad_serial", f"path segment {_show(segment)} decodes to bytes that are not text"
        ) from None

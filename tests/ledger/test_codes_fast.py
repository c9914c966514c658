"""The parser's fast paths (a unit's element string, its parenthesised form and its
Digital Link, read with one regular expression each) read exactly what the general
path reads: the same code, attributes, crypto AIs and form, or the same refusal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import _codes
from ledger._codes import CodeError, gs1_check_digit, read_code
from tests.shared_data import SHARED_DATA

GS = "\x1d"
SHARED = SHARED_DATA / "codes"
_NEVER = re.compile(r"(?!)")


@contextmanager
def general_path_only() -> Iterator[None]:
    saved = (_codes._UNIT_ES_RE, _codes._UNIT_HRI_RE, _codes._UNIT_LINK_RE)
    _codes._UNIT_ES_RE = _codes._UNIT_HRI_RE = _codes._UNIT_LINK_RE = _NEVER
    try:
        yield
    finally:
        _codes._UNIT_ES_RE, _codes._UNIT_HRI_RE, _codes._UNIT_LINK_RE = saved


def outcome(raw: str) -> Any:
    try:
        return read_code(raw)
    except CodeError as exc:
        return (exc.reason, exc.message)


def both(raw: str) -> tuple[Any, Any]:
    fast = outcome(raw)
    with general_path_only():
        general = outcome(raw)
    return fast, general


def _shared_inputs() -> list[str]:
    raws: list[str] = []
    for name, column in (("layouts.tsv", 1), ("valid.tsv", 0), ("sscc.tsv", 0), ("invalid.tsv", 0)):
        for line in (SHARED / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith(("#", "group\t")):
                raws.append(line.split("\t")[column].replace("\\x1d", GS))
    return raws


def test_the_shared_tables_read_alike_on_both_paths() -> None:
    """Every row of the shared code tables, and each unit again as HRI and Digital Link."""
    raws = _shared_inputs()
    forms = list(raws)
    for raw in raws:
        scanned = outcome(raw)
        if isinstance(scanned, _codes.Scanned) and isinstance(scanned.code, _codes.UnitCode):
            forms.append(scanned.digital_link())
            forms.append(scanned.code.element_string() + "".join(f"({ai}){v}" for ai, v in scanned.attributes))
    fast_hits = 0
    for raw in forms:
        fast, general = both(raw)
        assert fast == general, raw
        fast_hits += isinstance(fast, _codes.Scanned)
    assert fast_hits > len(forms) // 2


def _gtin(body: str) -> str:
    return body + str(gs1_check_digit(body))


# Characters that matter to one path or the other: GS, the set-82 punctuation, what
# urlsplit and percent-decoding treat apart, parentheses, spaces, and digits that
# look like AIs.
_CHARS = st.sampled_from(list("Aa09!\"%&'()*+,-./:;<=>?_#[] \t") + [GS, "91", "92", "93", "21", "%41", "%zz"])
_TEXT = st.lists(_CHARS, max_size=24).map("".join)


@st.composite
def unit_inputs(draw: st.DrawFn) -> str:
    gtin = draw(st.one_of(st.builds(_gtin, st.from_regex(r"[0-9]{13}", fullmatch=True)),
                          st.from_regex(r"[0-9]{12,15}", fullmatch=True)))
    serial = draw(st.one_of(st.from_regex(r"[!-~]{1,22}", fullmatch=True), _TEXT))
    tail = draw(st.sampled_from(["", GS, "93", "91", "92"]))
    value = draw(st.one_of(st.from_regex(r"[A-Za-z0-9+/=]{0,6}", fullmatch=True), _TEXT))
    second = draw(st.one_of(st.from_regex(r"[A-Za-z0-9+/=]{0,6}", fullmatch=True), _TEXT))
    form = draw(st.sampled_from(["es", "hri", "link"]))
    if form == "es":
        rest = "" if not tail or tail == GS else GS + tail + value
        if tail == "91":
            rest += GS + "92" + second
        return draw(st.sampled_from(["", GS, "]d2"])) + "01" + gtin + "21" + serial + rest + \
            draw(st.sampled_from(["", GS, GS + GS]))
    if form == "hri":
        rest = "" if not tail or tail == GS else f"({tail}){value}"
        if tail == "91":
            rest += f"(92){second}"
        return f"(01){gtin}(21){serial}{rest}" + draw(st.sampled_from(["", " ", "(10)X"]))
    scheme = draw(st.sampled_from(["https://", "http://", "HTTPS://"]))
    host = draw(st.sampled_from(["id.gs1.org", "example.com/path", "h:8080", "[::1", ""]))
    end = draw(st.sampled_from(["", "?17=270101", "#x", "/", "?linkType=all"]))
    return f"{scheme}{host}/01/{gtin}/21/{serial}{end}"


@given(unit_inputs())
@settings(max_examples=2000, deadline=None)
def test_random_unit_inputs_read_alike_on_both_paths(raw: str) -> None:
    """Near-miss inputs around the fast shapes: same result or same refusal."""
    fast, general = both(raw)
    assert fast == general

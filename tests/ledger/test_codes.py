"""Marking codes: every data row, scanner quirks, refusals with reasons, and round trips."""

from __future__ import annotations

import re
from typing import NamedTuple

import biip
import pytest
from biip.checksums import gs1_standard_check_digit
from biip.gs1_messages import GS1Message
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ledger._codes import (
    CodeError,
    MarkingCode,
    Sscc,
    UnitCode,
    gs1_check_digit,
    is_valid_gtin,
    is_valid_sscc,
    parse_code,
    parse_key,
)
from tests.shared_data import SHARED_DATA

DATA = SHARED_DATA / "codes"
GS = "\x1d"
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
REASONS = {
    "bad_attribute",
    "bad_check_digit",
    "bad_gtin",
    "bad_sscc",
    "bad_serial",
    "bad_tail",
    "bad_uri",
    "duplicate_ai",
    "missing_gs",
    "missing_serial",
    "not_a_code",
    "serial_too_long",
    "trailing_data",
    "unknown_ai",
}


def read_tsv(name: str) -> list[list[str]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append([cell.replace("\\x1d", GS) for cell in line.split("\t")])
    return rows


class Valid(NamedTuple):
    raw: str
    gtin: str
    serial: str


VALID = [Valid(*row[:3]) for row in read_tsv("valid.tsv")]
SSCC_ROWS = [(raw, sscc) for raw, sscc, *_ in read_tsv("sscc.tsv")]
INVALID = [(raw, why) for raw, why, *_ in read_tsv("invalid.tsv")]


def valid_id(row: Valid) -> str:
    return f"{row.gtin}-{row.serial}"


def refusal(raw: str | bytes) -> CodeError:
    with pytest.raises(CodeError) as caught:
        parse_code(raw)
    return caught.value


def test_data_files_are_present() -> None:
    """The shared data rows are found, so the parametrized tests below are not empty."""
    assert len(VALID) >= 2 and len(SSCC_ROWS) >= 1 and len(INVALID) >= 4


# --- every row of the shared data --------------------------------------------------------------


@pytest.mark.parametrize("row", VALID, ids=valid_id)
def test_valid_row_parses_to_its_gtin_and_serial(row: Valid) -> None:
    """Each valid.tsv code reads as its GTIN and serial, and the crypto part is dropped."""
    code = parse_code(row.raw)
    assert code == UnitCode(row.gtin, row.serial)
    assert isinstance(code, UnitCode)
    assert code.key == "01" + row.gtin + "21" + row.serial
    assert parse_key(code.key) == code
    assert parse_code(row.raw.encode("ascii")) == code


@pytest.mark.parametrize("row", VALID, ids=valid_id)
def test_valid_row_agrees_with_biip(row: Valid) -> None:
    """biip reads each valid.tsv code with the same GTIN and serial (an independent oracle)."""
    message = biip.parse(row.raw).gs1_message
    assert message is not None
    gtin, serial = message.element_strings.get(ai="01"), message.element_strings.get(ai="21")
    assert gtin is not None and serial is not None
    assert (gtin.value, serial.value) == (row.gtin, row.serial)


def scanner_variants(row: Valid) -> dict[str, str]:
    code = UnitCode(row.gtin, row.serial)
    biip_message = GS1Message.parse(row.raw)
    return {
        "d2": "]d2" + row.raw,
        "C1": "]C1" + row.raw,
        "Q3": "]Q3" + row.raw,
        "e0": "]e0" + row.raw,
        "leading-gs": GS + row.raw,
        "d2-leading-gs": "]d2" + GS + row.raw,
        "trailing-gs": row.raw + GS,
        "crlf": row.raw + "\r\n",
        "hri-biip": biip_message.as_hri(),
        "hri-spaced": biip_message.as_hri().replace(")", ") "),
        "hri-ours": code.element_string(),
        "link-ours": code.digital_link(),
        "link-biip-with-crypto-query": biip_message.as_gs1_digital_link_uri().as_uri(),
        "link-other-host-prefix": f"http://brand.example/dl/01/{row.gtin}/21/{row.serial}",
        "link-in-plain-qr": "]Q1" + code.digital_link(),
        "key": code.key,
    }


VARIANTS = [
    pytest.param(row, form, id=f"{valid_id(row)}-{form}") for row in VALID for form in scanner_variants(row)
]


@pytest.mark.parametrize(("row", "form"), VARIANTS)
def test_scanner_variant_reads_the_same_unit(row: Valid, form: str) -> None:
    """Symbology prefixes, FNC1 as GS, HRI and Digital Link forms all give the same unit."""
    raw = scanner_variants(row)[form]
    assert parse_code(raw) == UnitCode(row.gtin, row.serial)


@pytest.mark.parametrize(("raw", "sscc"), SSCC_ROWS)
@pytest.mark.parametrize(
    "form",
    ["raw", "d2", "C1", "leading-gs", "hri", "bare", "link", "link-other-host", "trailing-gs"],
)
def test_sscc_row_reads_in_every_form(raw: str, sscc: str, form: str) -> None:
    """Each sscc.tsv code reads as its SSCC in every accepted form, bare 18 digits included."""
    text = {
        "raw": raw,
        "d2": "]d2" + raw,
        "C1": "]C1" + raw,
        "leading-gs": GS + raw,
        "hri": f"(00){sscc}",
        "bare": sscc,
        "link": f"https://id.gs1.org/00/{sscc}",
        "link-other-host": f"https://logistics.example/x/00/{sscc}?foo=1",
        "trailing-gs": raw + GS,
    }[form]
    code = parse_code(text)
    assert code == Sscc(sscc)
    assert isinstance(code, Sscc)
    assert code.key == "00" + sscc
    assert parse_key(code.key) == code
    assert parse_code(code.digital_link()) == code


@pytest.mark.parametrize(("raw", "why"), INVALID, ids=[why for _, why in INVALID])
def test_invalid_row_is_refused_with_a_reason(raw: str, why: str) -> None:
    """Each invalid.tsv input is refused; a check-digit row names the expected digit."""
    error = refusal(raw)
    assert error.reason in REASONS
    assert error.message and str(error) == error.message
    expected = re.search(r"should be (\d)", why)
    if "check digit" in why:
        assert error.reason == "bad_check_digit"
    if expected:
        assert f"expected {expected.group(1)}" in error.message
    if "no serial" in why and "too short" not in why:
        assert error.reason == "missing_serial"


# --- refusals, one reason each -----------------------------------------------------------------

GTIN = "04680029460908"
UNIT = "01" + GTIN + "21"
SSCC = "157035381410375177"

REFUSALS = [
    ("", "not_a_code"),
    ("   \r\n", "not_a_code"),
    ("hello", "not_a_code"),
    ("]d2", "not_a_code"),
    ("]E04680029460908", "not_a_code"),
    ("]zz" + UNIT + "abc", "not_a_code"),
    ("(21)abc", "unknown_ai"),
    ("(01)" + GTIN, "missing_serial"),
    ("(01)" + GTIN + "(21)", "missing_serial"),
    ("(01)" + GTIN + "(21)ab(15)250101", "unknown_ai"),
    ("(01)" + GTIN + "(21)ab(93)", "bad_tail"),
    ("(hello)", "not_a_code"),
    ("x(01)" + GTIN, "not_a_code"),
    ("01" + GTIN[:-1] + "7" + "21abc", "bad_check_digit"),
    ("0104680029460A0821abc", "bad_gtin"),
    ("01" + GTIN[:10], "bad_gtin"),
    ("01" + GTIN, "missing_serial"),
    ("01" + GTIN + GS, "missing_serial"),
    (UNIT + GS + "93abcd", "missing_serial"),
    ("01" + GTIN + "93abcd", "missing_serial"),
    ("01" + GTIN + "10LOT" + GS + "21abc", "missing_serial"),
    ("01" + GTIN + "01" + GTIN + "21abc", "duplicate_ai"),
    (UNIT + "abc" + GS + "21def", "duplicate_ai"),
    (UNIT + "abc" + GS + "93abcd" + GS + "93efgh", "duplicate_ai"),
    (UNIT + "abc" + GS + "01" + GTIN, "duplicate_ai"),
    (UNIT + "a" * 21, "serial_too_long"),
    (UNIT + "ab cd", "bad_serial"),
    (UNIT + "ab#cd", "bad_serial"),
    (UNIT + "abc" + GS + "15250101", "unknown_ai"),
    (UNIT + "abc" + GS + "17251301", "bad_attribute"),
    (UNIT + "abc" + GS + "17250230", "bad_attribute"),
    (UNIT + "abc" + GS + "8005" + "12a456", "bad_attribute"),
    (UNIT + "abc" + GS + "zz", "trailing_data"),
    (UNIT + "abc" + GS + "93" + "a" * 91, "bad_tail"),
    (UNIT + "abc" + GS + "93ab cd", "bad_tail"),
    (UNIT + "абв", "not_a_code"),
    (b"01" + GTIN.encode() + b"21\xd0\xb0", "not_a_code"),
    ("x" * 5000, "not_a_code"),
    ("10LOT", "unknown_ai"),
    ("00" + SSCC[:-1] + "6", "bad_check_digit"),
    ("00" + SSCC[:10], "bad_sscc"),
    ("00" + SSCC + "xyz", "trailing_data"),
    ("00" + SSCC + GS + "21abc", "trailing_data"),
    (SSCC[:-1] + "6", "bad_check_digit"),
    ("(00)" + SSCC + "(21)abc", "trailing_data"),
    ("https://id.gs1.org/", "bad_uri"),
    ("https://id.gs1.org/01", "bad_uri"),
    ("https://id.gs1.org/01/" + GTIN, "missing_serial"),
    ("https://id.gs1.org/01/" + GTIN + "/21", "missing_serial"),
    ("https://id.gs1.org/01/" + GTIN + "/21/", "missing_serial"),
    ("https://id.gs1.org/01/" + GTIN + "/22/CPV/21/abc", "unknown_ai"),
    ("https://id.gs1.org/01/" + GTIN + "/21/abc?15=250101", "unknown_ai"),
    ("https://id.gs1.org/01/" + GTIN + "/21/abc/10/LOT", "trailing_data"),
    ("https://id.gs1.org/01/" + GTIN + "/21/abc/", "trailing_data"),
    ("https://id.gs1.org/01/" + GTIN + "/21/a%zz", "bad_uri"),
    ("https://id.gs1.org/01/" + GTIN + "/21/a%20b", "bad_serial"),
    ("https://id.gs1.org/01/" + GTIN + "/21/a%ffb", "bad_serial"),
    ("https://id.gs1.org/01/" + GTIN + "/21/" + "a" * 21, "serial_too_long"),
    ("https://id.gs1.org/01/04680029460907/21/abc", "bad_check_digit"),
    ("https://id.gs1.org/01/12345/21/abc", "bad_gtin"),
    ("https://id.gs1.org/00/" + SSCC + "/21/abc", "trailing_data"),
    ("https://[::1/01/" + GTIN + "/21/abc", "bad_uri"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSALS, ids=[repr(r)[:40] for r, _ in REFUSALS])
def test_malformed_input_is_refused_with_its_reason(raw: str | bytes, reason: str) -> None:
    """Each kind of malformed input gets its own stable reason and a message."""
    error = refusal(raw)
    assert (error.reason, bool(error.message)) == (reason, True)
    assert isinstance(error, ValueError)
    assert len(error.message) < 400


def test_check_digit_refusal_names_the_expected_digit() -> None:
    """A wrong check digit says which digit was found and which was expected."""
    error = refusal("01" + GTIN[:-1] + "3" + "21abc")
    assert "check digit 3, expected 8" in error.message


def test_unknown_ai_refusal_names_the_ai() -> None:
    """An AI outside marking codes is named with its GS1 title."""
    error = refusal(UNIT + "abc" + GS + "15250101")
    assert "AI 15" in error.message and "BEST BEFORE" in error.message


# --- the missing-GS field failure --------------------------------------------------------------


@pytest.mark.parametrize("row", VALID, ids=valid_id)
def test_dropped_gs_is_refused_with_a_scanner_hint(row: Valid) -> None:
    """A valid code whose GS separators were dropped is refused with the missing-GS hint."""
    error = refusal(row.raw.replace(GS, ""))
    assert error.reason == "missing_gs"
    assert "crypto tail (9" in error.message
    assert "dropping the GS separator" in error.message
    assert row.serial in error.message


@pytest.mark.parametrize("row", VALID, ids=valid_id)
def test_gs_dropped_only_after_the_serial_is_refused(row: Valid) -> None:
    """Dropping just the GS after the serial (91 glued to it, 92 behind a GS) is still caught."""
    first_gs = row.raw.index(GS)
    error = refusal(row.raw[:first_gs] + row.raw[first_gs + 1 :])
    assert error.reason == "missing_gs"


def test_tail_like_serial_is_accepted_where_delimiters_are_explicit() -> None:
    """A serial that really ends like a tail is accepted from the HRI and Digital Link forms."""
    code = UnitCode(GTIN, "5jcmHzLmkdPML938p9E")
    assert refusal(code.key).reason == "missing_gs"
    assert parse_code(code.element_string()) == code
    assert parse_code(code.digital_link()) == code
    assert parse_key(code.key) == code
    assert parse_code(code.key + GS + "93abcd") == code


def test_tail_like_text_at_the_start_of_a_serial_is_not_a_tail() -> None:
    """A serial cannot be empty, so '93' at its first position is part of the serial."""
    assert parse_code(UNIT + "93abcd") == UnitCode(GTIN, "93abcd")


# --- the canonical key -------------------------------------------------------------------------

BAD_KEYS = [
    ("", "not_a_code"),
    ("21abc", "not_a_code"),
    ("(01)" + GTIN + "(21)abc", "not_a_code"),
    ("01" + GTIN[:-1] + "7" + "21abc", "bad_check_digit"),
    ("01" + GTIN[:9], "bad_gtin"),
    ("0104680029x6090821abc", "bad_gtin"),
    ("01" + GTIN, "missing_serial"),
    ("01" + GTIN + "21", "missing_serial"),
    ("01" + GTIN + "93abcd", "missing_serial"),
    (UNIT + "a" * 21, "serial_too_long"),
    (UNIT + "ab" + GS + "93abcd", "bad_serial"),
    (UNIT + "ab cd", "bad_serial"),
    (UNIT + "é", "bad_serial"),
    ("00" + SSCC[:-1] + "0", "bad_check_digit"),
    ("00" + SSCC + "1", "bad_sscc"),
    ("00" + SSCC[:5], "bad_sscc"),
    ("00" + "１" * 18, "bad_sscc"),
    (SSCC, "not_a_code"),
]


@pytest.mark.parametrize(("key", "reason"), BAD_KEYS, ids=[repr(k)[:40] for k, _ in BAD_KEYS])
def test_parse_key_refuses_everything_but_the_canonical_form(key: str, reason: str) -> None:
    """parse_key reads only "01..21.." and "00..", and says what is wrong with anything else."""
    with pytest.raises(CodeError) as caught:
        parse_key(key)
    assert caught.value.reason == reason


def test_constructors_check_their_fields() -> None:
    """UnitCode and Sscc cannot hold a bad GTIN, serial or SSCC."""
    with pytest.raises(CodeError, match="expected 8"):
        UnitCode(GTIN[:-1] + "0", "abc")
    with pytest.raises(CodeError, match="empty"):
        UnitCode(GTIN, "")
    with pytest.raises(CodeError, match="bad|not in the GS1"):
        UnitCode(GTIN, "a\x1d")
    with pytest.raises(CodeError):
        Sscc(SSCC[:-1] + "0")


def test_unit_renders_in_the_documented_forms() -> None:
    """key, element_string and digital_link have the documented shapes, serial percent-encoded."""
    code = UnitCode(GTIN, "a/b+c%")
    assert code.key == "01" + GTIN + "21a/b+c%"
    assert code.element_string() == f"(01){GTIN}(21)a/b+c%"
    assert code.digital_link() == f"https://id.gs1.org/01/{GTIN}/21/a%2Fb%2Bc%25"
    assert Sscc(SSCC).digital_link() == f"https://id.gs1.org/00/{SSCC}"


def test_short_gtin_in_a_digital_link_is_zero_padded() -> None:
    """A GTIN-13 in a Digital Link path is the same GTIN-14 with a leading zero."""
    assert parse_code(f"https://id.gs1.org/01/{GTIN[1:]}/21/abc") == UnitCode(GTIN, "abc")


# --- properties --------------------------------------------------------------------------------

serials = st.text(alphabet=CSET82, min_size=1, max_size=20)
payload13 = st.text(alphabet="0123456789", min_size=13, max_size=13)
payload17 = st.text(alphabet="0123456789", min_size=17, max_size=17)
gtins = payload13.map(lambda p: p + str(gs1_check_digit(p)))
ssccs = payload17.map(lambda p: p + str(gs1_check_digit(p)))
units = st.builds(UnitCode, gtins, serials)
codes: st.SearchStrategy[MarkingCode] = st.one_of(units, st.builds(Sscc, ssccs))
HRI_AI = re.compile(r"\(\d{2,4}\)")


@given(codes)
def test_key_round_trips_through_parse_key(code: MarkingCode) -> None:
    """key -> parse_key gives back the same code and the same key."""
    again = parse_key(code.key)
    assert again == code and again.key == code.key


@given(codes)
def test_digital_link_round_trips_through_parse_code(code: MarkingCode) -> None:
    """digital_link -> parse_code gives back the same code, whatever the serial's characters."""
    assert parse_code(code.digital_link()) == code


@given(units)
@example(UnitCode(GTIN, "(2)x(93"))
def test_element_string_round_trips_through_parse_code(code: UnitCode) -> None:
    """element_string -> parse_code gives back the same unit (serials without "(NN)" in them)."""
    assume(not HRI_AI.search(code.serial))
    assert parse_code(code.element_string()) == code


@given(units, st.sampled_from(["", "]d2", "]d2\x1d", "\x1d"]), st.text(CSET82, min_size=4, max_size=4))
def test_scanned_element_string_with_tail_reads_the_unit(code: UnitCode, prefix: str, tail: str) -> None:
    """A scan with GS before the crypto tail gives the unit, the tail dropped."""
    assert parse_code(f"{prefix}{code.key}{GS}93{tail}") == code


@given(units, st.text(CSET82, min_size=4, max_size=4))
def test_tail_glued_to_any_serial_is_caught(code: UnitCode, tail: str) -> None:
    """Any serial followed by 93 + four characters without GS is refused as missing_gs."""
    assert refusal(f"{code.key}93{tail}").reason == "missing_gs"


@given(units, st.text(CSET82, min_size=4, max_size=4), st.text(CSET82, min_size=44, max_size=44))
def test_key_and_crypto_code_glued_to_any_serial_are_caught(code: UnitCode, key: str, crypto: str) -> None:
    """Any serial followed by 91 + key + 92 + crypto code without GS is refused as missing_gs."""
    assert refusal(f"{code.key}91{key}92{crypto}").reason == "missing_gs"


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80)))
def test_parse_code_refuses_junk_only_with_code_errors(raw: str | bytes) -> None:
    """Arbitrary text or bytes either read as a code or raise CodeError, never anything else."""
    try:
        code = parse_code(raw)
    except CodeError as error:
        assert error.reason in REASONS
    else:
        assert parse_key(code.key) == code


@given(st.text(alphabet=CSET82 + GS, max_size=60))
def test_parse_key_refuses_junk_only_with_code_errors(key: str) -> None:
    """Arbitrary key text either reads back to itself or raises CodeError."""
    try:
        code = parse_key(key)
    except CodeError as error:
        assert error.reason in REASONS
    else:
        assert code.key == key


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_check_digit_agrees_with_biip(payload: str) -> None:
    """gs1_check_digit agrees with biip's GS1 checksum for any payload length."""
    assert gs1_check_digit(payload) == gs1_standard_check_digit(payload)


@given(gtins, st.integers(0, 13), st.integers(1, 9))
def test_any_single_digit_error_is_detected(gtin: str, position: int, delta: int) -> None:
    """Changing any one digit of a valid GTIN makes its check digit fail."""
    digit = (int(gtin[position]) + delta) % 10
    changed = gtin[:position] + str(digit) + gtin[position + 1 :]
    assert is_valid_gtin(gtin) and not is_valid_gtin(changed)


@given(ssccs, st.integers(0, 16))
def test_adjacent_transpositions_are_detected(sscc: str, position: int) -> None:
    """Swapping two adjacent digits that do not differ by 5 (or 0) breaks the SSCC check."""
    a, b = sscc[position], sscc[position + 1]
    assume(abs(int(a) - int(b)) not in (0, 5))
    swapped = sscc[:position] + b + a + sscc[position + 2 :]
    assert is_valid_sscc(sscc) and not is_valid_sscc(swapped)


def test_check_digit_examples() -> None:
    """Known check digits: the GS1 worked example and the shared data."""
    assert gs1_check_digit("629104150021") == 3  # GS1 General Specifications 7.9.1
    assert gs1_check_digit(GTIN[:-1]) == 8
    assert gs1_check_digit(SSCC[:-1]) == 7
    assert not is_valid_gtin("4680029460908")
    assert not is_valid_sscc(SSCC + "0")
    with pytest.raises(ValueError):
        gs1_check_digit("12a")

"""Every product group's layout from the shared table: identification and attributes apart,
group rules (an AI the group does not use, a dropped GS), round trips, and the group table."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from ledger import Genesis, Layout, ProductGroup
from ledger._codes import (
    BASE80,
    CodeError,
    FurSign,
    Scanned,
    Sscc,
    UnitCode,
    attribute_date,
    parse_code,
    read_code,
)
from testnet import product_groups
from tests.shared_data import SHARED_DATA

from .world import make_genesis

GS = "\x1d"
GROUPS = {g.name: g for g in product_groups()}


class Row(NamedTuple):
    group: str
    raw: str
    gtin: str
    serial: str
    extras: dict[str, str]


def _rows() -> list[Row]:
    rows = []
    for line in (SHARED_DATA / "codes" / "layouts.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith(("#", "group\t")):
            continue
        cells = [c.replace("\\x1d", GS) for c in line.split("\t")]
        extras = dict(kv.split("=", 1) for kv in cells[4].split(";")) if cells[4] != "-" else {}
        rows.append(Row(cells[0], cells[1], cells[2], cells[3], extras))
    return rows


ROWS = _rows()
# Which group of the testnet's table each row of the shared table belongs to.
GROUP_OF = {
    "RU tobacco consumer pack": "tobacco", "RU tobacco group pack": "tobacco", "RU tobacco transport box": "tobacco",
    "RU other tobacco": "other_tobacco", "RU dairy": "dairy", "RU packaged water": "water", "RU beer": "beer",
    "RU dietary supplements": "supplements", "RU antiseptics": "antiseptics", "RU medicines": "medicines",
    "RU footwear": "footwear", "BY footwear": "footwear", "RU light industry": "textiles", "RU tires": "tyres",
    "RU perfume": "perfume", "RU photo cameras": "cameras", "BY photo goods": "cameras", "RU bicycles": "bicycles",
    "RU canned food": "canned_food", "RU electronic nicotine": "nicotine",
}
UNIT_ROWS = [r for r in ROWS if r.gtin != "-"]


def group_of(row: Row) -> ProductGroup:
    (name,) = {g for prefix, g in GROUP_OF.items() if row.group.startswith(prefix)}
    return GROUPS[name]


def expected_attributes(row: Row) -> dict[str, str]:
    """The attributes a row's extras name (AIs, and the pack price in kopecks as AI 8005)."""
    out = {k: v for k, v in row.extras.items() if k.isdigit() and k not in ("91", "92", "93", "00")}
    if "mrp_kopecks" in row.extras:
        out["8005"] = f"{int(row.extras['mrp_kopecks']):06d}"
    return out


def rid(row: Row) -> str:
    return row.group.split("(")[0].strip().replace(" ", "_")


def test_every_shared_row_is_covered() -> None:
    """The table is read, and each unit row maps to one group of the testnet's table."""
    assert len(ROWS) >= 30
    for row in UNIT_ROWS:
        assert group_of(row).name in GROUPS


@pytest.mark.parametrize("row", ROWS, ids=rid)
def test_row_reads_to_its_identification_and_attributes(row: Row) -> None:
    """Each row gives the expected GTIN + serial (or SSCC, or fur sign) and attributes; the
    crypto part is checked and dropped."""
    scanned = read_code(row.raw)
    code = scanned.code
    if isinstance(code, UnitCode):
        assert (code.gtin, code.serial) == (row.gtin, row.serial)
        assert dict(scanned.attributes) == expected_attributes(row)
        assert parse_code(row.raw) == code and code.key == f"01{row.gtin}21{row.serial}"
        crypto = {k for k in row.extras if k in ("91", "92", "93")}
        assert set(scanned.crypto) == crypto
    elif isinstance(code, Sscc):
        assert code.value == row.serial == row.extras["00"]
    else:
        assert isinstance(code, FurSign)
        assert (code.country, code.tnved, code.input_method, code.serial) == (
            row.extras["country"], row.extras["tnved"], row.extras["input_method"], row.serial)
        with pytest.raises(CodeError) as caught:
            parse_code(row.raw)
        assert caught.value.reason == "no_gtin"


@pytest.mark.parametrize("row", UNIT_ROWS, ids=rid)
def test_row_fits_its_groups_layouts(row: Row) -> None:
    """Read with its group's layouts (from the genesis table), each row is accepted."""
    group = group_of(row)
    assert read_code(row.raw, group.layouts, group.name).key == f"01{row.gtin}21{row.serial}"


@pytest.mark.parametrize("row", UNIT_ROWS, ids=rid)
def test_row_round_trips_through_element_string_and_digital_link(row: Row) -> None:
    """The identification and attributes written back as an element string and as a
    Digital Link read back the same."""
    scanned = read_code(row.raw)
    again = [read_code(scanned.element_string()), read_code(scanned.digital_link())]
    for other in again:
        assert (other.code, other.attributes) == (scanned.code, scanned.attributes)


@pytest.mark.parametrize("row", [r for r in UNIT_ROWS if GS in r.raw.lstrip(GS)], ids=rid)
def test_dropped_gs_is_caught_with_the_groups_layouts(row: Row) -> None:
    """A scanner that drops every GS is refused (missing_gs), never misread, in every group."""
    group = group_of(row)
    with pytest.raises(CodeError) as caught:
        read_code(row.raw.replace(GS, ""), group.layouts, group.name)
    assert caught.value.reason == "missing_gs", caught.value.message


def test_an_ai_the_group_does_not_use_is_refused_by_name() -> None:
    """A tobacco block's price read as dairy: AI 8005 is named with its GS1 title."""
    block = next(r for r in ROWS if r.group.startswith("RU tobacco group pack"))
    dairy = GROUPS["dairy"]
    with pytest.raises(CodeError) as caught:
        read_code(block.raw, dairy.layouts, "dairy")
    assert caught.value.reason == "unknown_ai"
    assert "AI 8005 (PRICE PER UNIT)" in caught.value.message and "dairy" in caught.value.message


def test_a_serial_the_group_does_not_print_is_refused() -> None:
    """A water code's 13-character serial is not a dairy layout (6)."""
    water = next(r for r in ROWS if r.group.startswith("RU packaged water"))
    with pytest.raises(CodeError) as caught:
        read_code(water.raw, GROUPS["dairy"].layouts, "dairy")
    assert caught.value.reason == "wrong_layout" and "6" in caught.value.message


def test_pack_price_is_base_80_kopecks() -> None:
    """DOMAIN.md's example: ABm8 is 95.00 roubles; AAAA (other tobacco) carries no price."""
    assert len(BASE80) == 80
    pack = "04609999000020G0tm>KXABm8F3Pf"
    assert read_code(pack).attributes == (("8005", "009500"),)
    assert read_code(pack).attributes_json() == {"price": 9500}
    assert read_code("04609999000273wDq*zuMAAAArug7").attributes == ()


def test_attributes_as_people_read_them() -> None:
    """Dates are ISO (day 00 is the month's last day), weight in kilograms, price in kopecks."""
    unit = "0104609999000341215m_)p6"
    scanned = read_code(f"{unit}{GS}93abcd{GS}3103000750{GS}17270600{GS}10LOT-1")
    assert scanned.attributes_json() == {"net_weight_kg": "0.750", "expiry": "2027-06-30", "batch": "LOT-1"}
    assert attribute_date("240229").isoformat() == "2024-02-29"
    for bad in ("250229", "251301", "251232"):
        with pytest.raises(CodeError):
            attribute_date(bad)


def test_digital_link_reads_qualifiers_and_data_attributes() -> None:
    """/10/ batch as a key qualifier and ?17=&3103= as data attributes; crypto in the query dropped."""
    link = "https://id.gs1.org/01/04609999000891/10/AB%2F12/21/KcMxjFXTyRX1d?17=270630&91=EE10&linkType=all"
    scanned = read_code(link)
    assert scanned.code == UnitCode("04609999000891", "KcMxjFXTyRX1d")
    assert scanned.attributes == (("10", "AB/12"), ("17", "270630")) and scanned.crypto == ("91",)
    assert read_code(scanned.digital_link()) == Scanned(scanned.code, scanned.attributes)


def test_sgtin_and_pack_are_never_taken_for_keys() -> None:
    """A 27- or 29-character element string (01 ... 21 ...) stays an element string."""
    key27 = "01" + "04680029460908" + "21" + "ABCDEFGHI"
    key29 = "01" + "04680029460908" + "21" + "ABCDEFGHIJK"
    assert read_code(key27).form == "gs1" and read_code(key29).form == "gs1"
    assert read_code(key27).code == UnitCode("04680029460908", "ABCDEFGHI")


def test_genesis_without_groups_hashes_as_before_and_with_groups_round_trips() -> None:
    """No group table: the canonical bytes have the old five fields. A table survives JSON."""
    plain = make_genesis()
    assert plain.product_groups == () and "product_groups" not in plain.to_json()
    assert Genesis.from_json(plain.to_json()).hash == plain.hash
    catalogued = make_genesis(groups=tuple(GROUPS.values()))
    assert catalogued.hash != plain.hash
    again = Genesis.from_json(catalogued.to_json())
    assert again == catalogued and again.hash == catalogued.hash


def test_group_table_refuses_malformed_rows() -> None:
    """Layouts and groups check their fields: form, serial length, AIs, names, required AIs."""
    for bad in (lambda: Layout("qr", 13), lambda: Layout("gs1", 0), lambda: Layout("gs1", 13, ("15",)),
                lambda: Layout("gs1", 13, ("93", "91"))):
        with pytest.raises(CodeError):
            bad()
    layout = Layout("gs1", 13)
    with pytest.raises(ValueError):
        ProductGroup("Dairy", "", (layout,))
    with pytest.raises(ValueError):
        ProductGroup("dairy", "", (layout,), required=("15",))
    with pytest.raises(ValueError):
        ProductGroup("dairy", "", ())
    with pytest.raises(ValueError):
        Genesis.from_json({**make_genesis().to_json(), "product_groups": [GROUPS["dairy"].to_json()] * 2})


def test_testnet_table_names_only_real_documents_and_reasons() -> None:
    """Every document type and withdrawal reason the testnet's table names exists."""
    from ledger import WITHDRAWAL_REASONS, DocType

    for group in GROUPS.values():
        assert set(group.documents) <= {t.value for t in DocType}
        assert set(group.withdrawal_reasons) <= set(WITHDRAWAL_REASONS)

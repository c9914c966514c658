"""The product catalogue in the state machine: register_product, emit against the catalogue
and the group's layout, attributes at introduce, withdrawal reasons; and old chains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import DecodeError, DocType, KeyPair, Reason, SignedDocument, decode_signed, make_document
from testnet import product_groups

from .world import CHAIN_ID, GTIN, GTIN_2, World, make_genesis, seeded_key

GROUPS = product_groups()
DAIRY_GTIN = "04609999000341"  # shared/data/codes/layouts.tsv, RU dairy
TOBACCO_GTIN = "04609999000020"  # ... RU tobacco consumer pack


def catalogued(path: Path) -> World:
    return World(path, make_genesis(groups=GROUPS))


def _reg(state: str) -> KeyPair:
    return seeded_key(f"regulator-{state}")


@dataclass
class Case:
    name: str
    build: Callable[[World, dict[str, KeyPair], dict[str, list[str]]], SignedDocument]
    reason: Reason


def _setup(world: World) -> tuple[dict[str, KeyPair], dict[str, list[str]]]:
    keys = {
        "producer": world.register("RU", ["producer"], "Producer"),
        "importer": world.register("RU", ["importer"], "Importer"),
        "retailer": world.register("RU", ["retailer"], "Retailer"),
        "kz_producer": world.register("KZ", ["producer"], "KZ producer"),
    }
    world.register_product("RU", keys["producer"], DAIRY_GTIN, "dairy", "0403")
    world.register_product("RU", keys["producer"], TOBACCO_GTIN, "tobacco", "2402209000")
    dairy = ["01" + DAIRY_GTIN + "21" + s for s in ("5N>l%O", "5m_)p6")]
    world.apply_ok(world.doc(_reg("RU"), DocType.EMIT, owner=keys["producer"].participant_id, gtin=DAIRY_GTIN,
                             serials=[c[18:] for c in dairy]))
    tobacco = ["01" + TOBACCO_GTIN + "21" + "G0tm>KX"]
    world.apply_ok(world.doc(_reg("RU"), DocType.EMIT, owner=keys["producer"].participant_id,
                             gtin=TOBACCO_GTIN, serials=["G0tm>KX"]))
    world.apply_ok(world.doc(keys["producer"], DocType.INTRODUCE, codes=tobacco,
                             attributes=[["8005", "023000"]]))
    water = world.introduced("RU", keys["producer"], 2)  # registers GTIN as water
    return keys, {"dairy": dairy, "tobacco": tobacco, "water": water}


P = "producer"
# A supporting document (issue 13): an act of destruction, dated before the block time.
ACT = [["doc_date", 1_790_000_000_000], ["doc_number", "A-17"], ["doc_type", "destruction_act"]]


def product(signer: Callable[[dict[str, KeyPair]], KeyPair], producer: str = P, gtin: str = GTIN_2,
            group: str = "dairy", tnved: str = "0403", name: str = "Kefir") -> Callable[..., SignedDocument]:
    return lambda w, k, c: w.doc(signer(k), DocType.REGISTER_PRODUCT, gtin=gtin, group=group, name=name,
                                 tnved=tnved, producer=k[producer].participant_id)


def emit(gtin: str, serials: list[str]) -> Callable[..., SignedDocument]:
    return lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k[P].participant_id, gtin=gtin, serials=serials)


def introduce(which: str, attributes: list[list[str]]) -> Callable[..., SignedDocument]:
    return lambda w, k, c: w.doc(k[P], DocType.INTRODUCE, codes=c[which][:1], attributes=attributes)


CASES = [
    # register_product: the regulator of the producer's state signs.
    Case("register by own regulator", product(lambda k: _reg("RU")), Reason.APPLIED),
    Case("register for an importer", product(lambda k: _reg("RU"), "importer"), Reason.APPLIED),
    Case("register by foreign regulator", product(lambda k: _reg("KZ")), Reason.WRONG_STATE),
    Case("register by the producer itself", product(lambda k: k[P]), Reason.FORBIDDEN_ROLE),
    Case("register for a retailer", product(lambda k: _reg("RU"), "retailer"), Reason.FORBIDDEN_ROLE),
    Case("register for another state's producer", product(lambda k: _reg("RU"), "kz_producer"), Reason.WRONG_STATE),
    Case("register twice", product(lambda k: _reg("RU"), gtin=DAIRY_GTIN), Reason.ALREADY_EXISTS),
    Case("register in an unknown group", product(lambda k: _reg("RU"), group="caviar"), Reason.INVALID_PRODUCT),
    Case("register a bad tariff code", product(lambda k: _reg("RU"), tnved="04031"), Reason.INVALID_PRODUCT),
    Case("register without a name", product(lambda k: _reg("RU"), name=" "), Reason.INVALID_PRODUCT),
    Case("register a bad GTIN", product(lambda k: _reg("RU"), gtin="04609999000342"), Reason.INVALID_CODE),
    # emit: a registered GTIN, serials of the group's layout.
    Case("emit dairy serial of 6", emit(DAIRY_GTIN, ["5abcde"]), Reason.APPLIED),
    Case("emit unregistered GTIN", emit(GTIN_2, ["5abcde"]), Reason.UNKNOWN_PRODUCT),
    Case("emit dairy serial of 13", emit(DAIRY_GTIN, ["5abcdefghijkl"]), Reason.WRONG_LAYOUT),
    Case("emit tobacco serial of 7", emit(TOBACCO_GTIN, ["AAAAAAA"]), Reason.APPLIED),
    # introduce: the attributes the group requires, and only those it uses.
    Case("introduce dairy with expiry", introduce("dairy", [["17", "270630"]]), Reason.APPLIED),
    Case("introduce dairy with expiry and weight", introduce("dairy", [["17", "270630"], ["3103", "000750"]]),
         Reason.APPLIED),
    Case("introduce dairy without expiry", introduce("dairy", []), Reason.MISSING_ATTRIBUTE),
    Case("introduce dairy with a bad date", introduce("dairy", [["17", "271332"]]), Reason.BAD_ATTRIBUTE),
    Case("introduce dairy with a price", introduce("dairy", [["17", "270630"], ["8005", "010000"]]),
         Reason.BAD_ATTRIBUTE),
    Case("introduce dairy with an unknown AI", introduce("dairy", [["15", "270630"], ["17", "270630"]]),
         Reason.BAD_ATTRIBUTE),
    # retire: the group's withdrawal reasons.
    Case("retire tobacco destroyed", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="destroyed",
                                                            codes=c["tobacco"], details=ACT), Reason.APPLIED),
    Case("retire tobacco destroyed without its act",
         lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="destroyed", codes=c["tobacco"]),
         Reason.MISSING_DOCUMENT),
    Case("retire tobacco as expired", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="expired",
                                                             codes=c["tobacco"]), Reason.NOT_FOR_GROUP),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_catalogue_document_table(tmp_path: Path, case: Case) -> None:
    """register_product, emit, introduce and retire by each role on a catalogued chain."""
    world = catalogued(tmp_path / "db")
    keys, codes = _setup(world)
    touched = [k for v in codes.values() for k in v]
    before = {k: world.store.code(k) for k in touched}
    (result,) = world.apply(case.build(world, keys, codes))
    assert result.reason is case.reason, result
    assert result.message or result.applied
    if not result.applied:
        assert {k: world.store.code(k) for k in touched} == before, "a rejected document changed state"


def test_registered_product_and_attributes_are_readable(tmp_path: Path) -> None:
    """The store shows the product, lists it by group, and shows a code's attributes."""
    world = catalogued(tmp_path / "db")
    _, codes = _setup(world)
    dairy = world.store.product(DAIRY_GTIN)
    assert dairy is not None and (dairy["group"], dairy["tnved"], dairy["state"]) == ("dairy", "0403", "RU")
    assert world.store.product(GTIN_2) is None
    assert [p["gtin"] for p in world.store.products("tobacco")[0]] == [TOBACCO_GTIN]
    page, nxt = world.store.products(limit=1)
    assert len(page) == 1 and nxt == page[0]["gtin"]
    rest, end = world.store.products(after=nxt, limit=10)
    assert nxt not in [p["gtin"] for p in rest] and end is None and len(rest) == 2
    view = world.store.code(codes["tobacco"][0])
    assert view is not None and view["attributes"] == {"price": 23000}
    assert "attributes" not in (world.store.code(codes["water"][0]) or {})


def test_a_chain_without_groups_keeps_its_rules(tmp_path: Path) -> None:
    """Without a group table, emit needs no product and register_product has no group to name."""
    world = World(tmp_path / "db")
    producer = world.register("RU", ["producer"], "P")
    assert world.introduced("RU", producer, 1)
    doc = world.doc(_reg("RU"), DocType.REGISTER_PRODUCT, gtin=GTIN, group="water", name="W", tnved="2201",
                    producer=producer.participant_id)
    (result,) = world.apply(doc)
    assert result.reason is Reason.INVALID_PRODUCT and "no product-group table" in result.message


def test_introduce_without_attributes_keeps_its_old_bytes() -> None:
    """An introduce with no attributes has the one-field payload of before (same bytes, same
    id); an explicitly empty attribute list, or an unsorted one, does not decode."""
    key = seeded_key("p")
    codes = ["01" + GTIN + "21" + "ABC"]
    doc = make_document(CHAIN_ID, DocType.INTRODUCE, key.participant_id, 1, 2, codes=codes)
    from ledger import pack, unpack

    body = unpack(doc.body_bytes())
    assert body[-1] == [codes]
    assert "attributes" not in doc.to_json()
    signed = doc.sign(key)
    assert decode_signed(signed.wire()).document == doc
    with_attrs = make_document(CHAIN_ID, DocType.INTRODUCE, key.participant_id, 1, 2, codes=codes,
                               attributes=[["10", "L1"], ["17", "270630"]])
    assert unpack(with_attrs.body_bytes())[-1] == [codes, [["10", "L1"], ["17", "270630"]]]
    assert decode_signed(with_attrs.sign(key).wire()).document == with_attrs
    from ledger import decode_body

    explicit_empty = pack([1, CHAIN_ID, "introduce", key.participant_id, 1, 2, [codes, []]])
    with pytest.raises(DecodeError):
        decode_body(explicit_empty)
    with pytest.raises(DecodeError):
        make_document(CHAIN_ID, DocType.INTRODUCE, key.participant_id, 1, 2, codes=codes,
                      attributes=[["17", "270630"], ["10", "L1"]])

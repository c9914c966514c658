"""Tax ids (issue 13: trade records name "exporter's and importer's tax ids"): a registration
carries one, shaped per member state; businesses must give one on a chain with the
catalogue; participant views, union trade records and customs import records carry them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import (
    DecodeError,
    DocType,
    ParticipantRecord,
    Reason,
    decode_body,
    decode_signed,
    make_document,
    pack,
    unpack,
)
from testnet import product_groups

from .world import CHAIN_ID, World, make_genesis, seeded_key


def _world(path: Path, catalogue: bool = True) -> World:
    return World(path, make_genesis(groups=product_groups()) if catalogue else None)


def _register(world: World, state: str, roles: list[str], tax_id: str | None, label: str) -> Reason:
    fields = {"tax_id": tax_id} if tax_id is not None else {}
    doc = world.doc(world.regulator(state), DocType.REGISTER_PARTICIPANT, public_key=seeded_key(label).public_key,
                    state=state, roles=roles, name=label, **fields)
    (result,) = world.apply(doc)
    return result.reason


SHAPES = [
    ("RU", "7707000011", Reason.APPLIED),  # INN of an organisation
    ("RU", "770700001112", Reason.APPLIED),  # INN of an individual entrepreneur
    ("RU", "77070000111", Reason.BAD_TAX_ID),
    ("KZ", "050140000027", Reason.APPLIED),  # BIN
    ("KZ", "0501400000", Reason.BAD_TAX_ID),
    ("BY", "190000001", Reason.APPLIED),  # UNP
    ("BY", "19000000", Reason.BAD_TAX_ID),
    ("AM", "02500001", Reason.APPLIED),  # TIN
    ("AM", "025000011", Reason.BAD_TAX_ID),
    ("KG", "01234200000037", Reason.APPLIED),  # INN
    ("KG", "012342000000", Reason.BAD_TAX_ID),
]


@pytest.mark.parametrize(("state", "tax_id", "reason"), SHAPES, ids=[f"{s}-{t}" for s, t, _ in SHAPES])
def test_each_state_has_its_shape(tmp_path: Path, state: str, tax_id: str, reason: Reason) -> None:
    world = _world(tmp_path / "db")
    assert _register(world, state, ["wholesaler"], tax_id, "w") is reason


def test_who_needs_a_tax_id(tmp_path: Path) -> None:
    """On a chain with the catalogue a business needs one, an auditor does not (but a
    given one is checked); on a chain without it, nobody needs one, as before."""
    world = _world(tmp_path / "a")
    for roles in (["producer"], ["importer"], ["wholesaler"], ["retailer"], ["auditor", "retailer"]):
        assert _register(world, "RU", roles, None, "-".join(roles)) is Reason.BAD_TAX_ID, roles
    assert _register(world, "RU", ["auditor"], None, "auditor") is Reason.APPLIED
    with pytest.raises(DecodeError):  # not even a document: fewer digits than any state's
        _register(world, "RU", ["auditor"], "123", "auditor-2")
    assert _register(world, "RU", ["auditor"], "12345678", "auditor-3") is Reason.BAD_TAX_ID
    old = _world(tmp_path / "b", catalogue=False)
    assert _register(old, "RU", ["producer"], None, "p") is Reason.APPLIED
    assert _register(old, "RU", ["producer"], "12345678", "q") is Reason.BAD_TAX_ID


def test_the_tax_id_is_stored_and_shown(tmp_path: Path) -> None:
    world = _world(tmp_path / "db")
    key = world.register("KZ", ["wholesaler"], "Almaty", tax_id="050140000027")
    view = world.store.participant(key.participant_id)
    assert view is not None and view["tax_id"] == "050140000027"
    auditor = world.register("RU", ["auditor"], "Audit")
    view = world.store.participant(auditor.participant_id)
    assert view is not None and view["tax_id"] is None


def test_a_registration_without_a_tax_id_keeps_its_bytes() -> None:
    """No tax id: the payload of before (four fields), the record of before (six); an
    explicit empty or malformed tax id does not decode."""
    key = seeded_key("r")
    pid = key.participant_id
    fields = {"public_key": seeded_key("x").public_key, "state": "RU", "roles": ["producer"], "name": "P"}
    plain = make_document(CHAIN_ID, DocType.REGISTER_PARTICIPANT, pid, 1, 2, **fields)
    assert len(unpack(plain.body_bytes())[-1]) == 4
    with_id = make_document(CHAIN_ID, DocType.REGISTER_PARTICIPANT, pid, 1, 2, tax_id="7707000011", **fields)
    assert unpack(with_id.body_bytes())[-1][-1] == "7707000011"
    for doc in (plain, with_id):
        assert decode_signed(doc.sign(key).wire()).document == doc
    assert with_id.to_json()["tax_id"] == "7707000011" and "tax_id" not in plain.to_json()
    body = unpack(plain.body_bytes())
    for bad in ("", [], "77O7000011", "1234567", "123456789012345", 7707000011):
        with pytest.raises(DecodeError):
            decode_body(pack([*body[:6], [*body[6], bad]]))
    record = ParticipantRecord(b"k" * 32, "RU", ["producer"], "P", "active", 3)
    assert len(unpack(record.pack())) == 6 and ParticipantRecord.unpack(record.pack()) == record
    taxed = ParticipantRecord(b"k" * 32, "RU", ["producer"], "P", "active", 3, "7707000011")
    assert ParticipantRecord.unpack(taxed.pack()) == taxed


def test_trade_records_carry_both_tax_ids(tmp_path: Path) -> None:
    """A union export/import record names the exporter's and importer's tax ids; a customs
    import record the importer's (its exporter is a country outside the union)."""
    world = _world(tmp_path / "db")
    producer = world.register("RU", ["producer"], "Maker", tax_id="7707000011")
    buyer = world.register("KZ", ["wholesaler"], "Buyer", tax_id="050140000027")
    importer = world.register("RU", ["importer"], "Importer", tax_id="770700001112")
    codes = world.introduced("RU", producer, 2)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    world.apply_ok(ship)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    for state, direction in (("RU", "export"), ("KZ", "import")):
        (record,) = world.store.trade(state, direction)
        assert record["exporter"] == {"id": producer.participant_id, "name": "Maker", "state": "RU",
                                      "tax_id": "7707000011"}
        assert record["importer"] == {"id": buyer.participant_id, "name": "Buyer", "state": "KZ",
                                      "tax_id": "050140000027"}
    imported = world.emit("RU", importer, 1)
    world.apply_ok(world.doc(importer, DocType.IMPORT, declaration="10702020/300126/0001234", country="CN",
                             codes=imported))
    (customs,) = world.store.trade("RU", "import")
    assert customs["kind"] == "customs"
    assert customs["importer"]["tax_id"] == "770700001112"
    assert customs["exporter"] == {"id": "", "name": "", "state": "CN", "tax_id": None}


def test_a_record_of_parties_without_tax_ids_keeps_its_bytes(tmp_path: Path) -> None:
    """On a chain where the parties registered without tax ids (before issue 13's tax ids),
    the record's parties are the three fields of before and the listing shows no tax id."""
    world = _world(tmp_path / "db", catalogue=False)
    producer = world.register("RU", ["producer"], "Maker")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    codes = world.introduced("RU", producer, 1)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    world.apply_ok(ship)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    from ledger._recall import P_TRADE

    (raw,) = [v for _, v in world.store.db.iterator(prefix=P_TRADE)][:1]
    assert [len(p) for p in unpack(raw)[1:3]] == [3, 3]
    (record,) = world.store.trade("RU", "export")
    assert record["exporter"]["tax_id"] is None

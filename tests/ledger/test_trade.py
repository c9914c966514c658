"""The union's trade records (issue 13): an accepted shipment between member states is an
export of the origin state and an import of the destination, counting accepted units only;
goods from outside the union enter by a customs `import`, confirmed by a regulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger import DocType, KeyPair, Reason, SignedDocument
from ledger._recall import EXPORT, IMPORT, import_record
from ledger._tax_ids import trade
from testnet import product_groups

from .world import GTIN, World, make_genesis, seeded_key


def _world(path: Path) -> World:
    return World(path, make_genesis(groups=product_groups()))


def test_partial_acceptance_records_only_accepted_units(tmp_path: Path) -> None:
    w = _world(tmp_path)
    producer = w.register("RU", ["producer"], "Maker")
    buyer = w.register("KZ", ["wholesaler"], "Buyer")
    codes = w.introduced("RU", producer, 3)
    ship = w.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    w.apply_ok(ship)
    assert trade(w.store.db, "RU", EXPORT) == []  # nothing before acceptance
    accept = w.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=codes[:2])
    w.apply_ok(accept)
    (export,) = trade(w.store.db, "RU", EXPORT)
    (imported,) = trade(w.store.db, "KZ", IMPORT)
    for record in (export, imported):
        assert record["kind"] == "union"
        # Each party as its registration names it, with its tax id (tests/ledger/test_tax_ids.py).
        assert record["exporter"] == {"id": producer.participant_id, "name": "Maker", "state": "RU",
                                      "tax_id": w.store.participant_record(producer.participant_id).tax_id}
        assert record["importer"] == {"id": buyer.participant_id, "name": "Buyer", "state": "KZ",
                                      "tax_id": w.store.participant_record(buyer.participant_id).tax_id}
        assert record["products"] == [{"gtin": GTIN, "units": 2}]
        assert record["document"] == accept.id.hex()
        assert record["shipment"] == ship.id.hex()
    assert trade(w.store.db, "KZ", EXPORT) == [] and trade(w.store.db, "RU", IMPORT) == []


def test_a_domestic_shipment_is_no_trade(tmp_path: Path) -> None:
    w = _world(tmp_path)
    producer = w.register("RU", ["producer"], "Maker")
    buyer = w.register("RU", ["wholesaler"], "Buyer")
    codes = w.introduced("RU", producer, 1)
    ship = w.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    w.apply_ok(ship)
    w.apply_ok(w.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    assert trade(w.store.db, "RU", EXPORT) == [] and trade(w.store.db, "RU", IMPORT) == []


def _imported(w: World) -> tuple[KeyPair, list[str], SignedDocument]:
    importer = w.register("KZ", ["importer"], "Importer")
    codes = w.emit("KZ", importer, 2)
    doc = w.doc(importer, DocType.IMPORT, declaration="10702020/300126/0001234", country="CN", codes=codes)
    return importer, codes, doc


def test_import_waits_for_its_regulator(tmp_path: Path) -> None:
    w = _world(tmp_path)
    importer, codes, doc = _imported(w)
    w.apply_ok(doc)
    record = import_record(w.store.db, doc.id)
    assert record is not None and record.status == "pending"
    # The declaration names its importer by tax id too, as the customs trade record does.
    given = w.store.participant(importer.participant_id)["tax_id"]  # type: ignore[index]
    assert given and record.importer_tax_id == given == record.to_json()["importer_tax_id"]
    assert w.store.code(codes[0])["status"] == "imported"  # type: ignore[index]
    # Until confirmed the goods are not in circulation: no shipment, no sale, no second import.
    buyer = w.register("KZ", ["wholesaler"], "Buyer")
    (r,) = w.apply(w.doc(importer, DocType.SHIP, receiver=buyer.participant_id, codes=codes))
    assert r.reason is Reason.WRONG_STATUS
    (r,) = w.apply(w.doc(importer, DocType.INTRODUCE, codes=codes))
    assert r.reason is Reason.WRONG_STATUS
    (customs,) = trade(w.store.db, "KZ", IMPORT)
    assert customs["kind"] == "customs" and customs["declaration"] == "10702020/300126/0001234"
    assert customs["exporter"]["state"] == "CN" and customs["products"] == [{"gtin": GTIN, "units": 2}]
    # Only the regulator of the import's state confirms it, once.
    (r,) = w.apply(_confirm(w, "RU", doc.id))
    assert r.reason is Reason.WRONG_STATE
    w.apply_ok(_confirm(w, "KZ", doc.id))
    assert w.store.code(codes[0])["status"] == "introduced"  # type: ignore[index]
    confirmed = import_record(w.store.db, doc.id)
    assert confirmed is not None and confirmed.status != "pending" and confirmed.importer_tax_id == given
    (r,) = w.apply(_confirm(w, "KZ", doc.id))
    assert r.reason is Reason.WRONG_STATUS
    w.apply_ok(w.doc(importer, DocType.SHIP, receiver=buyer.participant_id, codes=codes))


def _confirm(w: World, state: str, import_id: bytes) -> SignedDocument:
    fields: dict[str, Any] = {"import": import_id}  # a Python keyword, so by name
    return w.doc(seeded_key(f"regulator-{state}"), DocType.CONFIRM_IMPORT, **fields)


@pytest.mark.parametrize(
    ("roles", "country", "declaration", "expected"),
    [
        (["importer"], "CN", "10702020/300126/0001234", Reason.APPLIED),
        (["producer"], "CN", "10702020/300126/0001234", Reason.FORBIDDEN_ROLE),
        (["importer"], "RU", "10702020/300126/0001234", Reason.WRONG_STATE),
        (["importer"], "CN", " ", Reason.BAD_ATTRIBUTE),
    ],
)
def test_import_document_table(tmp_path: Path, roles: list[str], country: str, declaration: str,
                               expected: Reason) -> None:
    w = _world(tmp_path)
    owner = w.register("KZ", roles, "Org")
    codes = w.emit("KZ", owner, 1) if "importer" in roles else w.emit("KZ", w.register("KZ", ["importer"]), 1)
    (r,) = w.apply(w.doc(owner, DocType.IMPORT, declaration=declaration, country=country, codes=codes))
    assert r.reason is expected


def test_an_auditor_derives_the_record_from_the_two_documents(tmp_path: Path) -> None:
    """The stored export record equals what ledger.derive_trade_record computes from the
    ship and accept documents alone (a pallet included: its contents as aggregated), the
    parties named by name, state and tax id as their registrations say."""
    from ledger import derive_trade_record
    from ledger._recall import P_TRADE

    w = _world(tmp_path)
    producer = w.register("RU", ["producer"], "Maker")
    buyer = w.register("KZ", ["wholesaler"], "Buyer")
    codes = w.introduced("RU", producer, 4)
    sscc = "00157035381410375177"
    w.apply_ok(w.doc(producer, DocType.AGGREGATE, sscc=sscc, codes=codes[:3]))
    ship = w.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[sscc, codes[3]])
    w.apply_ok(ship)
    accept = w.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[sscc])
    w.apply_ok(accept)
    stored = [v for k, v in w.store.db.iterator(start=P_TRADE + b"RUE", stop=P_TRADE + b"RUF")]
    tax_ids = [(w.store.participant(k.participant_id) or {})["tax_id"] for k in (producer, buyer)]
    assert all(tax_ids)  # businesses on a chain with the catalogue register with one
    derived = derive_trade_record(ship, accept, ("Maker", "RU", tax_ids[0]), ("Buyer", "KZ", tax_ids[1]),
                                  lambda key: codes[:3] if key == sscc else [])
    assert stored == [derived]
    (record,) = trade(w.store.db, "RU", EXPORT)
    assert record["products"] == [{"gtin": GTIN, "units": 3}]


def test_an_import_record_without_a_tax_id_packs_as_before() -> None:
    """Records written before the importer's tax id existed, and those of importers
    without one, keep their ten fields (the state hash of old chains is unchanged)."""
    from ledger._encoding import unpack_trusted
    from ledger._recall import ImportRecord

    plain = ImportRecord("p", "KZ", "decl", "CN", ["c"], [[GTIN, 1]], 3, "pending")
    assert len(unpack_trusted(plain.pack())) == 10 and ImportRecord.unpack(plain.pack()) == plain
    taxed = ImportRecord("p", "KZ", "decl", "CN", ["c"], [[GTIN, 1]], 3, "pending", importer_tax_id="123456789012")
    assert ImportRecord.unpack(taxed.pack()) == taxed

"""The EPCIS 2.0 export: mapping of each document type, event hashes, schema validity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cli import epcis
from cli.epcis import LedgerEvent, epcis_document
from ledger import Attestation, DocType, KeyPair, ProvenanceBundle, Verifier, gs1_check_digit, provenance
from tests.ledger.world import GTIN, World


@pytest.fixture
def schema(epcis_schema: dict[str, Any]) -> dict[str, Any]:
    return epcis_schema


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())


def sscc(reference: str) -> str:
    payload = "04600000" + reference
    return "00" + payload + str(gs1_check_digit(payload))


A, B, C, R = "a" * 40, "b" * 40, "c" * 40, "d" * 40
K1 = "01" + GTIN + "21" + "ABCdef1234567"
K2 = "01" + GTIN + "21" + "XYZ/9%2"
PALLET = sscc("000000001")


def event(n: int, doc_type: str, signer: str, state: str, fields: dict[str, Any], **kw: Any) -> LedgerEvent:
    return LedgerEvent(f"{n:02x}" * 32, doc_type, n, 0, 1_790_000_000_000 + n * 1000, signer, state, fields, **kw)


def journey() -> list[LedgerEvent]:
    shipment = {"shipper": A, "receiver": B, "items": [PALLET]}
    return [
        event(1, "emit", R, "RU", {"owner": A, "gtin": GTIN, "serials": ["ABCdef1234567", "XYZ/9%2"]}),
        event(2, "introduce", A, "RU", {"codes": [K1, K2]}),
        event(3, "aggregate", A, "RU", {"sscc": PALLET, "codes": [K1, K2]}),
        event(4, "ship", A, "RU", {"receiver": B, "codes": [PALLET]}, shipment=shipment),
        event(5, "accept", B, "KZ", {"shipment": "04" * 32, "codes": []}, shipment={**shipment, "accepted": [PALLET]}),
        event(6, "disaggregate", B, "KZ", {"sscc": PALLET}),
        event(7, "retire", C, "KG", {"reason": "retail_sale", "codes": [K1]}),
        event(8, "return", C, "KG", {"codes": [K1]}),
        event(9, "suspend", R, "KG", {"codes": [K1], "note": "lab test"}),
        event(10, "release", R, "KG", {"codes": [K1]}),
        event(11, "retire", C, "KG", {"reason": "destroyed", "codes": [K1]}),
    ]


def test_each_document_type_maps_to_the_event_domain_md_names(schema: dict[str, Any]) -> None:
    """introduce is ADD commissioning, packing/unpacking are AggregationEvents, ship has owning parties, etc."""
    doc = epcis_document(K1, journey(), 1_790_000_100_000)
    validate(doc, schema)
    events = doc["epcisBody"]["eventList"]
    steps = [(e["type"], e["action"], e["bizStep"], e.get("disposition")) for e in events]
    assert steps == [
        ("ObjectEvent", "ADD", "encoding", "encoded"),
        ("ObjectEvent", "ADD", "commissioning", "active"),
        ("AggregationEvent", "ADD", "packing", None),
        ("ObjectEvent", "OBSERVE", "shipping", "in_transit"),
        ("ObjectEvent", "OBSERVE", "receiving", "in_progress"),
        ("AggregationEvent", "DELETE", "unpacking", None),
        ("ObjectEvent", "OBSERVE", "retail_selling", "retail_sold"),
        ("ObjectEvent", "OBSERVE", "receiving", "returned"),
        ("ObjectEvent", "OBSERVE", "holding", "non_sellable_other"),
        ("ObjectEvent", "OBSERVE", "inspecting", "active"),
        ("ObjectEvent", "OBSERVE", "destroying", "destroyed"),
    ]
    ship, accept, unpack = events[3], events[4], events[5]
    assert ship["sourceList"] == [{"type": "owning_party", "source": f"urn:tamga:participant:{A}"}]
    assert ship["destinationList"] == [{"type": "owning_party", "destination": f"urn:tamga:participant:{B}"}]
    assert ship["bizTransactionList"] == accept["bizTransactionList"]
    assert ship["epcList"] == [f"https://id.gs1.org/00/{PALLET[2:]}"]
    # The unpacking names the children of the packing before it.
    assert unpack["childEPCs"] == events[2]["childEPCs"]
    assert events[0]["epcList"][1] == f"https://id.gs1.org/01/{GTIN}/21/XYZ%2F9%252"


def test_event_times_are_block_times_in_the_signers_time_zone() -> None:
    """A Kazakh acceptance is stamped +05:00, a Russian shipment +03:00, recordTime in UTC."""
    events = epcis_document(K1, journey(), 0)["epcisBody"]["eventList"]
    assert events[3]["eventTimeZoneOffset"] == "+03:00"
    assert events[4]["eventTimeZoneOffset"] == "+05:00"
    assert events[4]["eventTime"].endswith("+05:00")
    assert events[4]["recordTime"].endswith("Z")


def test_event_ids_are_canonical_hashes_that_ignore_key_order() -> None:
    """eventID is ni:///sha-256 per CBV 2.0 and does not change when the JSON is reordered."""
    doc = epcis_document(K1, journey(), 0)
    ids = [e["eventID"] for e in doc["epcisBody"]["eventList"]]
    assert all(i.startswith("ni:///sha-256;") and i.endswith("?ver=CBV2.0") for i in ids)
    assert len(set(ids)) == len(ids)
    reordered = json.loads(json.dumps(doc))
    reordered["epcisBody"]["eventList"] = [
        dict(reversed([(k, v) for k, v in e.items() if k != "eventID"])) for e in reordered["epcisBody"]["eventList"]
    ]
    assert epcis.event_hashes(reordered) == ids
    # And a change of substance changes the hash.
    reordered["epcisBody"]["eventList"][0]["disposition"] = "active"
    assert epcis.event_hashes(reordered)[0] != ids[0]


def test_retire_reasons_map_to_their_own_steps(schema: dict[str, Any]) -> None:
    """Export and loss decommission (DELETE, inactive); expiry decommissions as expired."""
    for reason, expected in [
        ("export_outside_union", ("DELETE", "decommissioning", "inactive")),
        ("lost", ("DELETE", "decommissioning", "inactive")),
        ("expired", ("DELETE", "decommissioning", "expired")),
    ]:
        doc = epcis_document(K1, [event(1, "retire", A, "RU", {"reason": reason, "codes": [K1]})], 0)
        validate(doc, schema)
        e = doc["epcisBody"]["eventList"][0]
        assert (e["action"], e["bizStep"], e["disposition"]) == expected


def test_cancel_and_reject_void_the_shipment(schema: dict[str, Any]) -> None:
    """A cancelled or rejected shipment is a void_shipping event naming the shipment's items."""
    shipment = {"shipper": A, "receiver": B, "items": [K1, K2]}
    for doc_type in ("cancel_shipment", "reject"):
        doc = epcis_document(K1, [event(1, doc_type, A, "RU", {"shipment": "09" * 32}, shipment=shipment)], 0)
        validate(doc, schema)
        e = doc["epcisBody"]["eventList"][0]
        assert e["bizStep"] == "void_shipping"
        assert len(e["epcList"]) == 2


def test_registrations_are_not_goods_events() -> None:
    """Documents about participants are left out of a code's EPCIS export."""
    regs = [event(1, "register_participant", R, "RU", {"name": "x"}), event(2, "introduce", A, "RU", {"codes": [K1]})]
    assert len(epcis_document(K1, regs, 0)["epcisBody"]["eventList"]) == 1


def attest_all(world: World, quorum_states: tuple[str, ...] = ("AM", "BY", "KZ", "KG")) -> None:
    verifier = Verifier()
    for height in range(1, world.store.head.height + 1):
        header = world.store.header(height)
        assert header is not None
        for state in quorum_states:
            att = Attestation.make(world.node_key(state), world.genesis.chain_id, state, header)
            assert world.store.add_attestation(att, verifier)


def ledger_journey(world: World) -> tuple[str, KeyPair]:
    producer = world.register("RU", ["producer"], "Producer")
    wholesaler = world.register("KZ", ["wholesaler"], "Wholesaler")
    retailer = world.register("KG", ["retailer"], "Retailer")
    codes = world.emit("RU", producer, 3)
    world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes))
    pallet = sscc("000000042")
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=pallet, codes=codes))
    ship = world.doc(producer, DocType.SHIP, receiver=wholesaler.participant_id, codes=[pallet])
    world.apply_ok(ship)
    world.apply_ok(world.doc(wholesaler, DocType.ACCEPT, shipment=ship.id, codes=[]))
    world.apply_ok(world.doc(wholesaler, DocType.DISAGGREGATE, sscc=pallet))
    ship2 = world.doc(wholesaler, DocType.SHIP, receiver=retailer.participant_id, codes=codes[:2])
    world.apply_ok(ship2)
    world.apply_ok(world.doc(retailer, DocType.ACCEPT, shipment=ship2.id, codes=[codes[0]]))
    world.apply_ok(world.doc(retailer, DocType.RETIRE, reason="retail_sale", codes=[codes[0]]))
    attest_all(world)
    return codes[0], retailer


def test_a_real_provenance_bundle_exports_as_valid_epcis(tmp_path: Path, schema: dict[str, Any]) -> None:
    """A bundle from a ledger store, checked against genesis, becomes a schema-valid document."""
    world = World(tmp_path / "db")
    try:
        code, _ = ledger_journey(world)
        bundle = provenance(world.store, code)
        assert bundle is not None
        bundle = ProvenanceBundle.decode(bundle.encode())
        events = epcis.bundle_events(bundle, world.genesis)
    finally:
        world.store.close()
    doc = epcis_document(code, events, world.time_ms)
    validate(doc, schema)
    steps = [e["bizStep"] for e in doc["epcisBody"]["eventList"]]
    assert steps == [
        "encoding", "commissioning", "packing", "shipping", "receiving", "unpacking", "shipping", "receiving",
        "retail_selling",
    ]
    lists = doc["epcisBody"]["eventList"]
    # The partial acceptance lists only the accepted code; states come from the registrations.
    assert lists[7]["epcList"] == [epcis.epc(code)]
    assert [e["eventTimeZoneOffset"] for e in lists] == [
        "+03:00", "+03:00", "+03:00", "+03:00", "+05:00", "+05:00", "+05:00", "+06:00", "+06:00",
    ]
    # Unverified (no genesis) gives the same events.
    assert epcis.bundle_events(bundle) == events


def test_a_bundle_that_is_not_final_does_not_export_with_genesis(tmp_path: Path) -> None:
    """A bundle whose blocks only a majority (3 of 5) attests is not final: with genesis
    the export refuses it and says so (issue 11; before, a majority was enough)."""
    world = World(tmp_path / "db")
    try:
        code, _ = ledger_journey(world)
        bundle = provenance(world.store, code)
        assert bundle is not None
    finally:
        world.store.close()
    entries = [type(e)(e.header, e.attestations[:3], e.position, e.document, e.document_path,
                       e.result, e.result_path) for e in bundle.entries]
    majority = ProvenanceBundle(bundle.code, bundle.genesis_hash, entries, bundle.registrations)
    with pytest.raises(Exception, match="not final"):
        epcis.bundle_events(majority, world.genesis)


def test_a_tampered_bundle_is_refused_when_genesis_is_given(tmp_path: Path) -> None:
    """With genesis, a bundle whose document was altered does not export."""
    world = World(tmp_path / "db")
    try:
        code, _ = ledger_journey(world)
        bundle = provenance(world.store, code)
        assert bundle is not None
    finally:
        world.store.close()
    entries = list(bundle.entries)
    first = entries[1]
    entries[1] = type(first)(first.header, first.attestations, first.position, first.document[:-1] + b"\x00",
                             first.document_path, first.result, first.result_path)
    forged = ProvenanceBundle(bundle.code, bundle.genesis_hash, entries, bundle.registrations)
    with pytest.raises(Exception, match="does not|not in"):
        epcis.bundle_events(forged, world.genesis)


# The lifecycle of real goods (issue 13).

K3 = "01" + GTIN + "21" + "NEW0000000001"


def test_lifecycle_documents_map_to_cbv_steps(schema: dict[str, Any]) -> None:
    """apply commissions, write_off decommissions or destroys, remark replaces (two events
    naming each other), reaggregate repackages (out, then in); every new withdrawal reason
    has its own step; each document validates against the EPCIS 2.0 schema."""
    cases: list[tuple[LedgerEvent, list[tuple[str, ...]]]] = [
        (event(1, "apply", A, "RU", {"codes": [K1]}), [("ADD", "commissioning", "encoded")]),
        (event(1, "write_off", A, "RU", {"reason": "spoiled", "codes": [K1]}), [("DELETE", "decommissioning", "damaged")]),
        (event(1, "write_off", A, "RU", {"reason": "destroyed", "codes": [K1]}), [("DELETE", "destroying", "destroyed")]),
        (event(1, "remark", A, "RU", {"old": K1, "new": K3}),
         [("DELETE", "replacing", "inactive"), ("ADD", "replacing", "active")]),
        (event(1, "reaggregate", A, "RU", {"sscc": PALLET, "add": [K3], "remove": [K1]}),
         [("DELETE", "repackaging"), ("ADD", "repackaging")]),
        (event(1, "reaggregate", A, "RU", {"sscc": PALLET, "add": [K3], "remove": []}), [("ADD", "repackaging")]),
    ]
    for reason, expected in epcis.RETIRE_EVENTS.items():
        cases.append((event(1, "retire", A, "RU", {"reason": reason, "codes": [K1]}), [expected]))
    for reason, expected in epcis.WRITE_OFF_EVENTS.items():
        cases.append((event(1, "write_off", A, "RU", {"reason": reason, "codes": [K1]}), [expected]))
    for ledger_event, expected in cases:
        doc = epcis_document(K1, [ledger_event], 0)
        validate(doc, schema)
        got = [
            (e["action"], e["bizStep"], e["disposition"]) if "disposition" in e else (e["action"], e["bizStep"])
            for e in doc["epcisBody"]["eventList"]
        ]
        assert got == expected, ledger_event
    remark = epcis_document(K1, [cases[3][0]], 0)["epcisBody"]["eventList"]
    assert remark[0]["tamga:replacedBy"] == epcis.epc(K3) and remark[1]["tamga:replaces"] == epcis.epc(K1)
    assert len({e["eventID"] for e in remark}) == 2


def test_every_withdrawal_and_write_off_reason_has_a_mapping() -> None:
    from ledger import WITHDRAWAL_REASONS, WRITE_OFF_REASONS

    assert set(epcis.RETIRE_EVENTS) == set(WITHDRAWAL_REASONS)
    assert set(epcis.WRITE_OFF_EVENTS) == set(WRITE_OFF_REASONS)


def test_a_remarked_and_reaggregated_code_exports_as_valid_epcis(tmp_path: Path, schema: dict[str, Any]) -> None:
    """A real bundle of a code that replaced another and was put into a pallet later."""
    world = World(tmp_path / "db")
    try:
        producer = world.register("RU", ["producer"], "Producer")
        codes = world.emit("RU", producer, 4)
        world.apply_ok(world.doc(producer, DocType.APPLY, codes=codes[:1]))
        world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes[1:3]))
        pallet = sscc("000000043")
        world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=pallet, codes=codes[1:2]))
        world.apply_ok(world.doc(producer, DocType.REMARK, old=codes[2], new=codes[0]))
        world.apply_ok(world.doc(producer, DocType.REAGGREGATE, sscc=pallet, add=codes[:1], remove=[]))
        world.apply_ok(world.doc(producer, DocType.WRITE_OFF, reason="lost", codes=codes[3:]))
        attest_all(world)
        bundle = provenance(world.store, codes[0])
        assert bundle is not None
        events = epcis.bundle_events(ProvenanceBundle.decode(bundle.encode()), world.genesis)
    finally:
        world.store.close()
    doc = epcis_document(codes[0], events, world.time_ms)
    validate(doc, schema)
    steps = [e["bizStep"] for e in doc["epcisBody"]["eventList"]]
    # The old code's story comes first: its emit and introduce (same emit document).
    assert steps == ["encoding", "commissioning", "commissioning", "replacing", "replacing", "repackaging"]


def test_a_child_refused_from_a_pallet_exports_its_unpacking(tmp_path: Path, schema: dict[str, Any]) -> None:
    """A per-child accept: the refused code's export shows the receiving of the pallet and
    then its own unpacking from it (returned); the kept code's shows the receiving only."""
    from testnet import product_groups
    from tests.ledger.world import make_genesis

    world = World(tmp_path / "db", make_genesis(groups=product_groups()))
    try:
        producer = world.register("RU", ["producer"], "Producer")
        buyer = world.register("KZ", ["wholesaler"], "Buyer")
        codes = world.introduced("RU", producer, 2)
        pallet = sscc("000000044")
        world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=pallet, codes=codes))
        ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[pallet])
        world.apply_ok(ship)
        world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[pallet, codes[0]]))
        attest_all(world)
        exported = {}
        for code in codes:
            bundle = provenance(world.store, code)
            assert bundle is not None
            exported[code] = epcis_document(code, epcis.bundle_events(bundle, world.genesis), world.time_ms)
    finally:
        world.store.close()
    for doc in exported.values():
        validate(doc, schema)
    refused = exported[codes[1]]["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in refused][-2:] == ["receiving", "unpacking"]
    assert refused[-1]["childEPCs"] == [epcis.epc(codes[1])] and refused[-1]["disposition"] == "returned"
    kept = exported[codes[0]]["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in kept][-3:] == ["shipping", "receiving", "unpacking"]


def test_a_unit_refused_from_a_box_on_a_pallet_exports_its_unpacking(tmp_path: Path, schema: dict[str, Any]) -> None:
    """A per-child accept at depth (a unit in a box on a pallet): the refused unit's export
    shows the pallet's receiving and then its unpacking from the box (returned), valid
    against the schema; the kept unit's export is valid too."""
    from testnet import product_groups
    from tests.ledger.world import make_genesis

    world = World(tmp_path / "db", make_genesis(groups=product_groups()))
    try:
        producer = world.register("RU", ["producer"], "Producer")
        buyer = world.register("KZ", ["wholesaler"], "Buyer")
        codes = world.introduced("RU", producer, 2)
        box, pallet = sscc("000000045"), sscc("000000046")
        world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=box, codes=codes))
        world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=pallet, codes=[box]))
        ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[pallet])
        world.apply_ok(ship)
        world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[pallet, box, codes[0]]))
        attest_all(world)
        exported = {}
        for code in codes:
            bundle = provenance(world.store, code)
            assert bundle is not None
            exported[code] = epcis_document(code, epcis.bundle_events(bundle, world.genesis), world.time_ms)
    finally:
        world.store.close()
    for doc in exported.values():
        validate(doc, schema)
    refused = exported[codes[1]]["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in refused][-3:] == ["shipping", "receiving", "unpacking"]
    assert refused[-1]["parentID"] == epcis.epc(box) and refused[-1]["disposition"] == "returned"
    kept = exported[codes[0]]["epcisBody"]["eventList"]
    # The kept unit's box lost its sibling: the box's unpacking shows in its story too,
    # naming the sibling only (as for a pallet's direct children).
    assert [e["bizStep"] for e in kept][-3:] == ["shipping", "receiving", "unpacking"]
    assert kept[-1]["childEPCs"] == [epcis.epc(codes[1])]

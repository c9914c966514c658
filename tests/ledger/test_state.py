"""The lifecycle state machine: every document type, every refusal, and its invariants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import DocType, KeyPair, Reason, SignedDocument
from ledger._records import code_key

from .world import GTIN, GTIN_2, World, seeded_key

SSCC = "00157035381410375177"  # from shared/data/codes/sscc.tsv
SSCC_2 = "00046800294609000015"  # check digit computed for this test


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "db")


def test_cross_border_journey(world: World) -> None:
    """A pallet made in Russia reaches a Kyrgyz shop through Kazakhstan, and one unit is sold."""
    producer = world.register("RU", ["producer"], "Factory")
    wholesaler = world.register("KZ", ["wholesaler"], "Wholesale")
    retailer = world.register("KG", ["retailer"], "Shop")
    codes = world.introduced("RU", producer, 10)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes))
    ship = world.doc(producer, DocType.SHIP, receiver=wholesaler.participant_id, codes=[SSCC])
    world.apply_ok(ship)
    assert world.store.code(codes[0])["in_transit"] == ship.id.hex()
    world.apply_ok(world.doc(wholesaler, DocType.ACCEPT, shipment=ship.id, codes=[]))
    view = world.store.code(codes[0])
    assert view["owner"] == wholesaler.participant_id and view["owner_state"] == "KZ"
    assert view["in_transit"] is None and view["aggregate"] == SSCC
    world.apply_ok(world.doc(wholesaler, DocType.DISAGGREGATE, sscc=SSCC))
    ship2 = world.doc(wholesaler, DocType.SHIP, receiver=retailer.participant_id, codes=codes[:3])
    world.apply_ok(ship2)
    world.apply_ok(world.doc(retailer, DocType.ACCEPT, shipment=ship2.id, codes=[]))
    world.apply_ok(world.doc(retailer, DocType.RETIRE, reason="retail_sale", codes=[codes[0]]))
    sold = world.store.code(codes[0])
    assert sold["status"] == "retired" and sold["retire_reason"] == "retail_sale"
    assert sold["owner"] == retailer.participant_id
    # A counterfeit attempt: ship a code already sold.
    results = world.apply(
        world.doc(retailer, DocType.SHIP, receiver=wholesaler.participant_id, codes=[codes[0]])
    )
    assert results[0].reason is Reason.WRONG_STATUS
    ru_kz = world.store.flows("RU", "KZ")
    kz_kg = world.store.flows("KZ", "KG")
    assert [f["id"] for f in ru_kz] == [ship.id.hex()] and ru_kz[0]["status"] == "accepted"
    assert [f["id"] for f in kz_kg] == [ship2.id.hex()]
    assert world.store.flows("KZ", "RU") == []
    assert world.store.holdings(retailer.participant_id) == sorted(codes[1:3])


def test_moving_an_aggregate_does_not_rewrite_its_contents(world: World) -> None:
    """Shipping and accepting a pallet changes only the pallet's record, not each unit's."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("RU", ["wholesaler"], "Buyer")
    codes = world.introduced("RU", producer, 50)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes))
    before = world.store.db.get(code_key(codes[7]))
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[SSCC])
    world.apply_ok(ship)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    assert world.store.db.get(code_key(codes[7])) == before
    assert world.store.code(codes[7])["owner"] == buyer.participant_id
    history = world.store.history(codes[7])
    assert [e.type for e in history] == ["emit", "introduce", "aggregate", "ship", "accept"]
    assert [e.via for e in history][-2:] == [SSCC, SSCC]


def test_one_bad_code_rejects_the_whole_document(world: World) -> None:
    """A 1,000-code shipment with one unknown code is refused whole and changes nothing."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("RU", ["wholesaler"], "Buyer")
    codes = world.introduced("RU", producer, 999)
    bad = "01" + GTIN + "21" + "NEVER-EMITTED"
    results = world.apply(
        world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[*codes, bad])
    )
    assert results[0].reason is Reason.UNKNOWN_CODE and "NEVER-EMITTED" in results[0].message
    assert all(world.store.code(c)["in_transit"] is None for c in codes)
    assert world.store.flows("RU", "RU") == []


def test_same_code_shipped_twice_in_one_block_applies_once(world: World) -> None:
    """Two conflicting shipments of one code in one block: the first applies, the second is in_transit."""
    producer = world.register("RU", ["producer"], "Factory")
    a = world.register("KZ", ["wholesaler"], "A")
    b = world.register("BY", ["wholesaler"], "B")
    codes = world.introduced("RU", producer, 1)
    first = world.doc(producer, DocType.SHIP, receiver=a.participant_id, codes=codes)
    second = world.doc(producer, DocType.SHIP, receiver=b.participant_id, codes=codes)
    results = world.apply(first, second)
    assert [r.reason for r in results] == [Reason.APPLIED, Reason.IN_TRANSIT]


def test_document_checks_before_the_handler(world: World) -> None:
    """Malformed bytes, wrong chain, bad signature, unknown signer, duplicate, expiry, revocation."""
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.emit("RU", producer, 2)
    good = world.doc(producer, DocType.INTRODUCE, codes=codes[:1])
    forged = SignedDocument(good.body, bytes(64), good.document)
    stranger = seeded_key("stranger")
    results = world.apply(
        b"\x93\x01\x02",
        world.doc(producer, DocType.INTRODUCE, codes=codes[:1], chain_id="other-chain"),
        forged,
        world.doc(stranger, DocType.INTRODUCE, codes=codes[:1]),
        good,
        good,
        world.doc(producer, DocType.INTRODUCE, codes=codes[1:], expires_ms=-1),
    )
    assert [r.reason for r in results] == [
        Reason.MALFORMED, Reason.WRONG_CHAIN, Reason.BAD_SIGNATURE, Reason.NOT_REGISTERED,
        Reason.APPLIED, Reason.DUPLICATE, Reason.EXPIRED,
    ]
    world.apply_ok(
        world.doc(world.regulator("RU"), DocType.REVOKE_PARTICIPANT, participant=producer.participant_id)
    )
    late = world.apply(world.doc(producer, DocType.INTRODUCE, codes=codes[1:]))
    assert late[0].reason is Reason.REVOKED
    assert world.store.code(codes[1])["status"] == "emitted"


def test_a_forged_copy_does_not_block_the_genuine_document(world: World) -> None:
    """A document with a bad signature does not claim the document id."""
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.emit("RU", producer, 1)
    good = world.doc(producer, DocType.INTRODUCE, codes=codes)
    forged = SignedDocument(good.body, bytes(64), good.document)
    assert [r.reason for r in world.apply(forged, good)] == [Reason.BAD_SIGNATURE, Reason.APPLIED]


def test_a_checked_signature_does_not_vouch_for_a_forged_copy(world: World) -> None:
    """Signatures checked ahead are remembered with the signature: a copy with another fails."""
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.emit("RU", producer, 1)
    good = world.doc(producer, DocType.INTRODUCE, codes=codes)
    forged = SignedDocument(good.body, bytes(64), good.document)
    world.time_ms += 1000
    checked = {good.verified_key}
    applied = world.store.apply_block(
        [forged.wire(), good.wire()], world.time_ms, "RU", verified=checked.__contains__
    )
    assert [r.reason for r in applied.results] == [Reason.BAD_SIGNATURE, Reason.APPLIED]


def test_verified_callback_skips_the_signature_check(world: World) -> None:
    """Signatures checked at admission are not checked again at apply."""
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.emit("RU", producer, 1)
    good = world.doc(producer, DocType.INTRODUCE, codes=codes)
    forged = SignedDocument(good.body, bytes(64), good.document)
    world.time_ms += 1000
    applied = world.store.apply_block([forged.wire()], world.time_ms, "RU", verified=lambda _key: True)
    assert applied.results[0].applied


@dataclass
class Case:
    name: str
    build: Callable[[World, dict[str, KeyPair], dict[str, list[str]]], SignedDocument]
    reason: Reason


def _setup(world: World) -> tuple[dict[str, KeyPair], dict[str, list[str]]]:
    keys = {
        "producer": world.register("RU", ["producer"], "Producer"),
        "importer": world.register("RU", ["importer"], "Importer"),
        "wholesaler": world.register("RU", ["wholesaler"], "Wholesaler"),
        "retailer": world.register("RU", ["retailer"], "Retailer"),
        "auditor": world.register("RU", ["auditor"], "Auditor"),
        "kz": world.register("KZ", ["wholesaler"], "KZ wholesaler"),
        "kz_producer": world.register("KZ", ["producer"], "KZ producer"),
    }
    emitted = world.emit("RU", keys["producer"], 3)
    loose = world.introduced("RU", keys["producer"], 4)
    sold = world.introduced("RU", keys["producer"], 1)
    ship = world.doc(keys["producer"], DocType.SHIP, receiver=keys["retailer"].participant_id, codes=sold)
    world.apply_ok(ship)
    world.apply_ok(world.doc(keys["retailer"], DocType.ACCEPT, shipment=ship.id, codes=[]))
    world.apply_ok(world.doc(keys["retailer"], DocType.RETIRE, reason="retail_sale", codes=sold))
    packed = world.introduced("RU", keys["producer"], 2)
    world.apply_ok(world.doc(keys["producer"], DocType.AGGREGATE, sscc=SSCC, codes=packed))
    transit = world.introduced("RU", keys["producer"], 1)
    pending = world.doc(keys["producer"], DocType.SHIP, receiver=keys["kz"].participant_id, codes=transit)
    world.apply_ok(pending)
    frozen = world.introduced("RU", keys["producer"], 1)
    world.apply_ok(world.doc(world.regulator("RU"), DocType.SUSPEND, codes=frozen, note="test"))
    world.apply_ok(world.doc(world.regulator("KZ"), DocType.GRANT_AUDIT, participant=keys["auditor"].participant_id))
    codes = {
        "emitted": emitted, "loose": loose, "sold": sold, "packed": packed,
        "transit": transit, "frozen": frozen, "pending": [pending.id.hex()],
    }
    return keys, codes


def _reg(state: str) -> KeyPair:
    return seeded_key(f"regulator-{state}")


def _confirm(world: World, key: KeyPair) -> SignedDocument:
    """A confirm_import of an import that does not exist ("import" is a Python keyword)."""
    fields: dict[str, Any] = {"import": bytes(32)}
    return world.doc(key, DocType.CONFIRM_IMPORT, **fields)


P = "producer"
UNKNOWN = "01" + GTIN_2 + "21" + "NOPE"
CASES = [
    # register / revoke
    Case("register by own regulator", lambda w, k, c: w.doc(_reg("RU"), DocType.REGISTER_PARTICIPANT, public_key=seeded_key("n1").public_key, state="RU", roles=["retailer"], name="N"), Reason.APPLIED),
    Case("register by foreign regulator", lambda w, k, c: w.doc(_reg("KZ"), DocType.REGISTER_PARTICIPANT, public_key=seeded_key("n2").public_key, state="RU", roles=["retailer"], name="N"), Reason.WRONG_STATE),
    Case("register by a business", lambda w, k, c: w.doc(k[P], DocType.REGISTER_PARTICIPANT, public_key=seeded_key("n3").public_key, state="RU", roles=["retailer"], name="N"), Reason.FORBIDDEN_ROLE),
    Case("register twice", lambda w, k, c: w.doc(_reg("RU"), DocType.REGISTER_PARTICIPANT, public_key=k[P].public_key, state="RU", roles=["retailer"], name="N"), Reason.ALREADY_EXISTS),
    Case("revoke by own regulator", lambda w, k, c: w.doc(_reg("RU"), DocType.REVOKE_PARTICIPANT, participant=k["auditor"].participant_id), Reason.APPLIED),
    Case("revoke by foreign regulator", lambda w, k, c: w.doc(_reg("KZ"), DocType.REVOKE_PARTICIPANT, participant=k["auditor"].participant_id), Reason.WRONG_STATE),
    Case("revoke unknown", lambda w, k, c: w.doc(_reg("RU"), DocType.REVOKE_PARTICIPANT, participant="ab" * 20), Reason.NOT_REGISTERED),
    Case("revoke a regulator", lambda w, k, c: w.doc(_reg("RU"), DocType.REVOKE_PARTICIPANT, participant=_reg("RU").participant_id), Reason.FORBIDDEN_ROLE),
    # emit
    Case("emit to producer", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k[P].participant_id, gtin=GTIN, serials=["NEW1"]), Reason.APPLIED),
    Case("emit to importer", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k["importer"].participant_id, gtin=GTIN, serials=["NEW2"]), Reason.APPLIED),
    Case("emit to retailer", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k["retailer"].participant_id, gtin=GTIN, serials=["NEW3"]), Reason.FORBIDDEN_ROLE),
    Case("emit to other state's producer", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k["kz_producer"].participant_id, gtin=GTIN, serials=["NEW4"]), Reason.WRONG_STATE),
    Case("emit by producer", lambda w, k, c: w.doc(k[P], DocType.EMIT, owner=k[P].participant_id, gtin=GTIN, serials=["NEW5"]), Reason.FORBIDDEN_ROLE),
    Case("emit bad GTIN", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k[P].participant_id, gtin="04680029460907", serials=["NEW6"]), Reason.INVALID_CODE),
    Case("emit existing", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k[P].participant_id, gtin=GTIN, serials=[c["loose"][0][18:]]), Reason.ALREADY_EXISTS),
    Case("emit bad serial", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k[P].participant_id, gtin=GTIN, serials=["bad serial"]), Reason.INVALID_CODE),
    Case("emit repeated serial", lambda w, k, c: w.doc(_reg("RU"), DocType.EMIT, owner=k[P].participant_id, gtin=GTIN, serials=["R1", "R1"]), Reason.REPEATED_CODE),
    # introduce
    Case("introduce emitted", lambda w, k, c: w.doc(k[P], DocType.INTRODUCE, codes=c["emitted"][:1]), Reason.APPLIED),
    Case("introduce twice", lambda w, k, c: w.doc(k[P], DocType.INTRODUCE, codes=c["loose"][:1]), Reason.WRONG_STATUS),
    Case("introduce not own", lambda w, k, c: w.doc(k["importer"], DocType.INTRODUCE, codes=c["emitted"][:1]), Reason.NOT_OWNER),
    Case("introduce by wholesaler", lambda w, k, c: w.doc(k["wholesaler"], DocType.INTRODUCE, codes=c["emitted"][:1]), Reason.FORBIDDEN_ROLE),
    Case("introduce unknown", lambda w, k, c: w.doc(k[P], DocType.INTRODUCE, codes=[UNKNOWN]), Reason.UNKNOWN_CODE),
    Case("introduce garbage", lambda w, k, c: w.doc(k[P], DocType.INTRODUCE, codes=["xyz"]), Reason.INVALID_CODE),
    # aggregate / disaggregate
    Case("aggregate loose", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC_2, codes=c["loose"][:2]), Reason.APPLIED),
    Case("aggregate nested", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC_2, codes=[SSCC]), Reason.APPLIED),
    Case("aggregate into used SSCC", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC, codes=c["loose"][:1]), Reason.ALREADY_EXISTS),
    Case("aggregate packed code", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC_2, codes=c["packed"][:1]), Reason.IN_AGGREGATE),
    Case("aggregate in transit", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC_2, codes=c["transit"]), Reason.IN_TRANSIT),
    Case("aggregate emitted", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC_2, codes=c["emitted"][:1]), Reason.WRONG_STATUS),
    Case("aggregate suspended", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=SSCC_2, codes=c["frozen"]), Reason.SUSPENDED),
    Case("aggregate bad SSCC", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc="00157035381410375176", codes=c["loose"][:1]), Reason.INVALID_CODE),
    Case("aggregate into a unit code", lambda w, k, c: w.doc(k[P], DocType.AGGREGATE, sscc=c["emitted"][0], codes=c["loose"][:1]), Reason.INVALID_CODE),
    Case("aggregate by auditor", lambda w, k, c: w.doc(k["auditor"], DocType.AGGREGATE, sscc=SSCC_2, codes=c["loose"][:1]), Reason.FORBIDDEN_ROLE),
    Case("disaggregate own", lambda w, k, c: w.doc(k[P], DocType.DISAGGREGATE, sscc=SSCC), Reason.APPLIED),
    Case("disaggregate not own", lambda w, k, c: w.doc(k["wholesaler"], DocType.DISAGGREGATE, sscc=SSCC), Reason.NOT_OWNER),
    Case("disaggregate a unit", lambda w, k, c: w.doc(k[P], DocType.DISAGGREGATE, sscc=c["loose"][0]), Reason.WRONG_STATUS),
    # ship / cancel / accept / reject
    Case("ship loose", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=c["loose"][:2]), Reason.APPLIED),
    Case("ship pallet abroad", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["kz"].participant_id, codes=[SSCC]), Reason.APPLIED),
    Case("ship not own", lambda w, k, c: w.doc(k["wholesaler"], DocType.SHIP, receiver=k["kz"].participant_id, codes=c["loose"][:1]), Reason.NOT_OWNER),
    Case("ship packed", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["kz"].participant_id, codes=c["packed"][:1]), Reason.IN_AGGREGATE),
    Case("ship in transit", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=c["transit"]), Reason.IN_TRANSIT),
    Case("ship sold", lambda w, k, c: w.doc(k["retailer"], DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=c["sold"]), Reason.WRONG_STATUS),
    Case("ship suspended", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=c["frozen"]), Reason.SUSPENDED),
    Case("ship emitted", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=c["emitted"][:1]), Reason.WRONG_STATUS),
    Case("ship to self", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k[P].participant_id, codes=c["loose"][:1]), Reason.INVALID_RECEIVER),
    Case("ship to auditor", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["auditor"].participant_id, codes=c["loose"][:1]), Reason.INVALID_RECEIVER),
    Case("ship to unknown", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver="cd" * 20, codes=c["loose"][:1]), Reason.NOT_REGISTERED),
    Case("ship by auditor", lambda w, k, c: w.doc(k["auditor"], DocType.SHIP, receiver=k[P].participant_id, codes=c["loose"][:1]), Reason.FORBIDDEN_ROLE),
    Case("ship repeated code", lambda w, k, c: w.doc(k[P], DocType.SHIP, receiver=k["kz"].participant_id, codes=[c["loose"][0], c["loose"][0]]), Reason.REPEATED_CODE),
    Case("cancel by shipper", lambda w, k, c: w.doc(k[P], DocType.CANCEL_SHIPMENT, shipment=bytes.fromhex(c["pending"][0])), Reason.APPLIED),
    Case("cancel by receiver", lambda w, k, c: w.doc(k["kz"], DocType.CANCEL_SHIPMENT, shipment=bytes.fromhex(c["pending"][0])), Reason.NOT_OWNER),
    Case("cancel unknown", lambda w, k, c: w.doc(k[P], DocType.CANCEL_SHIPMENT, shipment=bytes(32)), Reason.UNKNOWN_SHIPMENT),
    Case("accept by receiver", lambda w, k, c: w.doc(k["kz"], DocType.ACCEPT, shipment=bytes.fromhex(c["pending"][0]), codes=[]), Reason.APPLIED),
    Case("accept part", lambda w, k, c: w.doc(k["kz"], DocType.ACCEPT, shipment=bytes.fromhex(c["pending"][0]), codes=c["transit"]), Reason.APPLIED),
    Case("accept foreign code", lambda w, k, c: w.doc(k["kz"], DocType.ACCEPT, shipment=bytes.fromhex(c["pending"][0]), codes=c["loose"][:1]), Reason.NOT_IN_SHIPMENT),
    Case("accept by shipper", lambda w, k, c: w.doc(k[P], DocType.ACCEPT, shipment=bytes.fromhex(c["pending"][0]), codes=[]), Reason.NOT_OWNER),
    Case("reject by receiver", lambda w, k, c: w.doc(k["kz"], DocType.REJECT, shipment=bytes.fromhex(c["pending"][0])), Reason.APPLIED),
    Case("reject by other", lambda w, k, c: w.doc(k["wholesaler"], DocType.REJECT, shipment=bytes.fromhex(c["pending"][0])), Reason.NOT_OWNER),
    # retire / return
    Case("retire destroyed", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="destroyed", codes=c["loose"][:1]), Reason.APPLIED),
    Case("retire export", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="export_outside_union", codes=c["loose"][:1]), Reason.APPLIED),
    Case("retail sale by producer", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="retail_sale", codes=c["loose"][:1]), Reason.FORBIDDEN_ROLE),
    Case("retire sold again", lambda w, k, c: w.doc(k["retailer"], DocType.RETIRE, reason="retail_sale", codes=c["sold"]), Reason.WRONG_STATUS),
    Case("retire aggregate", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="destroyed", codes=[SSCC]), Reason.WRONG_STATUS),
    Case("retire suspended", lambda w, k, c: w.doc(k[P], DocType.RETIRE, reason="destroyed", codes=c["frozen"]), Reason.SUSPENDED),
    Case("return sold", lambda w, k, c: w.doc(k["retailer"], DocType.RETURN, codes=c["sold"]), Reason.APPLIED),
    Case("return not sold", lambda w, k, c: w.doc(k["retailer"], DocType.RETURN, codes=c["loose"][:1]), Reason.NOT_OWNER),
    Case("return by producer", lambda w, k, c: w.doc(k[P], DocType.RETURN, codes=c["sold"]), Reason.FORBIDDEN_ROLE),
    # suspend / release
    Case("suspend by own regulator", lambda w, k, c: w.doc(_reg("RU"), DocType.SUSPEND, codes=c["loose"][:1], note="n"), Reason.APPLIED),
    Case("suspend packed code", lambda w, k, c: w.doc(_reg("RU"), DocType.SUSPEND, codes=c["packed"][:1], note="n"), Reason.APPLIED),
    Case("suspend by foreign regulator", lambda w, k, c: w.doc(_reg("KZ"), DocType.SUSPEND, codes=c["loose"][:1], note="n"), Reason.WRONG_STATE),
    Case("suspend by business", lambda w, k, c: w.doc(k[P], DocType.SUSPEND, codes=c["loose"][:1], note="n"), Reason.FORBIDDEN_ROLE),
    Case("suspend twice", lambda w, k, c: w.doc(_reg("RU"), DocType.SUSPEND, codes=c["frozen"], note="n"), Reason.WRONG_STATUS),
    Case("release suspended", lambda w, k, c: w.doc(_reg("RU"), DocType.RELEASE, codes=c["frozen"]), Reason.APPLIED),
    Case("release free code", lambda w, k, c: w.doc(_reg("RU"), DocType.RELEASE, codes=c["loose"][:1]), Reason.WRONG_STATUS),
    # auditor grants: a regulator, for its own state, to a registered auditor
    Case("grant audit by a regulator", lambda w, k, c: w.doc(_reg("RU"), DocType.GRANT_AUDIT, participant=k["auditor"].participant_id), Reason.APPLIED),
    Case("grant audit by a business", lambda w, k, c: w.doc(k[P], DocType.GRANT_AUDIT, participant=k["auditor"].participant_id), Reason.FORBIDDEN_ROLE),
    Case("grant audit by an auditor", lambda w, k, c: w.doc(k["auditor"], DocType.GRANT_AUDIT, participant=k["auditor"].participant_id), Reason.FORBIDDEN_ROLE),
    Case("grant audit to a business", lambda w, k, c: w.doc(_reg("RU"), DocType.GRANT_AUDIT, participant=k[P].participant_id), Reason.FORBIDDEN_ROLE),
    Case("grant audit to nobody", lambda w, k, c: w.doc(_reg("RU"), DocType.GRANT_AUDIT, participant=seeded_key("nobody").participant_id), Reason.NOT_REGISTERED),
    Case("grant audit twice", lambda w, k, c: w.doc(_reg("KZ"), DocType.GRANT_AUDIT, participant=k["auditor"].participant_id), Reason.ALREADY_EXISTS),
    Case("revoke audit by the granting regulator", lambda w, k, c: w.doc(_reg("KZ"), DocType.REVOKE_AUDIT, participant=k["auditor"].participant_id), Reason.APPLIED),
    Case("revoke audit never granted", lambda w, k, c: w.doc(_reg("RU"), DocType.REVOKE_AUDIT, participant=k["auditor"].participant_id), Reason.WRONG_STATUS),
    Case("revoke audit by a business", lambda w, k, c: w.doc(k[P], DocType.REVOKE_AUDIT, participant=k["auditor"].participant_id), Reason.FORBIDDEN_ROLE),
    # recall, customs import (issue 13; the rest of their table in test_recall.py and test_trade.py,
    # on a chain with the catalogue): this chain has none, so nothing can be recalled
    Case("recall without a catalogue", lambda w, k, c: w.doc(k[P], DocType.RECALL, gtin=GTIN, batch="L1", expiry_from="", expiry_to="", codes=[], reason="r"), Reason.UNKNOWN_PRODUCT),
    Case("release unknown recall", lambda w, k, c: w.doc(_reg("RU"), DocType.RELEASE_RECALL, recall=bytes(32), note=""), Reason.UNKNOWN_RECALL),
    Case("import by a producer", lambda w, k, c: w.doc(k[P], DocType.IMPORT, declaration="D1", country="CN", codes=c["emitted"][:1]), Reason.FORBIDDEN_ROLE),
    Case("import not own", lambda w, k, c: w.doc(k["importer"], DocType.IMPORT, declaration="D1", country="CN", codes=c["emitted"][:1]), Reason.NOT_OWNER),
    Case("import introduced", lambda w, k, c: w.doc(k["importer"], DocType.IMPORT, declaration="D1", country="CN", codes=c["loose"][:1]), Reason.NOT_OWNER),
    Case("confirm unknown import", lambda w, k, c: _confirm(w, _reg("RU")), Reason.UNKNOWN_IMPORT),
    Case("confirm import by a business", lambda w, k, c: _confirm(w, k[P]), Reason.FORBIDDEN_ROLE),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_document_table(tmp_path: Path, case: Case) -> None:
    """Each document type by each role on each status gives the expected result."""
    world = World(tmp_path / "db")
    keys, codes = _setup(world)
    doc = case.build(world, keys, codes)
    touched = [k for name, v in codes.items() if name != "pending" for k in v]
    before = {k: world.store.code(k) for k in touched}
    before[SSCC] = world.store.code(SSCC)
    (result,) = world.apply(doc)
    assert result.reason is case.reason, result
    assert result.message or result.applied
    if not result.applied:
        after = {k: world.store.code(k) for k in before}
        assert after == before, "a rejected document changed state"


def test_suspended_code_inside_a_pallet_freezes_the_pallet(world: World) -> None:
    """A code suspended inside an aggregate blocks moving the aggregate until released."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("RU", ["wholesaler"], "Buyer")
    codes = world.introduced("RU", producer, 3)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes))
    world.apply_ok(world.doc(world.regulator("RU"), DocType.SUSPEND, codes=codes[:1], note="check"))
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[SSCC])
    assert world.apply(ship)[0].reason is Reason.SUSPENDED
    world.apply_ok(world.doc(world.regulator("RU"), DocType.RELEASE, codes=codes[:1]))
    world.apply_ok(world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[SSCC]))


def test_partial_accept_returns_the_rest_to_the_shipper(world: World) -> None:
    """Accepting part of a shipment gives those codes to the receiver and frees the rest."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("BY", ["wholesaler"], "Buyer")
    codes = world.introduced("RU", producer, 4)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    world.apply_ok(ship)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=codes[:1]))
    assert world.store.code(codes[0])["owner"] == buyer.participant_id
    assert world.store.code(codes[1])["owner"] == producer.participant_id
    assert world.store.code(codes[1])["in_transit"] is None
    assert world.store.shipment(ship.id)["status"] == "partially_accepted"
    world.apply_ok(world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes[1:]))


def test_history_is_paginated_in_chain_order(world: World) -> None:
    """A code's history pages come back in order, each after the cursor."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("RU", ["wholesaler"], "Buyer")
    codes = world.introduced("RU", producer, 1)
    for _ in range(3):
        ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
        world.apply_ok(ship)
        world.apply_ok(world.doc(producer, DocType.CANCEL_SHIPMENT, shipment=ship.id))
    full = world.store.history(codes[0])
    assert len(full) == 8
    page1 = world.store.history(codes[0], limit=3)
    page2 = world.store.history(codes[0], after=(page1[-1].height, page1[-1].position), limit=3)
    assert page1 + page2 == full[:6]


def test_holdings_are_paginated(world: World) -> None:
    """A participant's holdings come in pages that join up to the whole list."""
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.introduced("RU", producer, 25)
    first = world.store.holdings(producer.participant_id, limit=10)
    second = world.store.holdings(producer.participant_id, after=first[-1], limit=100)
    assert first + second == sorted(codes)

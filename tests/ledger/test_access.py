"""The access rule (ledger/_access.py) on one journey across two borders: who may read
each thing, and which part of a code's history each reader sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import (
    ANONYMOUS,
    BlockRead,
    CodeRead,
    DocType,
    DocumentRead,
    FlowRead,
    Genesis,
    HistoryRead,
    HoldingsRead,
    LedgerStore,
    ParticipantRead,
    Reason,
    ShipmentRead,
    check_read,
    reader_of,
    visible_history,
)
from ledger._records import META_PARTIES, P_PARTY

from .world import World, make_genesis, seeded_key

SSCC = "00046800000000000017"
UNION_AUDITOR = seeded_key("union-auditor")


@pytest.fixture
def journey(tmp_path: Path) -> dict:
    """A pallet made in KZ, sold to a KZ wholesaler, who ships its units to a retailer in
    RU; an AM stranger, an AM auditor with a KZ grant, a union auditor in genesis."""
    base = make_genesis()
    genesis = Genesis(base.chain_id, base.time_ms, base.states, base.params, auditors=(UNION_AUDITOR.public_key,))
    w = World(tmp_path / "db", genesis)
    k = {
        "maker": w.register("KZ", ["producer"], "Maker"),
        "wholesaler": w.register("KZ", ["wholesaler"], "Wholesaler"),
        "retailer": w.register("RU", ["retailer"], "Retailer"),
        "stranger": w.register("AM", ["retailer"], "Stranger"),
        "state_auditor": w.register("AM", ["auditor"], "State auditor"),
        "revoked": w.register("KZ", ["wholesaler"], "Gone"),
    }
    w.apply_ok(w.doc(w.regulator("KZ"), DocType.GRANT_AUDIT, participant=k["state_auditor"].participant_id))
    w.apply_ok(w.doc(w.regulator("KZ"), DocType.REVOKE_PARTICIPANT, participant=k["revoked"].participant_id))
    units = w.introduced("KZ", k["maker"], 3)
    w.apply_ok(w.doc(k["maker"], DocType.AGGREGATE, sscc=SSCC, codes=units))
    ship1 = w.doc(k["maker"], DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=[SSCC])
    w.apply_ok(ship1)
    w.apply_ok(w.doc(k["wholesaler"], DocType.ACCEPT, shipment=ship1.id, codes=[]))
    w.apply_ok(w.doc(k["wholesaler"], DocType.DISAGGREGATE, sscc=SSCC))
    ship2 = w.doc(k["wholesaler"], DocType.SHIP, receiver=k["retailer"].participant_id, codes=units[:2])
    w.apply_ok(ship2)
    accept2 = w.doc(k["retailer"], DocType.ACCEPT, shipment=ship2.id, codes=units[:1])
    w.apply_ok(accept2)
    sale = w.doc(k["retailer"], DocType.RETIRE, reason="retail_sale", codes=units[:1])
    w.apply_ok(sale)
    return {"w": w, "k": k, "units": units, "ship1": ship1, "ship2": ship2, "accept2": accept2, "sale": sale}


def _reader(store: LedgerStore, who: str, k: dict) -> object:
    if who == "anonymous":
        return ANONYMOUS
    if who == "union_auditor":
        return reader_of(store, UNION_AUDITOR.participant_id)
    if who.startswith("regulator-"):
        return reader_of(store, seeded_key(who).participant_id)
    return reader_of(store, k[who].participant_id)


ALL = ("maker", "wholesaler", "retailer", "stranger", "state_auditor", "revoked", "union_auditor",
       "regulator-KZ", "regulator-RU", "regulator-AM", "anonymous")


def _allowed(j: dict, thing: object) -> set[str]:
    store = j["w"].store
    return {who for who in ALL if check_read(store, _reader(store, who, j["k"]), thing) is None}  # type: ignore[arg-type]


def test_the_sold_unit_is_read_by_its_holder_and_the_overseers_of_states_it_passed(journey: dict) -> None:
    """The sold unit: its state by its holder and the overseers of KZ and RU; its history
    also by the past holders, who see it only up to the moment they passed it on."""
    unit = journey["units"][0]
    overseers = {"regulator-KZ", "regulator-RU", "union_auditor", "state_auditor"}
    assert _allowed(journey, CodeRead(unit)) == {"retailer"} | overseers
    assert _allowed(journey, HistoryRead(unit)) == {"retailer", "maker", "wholesaler"} | overseers
    store, k = journey["w"].store, journey["k"]
    whole = store.whole_history(unit)
    places = [(e.height, e.position) for e in whole]
    wholesaler = visible_history(store, reader_of(store, k["wholesaler"].participant_id), unit, whole)
    assert [e.document_id for e in wholesaler][-1] == journey["accept2"].id  # not the sale
    maker = visible_history(store, reader_of(store, k["maker"].participant_id), unit, whole)
    assert (maker[-1].height, maker[-1].position) < places[-2]
    assert [e.document_id for e in maker][-1] not in (journey["accept2"].id, journey["sale"].id)
    assert visible_history(store, reader_of(store, k["retailer"].participant_id), unit, whole) == whole
    assert visible_history(store, reader_of(store, k["stranger"].participant_id), unit, whole) == []


def test_the_unit_refused_in_part_stays_with_the_wholesaler(journey: dict) -> None:
    """The unit the retailer did not accept: the retailer saw it as a receiver, up to the accept."""
    unit = journey["units"][1]
    assert "retailer" not in _allowed(journey, CodeRead(unit))
    assert "wholesaler" in _allowed(journey, CodeRead(unit))
    assert "retailer" in _allowed(journey, HistoryRead(unit))
    assert "regulator-RU" in _allowed(journey, HistoryRead(unit))  # shipped into RU


def test_documents_shipments_flows_blocks(journey: dict) -> None:
    """Documents by signer, names and visible histories; shipments by their ends and the
    overseers of their states; flows by overseers of an end; blocks by overseers."""
    ship1, ship2, sale = journey["ship1"], journey["ship2"], journey["sale"]
    kz = {"regulator-KZ", "union_auditor", "state_auditor"}
    # The maker's shipment is in the provenance of what the retailer bought.
    assert _allowed(journey, DocumentRead(ship1.id)) == {"maker", "wholesaler", "retailer", "regulator-RU"} | kz
    assert _allowed(journey, DocumentRead(sale.id)) == {"retailer", "regulator-RU"} | kz
    assert _allowed(journey, ShipmentRead(ship2.id)) == {"wholesaler", "retailer", "regulator-RU"} | kz
    assert _allowed(journey, ShipmentRead(ship1.id)) == {"maker", "wholesaler"} | kz
    assert _allowed(journey, FlowRead("KZ", "RU")) == {"regulator-RU"} | kz
    assert _allowed(journey, FlowRead("AM", "BY")) == {"regulator-AM", "union_auditor"}
    assert _allowed(journey, BlockRead()) == {"union_auditor", "state_auditor", "regulator-KZ", "regulator-RU",
                                             "regulator-AM"}


def test_participants_and_holdings(journey: dict) -> None:
    """Holdings: the participant and its state's overseers; a participant's record: any
    signed reader."""
    retailer = journey["k"]["retailer"].participant_id
    assert _allowed(journey, HoldingsRead(retailer)) == {"retailer", "regulator-RU", "union_auditor"}
    # A counterparty is checked before shipping to it: every signed, active reader may.
    assert _allowed(journey, ParticipantRead(retailer)) == set(ALL) - {"anonymous", "revoked"}


def test_a_revoked_grant_is_gone_at_once(journey: dict) -> None:
    """The state auditor loses KZ when the KZ regulator revokes its grant."""
    w, k = journey["w"], journey["k"]
    thing = ShipmentRead(journey["ship1"].id)
    assert "state_auditor" in _allowed(journey, thing)
    w.apply_ok(w.doc(w.regulator("KZ"), DocType.REVOKE_AUDIT, participant=k["state_auditor"].participant_id))
    assert "state_auditor" not in _allowed(journey, thing)
    assert check_read(w.store, reader_of(w.store, k["state_auditor"].participant_id), thing) is Reason.NOT_ENTITLED


def test_the_party_index_is_rebuilt_for_an_old_store(journey: dict, tmp_path: Path) -> None:
    """A store written before the party index gets it on opening, with the same answers."""
    w = journey["w"]
    things = [DocumentRead(journey["ship1"].id), DocumentRead(journey["sale"].id), HistoryRead(journey["units"][1])]
    before = [_allowed(journey, t) for t in things]

    for key in list(w.store.db.iterator(prefix=P_PARTY, include_value=False)):
        w.store.db.delete(key)
    w.store.db.delete(META_PARTIES)
    w.store.close()
    w.store = LedgerStore(tmp_path / "db", w.genesis, sync=False)
    assert [_allowed(journey, t) for t in things] == before

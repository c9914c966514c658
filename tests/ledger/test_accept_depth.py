"""Per-child acceptance at any depth (issue 13): a buyer keeps or refuses codes nested in a
received pallet, a pack in a box on a pallet included; refused codes go back to the shipper,
loose, and every aggregate left holds what it lists, with its count and level right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger import DocType, KeyPair, Reason, SignedDocument, derive_trade_record
from ledger._recall import EXPORT, trade_key
from ledger._records import CodeRecord, code_key
from testnet import product_groups

from .world import World, make_genesis

PALLET = "00157035381410375177"
BOX_1 = "00046800294609000015"
BOX_2 = "00046800294609000022"
CONTAINER = "00046800294609000039"


def _world(path: Path) -> World:
    return World(path, make_genesis(groups=product_groups()))


def _pallet(world: World) -> tuple[KeyPair, KeyPair, list[str], SignedDocument]:
    """A Russian producer ships to a Kazakh wholesaler a pallet of two boxes (three units
    and two), and one loose unit: units(0) in boxes(1) on a pallet(2)."""
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    u = world.introduced("RU", producer, 6)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=BOX_1, codes=u[:3]))
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=BOX_2, codes=u[3:5]))
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=PALLET, codes=[BOX_1, BOX_2]))
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[PALLET, u[5]])
    world.apply_ok(ship)
    return producer, buyer, u, ship


def _level(world: World, key: str) -> int:
    raw = world.store.db.get(code_key(key))
    assert raw is not None, key
    return CodeRecord.unpack(raw).level


def _code(world: World, key: str) -> dict[str, Any]:
    view = world.store.code(key)
    assert view is not None, key
    return view


def test_a_pack_in_a_box_on_a_pallet_is_refused_and_goes_back(tmp_path: Path) -> None:
    """The buyer keeps the pallet, both boxes and two of box 1's three units: the third
    unit leaves box 1 and goes back to the producer, loose; box 2 is kept whole; the loose
    unit not listed goes back too; the trade records count the four units kept."""
    world = _world(tmp_path / "db")
    producer, buyer, u, ship = _pallet(world)
    accept = world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[PALLET, BOX_1, BOX_2, u[0], u[1]])
    world.apply_ok(accept)
    shipment = world.store.shipment(ship.id)
    assert shipment is not None and shipment["status"] == "partially_accepted"
    refused = _code(world, u[2])
    assert (refused["owner"], refused["aggregate"], refused["in_transit"]) == (producer.participant_id, None, None)
    assert u[2] in world.store.holdings(producer.participant_id)
    assert world.store.children(BOX_1) == u[:2] and _code(world, BOX_1)["children"] == 2
    assert world.store.children(BOX_2) == u[3:5]
    assert world.store.children(PALLET) == [BOX_1, BOX_2]
    pallet = _code(world, PALLET)
    assert (pallet["owner"], pallet["children"], _level(world, PALLET)) == (buyer.participant_id, 2, 2)
    assert _code(world, u[5])["owner"] == producer.participant_id
    assert PALLET in world.store.holdings(buyer.participant_id)
    assert [e.type for e in world.store.history(u[2])][-1] == "disaggregate"
    # Who held the refused unit: the producer only; the kept one, both.
    assert [p.participant for p in world.store.code_parties(u[2]) if p.holder] == [producer.participant_id]
    assert [p.participant for p in world.store.code_parties(u[0]) if p.holder] == [
        producer.participant_id, buyer.participant_id]
    (export,) = world.store.trade("RU", "export")
    assert export["products"] == [{"gtin": u[0][2:16], "units": 4}]
    # An auditor derives the same record from the two documents and the aggregations.
    children = {BOX_1: u[:3], BOX_2: u[3:5], PALLET: [BOX_1, BOX_2]}
    raw = world.store.db.get(trade_key("RU", EXPORT, export["height"], export["position"]))
    parties = _parties(world, producer, buyer)
    assert derive_trade_record(ship, accept, parties[0], parties[1], lambda k: children.get(k, [])) == raw
    # The buyer now moves the pallet as it stands; the producer the returned unit.
    world.apply_ok(world.doc(buyer, DocType.DISAGGREGATE, sscc=PALLET))
    world.apply_ok(world.doc(producer, DocType.RETIRE, reason="destroyed", codes=[u[2]], details=[
        ["doc_date", 1_790_000_000_000], ["doc_number", "A-1"], ["doc_type", "act"]]))


def _parties(world: World, exporter: KeyPair, importer: KeyPair) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(name, state[, tax id]) of each party, as their registrations say."""
    out = []
    for key in (exporter, importer):
        view = world.store.participant(key.participant_id)
        assert view is not None
        out.append((view["name"], view["state"], *([view["tax_id"]] if view.get("tax_id") else [])))
    return out[0], out[1]


def test_a_whole_box_is_refused_with_what_it_holds(tmp_path: Path) -> None:
    """Listing the pallet and box 1 only: box 2 leaves the pallet and goes back with its
    units inside it; box 1 is accepted whole."""
    world = _world(tmp_path / "db")
    producer, buyer, u, ship = _pallet(world)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[PALLET, BOX_1, u[5]]))
    box = _code(world, BOX_2)
    assert (box["owner"], box["aggregate"], box["children"]) == (producer.participant_id, None, 2)
    assert world.store.children(PALLET) == [BOX_1] and _code(world, PALLET)["children"] == 1
    assert world.store.children(BOX_1) == u[:3]
    assert BOX_2 in world.store.holdings(producer.participant_id)
    world.apply_ok(world.doc(producer, DocType.DISAGGREGATE, sscc=BOX_2))  # the producer unpacks it
    assert _code(world, u[3])["owner"] == producer.participant_id


def test_levels_fall_when_the_deepest_branch_is_refused(tmp_path: Path) -> None:
    """A container holding a pallet (a box of units and a unit) and a unit: refusing the
    box lowers the pallet to level 1 and the container to level 2."""
    world = _world(tmp_path / "db")
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("RU", ["wholesaler"], "Buyer")
    u = world.introduced("RU", producer, 4)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=BOX_1, codes=u[:2]))
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=PALLET, codes=[BOX_1, u[2]]))
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=CONTAINER, codes=[PALLET, u[3]]))
    assert _level(world, CONTAINER) == 3
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[CONTAINER])
    world.apply_ok(ship)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[CONTAINER, PALLET, u[2], u[3]]))
    assert (_level(world, PALLET), _level(world, CONTAINER)) == (1, 2)
    assert _code(world, BOX_1)["owner"] == producer.participant_id
    assert world.store.children(CONTAINER) == [PALLET, u[3]]


def test_a_nested_code_needs_its_parent_listed_and_must_be_in_the_shipment(tmp_path: Path) -> None:
    """A unit of box 1 listed without box 1, or a unit of an aggregate not shipped, is
    not_in_shipment; the shipper may not accept; nothing changes."""
    world = _world(tmp_path / "db")
    producer, buyer, u, ship = _pallet(world)
    elsewhere = world.introduced("RU", producer, 2)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=CONTAINER, codes=elsewhere))
    before = {k: world.store.code(k) for k in [*u, BOX_1, BOX_2, PALLET]}
    for codes, reason in (
        ([PALLET, u[0]], Reason.NOT_IN_SHIPMENT),
        ([PALLET, BOX_1, elsewhere[0]], Reason.NOT_IN_SHIPMENT),
        ([PALLET, BOX_1, u[0], u[0]], Reason.REPEATED_CODE),
    ):
        (result,) = world.apply(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=codes))
        assert result.reason is reason, (codes, result)
        assert {k: world.store.code(k) for k in before} == before
    (shipper,) = world.apply(world.doc(producer, DocType.ACCEPT, shipment=ship.id, codes=[PALLET, BOX_1, u[0]]))
    assert shipper.reason is Reason.NOT_OWNER


def test_a_recalled_unit_kept_deep_in_a_pallet_refuses_the_accept(tmp_path: Path) -> None:
    """A recalled unit goes only back to its producer: kept inside an accepted box, the
    accept is refused (recalled); refused out of the box, the rest is accepted."""
    world = _world(tmp_path / "db")
    producer, buyer, u, ship = _pallet(world)
    world.apply_ok(world.doc(producer, DocType.RECALL, gtin=u[0][2:16], batch="", expiry_from="", expiry_to="",
                             codes=[u[0]], reason="contaminated"))
    (kept,) = world.apply(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[PALLET, BOX_1, u[0], u[1]]))
    assert kept.reason is Reason.RECALLED
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[PALLET, BOX_1, BOX_2, u[1], u[2]]))
    assert _code(world, u[0])["owner"] == producer.participant_id


def test_a_deep_acceptance_replays_to_the_same_hash(tmp_path: Path) -> None:
    from ledger import LedgerStore

    world = _world(tmp_path / "a")
    _producer, buyer, u, ship = _pallet(world)
    world.apply_ok(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[PALLET, BOX_1, BOX_2, u[0], u[3]]))
    replay = LedgerStore(tmp_path / "b", world.genesis, sync=False)
    for height in range(1, world.store.head.height + 1):
        block = world.store.block(height)
        assert block is not None
        again = replay.apply_block(block.documents, block.header.time_ms, block.header.proposer)
        assert again.header == block.header, f"replay diverged at height {height}"
    replay.close()

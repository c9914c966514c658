"""The inbox index: what each kind of document addresses to whom, pending shipments,
pages by cursor, and that the index stays out of the state hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import DocType, KeyPair
from ledger._inbox import (
    CODES_EMITTED,
    CODES_RELEASED,
    CODES_SUSPENDED,
    INCOMING_SHIPMENT,
    REGISTERED,
    REVOKED,
    SHIPMENT_ACCEPTED,
    SHIPMENT_CANCELLED,
    SHIPMENT_PARTIALLY_ACCEPTED,
    SHIPMENT_REJECTED,
)
from ledger._store import LedgerStore

from .world import World

SSCC = "00046800294609000015"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "db")


def kinds(store: LedgerStore, who: KeyPair, pending: bool = False) -> list[tuple[str, str]]:
    return [(e.kind, e.document_id.hex()) for e in store.inbox(who.participant_id, pending=pending)]


def test_registration_and_revocation_reach_the_participant(world: World) -> None:
    """A participant finds its own registration and revocation in its inbox."""
    shop = world.register("KG", ["retailer"], "Shop")
    assert [k for k, _ in kinds(world.store, shop)] == [REGISTERED]
    revoke = world.doc(world.regulator("KG"), DocType.REVOKE_PARTICIPANT, participant=shop.participant_id)
    world.apply_ok(revoke)
    assert kinds(world.store, shop)[-1] == (REVOKED, revoke.id.hex())
    # The regulator signed both: nothing is addressed to it.
    assert world.store.inbox(world.regulator("KG").participant_id) == []


def test_emission_reaches_the_owner(world: World) -> None:
    """Codes emitted to a producer appear in the producer's inbox."""
    producer = world.register("RU", ["producer"], "Factory")
    world.emit("RU", producer, 3)
    assert [k for k, _ in kinds(world.store, producer)] == [REGISTERED, CODES_EMITTED]


def test_an_incoming_shipment_is_pending_until_accepted(world: World) -> None:
    """A shipment is pending in the receiver's inbox until it accepts; the shipper hears of it."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Wholesale")
    codes = world.introduced("RU", producer, 4)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    world.apply_ok(ship)
    assert kinds(world.store, buyer, pending=True) == [(INCOMING_SHIPMENT, ship.id.hex())]
    assert kinds(world.store, buyer)[-1] == (INCOMING_SHIPMENT, ship.id.hex())
    accept = world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[])
    world.apply_ok(accept)
    assert kinds(world.store, buyer, pending=True) == []
    assert kinds(world.store, producer)[-1] == (SHIPMENT_ACCEPTED, accept.id.hex())
    # Parties of a shipment's end follow from the shipment: nothing stored for the feed.
    assert world.store.involved(*_place(world, accept.id)) is None


def test_partial_acceptance_rejection_and_cancellation(world: World) -> None:
    """A partial accept or a reject reaches the shipper, a cancel the receiver; each ends the pending item."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Wholesale")
    codes = world.introduced("RU", producer, 6)
    ships = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes[i:i + 2])
             for i in (0, 2, 4)]
    world.apply_ok(*ships)
    assert len(kinds(world.store, buyer, pending=True)) == 3
    partial = world.doc(buyer, DocType.ACCEPT, shipment=ships[0].id, codes=[codes[0]])
    reject = world.doc(buyer, DocType.REJECT, shipment=ships[1].id)
    cancel = world.doc(producer, DocType.CANCEL_SHIPMENT, shipment=ships[2].id)
    world.apply_ok(partial, reject, cancel)
    assert kinds(world.store, buyer, pending=True) == []
    assert kinds(world.store, producer)[-2:] == [(SHIPMENT_PARTIALLY_ACCEPTED, partial.id.hex()),
                                                 (SHIPMENT_REJECTED, reject.id.hex())]
    assert kinds(world.store, buyer)[-1] == (SHIPMENT_CANCELLED, cancel.id.hex())


def test_a_shipment_ended_in_its_own_block_leaves_nothing_pending(world: World) -> None:
    """Ship and accept in one block: the pending item is written and removed in document order."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("RU", ["wholesaler"], "Wholesale")
    codes = world.introduced("RU", producer, 1)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    world.apply_ok(ship, world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    assert kinds(world.store, buyer, pending=True) == []


def test_suspension_and_release_reach_the_holder_of_a_packed_code(world: World) -> None:
    """Suspending a code inside a pallet notifies the pallet's holder, once per document."""
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.introduced("RU", producer, 3)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes))
    suspend = world.doc(world.regulator("RU"), DocType.SUSPEND, codes=codes[:2], note="lab test")
    world.apply_ok(suspend)
    release = world.doc(world.regulator("RU"), DocType.RELEASE, codes=codes[:2])
    world.apply_ok(release)
    assert kinds(world.store, producer)[-2:] == [(CODES_SUSPENDED, suspend.id.hex()),
                                                 (CODES_RELEASED, release.id.hex())]
    # The holders of the moment are kept for the feed's read rule (they change later).
    assert world.store.involved(*_place(world, suspend.id)) == ([producer.participant_id], ["RU"])


def test_rejected_documents_address_nobody(world: World) -> None:
    """A document the ledger rejects adds no inbox item."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Wholesale")
    results = world.apply(world.doc(producer, DocType.SHIP, receiver=buyer.participant_id,
                                    codes=["0104680029460908219NOTEMITTED"]))
    assert not results[0].applied
    assert kinds(world.store, buyer) == [(REGISTERED, kinds(world.store, buyer)[0][1])]


def test_pages_follow_the_cursor(world: World) -> None:
    """Pages of the inbox come oldest first and resume after a cursor without gap or repeat."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Wholesale")
    codes = world.introduced("RU", producer, 7)
    for code in codes:
        world.apply_ok(world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[code]))
    whole = world.store.inbox(buyer.participant_id)
    seen, after = [], None
    while True:
        page = world.store.inbox(buyer.participant_id, after=after, limit=3)
        if not page:
            break
        seen += page
        after = (page[-1].height, page[-1].position)
    assert seen == whole and len(whole) == 8


def test_the_inbox_is_not_in_the_state_hash(world: World) -> None:
    """The inbox indexes ride beside the block's state writes, never among them (the state hash)."""
    producer = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Wholesale")
    codes = world.introduced("RU", producer, 1)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    prepared = world.store.prepare_block([ship.wire()], world.time_ms + 1_000, "RU")
    assert prepared.involved and prepared.involved[0].parties == (buyer.participant_id,)
    assert not [k for k in prepared.writes if k[:1] in (b"i", b"j", b"v")]


def _place(world: World, doc_id: bytes) -> tuple[int, int]:
    found = world.store.document(doc_id)
    assert found is not None
    return found["height"], found["position"]

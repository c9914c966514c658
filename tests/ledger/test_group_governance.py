"""The product-group table is governed (issue 13, "Product groups are data"): genesis seeds
it, a Byzantine quorum of regulators sets or retires a group with a `governance` document,
and emit, apply, introduce and the withdrawal checks read the table in force."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ledger import (
    Action,
    DecodeError,
    DocType,
    Layout,
    LedgerStore,
    ProductGroup,
    Proposal,
    Reason,
    Result,
    SignedDocument,
    decode_proposal,
    make_proposal,
)
from testnet import product_groups

from .world import CHAIN_ID, GTIN, World, make_genesis

GROUPS = product_groups()
WATER = next(g for g in GROUPS if g.name == "water")
# A new group: kvass, printed as packaged water is (01 + 21 serial of 13 + 93).
KVASS = ProductGroup(
    "kvass", "Kvass and other fermented drinks", (Layout("gs1", 13, ("93",)),),
    withdrawal_reasons=("destroyed", "retail_sale"), reasons_needing_document=("destroyed",),
    documents=("accept", "emit", "introduce", "retire", "ship"),
)
KVASS_GTIN = "04680029460908"  # tests/ledger/world.GTIN: registered under kvass here
ACT = [["doc_date", 1_790_000_000_000], ["doc_number", "A-17"], ["doc_type", "act"]]
QUORUM = ("AM", "BY", "KG", "RU")


def _world(path: Path) -> World:
    return World(path, make_genesis(groups=GROUPS))


def _proposal(world: World, action: Action, **kw: Any) -> Proposal:
    return make_proposal(CHAIN_ID, action, "RU", kw.pop("nonce", 1), world.time_ms + 60_000, **kw)


def _certificate(world: World, proposal: Proposal, signers: tuple[str, ...] = QUORUM) -> SignedDocument:
    signatures = [proposal.sign(world.regulator(s)).to_list() for s in signers]
    return world.doc(world.regulator("KZ"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                     signatures=signatures)


def _set(world: World, group: ProductGroup, signers: tuple[str, ...] = QUORUM, nonce: int = 1) -> Result:
    (result,) = world.apply(_certificate(world, _proposal(world, Action.SET_PRODUCT_GROUP, group=group,
                                                          nonce=nonce), signers))
    return result


def _register_product(world: World, producer: Any, group: str, gtin: str = KVASS_GTIN) -> Result:
    doc = world.doc(world.regulator("RU"), DocType.REGISTER_PRODUCT, gtin=gtin, group=group, name="Kvass",
                    tnved="2206", producer=producer.participant_id)
    (result,) = world.apply(doc)
    return result


def _emit(world: World, producer: Any, serials: list[str], gtin: str = KVASS_GTIN) -> Result:
    (result,) = world.apply(world.doc(world.regulator("RU"), DocType.EMIT, owner=producer.participant_id,
                                      gtin=gtin, serials=serials))
    return result


def test_a_quorum_adds_a_group_and_its_codes_are_then_emitted(tmp_path: Path) -> None:
    """Before: no kvass group, so no kvass product. After four of five regulators set it:
    the product registers and emit of its layout is applied (another serial length is not)."""
    world = _world(tmp_path / "db")
    producer = world.register("RU", ["producer"], "Kvass works")
    assert _register_product(world, producer, "kvass").reason is Reason.INVALID_PRODUCT
    assert _set(world, KVASS).applied
    table = world.store.product_groups()
    assert table.groups["kvass"] == KVASS and table.status("kvass") == "active"
    assert _register_product(world, producer, "kvass").applied
    assert _emit(world, producer, ["5" + "A" * 12]).applied
    assert _emit(world, producer, ["5" + "B" * 6]).reason is Reason.WRONG_LAYOUT
    # The group's withdrawal rules are the table's: destroyed needs its act, a sale does not.
    code = "01" + KVASS_GTIN + "21" + "5" + "A" * 12
    world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=[code]))
    (bare,) = world.apply(world.doc(producer, DocType.RETIRE, reason="destroyed", codes=[code]))
    assert bare.reason is Reason.MISSING_DOCUMENT
    (other,) = world.apply(world.doc(producer, DocType.RETIRE, reason="lost", codes=[code], details=ACT))
    assert other.reason is Reason.NOT_FOR_GROUP
    world.apply_ok(world.doc(producer, DocType.RETIRE, reason="destroyed", codes=[code], details=ACT))


def test_fewer_than_a_quorum_changes_nothing_and_a_replay_is_refused(tmp_path: Path) -> None:
    """Three of five regulators: no_quorum, the table and the state hash's input unchanged.
    The certificate once applied, the same proposal again is already_exists."""
    world = _world(tmp_path / "db")
    before = world.store.product_groups()
    proposal = _proposal(world, Action.SET_PRODUCT_GROUP, group=KVASS)
    (short,) = world.apply(_certificate(world, proposal, ("AM", "BY", "RU")))
    assert short.reason is Reason.NO_QUORUM
    assert world.store.product_groups() == before and "kvass" not in before.groups
    world.apply_ok(_certificate(world, proposal))
    (again,) = world.apply(_certificate(world, proposal))
    assert again.reason is Reason.ALREADY_EXISTS
    # Nor may a non-regulator carry a certificate.
    producer = world.register("RU", ["producer"], "P")
    doc = world.doc(producer, DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                    signatures=[proposal.sign(world.regulator(s)).to_list() for s in QUORUM])
    (forbidden,) = world.apply(doc)
    assert forbidden.reason is Reason.FORBIDDEN_ROLE


def test_a_replaced_group_rules_from_the_next_document_on(tmp_path: Path) -> None:
    """Replacing water (serials of 7, no more of 13; donation without a deed) rules the
    documents after it, in the same block too; a second store replaying the blocks agrees
    at every height and reads the same table."""
    world = _world(tmp_path / "a")
    producer = world.register("RU", ["producer"], "P")
    live = world.introduced("RU", producer, 2)  # water, serials of 13
    changed = dataclasses.replace(
        WATER, layouts=(Layout("gs1", 7, ("93",)),),
        reasons_needing_document=tuple(r for r in WATER.reasons_needing_document or () if r != "donation"),
    )
    certificate = _certificate(world, _proposal(world, Action.SET_PRODUCT_GROUP, group=changed))
    emit_13 = world.doc(world.regulator("RU"), DocType.EMIT, owner=producer.participant_id, gtin=GTIN,
                        serials=["S" * 13])
    emit_7 = world.doc(world.regulator("RU"), DocType.EMIT, owner=producer.participant_id, gtin=GTIN,
                       serials=["S" * 7])
    before_13 = world.doc(world.regulator("RU"), DocType.EMIT, owner=producer.participant_id, gtin=GTIN,
                          serials=["T" * 13])
    results = world.apply(before_13, certificate, emit_13, emit_7)
    assert [r.reason for r in results] == [Reason.APPLIED, Reason.APPLIED, Reason.WRONG_LAYOUT, Reason.APPLIED]
    world.apply_ok(world.doc(producer, DocType.RETIRE, reason="donation", codes=live[:1]))
    (needs,) = world.apply(world.doc(producer, DocType.RETIRE, reason="destroyed", codes=live[1:]))
    assert needs.reason is Reason.MISSING_DOCUMENT

    replay = LedgerStore(tmp_path / "b", world.genesis, sync=False)
    for height in range(1, world.store.head.height + 1):
        block = world.store.block(height)
        assert block is not None
        again = replay.apply_block(block.documents, block.header.time_ms, block.header.proposer)
        assert again.header == block.header, f"replay diverged at height {height}"
    assert replay.product_groups() == world.store.product_groups()
    replay.close()


def test_the_table_change_is_in_the_state_hash(tmp_path: Path) -> None:
    """Two chains that differ only in the group a quorum set have different state hashes
    from that block on; two stores applying the same block agree."""
    heads = []
    for label, group in (("a", KVASS), ("b", dataclasses.replace(KVASS, title="Kvass"))):
        world = _world(tmp_path / label)
        world.apply_ok(_certificate(world, _proposal(world, Action.SET_PRODUCT_GROUP, group=group)))
        heads.append(world.store.head.state_hash)
        twin = _world(tmp_path / (label + "2"))
        twin.apply_ok(_certificate(twin, _proposal(twin, Action.SET_PRODUCT_GROUP, group=group)))
        assert twin.store.head.state_hash == world.store.head.state_hash
    assert heads[0] != heads[1]


def test_a_required_attribute_follows_the_table(tmp_path: Path) -> None:
    """Dairy with no required expiry (a quorum's change): introduce takes it without one,
    apply too; before the change it was missing_attribute."""
    world = _world(tmp_path / "db")
    producer = world.register("RU", ["producer"], "Dairy")
    dairy_gtin = "04609999000341"
    world.register_product("RU", producer, dairy_gtin, "dairy", "0403")
    codes = ["01" + dairy_gtin + "21" + s for s in ("5aaaaa", "5bbbbb")]
    world.apply_ok(world.doc(world.regulator("RU"), DocType.EMIT, owner=producer.participant_id, gtin=dairy_gtin,
                             serials=[c[-6:] for c in codes]))
    (missing,) = world.apply(world.doc(producer, DocType.INTRODUCE, codes=codes[:1]))
    assert missing.reason is Reason.MISSING_ATTRIBUTE
    dairy = next(g for g in GROUPS if g.name == "dairy")
    assert _set(world, dataclasses.replace(dairy, required=())).applied
    world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes[:1]))
    world.apply_ok(world.doc(producer, DocType.APPLY, codes=codes[1:]))
    world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes[1:]))


def test_a_retired_group_takes_no_new_product_nor_code_but_its_goods_still_move(tmp_path: Path) -> None:
    world = _world(tmp_path / "db")
    producer = world.register("RU", ["producer"], "P")
    retailer = world.register("RU", ["retailer"], "R")
    live = world.introduced("RU", producer, 2)  # water
    proposal = _proposal(world, Action.RETIRE_PRODUCT_GROUP, group_name="water")
    world.apply_ok(_certificate(world, proposal))
    assert world.store.product_groups().status("water") == "retired"
    (again,) = world.apply(_certificate(world, _proposal(world, Action.RETIRE_PRODUCT_GROUP,
                                                          group_name="water", nonce=2)))
    assert again.reason is Reason.WRONG_STATUS
    (unknown,) = world.apply(_certificate(world, _proposal(world, Action.RETIRE_PRODUCT_GROUP,
                                                            group_name="kvass", nonce=3)))
    assert unknown.reason is Reason.INVALID_PRODUCT
    assert _emit(world, producer, ["S" * 13], GTIN).reason is Reason.NOT_FOR_GROUP
    assert _register_product(world, producer, "water", "02900002317701").reason is Reason.INVALID_PRODUCT
    ship = world.doc(producer, DocType.SHIP, receiver=retailer.participant_id, codes=live)
    world.apply_ok(ship)
    world.apply_ok(world.doc(retailer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    world.apply_ok(world.doc(retailer, DocType.RETIRE, reason="retail_sale", codes=live[:1]))
    # Set again, it is active again.
    assert _set(world, WATER, nonce=4).applied
    assert _emit(world, producer, ["S" * 13], GTIN).applied


def test_group_proposals_are_canonical_and_checked() -> None:
    """A group proposal round-trips through its bytes (format 3); other proposals keep
    format 2's nine fields; a malformed group or a group on another action does not decode."""
    proposal = make_proposal(CHAIN_ID, Action.SET_PRODUCT_GROUP, "RU", 1, 2, group=KVASS)
    assert decode_proposal(proposal.canonical_bytes()) == proposal
    assert proposal.to_json()["product_group"]["name"] == "kvass"
    retire = make_proposal(CHAIN_ID, Action.RETIRE_PRODUCT_GROUP, "RU", 1, 2, group_name="kvass")
    assert decode_proposal(retire.canonical_bytes()) == retire
    params = make_proposal(CHAIN_ID, Action.SET_PARAMS, "RU", 1, 2, params={"block_documents_max": 5})
    from ledger import unpack

    assert len(unpack(params.canonical_bytes())) == 9 and unpack(params.canonical_bytes())[0] == 2
    with pytest.raises(DecodeError):
        make_proposal(CHAIN_ID, Action.SET_PRODUCT_GROUP, "RU", 1, 2)
    with pytest.raises(DecodeError):
        make_proposal(CHAIN_ID, Action.SET_PARAMS, "RU", 1, 2, params={"block_documents_max": 5}, group=KVASS)
    with pytest.raises(DecodeError):
        make_proposal(CHAIN_ID, Action.REMOVE_NODE, "RU", 1, 2, group_name="kvass")
    with pytest.raises(DecodeError):  # a withdrawal reason needing a document that the group does not use
        dataclasses.replace(KVASS, reasons_needing_document=("lost",))
    value = unpack(proposal.canonical_bytes())
    from ledger import pack

    for bad in ([*value[:9], ["kvass"]], [*value[:9], [*KVASS.to_list()[:2], [], [], [], []]]):
        with pytest.raises(DecodeError):
            decode_proposal(pack(bad))
    with pytest.raises(DecodeError):  # format 2 with a group
        decode_proposal(pack([2, *value[1:]]))


def test_a_genesis_from_before_the_field_keeps_its_hash_and_its_rule() -> None:
    """A group without reasons_needing_document encodes as before (six fields) and needs a
    supporting document for every reason but the sales, as the ledger did."""
    legacy = dataclasses.replace(WATER, reasons_needing_document=None)
    assert len(legacy.to_list()) == 6 and "reasons_needing_document" not in legacy.to_json()
    assert not legacy.needs_document("retail_sale") and not legacy.needs_document("remote_sale")
    assert legacy.needs_document("donation")
    assert ProductGroup.from_list(legacy.to_list()) == legacy
    for group in GROUPS:  # the testnet's table names the same rule explicitly
        assert all(group.needs_document(r) == dataclasses.replace(group, reasons_needing_document=None)
                   .needs_document(r) for r in group.withdrawal_reasons)

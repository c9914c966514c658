"""The lifecycle of real goods (issue 13): apply, write_off, remark, reaggregate, accept per
child, withdrawal reasons with supporting documents, business dates and commercial details.

The table below is the document-type x role x status table for these documents, on a chain
with the product catalogue; the tests after it check what each applied document leaves."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import (
    Action,
    DecodeError,
    DocType,
    KeyPair,
    LedgerStore,
    Reason,
    SignedDocument,
    decode_body,
    decode_signed,
    make_document,
    make_proposal,
    pack,
    unpack,
    withheld_details,
)
from ledger._access import document_json_for
from ledger._proofs import provenance, verify_provenance
from testnet import product_groups

from .test_chain import attest_all
from .world import CHAIN_ID, GTIN, World, make_genesis, seeded_key

GROUPS = product_groups()
DAIRY_GTIN = "04609999000341"  # shared/data/codes/layouts.tsv, RU dairy
TOBACCO_GTIN = "04609999000020"  # ... RU tobacco consumer pack
SSCC = "00157035381410375177"
SSCC_2 = "00046800294609000015"
# A box of two units on a pallet with one more unit, in transit to the wholesaler: per-child
# acceptance at any depth (a unit in a box on a pallet).
NEST_PALLET = "00046800294609000039"
NEST_BOX = "00046800294609000046"
# A supporting document (type, number, date) dated before any block time of the world.
ACT = [["doc_date", 1_790_000_000_000], ["doc_number", "A-17"], ["doc_type", "act"]]
FUTURE = [["doc_date", 1_999_999_999_999]]


def _reg(state: str) -> KeyPair:
    return seeded_key(f"regulator-{state}")


def catalogued(path: Path) -> World:
    return World(path, make_genesis(groups=GROUPS))


Keys = dict[str, KeyPair]
Codes = dict[str, Any]


def _emit(world: World, owner: KeyPair, gtin: str, serials: list[str]) -> list[str]:
    world.apply_ok(world.doc(_reg("RU"), DocType.EMIT, owner=owner.participant_id, gtin=gtin, serials=serials))
    return ["01" + gtin + "21" + s for s in serials]


def _setup(world: World) -> tuple[Keys, Codes]:
    """A producer with codes in every status, a pallet, and a pallet in transit to a wholesaler."""
    k = {
        "producer": world.register("RU", ["producer"], "Producer"),
        "other": world.register("RU", ["producer"], "Other producer"),
        "wholesaler": world.register("RU", ["wholesaler"], "Wholesaler"),
        "retailer": world.register("RU", ["retailer"], "Retailer"),
    }
    p = k["producer"]
    c: Codes = {}
    c["emitted"] = world.emit("RU", p, 4)
    c["applied"] = world.emit("RU", p, 2)
    world.apply_ok(world.doc(p, DocType.APPLY, codes=c["applied"]))
    c["in"] = world.introduced("RU", p, 6)
    world.apply_ok(world.doc(p, DocType.AGGREGATE, sscc=SSCC, codes=c["in"][:3]))
    c["sent"] = world.introduced("RU", p, 4)
    world.apply_ok(world.doc(p, DocType.AGGREGATE, sscc=SSCC_2, codes=c["sent"][:3]))
    ship = world.doc(p, DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=[SSCC_2, c["sent"][3]])
    world.apply_ok(ship)
    c["shipment"] = ship.id
    c["foreign"] = world.emit("RU", k["other"], 1)
    world.register_product("RU", p, DAIRY_GTIN, "dairy", "0403")
    c["dairy"] = _emit(world, p, DAIRY_GTIN, ["5aaaaa", "5bbbbb", "5ccccc"])
    world.apply_ok(world.doc(p, DocType.APPLY, codes=c["dairy"][1:2], attributes=[["17", "270630"]]))
    world.apply_ok(world.doc(p, DocType.APPLY, codes=c["dairy"][2:3]))
    world.register_product("RU", p, TOBACCO_GTIN, "tobacco", "2402209000")
    c["tobacco"] = _emit(world, p, TOBACCO_GTIN, ["AAAAAAA", "BBBBBBB"])
    world.apply_ok(world.doc(p, DocType.INTRODUCE, codes=c["tobacco"][:1], attributes=[["8005", "023000"]]))
    c["nest"] = world.introduced("RU", p, 3)
    world.apply_ok(world.doc(p, DocType.AGGREGATE, sscc=NEST_BOX, codes=c["nest"][:2]))
    world.apply_ok(world.doc(p, DocType.AGGREGATE, sscc=NEST_PALLET, codes=[NEST_BOX, c["nest"][2]]))
    nested = world.doc(p, DocType.SHIP, receiver=k["wholesaler"].participant_id, codes=[NEST_PALLET])
    world.apply_ok(nested)
    c["nested_shipment"] = nested.id
    return k, c


@dataclass
class Case:
    name: str
    build: Callable[[World, Keys, Codes], SignedDocument]
    reason: Reason


def by(who: str, kind: DocType, **fields: Callable[[Codes], Any] | Any) -> Callable[..., SignedDocument]:
    """A document signed by `who`; callable field values are read from the codes."""
    def build(w: World, k: Keys, c: Codes) -> SignedDocument:
        values = {name: v(c) if callable(v) else v for name, v in fields.items()}
        return w.doc(k[who], kind, **values)
    return build


def _group_doc(world: World, signers: tuple[str, ...], by: KeyPair | None = None,
               retire: str = "") -> SignedDocument:
    """A governance document setting dairy without its required expiry, or retiring a group."""
    dairy = next(g for g in GROUPS if g.name == "dairy")
    proposal = make_proposal(
        CHAIN_ID, Action.RETIRE_PRODUCT_GROUP if retire else Action.SET_PRODUCT_GROUP, "RU", 1,
        world.time_ms + 60_000, group=None if retire else dataclasses.replace(dairy, required=()),
        group_name=retire,
    )
    signatures = [proposal.sign(_reg(s)).to_list() for s in signers]
    return world.doc(by or _reg("KZ"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(), signatures=signatures)


P, W, R = "producer", "wholesaler", "retailer"
A = Reason.APPLIED

CASES = [
    # apply: the print report, by the producer the codes were emitted to, of emitted codes.
    Case("apply emitted", by(P, DocType.APPLY, codes=lambda c: c["emitted"][:2]), A),
    Case("apply dairy with expiry", by(P, DocType.APPLY, codes=lambda c: c["dairy"][:1],
                                       attributes=[["17", "270630"]]), A),
    Case("apply dairy without expiry (it may come at introduce)",
         by(P, DocType.APPLY, codes=lambda c: c["dairy"][:1]), A),
    Case("apply dairy with a price", by(P, DocType.APPLY, codes=lambda c: c["dairy"][:1],
                                        attributes=[["17", "270630"], ["8005", "010000"]]), Reason.BAD_ATTRIBUTE),
    Case("apply by a retailer", by(R, DocType.APPLY, codes=lambda c: c["emitted"][:1]), Reason.FORBIDDEN_ROLE),
    Case("apply another's codes", by("other", DocType.APPLY, codes=lambda c: c["emitted"][:1]), Reason.NOT_OWNER),
    Case("apply applied", by(P, DocType.APPLY, codes=lambda c: c["applied"][:1]), Reason.WRONG_STATUS),
    Case("apply introduced", by(P, DocType.APPLY, codes=lambda c: c["in"][3:4]), Reason.WRONG_STATUS),
    Case("apply dated after the block", by(P, DocType.APPLY, codes=lambda c: c["emitted"][:1], details=FUTURE),
         Reason.FUTURE_DATE),
    Case("apply with a price detail", by(P, DocType.APPLY, codes=lambda c: c["emitted"][:1],
                                         details=[["price", 100]]), Reason.BAD_DETAIL),
    Case("apply dated before the block", by(P, DocType.APPLY, codes=lambda c: c["emitted"][:1], details=ACT), A),
    # introduce takes applied codes; the attributes printed at apply count.
    Case("introduce applied", by(P, DocType.INTRODUCE, codes=lambda c: c["applied"]), A),
    Case("introduce applied dairy printed with expiry", by(P, DocType.INTRODUCE, codes=lambda c: c["dairy"][1:2]), A),
    Case("introduce applied dairy printed without expiry",
         by(P, DocType.INTRODUCE, codes=lambda c: c["dairy"][2:3]), Reason.MISSING_ATTRIBUTE),
    Case("introduce applied dairy, expiry given now",
         by(P, DocType.INTRODUCE, codes=lambda c: c["dairy"][2:3], attributes=[["17", "270630"]]), A),
    # write_off: emitted or applied codes that never entered circulation.
    Case("write off emitted", by(P, DocType.WRITE_OFF, reason="spoiled", codes=lambda c: c["emitted"][:2]), A),
    Case("write off applied", by(P, DocType.WRITE_OFF, reason="lost", codes=lambda c: c["applied"], details=ACT), A),
    Case("write off introduced", by(P, DocType.WRITE_OFF, reason="lost", codes=lambda c: c["in"][3:4]),
         Reason.WRONG_STATUS),
    Case("write off by a retailer", by(R, DocType.WRITE_OFF, reason="lost", codes=lambda c: c["emitted"][:1]),
         Reason.FORBIDDEN_ROLE),
    Case("write off another's", by("other", DocType.WRITE_OFF, reason="lost", codes=lambda c: c["emitted"][:1]),
         Reason.NOT_OWNER),
    Case("write off a code twice", by(P, DocType.WRITE_OFF, reason="lost",
                                      codes=lambda c: [c["emitted"][0], c["emitted"][0]]), Reason.REPEATED_CODE),
    # remark: a new emitted or applied code replaces a damaged one in circulation.
    Case("remark with an emitted code", by(P, DocType.REMARK, old=lambda c: c["in"][3], new=lambda c: c["emitted"][0]), A),
    Case("remark with an applied code", by(P, DocType.REMARK, old=lambda c: c["in"][4], new=lambda c: c["applied"][0]), A),
    Case("remark with an introduced code", by(P, DocType.REMARK, old=lambda c: c["in"][3], new=lambda c: c["in"][4]),
         Reason.WRONG_STATUS),
    Case("remark an emitted code", by(P, DocType.REMARK, old=lambda c: c["emitted"][1], new=lambda c: c["emitted"][0]),
         Reason.WRONG_STATUS),
    Case("remark a code in a pallet", by(P, DocType.REMARK, old=lambda c: c["in"][0], new=lambda c: c["emitted"][0]),
         Reason.IN_AGGREGATE),
    Case("remark a code in transit", by(P, DocType.REMARK, old=lambda c: c["sent"][3], new=lambda c: c["emitted"][0]),
         Reason.IN_TRANSIT),
    Case("remark with another GTIN", by(P, DocType.REMARK, old=lambda c: c["in"][3], new=lambda c: c["dairy"][0]),
         Reason.INVALID_CODE),
    Case("remark with another's code", by(P, DocType.REMARK, old=lambda c: c["in"][3], new=lambda c: c["foreign"][0]),
         Reason.NOT_OWNER),
    Case("remark a code with itself", by(P, DocType.REMARK, old=lambda c: c["in"][3], new=lambda c: c["in"][3]),
         Reason.REPEATED_CODE),
    Case("remark by a wholesaler", by(W, DocType.REMARK, old=lambda c: c["in"][3], new=lambda c: c["emitted"][0]),
         Reason.NOT_OWNER),
    Case("remark cigarettes (the group does not)",
         by(P, DocType.REMARK, old=lambda c: c["tobacco"][0], new=lambda c: c["tobacco"][1]), Reason.NOT_FOR_GROUP),
    # reaggregate: add to or take out of an aggregate without unpacking it.
    Case("reaggregate add", by(P, DocType.REAGGREGATE, sscc=SSCC, add=lambda c: c["in"][3:5], remove=[]), A),
    Case("reaggregate remove", by(P, DocType.REAGGREGATE, sscc=SSCC, add=[], remove=lambda c: c["in"][:1]), A),
    Case("reaggregate add and remove", by(P, DocType.REAGGREGATE, sscc=SSCC, add=lambda c: c["in"][3:4],
                                          remove=lambda c: c["in"][:2]), A),
    Case("reaggregate remove all", by(P, DocType.REAGGREGATE, sscc=SSCC, add=[], remove=lambda c: c["in"][:3]),
         Reason.WRONG_STATUS),
    Case("reaggregate nothing", by(P, DocType.REAGGREGATE, sscc=SSCC, add=[], remove=[]), Reason.WRONG_STATUS),
    Case("reaggregate remove a stranger", by(P, DocType.REAGGREGATE, sscc=SSCC, add=[], remove=lambda c: c["in"][3:4]),
         Reason.NOT_IN_AGGREGATE),
    Case("reaggregate a unit", by(P, DocType.REAGGREGATE, sscc=lambda c: c["in"][3], add=lambda c: c["in"][4:5],
                                  remove=[]), Reason.WRONG_STATUS),
    Case("reaggregate another's pallet", by(W, DocType.REAGGREGATE, sscc=SSCC, add=[], remove=lambda c: c["in"][:1]),
         Reason.NOT_OWNER),
    Case("reaggregate a pallet in transit", by(P, DocType.REAGGREGATE, sscc=SSCC_2, add=lambda c: c["in"][3:4],
                                               remove=[]), Reason.IN_TRANSIT),
    Case("reaggregate add a code in transit", by(P, DocType.REAGGREGATE, sscc=SSCC, add=lambda c: c["sent"][3:4],
                                                 remove=[]), Reason.IN_TRANSIT),
    Case("reaggregate add an emitted code", by(P, DocType.REAGGREGATE, sscc=SSCC, add=lambda c: c["emitted"][:1],
                                               remove=[]), Reason.WRONG_STATUS),
    Case("reaggregate add and remove one code", by(P, DocType.REAGGREGATE, sscc=SSCC, add=lambda c: c["in"][:1],
                                                   remove=lambda c: c["in"][:1]), Reason.REPEATED_CODE),
    # accept per child: the receiver keeps some codes of a pallet; the rest go back.
    Case("accept a pallet and two of its codes", by(W, DocType.ACCEPT, shipment=lambda c: c["shipment"],
                                                    codes=lambda c: [SSCC_2, *c["sent"][:2]]), A),
    Case("accept a child without its pallet", by(W, DocType.ACCEPT, shipment=lambda c: c["shipment"],
                                                 codes=lambda c: c["sent"][:1]), Reason.NOT_IN_SHIPMENT),
    Case("accept a code from elsewhere", by(W, DocType.ACCEPT, shipment=lambda c: c["shipment"],
                                            codes=lambda c: [SSCC_2, c["in"][3]]), Reason.NOT_IN_SHIPMENT),
    Case("accept a code never emitted", by(W, DocType.ACCEPT, shipment=lambda c: c["shipment"],
                                           codes=[SSCC_2, "01" + GTIN + "21" + "NEVER"]), Reason.NOT_IN_SHIPMENT),
    Case("accept per child by the shipper", by(P, DocType.ACCEPT, shipment=lambda c: c["shipment"],
                                               codes=lambda c: [SSCC_2, *c["sent"][:1]]), Reason.NOT_OWNER),
    # accept per child at any depth: a unit in a box on a pallet.
    Case("accept a pallet, its box and one unit of the box",
         by(W, DocType.ACCEPT, shipment=lambda c: c["nested_shipment"],
            codes=lambda c: [NEST_PALLET, NEST_BOX, c["nest"][2], c["nest"][0]]), A),
    Case("accept a unit of a box without the box", by(W, DocType.ACCEPT, shipment=lambda c: c["nested_shipment"],
                                                      codes=lambda c: [NEST_PALLET, c["nest"][0]]),
         Reason.NOT_IN_SHIPMENT),
    Case("accept a box without its pallet", by(W, DocType.ACCEPT, shipment=lambda c: c["nested_shipment"],
                                               codes=[NEST_BOX]), Reason.NOT_IN_SHIPMENT),
    # registration: a business gives its state's tax id on a chain with the catalogue.
    Case("register a business with its INN", lambda w, k, c: w.doc(
        _reg("RU"), DocType.REGISTER_PARTICIPANT, public_key=seeded_key("t1").public_key, state="RU",
        roles=["retailer"], name="N", tax_id="7707000011"), A),
    Case("register a business without a tax id", lambda w, k, c: w.doc(
        _reg("RU"), DocType.REGISTER_PARTICIPANT, public_key=seeded_key("t2").public_key, state="RU",
        roles=["retailer"], name="N"), Reason.BAD_TAX_ID),
    Case("register a business with another state's shape", lambda w, k, c: w.doc(
        _reg("RU"), DocType.REGISTER_PARTICIPANT, public_key=seeded_key("t3").public_key, state="RU",
        roles=["retailer"], name="N", tax_id="123456789"), Reason.BAD_TAX_ID),
    Case("register an auditor without a tax id", lambda w, k, c: w.doc(
        _reg("RU"), DocType.REGISTER_PARTICIPANT, public_key=seeded_key("t4").public_key, state="RU",
        roles=["auditor"], name="N"), A),
    # governance of the group table: a quorum of regulators (4 of 5) sets or retires a group.
    Case("set a product group with a quorum", lambda w, k, c: _group_doc(w, ("AM", "BY", "KG", "RU")), A),
    Case("set a product group with three of five", lambda w, k, c: _group_doc(w, ("AM", "BY", "KG")),
         Reason.NO_QUORUM),
    Case("set a product group, submitted by a business",
         lambda w, k, c: _group_doc(w, ("AM", "BY", "KG", "RU"), by=k[P]), Reason.FORBIDDEN_ROLE),
    Case("retire a product group with a quorum",
         lambda w, k, c: _group_doc(w, ("AM", "BY", "KG", "RU"), retire="water"), A),
    Case("retire a product group the table lacks",
         lambda w, k, c: _group_doc(w, ("AM", "BY", "KG", "RU"), retire="kvass"), Reason.INVALID_PRODUCT),
    Case("accept dated after the block", by(W, DocType.ACCEPT, shipment=lambda c: c["shipment"], codes=[],
                                            details=[["transfer_date", 1_999_999_999_999]]), Reason.FUTURE_DATE),
    # withdrawal reasons, with the supporting document where the reason needs one.
    Case("retire donated with a deed", by(P, DocType.RETIRE, reason="donation", codes=lambda c: c["in"][3:4],
                                          details=ACT), A),
    Case("retire donated without a deed", by(P, DocType.RETIRE, reason="donation", codes=lambda c: c["in"][3:4]),
         Reason.MISSING_DOCUMENT),
    Case("retire confiscated with the act", by(P, DocType.RETIRE, reason="confiscation",
                                               codes=lambda c: c["in"][3:4], details=ACT), A),
    Case("retire for own use, number missing", by(P, DocType.RETIRE, reason="own_use", codes=lambda c: c["in"][3:4],
                                                  details=[["doc_date", 1], ["doc_type", "order"]]),
         Reason.MISSING_DOCUMENT),
    Case("retire cigarettes donated (the group does not)",
         by(P, DocType.RETIRE, reason="donation", codes=lambda c: c["tobacco"][:1], details=ACT), Reason.NOT_FOR_GROUP),
    Case("retire remote sale needs no act", by(P, DocType.RETIRE, reason="remote_sale", codes=lambda c: c["in"][3:4]),
         A),
    # business details on a shipment: commercial fields, dates bounded by the block time.
    Case("ship with number, price and VAT",
         by(P, DocType.SHIP, receiver=lambda c: c["wholesaler"], codes=lambda c: c["in"][3:4],
            details=[["doc_date", 1_790_000_000_000], ["doc_number", "UPD-1"], ["price", 12_000], ["vat", 2_000]]),
         A),
    Case("ship dated after the block", by(P, DocType.SHIP, receiver=lambda c: c["wholesaler"],
                                          codes=lambda c: c["in"][3:4], details=FUTURE), Reason.FUTURE_DATE),
    Case("aggregate with a price", by(P, DocType.AGGREGATE, sscc="00046800294609000022", codes=lambda c: c["in"][3:4],
                                      details=[["price", 1]]), Reason.BAD_DETAIL),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_lifecycle_document_table(tmp_path: Path, case: Case) -> None:
    """Each new document by each role on codes in each status: applied, or refused with
    its reason and no change."""
    world = catalogued(tmp_path / "db")
    keys, codes = _setup(world)
    codes["wholesaler"] = keys[W].participant_id
    touched = [k for v in codes.values() if isinstance(v, list) for k in v] + [SSCC, SSCC_2, NEST_PALLET, NEST_BOX]
    before = {k: world.store.code(k) for k in touched}
    (result,) = world.apply(case.build(world, keys, codes))
    assert result.reason is case.reason, result
    assert result.message or result.applied
    if not result.applied:
        assert {k: world.store.code(k) for k in touched} == before, "a rejected document changed state"


def test_apply_then_introduce(tmp_path: Path) -> None:
    """A print report makes codes applied, with the attributes printed; introduce takes them."""
    world = catalogued(tmp_path / "db")
    keys, c = _setup(world)
    printed = world.store.code(c["dairy"][1])
    assert printed is not None and printed["status"] == "applied" and printed["attributes"]
    assert c["applied"][0] in world.store.holdings(keys[P].participant_id)
    world.apply_ok(world.doc(keys[P], DocType.INTRODUCE, codes=c["dairy"][1:2]))
    view = world.store.code(c["dairy"][1])
    assert view is not None and view["status"] == "introduced" and view["attributes"] == printed["attributes"]
    assert [e.type for e in world.store.history(c["dairy"][1])] == ["emit", "apply", "introduce"]


def test_write_off_ends_the_code(tmp_path: Path) -> None:
    world = catalogued(tmp_path / "db")
    keys, c = _setup(world)
    world.apply_ok(world.doc(keys[P], DocType.WRITE_OFF, reason="spoiled", codes=c["applied"]))
    view = world.store.code(c["applied"][0])
    assert view is not None and (view["status"], view["retire_reason"]) == ("written_off", "spoiled")
    assert c["applied"][0] not in world.store.holdings(keys[P].participant_id)
    (again,) = world.apply(world.doc(keys[P], DocType.INTRODUCE, codes=c["applied"][:1]))
    assert again.reason is Reason.WRONG_STATUS


def test_remark_links_both_codes_in_history_and_bundles(tmp_path: Path) -> None:
    """The old code is written off as remarked; each names the other; the new code's
    provenance bundle carries the old code's story and verifies offline."""
    world = catalogued(tmp_path / "db")
    keys, c = _setup(world)
    old, new = c["in"][3], c["emitted"][0]
    remark = world.doc(keys[P], DocType.REMARK, old=old, new=new)
    world.apply_ok(remark)
    old_view, new_view = world.store.code(old), world.store.code(new)
    assert old_view is not None and new_view is not None
    assert (old_view["status"], old_view["retire_reason"], old_view["replaced_by"]) == ("written_off", "remarked", new)
    assert (new_view["status"], new_view["replaces"]) == ("introduced", old)
    assert [e.type for e in world.store.history(old)][-1] == "remark"
    assert [e.type for e in world.store.history(new)] == ["emit", "remark"]
    holdings = world.store.holdings(keys[P].participant_id)
    assert new in holdings and old not in holdings
    attest_all(world)
    bundle = provenance(world.store, new)
    assert bundle is not None
    events = verify_provenance(bundle, world.genesis)
    assert [e.type for e in events] == ["emit", "emit", "introduce", "remark"]
    assert remark.id in [e.document_id for e in events]
    old_bundle = provenance(world.store, old)
    assert old_bundle is not None and verify_provenance(old_bundle, world.genesis)[-1].type == "remark"
    # The new code moves like any other.
    ship = world.doc(keys[P], DocType.SHIP, receiver=keys[W].participant_id, codes=[new])
    world.apply_ok(ship)
    (refused,) = world.apply(world.doc(keys[P], DocType.SHIP, receiver=keys[W].participant_id, codes=[old]))
    assert refused.reason is Reason.WRONG_STATUS


def test_reaggregate_keeps_history_and_nesting(tmp_path: Path) -> None:
    """An added code travels with the pallet from then on; a removed one stays behind
    and its history stops following the pallet."""
    world = catalogued(tmp_path / "db")
    keys, c = _setup(world)
    added, removed = c["in"][3], c["in"][0]
    world.apply_ok(world.doc(keys[P], DocType.REAGGREGATE, sscc=SSCC, add=[added], remove=[removed]))
    pallet = world.store.code(SSCC)
    assert pallet is not None and pallet["children"] == 3
    assert world.store.code(added)["aggregate"] == SSCC  # type: ignore[index]
    assert world.store.code(removed)["aggregate"] is None  # type: ignore[index]
    holdings = world.store.holdings(keys[P].participant_id)
    assert removed in holdings and added not in holdings
    ship = world.doc(keys[P], DocType.SHIP, receiver=keys[W].participant_id, codes=[SSCC])
    world.apply_ok(ship)
    assert world.store.code(added)["in_transit"] == ship.id.hex()  # type: ignore[index]
    assert world.store.code(removed)["in_transit"] is None  # type: ignore[index]
    assert [e.type for e in world.store.history(added)][-2:] == ["aggregate", "ship"]
    assert [e.type for e in world.store.history(removed)][-1] == "disaggregate"
    assert added in world.store.packed_codes(SSCC)
    world.apply_ok(world.doc(keys[W], DocType.ACCEPT, shipment=ship.id, codes=[]))
    assert world.store.code(added)["owner"] == keys[W].participant_id  # type: ignore[index]
    attest_all(world)
    bundle = provenance(world.store, added)
    assert bundle is not None and [e.type for e in verify_provenance(bundle, world.genesis)][-3:] == [
        "reaggregate", "ship", "accept"]
    world.apply_ok(world.doc(keys[W], DocType.DISAGGREGATE, sscc=SSCC))  # the buyer unpacks all three
    assert world.store.code(added)["aggregate"] is None  # type: ignore[index]


def test_accept_per_child_returns_the_refused_codes(tmp_path: Path) -> None:
    world = catalogued(tmp_path / "db")
    keys, c = _setup(world)
    kept, refused = c["sent"][:2], c["sent"][2]
    world.apply_ok(world.doc(keys[W], DocType.ACCEPT, shipment=c["shipment"], codes=[SSCC_2, *kept]))
    shipment = world.store.shipment(c["shipment"])
    assert shipment is not None and shipment["status"] == "partially_accepted"
    pallet = world.store.code(SSCC_2)
    assert pallet is not None and (pallet["owner"], pallet["children"]) == (keys[W].participant_id, 2)
    back = world.store.code(refused)
    assert back is not None and (back["owner"], back["aggregate"], back["in_transit"]) == (
        keys[P].participant_id, None, None)
    assert world.store.code(kept[0])["owner"] == keys[W].participant_id  # type: ignore[index]
    loose = world.store.code(c["sent"][3])  # the loose unit was not listed: it goes back
    assert loose is not None and loose["owner"] == keys[P].participant_id
    assert refused in world.store.holdings(keys[P].participant_id)
    assert refused not in world.store.holdings(keys[W].participant_id)
    # Who held the refused code: the producer only, though the wholesaler received it.
    holders = [p.participant for p in world.store.code_parties(refused) if p.holder]
    assert holders == [keys[P].participant_id]
    kept_holders = [p.participant for p in world.store.code_parties(kept[0]) if p.holder]
    assert kept_holders == [keys[P].participant_id, keys[W].participant_id]


def test_a_chain_without_groups_keeps_accept_and_retire_as_they_were(tmp_path: Path) -> None:
    """Without the group table, accept refuses a child (not_in_shipment) and retire needs no
    supporting document, as before issue 13: old blocks replay to the same results."""
    world = World(tmp_path / "db")
    producer = world.register("RU", ["producer"], "P")
    buyer = world.register("RU", ["wholesaler"], "W")
    codes = world.introduced("RU", producer, 3)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes[:2]))
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[SSCC])
    world.apply_ok(ship)
    (result,) = world.apply(world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[SSCC, codes[0]]))
    assert result.reason is Reason.NOT_IN_SHIPMENT
    world.apply_ok(world.doc(producer, DocType.RETIRE, reason="destroyed", codes=codes[2:]))


def test_old_documents_keep_their_bytes() -> None:
    """Without details a ship, an accept and a retire have the payload of before (same bytes,
    same id); an explicitly empty details list does not decode; details are sorted."""
    key = seeded_key("p")
    pid = key.participant_id
    codes = ["01" + GTIN + "21" + "ABC"]
    ship = make_document(CHAIN_ID, DocType.SHIP, pid, 1, 2, receiver=pid, codes=codes)
    assert unpack(ship.body_bytes())[-1] == [pid, codes]
    retire = make_document(CHAIN_ID, DocType.RETIRE, pid, 1, 2, reason="destroyed", codes=codes)
    assert unpack(retire.body_bytes())[-1] == ["destroyed", codes]
    intro = make_document(CHAIN_ID, DocType.INTRODUCE, pid, 1, 2, codes=codes, details=ACT)
    assert unpack(intro.body_bytes())[-1] == [codes, [], ACT]  # attributes kept in place, empty
    for doc in (ship, retire, intro):
        assert decode_signed(doc.sign(key).wire()).document == doc
    with pytest.raises(DecodeError):
        decode_body(pack([1, CHAIN_ID, "ship", pid, 1, 2, [pid, codes, []]]))
    with pytest.raises(DecodeError):
        make_document(CHAIN_ID, DocType.SHIP, pid, 1, 2, receiver=pid, codes=codes,
                      details=[["price", 1], ["doc_date", 1]])
    with pytest.raises(DecodeError):
        make_document(CHAIN_ID, DocType.SHIP, pid, 1, 2, receiver=pid, codes=codes, details=[["price", -1]])
    with pytest.raises(DecodeError):
        make_document(CHAIN_ID, DocType.SHIP, pid, 1, 2, receiver=pid, codes=codes, details=[["colour", "red"]])
    with pytest.raises(DecodeError):  # "remarked" is the ledger's own, given by remark only
        make_document(CHAIN_ID, DocType.WRITE_OFF, pid, 1, 2, reason="remarked", codes=codes)


def test_commercial_details_are_for_the_parties_only() -> None:
    """The JSON a non-party reads of a shipment leaves out its number, price and VAT and
    says so; the shipper and the receiver read all of it."""
    shipper, receiver, other = seeded_key("s"), seeded_key("r"), seeded_key("o")
    details = [["doc_date", 5], ["doc_number", "UPD-1"], ["price", 12_000], ["vat", 2_000]]
    doc = make_document(CHAIN_ID, DocType.SHIP, shipper.participant_id, 1, 2, receiver=receiver.participant_id,
                        codes=["01" + GTIN + "21" + "ABC"], details=details).sign(shipper)
    assert withheld_details(doc, shipper.participant_id) == withheld_details(doc, receiver.participant_id) == []
    assert withheld_details(doc, other.participant_id) == ["doc_number", "price", "vat"]
    seen = document_json_for(doc, other.participant_id)
    assert seen["details"] == [["doc_date", 5]] and seen["withheld"] == ["doc_number", "price", "vat"]
    assert document_json_for(doc, receiver.participant_id)["details"] == details


def test_a_whole_lifecycle_replays_to_the_same_hash_at_every_height(tmp_path: Path) -> None:
    """Every new document applied at least once, then every block replayed from genesis
    into a fresh store: the same header (and state hash) at every height."""
    world = catalogued(tmp_path / "a")
    keys, c = _setup(world)
    p, w = keys[P], keys[W]
    world.apply_ok(world.doc(w, DocType.ACCEPT, shipment=c["shipment"], codes=[SSCC_2, *c["sent"][:2]]))
    world.apply_ok(world.doc(p, DocType.REAGGREGATE, sscc=SSCC, add=c["in"][3:4], remove=c["in"][:1]))
    world.apply_ok(world.doc(p, DocType.REMARK, old=c["in"][4], new=c["emitted"][0]))
    world.apply_ok(world.doc(p, DocType.WRITE_OFF, reason="spoiled", codes=c["emitted"][1:2]))
    world.apply_ok(world.doc(p, DocType.RETIRE, reason="donation", codes=c["in"][5:6], details=ACT))
    world.apply_ok(world.doc(p, DocType.INTRODUCE, codes=c["applied"]))
    replay = LedgerStore(tmp_path / "b", world.genesis, sync=False)
    for height in range(1, world.store.head.height + 1):
        original = world.store.block(height)
        assert original is not None
        again = replay.apply_block(original.documents, original.header.time_ms, original.header.proposer)
        assert again.header == original.header, f"replay diverged at height {height}"
    replay.close()


def test_the_group_table_decides_which_new_documents_a_group_uses(tmp_path: Path) -> None:
    """With a table whose water group lists none of the new types, each is not_for_group."""
    new_types = {"apply", "write_off", "remark", "reaggregate"}
    groups = tuple(
        dataclasses.replace(g, documents=tuple(d for d in g.documents if d not in new_types))
        if g.name == "water" else g
        for g in GROUPS
    )
    world = World(tmp_path / "db", make_genesis(groups=groups))
    producer = world.register("RU", ["producer"], "P")
    emitted = world.emit("RU", producer, 2)
    live = world.introduced("RU", producer, 3)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=live[:1]))
    for doc in (
        world.doc(producer, DocType.APPLY, codes=emitted[:1]),
        world.doc(producer, DocType.WRITE_OFF, reason="lost", codes=emitted[:1]),
        world.doc(producer, DocType.REMARK, old=live[1], new=emitted[0]),
        world.doc(producer, DocType.REAGGREGATE, sscc=SSCC, add=live[2:3], remove=[]),
    ):
        (result,) = world.apply(doc)
        assert result.reason is Reason.NOT_FOR_GROUP, (doc.document.type, result)


def test_an_aggregate_holds_at_most_what_one_document_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reaggregation cannot grow an aggregate past CODES_PER_DOCUMENT_MAX (lowered here to 3):
    each reaggregate rewrites the list of children, so its size bounds the cost."""
    from ledger import _state

    monkeypatch.setattr(_state, "CODES_PER_DOCUMENT_MAX", 3)
    world = World(tmp_path / "db")
    producer = world.register("RU", ["producer"], "P")
    codes = world.introduced("RU", producer, 4)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes[:2]))
    world.apply_ok(world.doc(producer, DocType.REAGGREGATE, sscc=SSCC, add=codes[2:3], remove=[]))
    (full,) = world.apply(world.doc(producer, DocType.REAGGREGATE, sscc=SSCC, add=codes[3:], remove=[]))
    assert full.reason is Reason.AGGREGATE_FULL


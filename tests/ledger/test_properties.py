"""Property tests: random document sequences keep the ledger's invariants and replay exactly."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Action, DocType, KeyPair, Layout, LedgerStore, SignedDocument, make_proposal
from ledger._encoding import unpack_trusted
from ledger._records import P_CHILDREN, P_CODE, P_HOLDING, P_SHIPMENT, PENDING, CodeRecord, ShipmentRecord
from ledger._store import prefix_end
from testnet import product_groups

from .world import CHAIN_ID, World, make_genesis

# A third SSCC lets pallets hold boxes that hold units (per-child acceptance at any depth).
SSCCS = ["00157035381410375177", "00046800294609000015", "00046800294609000022"]
ACTIONS = ("ship", "accept", "reject", "cancel", "aggregate", "disaggregate", "retire", "return", "suspend",
           "recall", "release_recall")
# The lifecycle of real goods (issue 13): print reports, write-offs, re-marking,
# reaggregation, per-child acceptance and withdrawals with their supporting documents.
LIFECYCLE_ACTIONS = ("apply", "write_off", "remark", "reaggregate", "accept_children", "withdraw", "govern_group")
ACT = [["doc_date", 1_790_000_000_000], ["doc_number", "A-1"], ["doc_type", "act"]]


def _random_block(
    world: World, draw: st.DrawFn, people: list[KeyPair], codes: list[str], shipments: list[SignedDocument],
    recalls: list[SignedDocument],
) -> list[SignedDocument]:
    """A block of random documents, mostly from whoever owns the goods they name, so
    that most of them apply and the rest are refused for a variety of reasons."""
    by_id = {p.participant_id: p for p in people}
    block = []
    for _ in range(draw(st.integers(1, 4))):
        items = draw(st.lists(st.sampled_from(codes + SSCCS), min_size=1, max_size=3, unique=True))
        view = world.store.code(items[0])
        owner = by_id.get(view["owner"]) if view else None
        actor = owner if owner is not None and draw(st.integers(0, 9)) < 8 else draw(st.sampled_from(people))
        other = draw(st.sampled_from([p for p in people if p is not actor]))
        action = draw(st.sampled_from(ACTIONS if draw(st.booleans()) else LIFECYCLE_ACTIONS))
        if action in LIFECYCLE_ACTIONS:
            doc = _lifecycle_doc(world, draw, action, actor, items, codes, shipments, by_id)
        elif action == "ship":
            doc = world.doc(actor, DocType.SHIP, receiver=other.participant_id, codes=items)
            shipments.append(doc)
        elif action in ("accept", "reject", "cancel") and shipments:
            target = draw(st.sampled_from(shipments))
            receiver = by_id[target.document.field("receiver")]
            shipper = by_id[target.document.signer]
            if action == "accept":
                doc = world.doc(receiver, DocType.ACCEPT, shipment=target.id, codes=[])
            elif action == "reject":
                doc = world.doc(receiver, DocType.REJECT, shipment=target.id)
            else:
                doc = world.doc(shipper, DocType.CANCEL_SHIPMENT, shipment=target.id)
        elif action == "aggregate":
            doc = world.doc(actor, DocType.AGGREGATE, sscc=draw(st.sampled_from(SSCCS)), codes=items)
        elif action == "disaggregate":
            doc = world.doc(actor, DocType.DISAGGREGATE, sscc=draw(st.sampled_from(SSCCS)))
        elif action == "retire":
            reason = draw(st.sampled_from(["retail_sale", "destroyed"]))
            doc = world.doc(actor, DocType.RETIRE, reason=reason, codes=items)
        elif action == "recall":  # listed units, by the producer (refused on a chain without the catalogue)
            units = [k for k in items if k.startswith("01")] or codes[:1]
            doc = world.doc(people[0], DocType.RECALL, gtin=units[0][2:16], batch="", expiry_from="",
                            expiry_to="", codes=units, reason="test")
            recalls.append(doc)
        elif action == "release_recall" and recalls:
            target_recall = draw(st.sampled_from(recalls))
            doc = world.doc(people[0], DocType.RELEASE_RECALL, recall=target_recall.id, note="")
        elif action == "return":
            doc = world.doc(actor, DocType.RETURN, codes=items)
        else:
            kind = DocType.SUSPEND if draw(st.booleans()) else DocType.RELEASE
            fields = {"note": "x"} if kind is DocType.SUSPEND else {}
            doc = world.doc(world.regulator("RU"), kind, codes=items, **fields)
        block.append(doc)
    return block


def _children(world: World, sscc: str) -> list[str]:
    raw = world.store.db.get(P_CHILDREN + sscc.encode())
    return list(unpack_trusted(raw)) if raw is not None else []


def _lifecycle_doc(
    world: World, draw: st.DrawFn, action: str, actor: KeyPair, items: list[str], codes: list[str],
    shipments: list[SignedDocument], by_id: dict[str, KeyPair],
) -> SignedDocument:
    if action == "apply":
        return world.doc(actor, DocType.APPLY, codes=items)
    if action == "write_off":
        return world.doc(actor, DocType.WRITE_OFF, reason=draw(st.sampled_from(("spoiled", "lost"))), codes=items)
    if action == "remark":
        old, new = draw(st.sampled_from(codes)), draw(st.sampled_from(codes))
        return world.doc(actor, DocType.REMARK, old=old, new=new)
    if action == "reaggregate":
        sscc = draw(st.sampled_from(SSCCS))
        inside = _children(world, sscc)
        add = draw(st.lists(st.sampled_from(codes[3:6] if draw(st.booleans()) else codes), max_size=2, unique=True))
        remove = draw(st.lists(st.sampled_from(inside or codes), max_size=max(1, len(inside) - 1), unique=True))
        return world.doc(actor, DocType.REAGGREGATE, sscc=sscc, add=add, remove=remove)
    if action == "govern_group":
        return _group_certificate(world, draw)
    if action == "accept_children" and shipments:
        # Mostly a pallet of the shipment with some of its children, sometimes anything.
        pending = [d for d in shipments if (world.store.shipment(d.id) or {}).get("status") == "pending"]
        target = draw(st.sampled_from(pending or shipments))
        receiver = by_id[target.document.field("receiver")]
        pallets = [c for c in target.document.field("codes") if c in SSCCS]
        if pallets and draw(st.integers(0, 4)) > 0:
            chosen = _nested_choice(world, draw, pallets[0])
        else:
            chosen = draw(st.lists(st.sampled_from(codes + SSCCS), min_size=1, max_size=4, unique=True))
        return world.doc(receiver, DocType.ACCEPT, shipment=target.id, codes=chosen)
    reason = draw(st.sampled_from(("donation", "destroyed", "confiscation", "own_use")))
    details = ACT if draw(st.booleans()) else []
    return world.doc(actor, DocType.RETIRE, reason=reason, codes=items, details=details)


def _group_certificate(world: World, draw: st.DrawFn) -> SignedDocument:
    """A governance document setting water's rules (as genesis has them, without a
    supporting document for donations, or printing serials of 7 too) or retiring it,
    signed by three regulators (no quorum) or four; the nonce is drawn from a few, so some
    are replays. On a chain without the catalogue it adds the group."""
    water = next(g for g in product_groups() if g.name == "water")
    variant = draw(st.sampled_from(("genesis", "no_deed", "short_serials", "retire")))
    kind = Action.RETIRE_PRODUCT_GROUP if variant == "retire" else Action.SET_PRODUCT_GROUP
    group = {
        "genesis": water,
        "no_deed": dataclasses.replace(water, reasons_needing_document=tuple(
            r for r in water.reasons_needing_document or () if r != "donation")),
        "short_serials": dataclasses.replace(water, layouts=(*water.layouts, Layout("gs1", 7, ("93",)))),
        "retire": None,
    }[variant]
    proposal = make_proposal(CHAIN_ID, kind, "RU", draw(st.integers(1, 3)), world.time_ms + 600_000, group=group,
                             group_name="water" if group is None else "")
    signers = draw(st.sampled_from((("AM", "BY", "KG"), ("AM", "BY", "KG", "RU"))))
    signatures = [proposal.sign(world.regulator(s)).to_list() for s in signers]
    return world.doc(world.regulator("KZ"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                     signatures=signatures)


def _nested_choice(world: World, draw: st.DrawFn, sscc: str, depth: int = 0) -> list[str]:
    """An aggregate, some of its children and, under each child that is an aggregate, some
    of its children in turn: what a buyer lists to keep part of a pallet at any depth."""
    inside = _children(world, sscc)
    if not inside or depth > 4:
        return [sscc]
    out = [sscc]
    for child in draw(st.lists(st.sampled_from(inside), max_size=3, unique=True)):
        out += _nested_choice(world, draw, child, depth + 1)
    return out


def _check_invariants(store: LedgerStore) -> None:
    db = store.db
    codes = {k[1:].decode(): CodeRecord.unpack(v) for k, v in db.iterator(start=P_CODE, stop=prefix_end(P_CODE))}
    holdings = [k[1:].decode() for k in db.iterator(start=P_HOLDING, stop=prefix_end(P_HOLDING), include_value=False)]
    held_by: dict[str, list[str]] = {}
    for entry in holdings:
        owner, key = entry[:40], entry[40:]
        held_by.setdefault(key, []).append(owner)
    pending: dict[bytes, ShipmentRecord] = {}
    for k, v in db.iterator(start=P_SHIPMENT, stop=prefix_end(P_SHIPMENT)):
        record = ShipmentRecord.unpack(v)
        if record.status == PENDING:
            pending[k[1:]] = record
    in_pending = [item for s in pending.values() for item in s.items]
    children_of: dict[str, list[str]] = {}
    for k, v in db.iterator(start=P_CHILDREN, stop=prefix_end(P_CHILDREN)):
        for child in unpack_trusted(v):
            children_of.setdefault(child, []).append(k[1:].decode())
    # No code is in two open shipments at once: nothing is shipped twice.
    assert len(in_pending) == len(set(in_pending))
    for key, record in codes.items():
        owners = held_by.get(key, [])
        loose_and_live = not record.parent and record.status in ("emitted", "applied", "introduced", "imported")
        # Every loose live code has exactly one holder, and it is the owner of record.
        assert owners == ([record.owner] if loose_and_live else []), (key, owners, record)
        if record.shipment:
            assert record.shipment in pending and key in pending[record.shipment].items
        if record.parent:
            parent = codes[record.parent]
            assert parent.kind == 1 and parent.status == "introduced"
            # No code in two places: its aggregate lists it, and no other does.
            assert children_of.get(key) == [record.parent], (key, children_of.get(key))
        else:
            assert key not in children_of, (key, children_of[key])
    for sscc, record in codes.items():
        if record.kind == 1 and record.status == "introduced":
            assert record.count == sum(1 for parents in children_of.values() if sscc in parents)
            # An aggregate's level is one above its deepest child's, however codes left it.
            inside = [codes[k] for k, parents in children_of.items() if sscc in parents]
            assert record.level == 1 + max((c.level for c in inside), default=0), (sscc, record)


@given(st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_documents_keep_invariants_and_replay_to_the_same_hashes(data: st.DataObject) -> None:
    """Any mix of documents keeps one holder per code, no double shipment, and replays exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        # Half the runs on a chain with the product catalogue (emit registers the GTIN first).
        catalogue = data.draw(st.booleans())
        world = World(Path(tmp) / "a", make_genesis(groups=product_groups()) if catalogue else None)
        people = [
            world.register("RU", ["producer", "retailer"], "P"),
            world.register("KZ", ["wholesaler"], "W"),
            world.register("KG", ["retailer"], "R"),
        ]
        codes = world.introduced("RU", people[0], 6)
        codes += world.emit("RU", people[0], 3)  # for print reports, write-offs and re-marking
        # A pallet to begin with, so that reaggregation and per-child acceptance have one.
        world.apply_ok(world.doc(people[0], DocType.AGGREGATE, sscc=SSCCS[0], codes=codes[:3]))
        if data.draw(st.booleans()):  # and, half the time, a pallet holding it: units in a box on a pallet
            world.apply_ok(world.doc(people[0], DocType.AGGREGATE, sscc=SSCCS[2], codes=[SSCCS[0], codes[3]]))
        setup_height = world.store.head.height
        shipments: list[SignedDocument] = []
        recalls: list[SignedDocument] = []
        for _ in range(data.draw(st.integers(3, 12))):
            world.apply(*_random_block(world, data.draw, people, codes, shipments, recalls))
            _check_invariants(world.store)
        # Replay every block, from genesis, into a fresh store: same hash at every height.
        replay = LedgerStore(Path(tmp) / "b", world.genesis, sync=False)
        for height in range(1, world.store.head.height + 1):
            original = world.store.block(height)
            assert original is not None
            applied = replay.apply_block(
                original.documents, original.header.time_ms, original.header.proposer
            )
            assert applied.header == original.header, f"replay diverged at height {height}"
        assert replay.head == world.store.head and setup_height < replay.head.height
        replay.close()
        world.store.close()

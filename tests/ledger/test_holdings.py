"""The holdings index by lot (ledger/_holdings.py): a recall's holders and counts come
from it, and it always equals a recount over every code, whatever documents moved the
goods, and after a rollback."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import DocType, KeyPair, LedgerStore, Reason, SignedDocument
from ledger._catalogue import P_ATTRIBUTES
from ledger._encoding import unpack_trusted
from ledger._holdings import P_HOLDINGS, P_LOT
from ledger._recall import P_RECALL, RecallRecord, recall_holders
from ledger._records import P_CODE
from ledger._store import prefix_end
from testnet import product_groups

from .test_properties import SSCCS, _random_block
from .world import GTIN, World, make_genesis, seeded_key

STATES = ("AM", "BY", "KZ", "KG", "RU")
BATCHES = ("B1", "B2")
EXPIRIES = ("270101", "270630", "280101")
ACT = [["doc_date", 1_790_000_000_000], ["doc_number", "A-1"], ["doc_type", "act"]]


# -- the brute force the index is checked against ------------------------------------------


def _records(store: LedgerStore) -> dict[str, list[Any]]:
    db = store.db
    return {k[1:].decode(): unpack_trusted(v) for k, v in db.iterator(start=P_CODE, stop=prefix_end(P_CODE))}


def _holder(records: dict[str, list[Any]], key: str) -> str:
    """Who holds a unit, read the long way: "" once it is out of circulation, else the
    owner of the outermost aggregate around it."""
    record = records[key]
    if record[1] in ("retired", "written_off"):
        return ""
    while record[3]:
        record = records[record[3]]
    return str(record[2])


def _units_with_lots(store: LedgerStore) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every unit with attributes, with its (AI, value) pairs of batch and expiry."""
    db = store.db
    out = []
    for k, raw in db.iterator(start=P_ATTRIBUTES, stop=prefix_end(P_ATTRIBUTES)):
        key = k[1:].decode()
        if key.startswith("01"):
            out.append((key, [(ai, value) for ai, value in unpack_trusted(raw) if ai in ("10", "17")]))
    return out


def recount(store: LedgerStore) -> dict[bytes, int]:
    """The holdings index as a scan of every code would build it."""
    records = _records(store)
    counts: dict[bytes, int] = {}
    for key, lots in _units_with_lots(store):
        holder = _holder(records, key)
        for ai, value in lots:
            index_key = P_HOLDINGS + (key[2:16] + ai + value).encode() + b"\x00" + holder.encode()
            counts[index_key] = counts.get(index_key, 0) + 1
    return counts


def index(store: LedgerStore) -> dict[bytes, int]:
    db = store.db
    return {k: unpack_trusted(v) for k, v in db.iterator(start=P_HOLDINGS, stop=prefix_end(P_HOLDINGS))}


def lot_index(store: LedgerStore) -> set[bytes]:
    db = store.db
    return set(db.iterator(start=P_LOT, stop=prefix_end(P_LOT), include_value=False))


def lot_recount(store: LedgerStore) -> set[bytes]:
    return {
        P_LOT + (key[2:16] + ai + value).encode() + b"\x00" + key.encode()
        for key, lots in _units_with_lots(store) for ai, value in lots
    }


def brute_force_view(store: LedgerStore, gtin: str, batch: str = "", lo: str = "", hi: str = "") -> dict[str, Any]:
    """A recall's holders per state, from a scan of every code with attributes."""
    records = _records(store)
    per: dict[str, int] = {}
    out = total = 0
    for key, lots in _units_with_lots(store):
        values = dict(lots)
        if key[2:16] != gtin:
            continue
        if batch and values.get("10") != batch:
            continue
        if not batch and not lo <= values.get("17", "") <= hi:
            continue
        total += 1
        holder = _holder(records, key)
        if holder:
            per[holder] = per.get(holder, 0) + 1
        else:
            out += 1
    states: dict[str, dict[str, int]] = {}
    for holder, count in per.items():
        record = store.participant_record(holder)
        states.setdefault(record.state if record else "", {})[holder] = count
    return {
        "codes": total, "out_of_circulation": out,
        "states": {s: {"codes": sum(h.values()),
                       "holders": [{"participant": p, "codes": h[p]} for p in sorted(h)]}
                   for s, h in sorted(states.items())},
    }


# -- a recall of a lot held in five states ------------------------------------------------


def _reg(state: str) -> KeyPair:
    return seeded_key(f"regulator-{state}")


class Union:
    """A RU producer of a medicine and a wholesaler in each state; units of two batches
    and three expiry dates, loose and on pallets, shipped, accepted (wholly and in part),
    in transit, sold and destroyed."""

    def __init__(self, path: Path) -> None:
        self.w = w = World(path, make_genesis(groups=product_groups()))
        self.producer = w.register("RU", ["producer"], "Pharma")
        self.holders = {s: w.register(s, ["wholesaler", "retailer"], f"Wholesaler {s}") for s in STATES}
        w.register_product("RU", self.producer, GTIN, "medicines", "3004")
        self.b1 = self.introduce(40, "B1", "270630")
        self.b2 = self.introduce(20, "B2", "280101")
        self.b1_early = self.introduce(10, "B1", "270101")

    def introduce(self, count: int, batch: str, expiry: str) -> list[str]:
        w = self.w
        serials = w.serials(count)
        w.apply_ok(w.doc(_reg("RU"), DocType.EMIT, owner=self.producer.participant_id, gtin=GTIN, serials=serials))
        codes = ["01" + GTIN + "21" + s for s in serials]
        w.apply_ok(w.doc(self.producer, DocType.INTRODUCE, codes=codes, attributes=[["10", batch], ["17", expiry]]))
        return codes

    def ship(self, sender: KeyPair, receiver: KeyPair, codes: list[str]) -> SignedDocument:
        doc = self.w.doc(sender, DocType.SHIP, receiver=receiver.participant_id, codes=codes)
        self.w.apply_ok(doc)
        return doc

    def accept(self, receiver: KeyPair, shipment: SignedDocument, codes: list[str] | None = None) -> None:
        self.w.apply_ok(self.w.doc(receiver, DocType.ACCEPT, shipment=shipment.id, codes=codes or []))


def _spread(u: Union) -> None:
    """Goods of both batches in every state, some of them on a pallet, one partly accepted."""
    w = u.w
    for i, state in enumerate(STATES[:4]):
        mine = [*u.b1[5 * i:5 * i + 5], *u.b2[2 * i:2 * i + 2], u.b1_early[i]]
        u.accept(u.holders[state], u.ship(u.producer, u.holders[state], mine))
    # A pallet of B1 and B2 units to KZ, accepted whole, then its holder sells one unit.
    pallet = SSCCS[0]
    w.apply_ok(w.doc(u.producer, DocType.AGGREGATE, sscc=pallet, codes=[*u.b1[20:26], *u.b2[10:12]]))
    u.accept(u.holders["KZ"], u.ship(u.producer, u.holders["KZ"], [pallet]))
    kz = u.holders["KZ"]
    w.apply_ok(w.doc(kz, DocType.REAGGREGATE, sscc=pallet, add=[], remove=[u.b1[20]]))
    w.apply_ok(w.doc(kz, DocType.RETIRE, reason="retail_sale", codes=[u.b1[20]]))
    # Partly accepted by RU's wholesaler: what it leaves goes back to the producer.
    part = u.ship(u.producer, u.holders["RU"], u.b1[26:32])
    u.accept(u.holders["RU"], part, u.b1[26:29])
    # In transit to AM (still the producer's), and destroyed by BY.
    u.ship(u.producer, u.holders["AM"], u.b1[32:34])
    w.apply_ok(w.doc(u.holders["BY"], DocType.RETIRE, reason="destroyed", codes=[u.b1[5]], details=ACT))


def test_a_recall_lists_the_holders_and_counts_a_scan_of_every_code_finds(tmp_path: Path) -> None:
    """Holders per state and counts of a batch recall and of an expiry recall, from the
    index, equal a brute-force scan of every code; every holder is notified."""
    u = Union(tmp_path)
    _spread(u)
    w = u.w
    assert index(w.store) == recount(w.store)
    for fields in ({"batch": "B1"}, {"batch": "B2"}, {"expiry_from": "270101", "expiry_to": "270630"}):
        doc = w.doc(_reg("RU"), DocType.RECALL, gtin=GTIN, codes=[], reason="contamination",
                    **{"batch": "", "expiry_from": "", "expiry_to": "", **fields})
        w.apply_ok(doc)
        record = RecallRecord.unpack(w.store.db.get(P_RECALL + doc.id))

        def state_of(pid: str) -> str:
            rec = w.store.participant_record(pid)
            return rec.state if rec is not None else ""

        view = recall_holders(w.store.db, doc.id, record, state_of)
        expected = brute_force_view(w.store, GTIN, fields.get("batch", ""), fields.get("expiry_from", ""),
                                    fields.get("expiry_to", ""))
        assert view == expected
        assert len(view["states"]) >= 4
        assert view["out_of_circulation"] >= (0 if fields.get("batch") == "B2" else 1)
        for per in view["states"].values():
            for holder in per["holders"]:
                kinds = [(e.kind, e.document_id) for e in w.store.inbox(holder["participant"])]
                assert ("codes_recalled", doc.id) in kinds
    # B1 in the holders' hands: 5 per state less BY's destroyed unit, KZ's pallet units
    # less the sold one, RU's three accepted of six, the producer's returned three and
    # its two in transit, and its own B1 never shipped; one early-expiry unit per state.
    b1 = brute_force_view(w.store, GTIN, "B1")
    assert b1["codes"] == 50 and b1["out_of_circulation"] == 2
    assert b1["states"]["KZ"]["codes"] == 5 + 5 + 1


def test_a_later_holder_of_recalled_goods_has_the_recall_in_its_inbox(tmp_path: Path) -> None:
    """Recalled goods move only back to their producer; a producer that held none of them
    when its regulator recalled them is notified all the same, so when it accepts them
    back it has the recall in its inbox; the index follows the goods home."""
    u = Union(tmp_path)
    w = u.w
    am = u.holders["AM"]
    u.accept(am, u.ship(u.producer, am, u.b2))  # the producer keeps no B2
    doc = w.doc(_reg("RU"), DocType.RECALL, gtin=GTIN, batch="B2", expiry_from="", expiry_to="", codes=[],
                reason="contamination")
    w.apply_ok(doc)
    back = u.ship(am, u.producer, u.b2[:4])
    u.accept(u.producer, back)
    kinds = [(e.kind, e.document_id) for e in w.store.inbox(u.producer.participant_id)]
    assert ("codes_recalled", doc.id) in kinds
    record = RecallRecord.unpack(w.store.db.get(P_RECALL + doc.id))
    view = recall_holders(w.store.db, doc.id, record, lambda pid: "RU" if pid == u.producer.participant_id else "AM")
    assert view["states"]["RU"]["holders"] == [{"participant": u.producer.participant_id, "codes": 4}]
    assert view["states"]["AM"]["codes"] == 16
    # A release reaches the same holders and the producer.
    release = w.doc(_reg("RU"), DocType.RELEASE_RECALL, recall=doc.id, note="cleared")
    w.apply_ok(release)
    for pid in (u.producer.participant_id, am.participant_id):
        assert ("recall_released", release.id) in [(e.kind, e.document_id) for e in w.store.inbox(pid)]


def test_replaced_attributes_leave_their_old_lots(tmp_path: Path) -> None:
    """A code printed with one batch (apply) and introduced with another moves to the new
    lot in both indexes (the per-code lot index kept its old key before)."""
    u = Union(tmp_path)
    w = u.w
    serials = w.serials(2)
    w.apply_ok(w.doc(_reg("RU"), DocType.EMIT, owner=u.producer.participant_id, gtin=GTIN, serials=serials))
    codes = ["01" + GTIN + "21" + s for s in serials]
    w.apply_ok(w.doc(u.producer, DocType.APPLY, codes=codes, attributes=[["10", "OLD"], ["17", "270101"]]))
    assert index(w.store) == recount(w.store)
    w.apply_ok(w.doc(u.producer, DocType.INTRODUCE, codes=codes, attributes=[["10", "NEW"], ["17", "270101"]]))
    assert index(w.store) == recount(w.store)
    assert lot_index(w.store) == lot_recount(w.store)
    assert not any(b"OLD" in key for key in index(w.store))


# -- random journeys ----------------------------------------------------------------------


def _attributes(draw: st.DrawFn) -> list[list[str]]:
    return [["10", draw(st.sampled_from(BATCHES))], ["17", draw(st.sampled_from(EXPIRIES))]]


# Moves weighted so that most documents of a journey apply: each is drawn among the
# codes its signer holds in the state before the block.
MOVES = (
    "ship", "ship", "ship", "accept", "accept", "accept_part", "accept_children", "reject", "cancel",
    "aggregate", "disaggregate", "reaggregate", "retire", "retire", "withdraw", "return", "return",
    "write_off", "remark", "apply", "introduce", "recall", "release_recall", "suspend",
)


class Journey:
    """Random documents over a few participants and codes, most of them valid."""

    def __init__(self, world: World, people: list[KeyPair], codes: list[str]) -> None:
        self.world = world
        self.people = people
        self.by_id = {p.participant_id: p for p in people}
        self.codes = codes
        self.shipments: list[SignedDocument] = []
        self.recalls: list[SignedDocument] = []

    def block(self, draw: st.DrawFn) -> list[SignedDocument]:
        return [self.document(draw, draw(st.sampled_from(MOVES))) for _ in range(draw(st.integers(1, 3)))]

    def _loose(self, records: dict[str, list[Any]], owner: str, statuses: tuple[str, ...]) -> list[str]:
        return sorted(k for k, r in records.items()
                      if r[2] == owner and not r[3] and not r[4] and not r[5] and not r[6] and r[1] in statuses)

    def _pick(self, draw: st.DrawFn, pool: list[str], most: int = 3) -> list[str]:
        return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=min(most, len(pool)), unique=True))

    def document(self, draw: st.DrawFn, move: str) -> SignedDocument:  # noqa: C901 - one branch per move
        w = self.world
        records = _records(w.store)
        # Sales and returns are a retailer's (the producer is one too, and so is people[2]).
        actor = draw(st.sampled_from(self.people[0::2] if move in ("retire", "return") else self.people))
        other = draw(st.sampled_from([p for p in self.people if p is not actor]))
        live = self._loose(records, actor.participant_id, ("introduced",))
        pending = [d for d in self.shipments if (w.store.shipment(d.id) or {}).get("status") == "pending"]
        if move == "ship" and live:
            doc = w.doc(actor, DocType.SHIP, receiver=other.participant_id, codes=self._pick(draw, live))
            self.shipments.append(doc)
            return doc
        if move in ("accept", "accept_part", "accept_children", "reject", "cancel") and pending:
            target = draw(st.sampled_from(pending))
            receiver = self.by_id[target.document.field("receiver")]
            items = list(target.document.field("codes"))
            if move == "reject":
                return w.doc(receiver, DocType.REJECT, shipment=target.id)
            if move == "cancel":
                return w.doc(self.by_id[target.document.signer], DocType.CANCEL_SHIPMENT, shipment=target.id)
            chosen: list[str] = []
            if move == "accept_part":
                chosen = self._pick(draw, items)
            elif move == "accept_children":
                pallets = [c for c in items if c.startswith("00")]
                inside = [k for k, r in records.items() if pallets and r[3] == pallets[0]]
                chosen = [*pallets[:1], *(self._pick(draw, inside) if inside else [])] or items[:1]
            return w.doc(receiver, DocType.ACCEPT, shipment=target.id, codes=chosen)
        if move == "aggregate" and live:
            free = [s for s in SSCCS if s not in records or records[s][1] == "disaggregated"]
            if free:
                return w.doc(actor, DocType.AGGREGATE, sscc=free[0], codes=self._pick(draw, live))
        pallets = [k for k in live if k.startswith("00")]
        if move == "disaggregate" and pallets:
            return w.doc(actor, DocType.DISAGGREGATE, sscc=draw(st.sampled_from(pallets)))
        if move == "reaggregate" and pallets:
            sscc = draw(st.sampled_from(pallets))
            inside = [k for k, r in records.items() if r[3] == sscc]
            units = [k for k in live if k.startswith("01")]
            add = self._pick(draw, units, 2) if units and draw(st.booleans()) else []
            remove = self._pick(draw, inside, 1) if inside and (not add or draw(st.booleans())) else []
            return w.doc(actor, DocType.REAGGREGATE, sscc=sscc, add=add, remove=remove)
        units = [k for k in live if k.startswith("01")]
        if move == "retire" and units:
            return w.doc(actor, DocType.RETIRE, reason="retail_sale", codes=self._pick(draw, units))
        if move == "withdraw" and units:
            reason = draw(st.sampled_from(("destroyed", "donation", "own_use")))
            return w.doc(actor, DocType.RETIRE, reason=reason, codes=self._pick(draw, units), details=ACT)
        sold = [k for k, r in records.items() if r[1] == "retired" and r[7] == "retail_sale" and r[2] == actor.participant_id]
        if move == "return" and sold:
            return w.doc(actor, DocType.RETURN, codes=self._pick(draw, sold))
        producer = self.people[0]
        fresh = self._loose(records, producer.participant_id, ("emitted", "applied"))
        if move == "write_off" and fresh:
            return w.doc(producer, DocType.WRITE_OFF, reason="spoiled", codes=self._pick(draw, fresh, 1))
        mine = [k for k in self._loose(records, producer.participant_id, ("introduced",)) if k.startswith("01")]
        if move == "remark" and fresh and mine:
            return w.doc(producer, DocType.REMARK, old=draw(st.sampled_from(mine)), new=draw(st.sampled_from(fresh)))
        if move == "apply" and fresh:
            return w.doc(producer, DocType.APPLY, codes=self._pick(draw, fresh), attributes=_attributes(draw))
        if move == "introduce" and fresh:
            picked = self._pick(draw, fresh)
            printed = all(records[k][1] == "applied" for k in picked)
            if printed and draw(st.booleans()):  # with the attributes they were printed with
                return w.doc(producer, DocType.INTRODUCE, codes=picked)
            return w.doc(producer, DocType.INTRODUCE, codes=picked, attributes=_attributes(draw))
        if move == "recall" and draw(st.integers(0, 2)) == 0:
            doc = w.doc(producer, DocType.RECALL, gtin=GTIN, batch=draw(st.sampled_from(BATCHES)),
                        expiry_from="", expiry_to="", codes=[], reason="test")
            self.recalls.append(doc)
            return doc
        if move == "release_recall" and self.recalls:
            return w.doc(producer, DocType.RELEASE_RECALL, recall=draw(st.sampled_from(self.recalls)).id, note="")
        if move == "suspend":
            kind = DocType.SUSPEND if draw(st.booleans()) else DocType.RELEASE
            fields = {"note": "x"} if kind is DocType.SUSPEND else {}
            return w.doc(w.regulator("RU"), kind, codes=self._pick(draw, self.codes, 1), **fields)
        # Nothing fits this move now: a document of the property tests' random mix.
        return _random_block(w, draw, self.people, self.codes, self.shipments, self.recalls)[0]


def _setup(world: World) -> tuple[list[KeyPair], list[str]]:
    people = [
        world.register("RU", ["producer", "retailer"], "P"),
        world.register("KZ", ["wholesaler"], "W"),
        world.register("KG", ["retailer"], "R"),
    ]
    world.register_product("RU", people[0], GTIN, "medicines", "3004")
    codes = world.emit("RU", people[0], 14)
    world.apply_ok(world.doc(people[0], DocType.INTRODUCE, codes=codes[:3], attributes=[["10", "B1"], ["17", "270101"]]))
    world.apply_ok(world.doc(people[0], DocType.INTRODUCE, codes=codes[3:6], attributes=[["10", "B2"], ["17", "270630"]]))
    # A pallet to begin with, so that pallets are shipped, accepted in part and repacked.
    world.apply_ok(world.doc(people[0], DocType.AGGREGATE, sscc=SSCCS[0], codes=codes[:2]))
    return people, codes


@pytest.mark.sim
@given(st.data())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_index_equals_a_recount_over_random_journeys_and_rollbacks(data: st.DataObject) -> None:
    """After every block of a random journey the index equals a recount over every code
    (and the per-code lot index its recount); rolling back k blocks gives back exactly
    the index of the shorter ledger."""
    draw = cast(st.DrawFn, data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp) / "a", make_genesis(groups=product_groups()))
        people, codes = _setup(world)
        start = world.store.head.height
        seen = {start: index(world.store)}
        assert seen[start] == recount(world.store) and seen[start]
        journey = Journey(world, people, codes)
        for _ in range(draw(st.integers(3, 16))):
            world.apply(*journey.block(draw))
            now = index(world.store)
            assert now == recount(world.store)
            assert lot_index(world.store) == lot_recount(world.store)
            seen[world.store.head.height] = now
        keep = draw(st.integers(start, world.store.head.height - 1))
        world.store.rollback_to(keep)
        assert index(world.store) == seen[keep] == recount(world.store)
        world.store.close()


def test_the_refused_moves_leave_the_index_alone(tmp_path: Path) -> None:
    """A document refused midway (the second code is not the signer's) writes no count."""
    u = Union(tmp_path)
    w = u.w
    am = u.holders["AM"]
    shipment = u.ship(u.producer, am, u.b1[:3])
    before = index(w.store)
    (result,) = w.apply(w.doc(am, DocType.ACCEPT, shipment=shipment.id, codes=[u.b1[0], u.b2[0]]))
    assert result.reason is Reason.NOT_IN_SHIPMENT
    assert index(w.store) == before == recount(w.store)


def test_customs_imports_enter_the_index_and_follow_the_goods(tmp_path: Path) -> None:
    """Units an importer declares with their batch count for it from the import on, stay
    with it through the confirmation, and move with an accept; a recall finds it."""
    w = World(tmp_path, make_genesis(groups=product_groups()))
    importer = w.register("KZ", ["importer"], "Importer")
    buyer = w.register("AM", ["wholesaler"], "Buyer")
    w.register_product("KZ", importer, GTIN, "medicines", "3004")
    codes = w.emit("KZ", importer, 4)
    declared = w.doc(importer, DocType.IMPORT, declaration="10702010/301126/0000001", country="CN", codes=codes,
                     attributes=[["10", "IMP-1"], ["17", "280101"]])
    w.apply_ok(declared)
    assert index(w.store) == recount(w.store) and len(index(w.store)) == 2
    w.apply_ok(w.doc(seeded_key("regulator-KZ"), DocType.CONFIRM_IMPORT, **{"import": declared.id}))
    assert index(w.store) == recount(w.store)
    ship = w.doc(importer, DocType.SHIP, receiver=buyer.participant_id, codes=codes[:3])
    w.apply_ok(ship)
    w.apply_ok(w.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]))
    assert index(w.store) == recount(w.store)
    recall = w.doc(importer, DocType.RECALL, gtin=GTIN, batch="IMP-1", expiry_from="", expiry_to="", codes=[],
                   reason="contamination")
    w.apply_ok(recall)
    record = RecallRecord.unpack(w.store.db.get(P_RECALL + recall.id))
    view = recall_holders(w.store.db, recall.id, record, lambda pid: "AM" if pid == buyer.participant_id else "KZ")
    assert view == brute_force_view(w.store, GTIN, "IMP-1")
    assert view["states"]["AM"]["holders"] == [{"participant": buyer.participant_id, "codes": 3}]


def test_a_store_from_before_the_index_stops_with_a_message_that_says_so(tmp_path: Path) -> None:
    """A data directory written before the holdings index counted nothing for its units:
    the first move of one stops the apply (the same on every node) with a message that
    names the cause and the remedy, not only the negative count."""
    from ledger import InvariantError

    u = Union(tmp_path)
    w = u.w
    shipment = u.ship(u.producer, u.holders["KZ"], u.b1[:1])
    db = w.store.db
    for key in list(db.iterator(start=P_HOLDINGS, stop=prefix_end(P_HOLDINGS), include_value=False)):
        db.delete(key)  # as a store from before the index
    accept = w.doc(u.holders["KZ"], DocType.ACCEPT, shipment=shipment.id, codes=[])
    with pytest.raises(InvariantError, match="before the holdings index existed.*re-initialise"):
        w.apply(accept)

"""Property test of the access rule: over random journeys of goods between businesses
of three states, what each reader may read of each code and document equals what a
model of the journey, kept beside it, says it may: never more, never less."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import (
    CodeRead,
    DocType,
    DocumentRead,
    HistoryRead,
    KeyPair,
    SignedDocument,
    check_read,
    reader_of,
    visible_history,
)

from .world import World

# (name, state, roles): three businesses in two states, a stranger in a third.
PEOPLE = (("a", "KZ", ["producer"]), ("b", "KZ", ["wholesaler"]), ("c", "RU", ["wholesaler"]),
          ("d", "RU", ["retailer"]), ("stranger", "AM", ["retailer"]))
REGULATORS = ("KZ", "RU", "AM")
Place = tuple[int, int]


@dataclass
class Model:
    """The journey as the test sees it: who holds what, which shipments are open, and
    each participant's times with each code (open, or ended at a place)."""

    owner: dict[str, str] = field(default_factory=dict)
    open: dict[bytes, tuple[str, str, list[str]]] = field(default_factory=dict)  # id -> shipper, receiver, items
    retired: set[str] = field(default_factory=set)
    # Emitted or applied, not in circulation (issue 13: apply, write_off, remark's new code).
    spare: set[str] = field(default_factory=set)
    places: dict[str, list[Place]] = field(default_factory=dict)  # code -> places of documents naming it
    ends: dict[tuple[str, str], Place | None] = field(default_factory=dict)  # (code, pid) -> end, None: open
    docs: list[tuple[SignedDocument, Place, list[str], list[str]]] = field(default_factory=list)

    def begin(self, code: str, pid: str) -> None:
        self.ends[(code, pid)] = None

    def end(self, code: str, pid: str, at: Place) -> None:
        self.ends[(code, pid)] = at


def _states(people: dict[str, KeyPair]) -> dict[str, str]:
    return {people[name].participant_id: state for name, state, _ in PEOPLE}


def _window(m: Model, code: str, pid: str) -> Place | None | str:
    if (code, pid) not in m.ends:
        return None
    end = m.ends[(code, pid)]
    return "all" if end is None else end


def _code_states(m: Model, code: str, states: dict[str, str]) -> set[str]:
    return {states[pid] for (c, pid) in m.ends if c == code}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_readers_see_exactly_what_the_journey_entitles_them_to(data: st.DataObject) -> None:
    """Random ships, accepts (whole or part), rejects, cancels and retirements: each
    reader's code reads, history windows and document reads match the model."""
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp) / "db")
        people = {name: world.register(state, roles, name) for name, state, roles in PEOPLE}
        states = _states(people)
        m = Model()
        codes = world.introduced("KZ", people["a"], 4)
        first = world.store.head.height - 1  # the emit's block
        for code in codes:
            m.owner[code] = people["a"].participant_id
            m.begin(code, people["a"].participant_id)
            m.places[code] = [(first, 0), (first + 1, 0)]
        spares = world.emit("KZ", people["a"], 2)
        for code in spares:
            m.owner[code] = people["a"].participant_id
            m.begin(code, people["a"].participant_id)
            m.places[code] = [(world.store.head.height, 0)]
            m.spare.add(code)
        codes += spares
        for _ in range(data.draw(st.integers(1, 12), label="steps")):
            _step(world, data, people, m)
        _check(world, people, states, m, codes)


def _step(world: World, data: st.DataObject, people: dict[str, KeyPair], m: Model) -> None:
    by_id = {k.participant_id: k for k in people.values()}
    action = data.draw(st.sampled_from(("ship", "ship", "accept", "reject", "cancel", "retire", "apply",
                                        "write_off", "remark")), label="action")
    free = [c for c, o in m.owner.items()
            if c not in m.retired and c not in m.spare and not any(c in s[2] for s in m.open.values())]
    spare = sorted(c for c in m.spare if c not in m.retired)
    at = (world.store.head.height + 1, 0)
    a = people["a"].participant_id
    if action in ("apply", "write_off") and spare:
        items = [data.draw(st.sampled_from(spare), label="spare")]
        if action == "apply":
            if world.store.code(items[0])["status"] != "emitted":  # type: ignore[index]
                return
            doc = world.doc(people["a"], DocType.APPLY, codes=items)
        else:
            doc = world.doc(people["a"], DocType.WRITE_OFF, reason="spoiled", codes=items)
            m.retired.update(items)
        named: list[str] = []
    elif action == "remark" and spare and [c for c in free if m.owner[c] == a]:
        old = data.draw(st.sampled_from([c for c in free if m.owner[c] == a]), label="old")
        new = data.draw(st.sampled_from(spare), label="new")
        doc = world.doc(people["a"], DocType.REMARK, old=old, new=new)
        m.retired.add(old)
        m.spare.discard(new)
        items = [old, new]
        named = []
    elif action in ("ship", "retire") and free:
        code = data.draw(st.sampled_from(free), label="code")
        owner = m.owner[code]
        items = [c for c in free if m.owner[c] == owner and (c == code or data.draw(st.booleans()))]
        if action == "retire":
            doc = world.doc(by_id[owner], DocType.RETIRE, reason="destroyed", codes=items)
            m.retired.update(items)
            named = []
        else:
            to = data.draw(st.sampled_from([k for k in people.values() if k.participant_id != owner]), label="to")
            doc = world.doc(by_id[owner], DocType.SHIP, receiver=to.participant_id, codes=items)
            m.open[doc.id] = (owner, to.participant_id, items)
            for c in items:
                m.begin(c, to.participant_id)
            named = [to.participant_id]
    elif action in ("accept", "reject", "cancel") and m.open:
        ship_id = data.draw(st.sampled_from(sorted(m.open)), label="shipment")
        shipper, receiver, items = m.open.pop(ship_id)
        chosen = [c for c in items if data.draw(st.booleans())] if action == "accept" else []
        if action == "accept":
            doc = world.doc(by_id[receiver], DocType.ACCEPT, shipment=ship_id, codes=chosen)
        elif action == "reject":
            doc = world.doc(by_id[receiver], DocType.REJECT, shipment=ship_id)
        else:
            doc = world.doc(by_id[shipper], DocType.CANCEL_SHIPMENT, shipment=ship_id)
        for c in items:
            m.end(c, receiver, at)
            if action == "accept" and (not chosen or c in chosen):
                m.end(c, shipper, at)
                m.owner[c] = receiver
                m.begin(c, receiver)
        named = [shipper, receiver]
    else:
        return
    world.apply_ok(doc)
    touched = list(items)
    for c in touched:
        m.places[c].append(at)
    m.docs.append((doc, at, touched, named))


def _check(world: World, people: dict[str, KeyPair], states: dict[str, str], m: Model, codes: list[str]) -> None:
    store = world.store
    readers = [k.participant_id for k in people.values()] + [world.regulator(s).participant_id for s in REGULATORS]
    regulator_of = {world.regulator(s).participant_id: s for s in REGULATORS}
    for pid in readers:
        reader = reader_of(store, pid)
        for code in codes:
            involved = _code_states(m, code, states)
            pending_receiver = {r for s, r, items in m.open.values() if code in items}
            if pid in regulator_of:
                current = regulator_of[pid] in involved
                window: Place | None | str = "all" if current else None
            else:
                current = pid == m.owner[code] or pid in pending_receiver
                window = "all" if current else _window(m, code, pid)
            assert (check_read(store, reader, CodeRead(code)) is None) == current, (pid, code)
            assert (check_read(store, reader, HistoryRead(code)) is None) == (window is not None), (pid, code)
            seen = [(e.height, e.position) for e in visible_history(store, reader, code, store.whole_history(code))]
            want = m.places[code] if window == "all" else [p for p in m.places[code] if window and p <= window]
            assert seen == want, (pid, code, window)
        for doc, at, touched, named in m.docs:
            if pid in regulator_of:
                state = regulator_of[pid]
                parties = {doc.document.signer, *named}
                allowed = state in {states.get(p) for p in parties} or any(
                    state in _code_states(m, c, states) for c in touched)
            else:
                allowed = pid == doc.document.signer or pid in named or any(
                    (w := _window(m, c, pid)) == "all" or (w is not None and at <= w)  # type: ignore[operator]
                    for c in touched)
            assert (check_read(store, reader, DocumentRead(doc.id)) is None) == allowed, (pid, doc.document.type)

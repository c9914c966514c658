"""History pages: in chain order through nested aggregates, and each page costs O(page) reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from ledger import DocType, KeyPair, LedgerStore
from ledger._codes import gs1_check_digit
from ledger._records import META_NESTING, P_NESTING

from .world import World


def sscc(n: int) -> str:
    payload = f"0{4600000000000000 + n:016d}"[:17]
    return "00" + payload + str(gs1_check_digit(payload))


class CountingDB:
    """A plyvel database that counts every key it reads: one per get, one per iterator
    seek and one per item an iterator yields."""

    def __init__(self, db: plyvel.DB) -> None:
        self.db = db
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.db.get(key)

    def iterator(self, **kwargs: Any) -> CountingIterator:
        self.reads += 1
        return CountingIterator(self, self.db.iterator(**kwargs))


class CountingIterator:
    def __init__(self, owner: CountingDB, it: Iterator[Any]) -> None:
        self.owner = owner
        self.it = it

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> Any:
        item = next(self.it)
        self.owner.reads += 1
        return item

    def close(self) -> None:
        self.it.close()  # type: ignore[attr-defined]


def ship_and_take_back(world: World, owner: KeyPair, to: KeyPair, code: str, times: int) -> None:
    """`times` shipments of `code` each cancelled in the same block: 2 history entries each."""
    docs = []
    for _ in range(times):
        ship = world.doc(owner, DocType.SHIP, receiver=to.participant_id, codes=[code])
        docs += [ship, world.doc(owner, DocType.CANCEL_SHIPMENT, shipment=ship.id)]
    world.apply_ok(*docs)


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return World(tmp_path / "db")


def build_nested(world: World) -> tuple[list[str], str, str]:
    maker = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    units = world.introduced("RU", maker, 3)
    box, pallet = sscc(1), sscc(2)
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=box, codes=units))
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=pallet, codes=[box]))
    ship_and_take_back(world, maker, buyer, pallet, 2)
    world.apply_ok(world.doc(world.regulator("RU"), DocType.SUSPEND, codes=units[:1], note="check"))
    world.apply_ok(world.doc(world.regulator("RU"), DocType.RELEASE, codes=units[:1]))
    world.apply_ok(world.doc(maker, DocType.DISAGGREGATE, sscc=pallet))
    ship_and_take_back(world, maker, buyer, box, 2)
    world.apply_ok(world.doc(maker, DocType.DISAGGREGATE, sscc=box))
    ship_and_take_back(world, maker, buyer, units[0], 2)
    return units, box, pallet


def test_history_follows_nested_aggregates_in_chain_order(world: World) -> None:
    """A unit's history holds its own entries and its box's and pallet's while it was in them."""
    units, box, pallet = build_nested(world)
    entries = world.store.whole_history(units[0])
    assert [(e.type, e.via) for e in entries] == [
        ("emit", ""), ("introduce", ""), ("aggregate", ""),
        ("aggregate", box),  # the box goes onto the pallet
        ("ship", pallet), ("cancel_shipment", pallet), ("ship", pallet), ("cancel_shipment", pallet),
        ("suspend", ""), ("release", ""),
        ("disaggregate", box),  # the pallet is unpacked: seen through the box
        ("ship", box), ("cancel_shipment", box), ("ship", box), ("cancel_shipment", box),
        ("disaggregate", ""),
        ("ship", ""), ("cancel_shipment", ""), ("ship", ""), ("cancel_shipment", ""),
    ]
    places = [(e.height, e.position) for e in entries]
    assert places == sorted(places) and len(set(places)) == len(places)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_a_page_from_any_cursor_is_the_slice_after_it(world: World, limit: int) -> None:
    """Starting anywhere, inside or outside an aggregate, a page is exactly what follows."""
    units, _, _ = build_nested(world)
    whole = world.store.whole_history(units[0])
    assert world.store.history(units[0], limit=limit) == whole[:limit]
    for i, entry in enumerate(whole):
        page = world.store.history(units[0], after=(entry.height, entry.position), limit=limit)
        assert page == whole[i + 1 : i + 1 + limit], f"after entry {i}"


def test_a_late_page_reads_as_few_keys_as_an_early_one(world: World) -> None:
    """A page deep in a long history (thousands of entries, some inside a pallet) reads
    O(page) keys: the same count as the first page, far fewer than the history."""
    maker = world.register("RU", ["producer"], "Factory")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    (unit,) = world.introduced("RU", maker, 1)
    ship_and_take_back(world, maker, buyer, unit, 1_500)
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=sscc(3), codes=[unit]))
    ship_and_take_back(world, maker, buyer, sscc(3), 500)
    whole = world.store.whole_history(unit)
    assert len(whole) == 2 + 3_000 + 1 + 1_000
    counting = CountingDB(world.store.db)
    world.store.db = counting
    reads = {}
    for name, index in (("first", None), ("middle", 1_800), ("inside the pallet", 3_500)):
        after = None if index is None else (whole[index].height, whole[index].position)
        counting.reads = 0
        page = world.store.history(unit, after=after, limit=50)
        start = 0 if index is None else index + 1
        assert page == whole[start : start + 50]
        reads[name] = counting.reads
    # 50 entries, 50 document ids, and a handful of seeks per source.
    assert all(count <= 2 * 50 + 20 for count in reads.values()), reads


def test_a_store_without_the_nesting_index_builds_it_on_open(tmp_path: Path) -> None:
    """A data directory written before the nesting index gets it once, on open, with the
    same history as a store that always had it."""
    world = World(tmp_path / "db")
    units, _, _ = build_nested(world)
    expected = world.store.whole_history(units[0])
    db = world.store.db
    for key in list(db.iterator(prefix=P_NESTING, include_value=False)):
        db.delete(key)
    db.delete(META_NESTING)
    world.store.close()
    store = LedgerStore(tmp_path / "db", world.genesis, sync=False)
    try:
        assert store.db.get(META_NESTING) is not None
        assert store.whole_history(units[0]) == expected
        assert store.history(units[0], after=(expected[5].height, expected[5].position), limit=3) == expected[6:9]
    finally:
        store.close()


def test_a_late_holdings_page_reads_only_its_page(world: World) -> None:
    """Holdings pages seek to the cursor: a page near the end of 3,000 codes reads O(page) keys."""
    maker = world.register("RU", ["producer"], "Factory")
    codes = sorted(world.introduced("RU", maker, 3_000))
    counting = CountingDB(world.store.db)
    world.store.db = counting
    page = world.store.holdings(maker.participant_id, after=codes[2_900], limit=50)
    assert page == codes[2_901:2_951]
    assert counting.reads <= 50 + 2

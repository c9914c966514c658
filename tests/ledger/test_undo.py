"""Undo data: rolling back blocks that are not final gives exactly the shorter ledger."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Block, LedgerStore, RollbackRefused, SignedDocument, _undo
from ledger import _store as store_module
from ledger._undo import P_UNDO

from .test_properties import _random_block
from .world import World


def dump(store: LedgerStore) -> dict[bytes, bytes]:
    """Every key of the store: the strongest form of "every lookup is equal"."""
    return dict(store.db.iterator())


def replay(path: Path, world: World, blocks: list[Block]) -> LedgerStore:
    """A fresh store that applied exactly these blocks."""
    other = LedgerStore(path, world.genesis, sync=False)
    for block in blocks:
        other.apply_block(block.documents, block.header.time_ms, block.header.proposer)
    return other


def chain(store: LedgerStore) -> list[Block]:
    return [b for h in range(1, store.head.height + 1) if (b := store.block(h)) is not None]


def _people_and_codes(world: World) -> tuple[list[Any], list[str]]:
    people = [
        world.register("RU", ["producer", "retailer"], "P"),
        world.register("KZ", ["wholesaler"], "W"),
        world.register("KG", ["retailer"], "R"),
    ]
    return people, world.introduced("RU", people[0], 6)


@pytest.mark.sim
@given(st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_rollback_of_k_blocks_equals_the_ledger_of_the_first_blocks(data: st.DataObject) -> None:
    """After a random journey, rolling back k blocks leaves every key (so the state hash
    and every lookup) equal to a ledger that applied only the first blocks, and a
    different suffix then applies identically on both."""
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp) / "a")
        people, codes = _people_and_codes(world)
        shipments: list[SignedDocument] = []
        recalls: list[SignedDocument] = []  # recall and release documents, undone like any
        for _ in range(data.draw(st.integers(2, 8))):
            world.apply(*_random_block(world, cast(st.DrawFn, data.draw), people, codes, shipments, recalls))
        full = chain(world.store)
        keep = data.draw(st.integers(0, len(full) - 1))
        undone = world.store.rollback_to(keep)
        assert [b.header for b in undone] == [b.header for b in full[keep:]]
        short = replay(Path(tmp) / "b", world, full[:keep])
        assert world.store.head == short.head
        assert dump(world.store) == dump(short)
        # A different suffix: both stores take it to the same keys again.
        world.time_ms = max(world.time_ms, world.store.head.time_ms)
        for _ in range(data.draw(st.integers(1, 4))):
            docs = [d.wire() for d in _random_block(world, cast(st.DrawFn, data.draw), people, codes, shipments, recalls)]
            world.time_ms += 1_000
            world.store.apply_block(docs, world.time_ms, "KZ")
            short.apply_block(docs, world.time_ms, "KZ")
            assert world.store.head == short.head
        assert dump(world.store) == dump(short)
        short.close()
        world.store.close()


@pytest.fixture
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp) / "a")
        yield w
        w.store.close()


def test_rollback_refuses_to_go_below_the_final_height(world: World) -> None:
    """The final height is a floor: rolling back below it raises a typed error and changes nothing."""
    _people_and_codes(world)
    head = world.store.head
    world.store.set_final_height(3)
    before = dump(world.store)
    with pytest.raises(RollbackRefused):
        world.store.rollback_to(2)
    with pytest.raises(RollbackRefused):
        world.store.rollback_to(head.height + 1)
    assert dump(world.store) == before and world.store.head == head
    world.store.rollback_to(3)
    assert world.store.head.height == 3


def test_final_height_prunes_undo_data_and_survives_reopening(world: World) -> None:
    """Undo data exists only above the final height, so it is bounded by head - final."""
    _people_and_codes(world)
    head = world.store.head.height
    blocks, size = world.store.undo_size()
    assert blocks == head and size > 0
    world.store.set_final_height(head - 2)
    assert world.store.undo_size()[0] == 2
    keys = [int.from_bytes(k[1:], "big") for k in world.store.db.iterator(prefix=P_UNDO, include_value=False)]
    assert keys == [head - 1, head]
    world.store.set_final_height(1)  # never lowered
    assert world.store.final_height == head - 2
    path = world.store.path
    world.store.close()
    world.store = LedgerStore(path, world.genesis, sync=False)
    assert world.store.final_height == head - 2
    with pytest.raises(RollbackRefused):
        world.store.rollback_to(head - 3)


def test_a_block_applied_at_or_below_the_final_height_keeps_no_undo(world: World) -> None:
    """Catching up on blocks already known final writes no undo data for them."""
    world.store.set_final_height(10)  # as a node that knows more is final than it holds
    _people_and_codes(world)
    assert world.store.undo_size() == (0, 0) and world.store.head.height == 5
    with pytest.raises(RollbackRefused):
        world.store.rollback_to(4)


def test_a_crash_while_building_the_rollback_batch_leaves_the_store_unchanged(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback is one batch: an exception midway writes none of it, and after reopening
    the store is the one before the rollback, which can then roll back for real."""
    _people_and_codes(world)
    before, head = dump(world.store), world.store.head

    real_fold = _undo.fold_undo

    class Half(dict[bytes, bytes | None]):
        """The restored values, but the power fails after three of them are in the batch."""

        def items(self) -> Any:
            for n, item in enumerate(super().items()):
                if n == 3:
                    raise OSError("power cut")
                yield item

    def exploding(records: Any) -> Half:
        return Half(real_fold(records))

    monkeypatch.setattr(store_module, "fold_undo", exploding)
    with pytest.raises(OSError):
        world.store.rollback_to(2)
    monkeypatch.undo()
    assert dump(world.store) == before
    path = world.store.path
    world.store.close()
    world.store = LedgerStore(path, world.genesis, sync=False)
    assert world.store.head == head
    world.store.rollback_to(2)
    assert world.store.head.height == 2


def test_a_crash_while_building_a_block_batch_leaves_no_half_block(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a block is a transaction too: an exception midway writes nothing."""
    people, codes = _people_and_codes(world)
    before, head = dump(world.store), world.store.head
    calls = {"n": 0}

    def failing_is_always_new(key: bytes) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("power cut")
        return False

    monkeypatch.setattr(store_module, "is_always_new", failing_is_always_new)
    with pytest.raises(OSError):
        world.apply(world.doc(people[0], "retire", reason="retail_sale", codes=codes[:2]))
    monkeypatch.undo()
    assert dump(world.store) == before and world.store.head == head

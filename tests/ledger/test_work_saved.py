"""Work the ledger no longer repeats (issue 9, "half the work per document"): each test
counts what a block costs in reads, decodes or kept data, and fails on the older path."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Auditor, DocType, LedgerStore, Verifier, decode_signed
from ledger import _state as state_module
from ledger._encoding import unpack_trusted
from ledger._records import P_CODE

from .world import World


class CountingDB:
    """The store's LevelDB handle, counting reads and remembering iterator starts."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.gets: list[bytes] = []
        self.starts: list[bytes | None] = []

    def get(self, key: bytes, *args: Any, **kwargs: Any) -> Any:
        self.gets.append(key)
        return self._db.get(key, *args, **kwargs)

    def iterator(self, *args: Any, **kwargs: Any) -> Any:
        self.starts.append(kwargs.get("start"))
        return self._db.iterator(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp) / "a")
        yield w
        w.store.close()


def test_undo_data_reuses_the_values_the_execution_read(world: World) -> None:
    """A shipment reads each code's record once: keeping its undo data reads it again no
    more (before: a second read of every changed code record)."""
    producer = world.register("RU", ["producer"], "P")
    buyer = world.register("KZ", ["wholesaler"], "B")
    codes = world.introduced("RU", producer, 50)
    ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes)
    before = {P_CODE + c.encode(): world.store.db.get(P_CODE + c.encode()) for c in codes}
    counting = CountingDB(world.store.db)
    world.store.db = counting
    try:
        world.apply_ok(ship)
    finally:
        world.store.db = counting._db
    code_reads = [k for k in counting.gets if k.startswith(P_CODE)]
    assert len(code_reads) == len(codes) == len(set(code_reads))
    # And the undo data holds the values before the block: the rollback restores them.
    assert set(code_reads) == set(before)
    world.store.rollback_to(world.store.head.height - 1)
    assert all(world.store.db.get(k) == v for k, v in before.items())


def test_final_height_prunes_from_above_the_old_final_height(world: World) -> None:
    """Pruning undo data walks only the records that can exist, above the old final
    height (before: from the first undo key, over every record deleted earlier)."""
    producer = world.register("RU", ["producer"], "P")
    world.introduced("RU", producer, 3)
    head = world.store.head.height
    world.store.set_final_height(head - 2)
    counting = CountingDB(world.store.db)
    world.store.db = counting
    try:
        world.store.set_final_height(head)
    finally:
        world.store.db = counting._db
    assert counting.starts == [b"U" + (head - 1).to_bytes(8, "big")]
    assert world.store.undo_size() == (0, 0)


def test_an_auditor_replica_keeps_no_undo_data(world: World, tmp_path: Path) -> None:
    """An auditor never rolls its replica back, so it keeps no undo data (before: one
    record per block, with a read per changed key)."""
    producer = world.register("RU", ["producer"], "P")
    buyer = world.register("KZ", ["wholesaler"], "B")
    codes = world.introduced("RU", producer, 5)
    world.apply_ok(world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes))
    world.store.close()
    with Auditor(world.genesis, tmp_path / "replica") as auditor:
        report = auditor.verify_data_dir(world.store.path)
        assert report.ok and auditor.replica.undo_size() == (0, 0)
    world.store = LedgerStore(world.store.path, world.genesis, sync=False)


def test_a_block_checked_here_decodes_each_document_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without signatures checked before (an auditor on one worker), a block decodes each
    document once for both the checks and the execution (before: twice)."""
    producer = world.register("RU", ["producer"], "P")
    buyer = world.register("KZ", ["wholesaler"], "B")
    codes = world.introduced("RU", producer, 4)
    wires = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]).wire() for c in codes]
    decodes: list[bytes] = []
    unpacked: list[bytes] = []
    real_decode, real_unpack = decode_signed, unpack_trusted

    def decode(wire: bytes) -> Any:
        decodes.append(wire)
        return real_decode(wire)

    def unpack(raw: bytes) -> Any:
        unpacked.append(raw)
        return real_unpack(raw)

    monkeypatch.setattr(state_module, "decode_signed", decode)
    monkeypatch.setattr(state_module, "unpack_trusted", unpack)
    world.time_ms += 1_000
    applied = world.store.apply_block(wires, world.time_ms, "RU")
    assert all(r.applied for r in applied.results)
    assert sorted(decodes) == sorted(wires)
    assert not set(unpacked) & set(wires)  # no second, partial decode for the checks


def test_audit_workers_learn_keys_registered_in_blocks_not_yet_replayed(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With workers, the replay checks no document signature itself, even of signers
    registered in blocks the replay had not reached when the workers got the documents
    (before: the replay checked every such document itself)."""
    producer = world.register("RU", ["producer"], "P")
    buyer = world.register("KZ", ["wholesaler"], "B")
    codes = world.introduced("RU", producer, 6)
    world.apply_ok(*[world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]) for c in codes])
    world.store.close()
    checked_here: list[bytes] = []
    real = Verifier.verify

    def verify(self: Verifier, public_key: bytes, signature: bytes, *args: Any) -> bool:
        checked_here.append(signature)
        return real(self, public_key, signature, *args)

    monkeypatch.setattr(Verifier, "verify", verify)  # in this process only: workers are spawned
    with Auditor(world.genesis, tmp_path / "replica", workers=2) as auditor:
        report = auditor.verify_data_dir(world.store.path)
    assert report.ok and report.applied == report.documents
    assert checked_here == []
    world.store = LedgerStore(world.store.path, world.genesis, sync=False)

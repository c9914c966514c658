"""Healing on one node: evidence or a conflicting quorum returns it to its last final block."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from consensus import Entry, EntryType, HardState, LogIndex, MemoryStorage, Term
from ledger import DocType, LedgerStore
from node._healing import REFUSED_TERMS_MAX, Healing
from tests.ledger.world import World

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.rewinds: list[tuple[int, int]] = []
        self.offered: list[bytes] = []

    async def rewind(self, index: LogIndex, floor: LogIndex) -> None:
        self.rewinds.append((index, floor))

    def offer(self, documents: Sequence[bytes]) -> None:
        self.offered.extend(documents)


def five_blocks(tmp_path: Path) -> tuple[World, list[bytes]]:
    """Five blocks at Raft indexes 10, 20, ... 50; returns the documents of the last three."""
    world = World(tmp_path / "ledger")
    wires = []
    for i in range(5):
        doc = world.doc(world.regulator("RU"), DocType.REGISTER_PARTICIPANT, public_key=bytes([i + 1]) * 32,
                        state="RU", roles=["producer"], name=f"P{i}").wire()
        world.time_ms += 1_000
        world.store.apply_block([doc], world.time_ms, "KZ", raft_term=3, raft_index=10 * (i + 1))
        wires.append(doc)
    return world, wires[2:]


async def test_evidence_refuses_the_state_rolls_back_to_final_and_rewinds_raft(tmp_path: Path) -> None:
    """With blocks 1-2 final, evidence against KZ refuses its term's entries, rolls the ledger
    back to block 2, rewinds Raft to block 2's index (its floor too), and offers the
    documents of blocks 3-5 again; the state equals a ledger that applied only two."""
    world, later = five_blocks(tmp_path)
    world.store.set_final_height(2)
    recorder = Recorder()
    healing = Healing(world.store, tmp_path / "healing", recorder.rewind, recorder.offer, own_state="RU")
    healed = await healing.on_evidence("KZ", term=3)
    assert healed is not None and (healed.from_height, healed.to_height, healed.raft_index) == (5, 2, 20)
    # Refusing KZ as leader is the node's (its evidence store): tests/node/test_finality.py.
    # Entries of term 3 above block 2's index stay out of the Raft log; the rest pass.
    assert healing.entry_refused(3, 21) and not healing.entry_refused(3, 20)
    assert not healing.entry_refused(4, 21)
    assert recorder.rewinds == [(20, 20)] and recorder.offered == later
    other = LedgerStore(tmp_path / "short", world.genesis, sync=False)
    for height in (1, 2):
        block = world.store.block(height)
        assert block is not None
        other.apply_block(block.documents, block.header.time_ms, block.header.proposer,
                          block.header.raft_term, block.header.raft_index)
    assert other.head == world.store.head
    other.close()
    # Nothing above the final height any more: a second trigger changes nothing.
    assert await healing.on_conflicting_quorum(3) is None and recorder.rewinds == [(20, 20)]
    world.store.close()


def raft_log_of(world: World, term: int = 3) -> MemoryStorage:
    """A Raft log holding entries 1-50 of one term, all committed."""
    storage = MemoryStorage()
    storage.append([Entry(Term(term), LogIndex(i), EntryType.NORMAL, b"") for i in range(1, 51)])
    storage.set_hard_state(HardState(Term(term), 0, LogIndex(50)))
    storage.sync()
    return storage


async def test_a_heal_interrupted_before_the_raft_rewind_is_finished_at_start(tmp_path: Path) -> None:
    """A crash after the marker and the ledger rollback, before Raft rewound: a new
    Healing finds the marker and rewinds the Raft log to the final block's index before
    the driver starts, so the undone entries are never handed to the applier again."""
    world, later = five_blocks(tmp_path)
    world.store.set_final_height(2)

    async def crash(index: LogIndex, floor: LogIndex) -> None:
        raise RuntimeError("crashed before the Raft rewind")

    healing = Healing(world.store, tmp_path / "healing", crash, lambda docs: None, own_state="RU")
    with pytest.raises(RuntimeError):
        await healing.on_evidence("KZ", term=3)
    assert world.store.head.height == 2 and healing.pending == 20
    raft_log = raft_log_of(world)
    restarted = Healing(world.store, tmp_path / "healing", Recorder().rewind, lambda docs: None)
    assert restarted.pending == 20 and restarted.refused_terms == {3}
    assert restarted.finish_at_start(raft_log) == []  # the ledger had rolled back already
    hard, _ = raft_log.initial_state()
    assert raft_log.last_index() == 20 and hard.commit == 20 and restarted.pending is None
    assert Healing(world.store, tmp_path / "healing", Recorder().rewind, lambda docs: None).pending is None
    world.store.close()


async def test_a_heal_interrupted_before_the_ledger_rollback_is_finished_at_start(tmp_path: Path) -> None:
    """A crash after the marker, before the ledger rolled back: at start the ledger rolls
    back too, and the undone documents are returned to be offered again."""
    world, later = five_blocks(tmp_path)
    world.store.set_final_height(2)
    healing = Healing(world.store, tmp_path / "healing", Recorder().rewind, lambda docs: None)
    healing.pending = 20
    healing._save()  # the marker, as heal() writes it before the rollback
    raft_log = raft_log_of(world)
    restarted = Healing(world.store, tmp_path / "healing", Recorder().rewind, lambda docs: None)
    assert restarted.finish_at_start(raft_log) == later
    assert world.store.head.height == 2 and raft_log.last_index() == 20
    world.store.close()


async def test_the_applier_queue_is_dropped_and_offered_again(tmp_path: Path) -> None:
    """Blocks queued but not applied when a heal starts are dropped (they are above the
    final block too) and their documents offered again with the undone ones."""
    world, later = five_blocks(tmp_path)
    world.store.set_final_height(2)
    recorder = Recorder()
    held: list[int] = []

    async def hold(index: int) -> list[bytes]:
        held.append(index)
        return [b"queued"]

    healing = Healing(world.store, tmp_path / "healing", recorder.rewind, recorder.offer, hold=hold)
    healed = await healing.heal()
    assert healed is not None and held == [20] and recorder.offered == [*later, b"queued"]
    world.store.close()


async def test_a_flood_of_invented_terms_does_not_push_out_the_term_really_led(tmp_path: Path) -> None:
    """A hostile state can sign append evidence against itself for any term. Over the
    bound, terms below the last final block's go first (they cannot matter), then the
    highest: the term it really led in (reached by the nodes, above the final block's)
    stays refused whatever it invents."""
    world, _later = five_blocks(tmp_path)  # every block of Raft term 3
    world.store.set_final_height(2)
    recorder = Recorder()
    healing = Healing(world.store, tmp_path / "healing", recorder.rewind, recorder.offer, own_state="RU")
    healing.refuse_terms({5})  # the term it really led in
    healing.refuse_terms(set(range(1_000, 1_000 + 2 * REFUSED_TERMS_MAX)))  # invented, above it
    assert healing.term_refused(5) and healing.entry_refused(5, 21)
    assert len(healing.refused_terms) == REFUSED_TERMS_MAX
    # Terms below the final block's term (3) go before any other.
    healing.refuse_terms({1, 2})
    assert not healing.term_refused(1) and not healing.term_refused(2) and healing.term_refused(5)
    # Kept across a restart.
    again = Healing(world.store, tmp_path / "healing", recorder.rewind, recorder.offer, own_state="RU")
    assert again.term_refused(5) and len(again.refused_terms) == REFUSED_TERMS_MAX

"""Healing on one node: evidence or a conflicting quorum returns it to its last final block."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from consensus import LogIndex
from ledger import DocType, LedgerStore
from node._healing import Healing
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
    """With blocks 1-2 final, evidence against KZ refuses it as leader, rolls the ledger
    back to block 2, rewinds Raft to block 2's index (its floor too), and offers the
    documents of blocks 3-5 again; the state equals a ledger that applied only two."""
    world, later = five_blocks(tmp_path)
    world.store.set_final_height(2)
    recorder = Recorder()
    healing = Healing(world.store, recorder.rewind, recorder.offer)
    healed = await healing.on_evidence("KZ", term=3)
    assert healed is not None and (healed.from_height, healed.to_height, healed.raft_index) == (5, 2, 20)
    assert healing.is_refused("KZ") and not healing.is_refused("RU")
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

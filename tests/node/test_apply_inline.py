"""Small blocks are applied on the event loop's thread, larger ones on the apply worker,
and the two never overlap (issue 9: the hand-off to the worker cost more than a small
block's apply)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from ledger import DocType, LedgerStore
from node import _pipeline as pipeline_module
from node._admission import Verified
from node._mempool import Mempool
from node._metrics import Metrics
from node._pipeline import ApplyPipeline
from node._waiters import Waiters
from tests.ledger.world import World

pytestmark = pytest.mark.unit


async def test_small_blocks_apply_on_the_loop_thread_large_ones_on_the_worker(tmp_path: Path) -> None:
    world = World(tmp_path / "db")
    producer = world.register("RU", ["producer"], "P")
    buyer = world.register("KZ", ["wholesaler"], "B")
    codes = world.introduced("RU", producer, 40)
    small = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]).wire() for c in codes[:2]]
    large = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]).wire()
             for c in codes[2:2 + pipeline_module.INLINE_APPLY_DOCUMENTS_MAX + 1]]
    store: LedgerStore = world.store
    threads: list[int] = []
    running = 0
    real = store.apply_block

    def apply_block(*args: Any, **kwargs: Any) -> Any:
        nonlocal running
        running += 1
        assert running == 1, "two blocks applied at once"
        threads.append(threading.get_ident())
        try:
            return real(*args, **kwargs)
        finally:
            running -= 1

    store.apply_block = apply_block  # type: ignore[method-assign]
    pipeline = ApplyPipeline("RU", store, Mempool(1000, 1 << 20), set(), Verified(), Waiters(), Metrics("RU"),
                             lambda block, accepted: None, fail=lambda reason: None)
    try:
        head = store.head
        results = await asyncio.gather(
            pipeline.execute(large, world.time_ms + 1_000, "RU", 1, head.raft_index + 1),
            pipeline.execute(small, world.time_ms + 2_000, "RU", 1, head.raft_index + 2),
        )
        assert [len(r.results) for r in results] == [len(large), len(small)]
        assert all(r.applied for block in results for r in block.results)
        assert threads[0] != threading.get_ident() and threads[1] == threading.get_ident()
    finally:
        pipeline.close()
        store.close()

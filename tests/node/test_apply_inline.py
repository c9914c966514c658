"""Fewer, cheaper blocks (issue 9): small blocks are applied on the event loop's thread,
larger ones on the apply worker, and the two never overlap (the hand-off to the worker
cost more than a small block's apply); the leader gathers fuller blocks."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from ledger import ChainParams, DocType, LedgerStore
from node import _pipeline as pipeline_module
from node._admission import Verified
from node._config import BlockConfig
from node._mempool import Mempool
from node._metrics import Metrics
from node._pipeline import ApplyPipeline, decode_entry
from node._proposer import GATHER_DEPTH, Proposer
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


class _SlowDriver:
    """A leader whose proposals commit when the test says so."""

    is_leader = True

    def __init__(self) -> None:
        self.proposed: list[bytes] = []
        self.commit = asyncio.Event()

    def status(self) -> Any:
        return type("Status", (), {"term": 1})()

    async def propose(self, data: bytes, timeout_s: float) -> int:
        self.proposed.append(data)
        await self.commit.wait()
        return len(self.proposed)


async def test_the_leader_gathers_a_fuller_block_while_two_are_in_flight() -> None:
    """With GATHER_DEPTH proposals in flight and less than a full block waiting, the
    leader proposes nothing more until one is done, then all that waited in one block
    (before: a block every `wait_max_ms`, 3 to 6 documents each at 150 documents/s)."""
    driver = _SlowDriver()
    pool = Mempool(1000, 1 << 20)
    proposer = Proposer("RU", BlockConfig(wait_max_ms=1), pool, driver,  # type: ignore[arg-type]
                        delivered_term=lambda: 1, failed=lambda: False, params=ChainParams,
                        head_time_ms=lambda: 10**12, clock_ms=lambda: 10**12)
    task = asyncio.get_running_loop().create_task(proposer.run())
    try:
        for i in range(GATHER_DEPTH + 5):
            pool.add(bytes([i]) * 32, b"w%d" % i, 2**62, 0.0)
            proposer.wake()
            await asyncio.sleep(0.01)
        assert len(driver.proposed) == GATHER_DEPTH
        driver.commit.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(driver.proposed) > GATHER_DEPTH:
                break
        assert [len(decode_entry(p)[2]) for p in driver.proposed[GATHER_DEPTH:]] == [5]
    finally:
        task.cancel()

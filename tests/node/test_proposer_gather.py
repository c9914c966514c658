"""Fewer blocks (issue 9): the leader gathers fuller blocks while proposals are in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ledger import ChainParams
from node._config import BlockConfig
from node._mempool import Mempool
from node._pipeline import decode_entry
from node._proposer import GATHER_DEPTH, Proposer

pytestmark = pytest.mark.unit


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

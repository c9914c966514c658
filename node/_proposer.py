"""Block production: while this node leads, documents leave the mempool as proposals.

Proposals are bounded by count, bytes and wait (the node's `[block]` config, within
the genesis limits, which every node enforces at apply), and a few are in flight at
once so that replication and application overlap. A proposal that fails (leadership
lost, dropped, timed out) puts its documents back.

A block's time is our clock, but never more than one genesis step ahead of the head
(the ledger would clamp it, and honest nodes would refuse to attest it). After the
chain was idle for longer than a step, its time lags the clock: before documents are
proposed again, the leader proposes empty blocks, one at a time, each a step later,
until the head is within a step of its clock. An idle chain makes no blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from consensus import Driver, DriverStopped, NotLeader, ProposalDropped, ProposalTimeout
from ledger import ChainParams

from ._config import BlockConfig
from ._mempool import Mempool
from ._pipeline import encode_entry

log = logging.getLogger(__name__)

# A proposal not applied within this time is given up; its documents are proposed again.
PROPOSAL_TIMEOUT_S = 20.0
# How long the idle proposer sleeps before it looks again without being woken.
IDLE_WAKE_S = 0.05
# Proposals in flight beyond which the leader gathers a fuller block instead of
# proposing another partial one: each block costs every node a fixed amount (three
# attestation signatures, a header, a store batch, an fsync share), which at one
# document per request and 5 ms gathers was 3 to 6 documents a block. Two keep Raft
# replicating one block while the next gathers; up to `proposals_in_flight_max` go
# out once the mempool holds a full block.
GATHER_DEPTH = 2


class Proposer:
    def __init__(
        self,
        state: str,
        config: BlockConfig,
        mempool: Mempool,
        driver: Driver,
        delivered_term: Callable[[], int],
        failed: Callable[[], bool],
        params: Callable[[], ChainParams],
        head_time_ms: Callable[[], int],
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        """`delivered_term()` is the term of the last entry handed to the ledger;
        `failed()` says whether the node stopped serving; `params()` are the chain's
        limits in force (genesis's, as governance set them); `head_time_ms()` is the
        time of our ledger's head block."""
        self._state = state
        self._params = params
        self._head_time_ms = head_time_ms
        self._clock_ms = clock_ms
        self._config = config
        self._mempool = mempool
        self._driver = driver
        self._delivered_term = delivered_term
        self._failed = failed
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()  # a proposal in flight is done
        self.in_flight = 0

    def wake(self) -> None:
        self._wake.set()

    def can_propose(self) -> bool:
        driver = self._driver
        if not driver.is_leader or self._failed():
            return False
        # A new leader first takes in every entry of earlier terms (its own empty entry
        # commits them), so that it does not propose documents already in a block.
        return self._delivered_term() == driver.status().term

    async def run(self) -> None:
        """The proposer task."""
        config = self._config
        wait_s = config.wait_max_ms / 1000
        pool = self._mempool
        while True:
            self._wake.clear()
            documents_max, bytes_max = self.limits()
            full = pool.unproposed >= documents_max or pool.unproposed_bytes >= bytes_max
            if self.in_flight >= min(GATHER_DEPTH, config.proposals_in_flight_max) and not full:
                # Gathering: the next block goes when one in flight is done (a document
                # arriving meanwhile would only wake us for nothing).
                self._finished.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), IDLE_WAKE_S)
                continue
            busy = self.in_flight >= config.proposals_in_flight_max
            if busy or not pool.unproposed or not self.can_propose():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
                continue
            if self._clock_ms() - self._head_time_ms() > self._params().block_time_step_max_ms:
                # Chain time lags our clock by more than a step: catch it up first.
                if self.in_flight == 0:
                    self.in_flight += 1
                    asyncio.get_running_loop().create_task(self._propose([]))
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
                continue
            if not full and self.in_flight > 0 and wait_s > 0:
                # Something is in flight already: gather a fuller block for a moment.
                await asyncio.sleep(wait_s)
            batch = pool.take(documents_max, bytes_max)
            if batch:
                self.in_flight += 1
                asyncio.get_running_loop().create_task(self._propose(batch))

    def limits(self) -> tuple[int, int]:
        """Documents and bytes per block: this node's config within the chain's limits."""
        params = self._params()
        return (min(self._config.documents_max, params.block_documents_max),
                min(self._config.bytes_max, params.block_bytes_max))

    def block_time_ms(self) -> int:
        """Our clock, but at most one step ahead of the head: the previous block of a
        block we propose now is the head or a later block, so the ledger never has to
        clamp it (honest nodes alarm when it does)."""
        return min(self._clock_ms(), self._head_time_ms() + self._params().block_time_step_max_ms)

    async def _propose(self, batch: list[tuple[bytes, bytes]]) -> None:
        data = encode_entry(self.block_time_ms(), self._state, [w for _, w in batch])
        try:
            await self._driver.propose(data, timeout_s=PROPOSAL_TIMEOUT_S)
        except (NotLeader, ProposalDropped, ProposalTimeout, DriverStopped) as exc:
            log.debug("proposal of %d documents failed: %r", len(batch), exc)
            self._mempool.unmark(doc_id for doc_id, _ in batch)
        finally:
            self.in_flight -= 1
            self._finished.set()
            self._wake.set()

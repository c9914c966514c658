"""Block production: while this node leads, documents leave the mempool as proposals.

Proposals are bounded by count, bytes and wait (the node's `[block]` config), and a
few are in flight at once so that replication and application overlap. A proposal
that fails (leadership lost, dropped, timed out) puts its documents back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from consensus import Driver, DriverStopped, NotLeader, ProposalDropped, ProposalTimeout

from ._config import BlockConfig
from ._mempool import Mempool
from ._pipeline import encode_entry

log = logging.getLogger(__name__)

# A proposal not applied within this time is given up; its documents are proposed again.
PROPOSAL_TIMEOUT_S = 20.0
# How long the idle proposer sleeps before it looks again without being woken.
IDLE_WAKE_S = 0.05


class Proposer:
    def __init__(
        self,
        state: str,
        config: BlockConfig,
        mempool: Mempool,
        driver: Driver,
        delivered_term: Callable[[], int],
        failed: Callable[[], bool],
    ) -> None:
        """`delivered_term()` is the term of the last entry handed to the ledger;
        `failed()` says whether the node stopped serving."""
        self._state = state
        self._config = config
        self._mempool = mempool
        self._driver = driver
        self._delivered_term = delivered_term
        self._failed = failed
        self._wake = asyncio.Event()
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
            busy = self.in_flight >= config.proposals_in_flight_max
            if busy or not pool.unproposed or not self.can_propose():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
                continue
            full = pool.unproposed >= config.documents_max or pool.unproposed_bytes >= config.bytes_max
            if not full and self.in_flight > 0 and wait_s > 0:
                # Something is in flight already: gather a fuller block for a moment.
                await asyncio.sleep(wait_s)
            batch = pool.take(config.documents_max, config.bytes_max)
            if batch:
                self.in_flight += 1
                asyncio.get_running_loop().create_task(self._propose(batch))

    async def _propose(self, batch: list[tuple[bytes, bytes]]) -> None:
        data = encode_entry(int(time.time() * 1000), self._state, [w for _, w in batch])
        try:
            await self._driver.propose(data, timeout_s=PROPOSAL_TIMEOUT_S)
        except (NotLeader, ProposalDropped, ProposalTimeout, DriverStopped) as exc:
            log.debug("proposal of %d documents failed: %r", len(batch), exc)
            self._mempool.unmark(doc_id for doc_id, _ in batch)
        finally:
            self.in_flight -= 1
            self._wake.set()

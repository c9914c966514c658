"""Housekeeping, a few times a second: status gossip, resends, expiry, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from consensus import Driver, Role
from ledger import Genesis

from ._gossip import document_item
from ._mempool import Mempool
from ._metrics import Metrics
from ._proposer import Proposer
from ._transport import PeerLinks

HOUSEKEEPING_INTERVAL_S = 0.25
STATUS_INTERVAL_S = 0.5
# Documents waiting this long without a block are sent to the leader again (it may
# have missed them, or been elected after they were sent).
RESEND_AFTER_S = 3.0
RESEND_BATCH_MAX = 5_000


class Housekeeping:
    def __init__(
        self,
        genesis: Genesis,
        driver: Driver,
        links: PeerLinks,
        mempool: Mempool,
        proposer: Proposer,
        metrics: Metrics,
        status_item: Callable[[], bytes],
        fail: Callable[[str], None],
        watch_censorship: Callable[[float, int, str | None, bool], None] | None = None,
    ) -> None:
        """`watch_censorship(now_s, now_ms, leader state, we lead)` runs every step."""
        self._genesis = genesis
        self._driver = driver
        self._links = links
        self._mempool = mempool
        self._proposer = proposer
        self._metrics = metrics
        self._status_item = status_item
        self._fail = fail
        self._watch_censorship = watch_censorship
        self._leader_seen = 0

    async def run(self) -> None:
        last_status = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            now = time.monotonic()
            self.step(now, send_status=now - last_status >= STATUS_INTERVAL_S)
            if now - last_status >= STATUS_INTERVAL_S:
                last_status = now

    def step(self, now_s: float, send_status: bool) -> None:
        driver = self._driver
        if driver.failure is not None:
            self._fail(f"the Raft driver failed: {driver.failure!r}")
        if send_status:
            self._links.gossip_all(self._status_item())
            for peer in self._links.raft:
                self._metrics.peer_connected(peer).set(1 if self._links.connected(peer) else 0)
        self._resend_stale(now_s)
        now_ms = int(time.time() * 1000)
        self._mempool.expire(now_ms)
        if self._watch_censorship is not None and driver.running:
            self._watch_censorship(now_s, now_ms, self._leader_state(), driver.is_leader)
        if driver.running:
            status = driver.status()
            self._metrics.term.set(status.term)
            self._metrics.role.set(int(status.role))
            if status.role != Role.LEADER and self._proposer.in_flight == 0:
                self._mempool.clear_proposed()
        self._metrics.mempool_documents.set(len(self._mempool))
        self._metrics.mempool_bytes.set(self._mempool.size_bytes)

    def _leader_state(self) -> str | None:
        leader = self._driver.leader
        if not leader:
            return None
        try:
            return self._genesis.state_by_node(leader).code
        except KeyError:
            return None

    def _resend_stale(self, now_s: float) -> None:
        """Send the leader what waits too long; everything pending when a new leader
        appears (it may never have seen our documents)."""
        driver = self._driver
        if not driver.running or driver.is_leader or not driver.leader:
            return
        try:
            leader = self._genesis.state_by_node(driver.leader).code
        except KeyError:
            return
        older_than_s = RESEND_AFTER_S if driver.leader == self._leader_seen else 0.0
        self._leader_seen = driver.leader
        for wire in self._mempool.stale(older_than_s, now_s, RESEND_BATCH_MAX):
            self._links.gossip_to(leader, document_item(wire))

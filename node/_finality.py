"""The node's final height, and clients waiting for it.

The final height is the highest height up to which every block this node holds has a
Byzantine quorum of agreeing attestations in its store (ledger.final_states): the
node's own and its peers', which `Attestations` stores only when they verify and
attest the very hash this node computed. It only grows: a final block is never rolled
back (a different block cannot gather a second Byzantine quorum at one height without
more than f hostile states).

The height is kept in a small file beside the ledger as a hint for the next start, so
that a restart does not count attestations from block 1 again. The hint is only ever a
height that was final, so starting from it is safe; written at most every
`HINT_EVERY_BLOCKS` blocks (and on close), a crash loses at most that much counting.

When the head runs ahead of the final height by more than `gap_blocks_max`, the node
raises the `finality_gap` alarm: blocks are being applied that the member states do
not (yet) attest, so either several states are down or lagging or a leader is handing
out different blocks to different followers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge

from ledger import Genesis, LedgerStore, final_states

from ._metrics import Metrics

log = logging.getLogger(__name__)

# Rewrite the hint file after this many newly final blocks: a few small writes a second
# at most under load; a crash costs recounting at most this many heights.
HINT_EVERY_BLOCKS = 64
# Head minus final height beyond which the node raises the finality-gap alarm. Healthy
# five-state testnets under load show a gap of a few blocks (attestations arrive one
# gossip round after the block); 256 blocks is minutes of traffic without finality at
# light load and tens of seconds at full load, far outside what a healthy network shows.
FINALITY_GAP_BLOCKS_MAX = 256
# Heights waited for at once: one entry per distinct height clients wait for; a client
# waits for its own document's block, so this is bounded by the blocks in flight; the
# cap keeps a flood of waits for far-future heights from growing the table.
WAITED_HEIGHTS_MAX = 100_000


class Finality:
    """Tracks the final height and wakes clients waiting for a height to be final."""

    def __init__(self, genesis: Genesis, state: str, store: LedgerStore, hint_path: Path, metrics: Metrics,
                 gap_blocks_max: int = FINALITY_GAP_BLOCKS_MAX,
                 on_final: Callable[[], None] = lambda: None) -> None:
        self._genesis = genesis
        self._store = store
        self._hint_path = hint_path
        self._alarms = metrics.alarms
        self._gap_blocks_max = gap_blocks_max
        self._on_final = on_final  # the final height moved (the event feed serves final blocks)
        self._waiting: dict[int, list[asyncio.Future[None]]] = {}
        self._hint_written = 0
        self._gap_alarmed = False
        r = metrics.registry
        self._final_gauge = Gauge(
            "tamga_final_height", "Highest height up to which every block is final (attested by a "
            "Byzantine quorum of member states)", ["state"], registry=r).labels(state=state)
        self._gap_gauge = Gauge("tamga_finality_gap_blocks", "Head height minus final height",
                                ["state"], registry=r).labels(state=state)
        # The store's final height is durable (its undo data depends on it); the hint is
        # written every few blocks only.
        self.final_height = min(max(self._read_hint(), store.final_height), store.head.height)
        self._hint_written = self.final_height
        self.advance()

    # -- what others call ----------------------------------------------------------------

    def is_final(self, height: int) -> bool:
        return 0 < height <= self.final_height

    def gap(self) -> int:
        return max(0, self._store.head.height - self.final_height)

    def attested(self, height: int) -> None:
        """An attestation of block `height` was stored: the final height may move, but
        only when that block was the next one short of a quorum."""
        if height == self.final_height + 1:
            self.advance()

    def advance(self) -> None:
        """Move the final height over every following block that a quorum attests."""
        head = self._store.head.height
        height = self.final_height
        while height < head and final_states(
                self._genesis, (a.state for a in self._store.attestations(height + 1))):
            height += 1
        if height > self.final_height:
            self.final_height = height
            self._wake(height)
            self._on_final()
            if height - self._hint_written >= HINT_EVERY_BLOCKS:
                self._write_hint()
        self._check_gap(head)

    async def wait_final(self, height: int, timeout_s: float) -> bool:
        """Whether block `height` is final within the timeout."""
        if self.is_final(height):
            return True
        if len(self._waiting) >= WAITED_HEIGHTS_MAX and height not in self._waiting:
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(height, []).append(future)
        try:
            async with asyncio.timeout(timeout_s):
                await future
            return True
        except TimeoutError:
            return self.is_final(height)
        finally:
            futures = self._waiting.get(height)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[height]

    def fail_all(self, exc: BaseException) -> None:
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        self._waiting.clear()

    def close(self) -> None:
        self._write_hint()

    def to_json(self) -> dict[str, int | bool]:
        return {"final_height": self.final_height, "gap_blocks": self.gap(),
                "gap_blocks_max": self._gap_blocks_max}

    # -- inside ----------------------------------------------------------------------------

    def _wake(self, final_height: int) -> None:
        for height in [h for h in self._waiting if h <= final_height]:
            for future in self._waiting.pop(height):
                if not future.done():
                    future.set_result(None)

    def _check_gap(self, head: int) -> None:
        gap = max(0, head - self.final_height)
        self._final_gauge.set(self.final_height)
        self._gap_gauge.set(gap)
        if gap > self._gap_blocks_max and not self._gap_alarmed:
            # Once per episode: the alarm says it began; status shows the gap throughout.
            self._gap_alarmed = True
            self._alarms.raise_alarm(
                "finality_gap", head,
                f"block {head} is {gap} blocks above the final height {self.final_height} "
                f"(alarm above {self._gap_blocks_max}): the member states do not attest what this "
                "node applies")
        elif gap <= self._gap_blocks_max // 2:
            self._gap_alarmed = False

    def _read_hint(self) -> int:
        try:
            text = self._hint_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return 0
        return int(text) if text.isdigit() and len(text) <= 19 else 0

    def _write_hint(self) -> None:
        tmp = self._hint_path.with_suffix(".tmp")
        try:
            tmp.write_text(str(self.final_height), encoding="ascii")
            os.replace(tmp, self._hint_path)
        except OSError as exc:
            log.warning("cannot keep the final height hint in %s: %s", self._hint_path, exc.strerror)
            return
        self._hint_written = self.final_height


__all__ = ["FINALITY_GAP_BLOCKS_MAX", "Finality"]

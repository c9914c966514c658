"""Catch-up: blocks this node lacks, fetched from peers and executed here again.

Entries the driver delivered may be compacted from the Raft log before the applier
reached them; after a crash the driver then restores a snapshot, and `restore`
fetches those blocks from peers. Snapshots name the Raft index, and a peer serving
blocks says up to which index it has applied everything, so nothing is skipped.
Every fetched block is executed here and must come out with the peer's very hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgpack

from consensus import Snapshot
from ledger import Attestation, Block, DecodeError, Genesis, LedgerStore, Verifier

from ._pipeline import ApplyPipeline
from ._transport import PeerLinks

log = logging.getLogger(__name__)

# The peer API's block stream says in this header up to which Raft index the serving
# node had applied every entry when it answered.
PROCESSED_HEADER = "X-Tamga-Processed-Index"
# How long a node that must restore a snapshot keeps trying to fetch the blocks.
RESTORE_DEADLINE_S = 120.0
# One streamed block is at most the genesis bound (16 MiB) plus framing and attestations.
STREAM_BUFFER_BYTES_MAX = 64 << 20
FETCH_TIMEOUT_S = 300.0


class Diverged(Exception):
    """Our chain differs from the one a peer or the member states attested."""


class CatchUp:
    """Restores snapshots by fetching and re-executing the blocks we lack."""

    def __init__(
        self,
        genesis: Genesis,
        state: str,
        store: LedgerStore,
        verifier: Verifier,
        pipeline: ApplyPipeline,
        links: PeerLinks,
        leader: Callable[[], int],
        fail: Callable[[str], None],
    ) -> None:
        self._genesis = genesis
        self._state = state
        self._store = store
        self._verifier = verifier
        self._pipeline = pipeline
        self._links = links
        self._leader = leader
        self._fail = fail

    async def restore(self, snapshot: Snapshot) -> None:
        """Bring the ledger up to the snapshot's Raft index by fetching the blocks we lack
        from peers and re-executing them; each must come out with the peer's very hash."""
        target = snapshot.meta.index
        await self._pipeline.idle()
        if self._store.head.raft_index < target:
            log.info("restoring: fetching blocks from %d on from peers, up to raft index %d",
                     self._store.head.height + 1, target)
            await self._fetch_blocks(target)
        self._pipeline.note_restored(target)
        log.info("restored to block %d (raft index %d)", self._store.head.height, target)

    async def _fetch_blocks(self, target: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTORE_DEADLINE_S
        attempt = 0
        while True:
            for peer in self._peers_by_preference():
                try:
                    if await self._fetch_from(peer) >= target:
                        return
                except Diverged:
                    raise
                except Exception as exc:  # any failure of one peer: try the next
                    log.warning("fetching blocks from %s failed: %r", peer, exc)
            attempt += 1
            if loop.time() > deadline:
                raise TimeoutError(f"could not fetch the blocks up to raft index {target} from any peer")
            await asyncio.sleep(min(0.1 * attempt, 2.0))

    def _peers_by_preference(self) -> list[str]:
        leader = self._leader()
        peers = [s.code for s in self._genesis.states if s.code != self._state]
        return sorted(peers, key=lambda p: self._genesis.state(p).node_id != leader)

    async def _fetch_from(self, peer: str) -> int:
        """Apply every block `peer` holds beyond our head; the Raft index up to which the
        peer had applied everything when it answered (so we now have all of that)."""
        start = self._store.head.height + 1
        response = await self._links.get(peer, f"/peer/blocks?from={start}", timeout_s=FETCH_TIMEOUT_S)
        try:
            if response.status != 200:
                raise RuntimeError(f"{peer} answered {response.status}")
            processed = int(response.headers.get(PROCESSED_HEADER, "0"))
            unpacker = msgpack.Unpacker(raw=False, max_buffer_size=STREAM_BUFFER_BYTES_MAX)
            async for chunk in response.content.iter_any():
                unpacker.feed(chunk)
                for item in unpacker:
                    await self._replay(peer, item)
        finally:
            response.release()
        return processed

    async def _replay(self, peer: str, item: Any) -> None:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise ValueError(f"{peer} sent a malformed block")
        block = Block.decode(item[0])
        expected = self._store.head.height + 1
        if block.header.height != expected:
            raise ValueError(f"{peer} sent block {block.header.height}, expected {expected}")
        h = block.header
        decoded = self._pipeline.take_committed(block.documents)
        applied = await self._pipeline.execute(block.documents, h.time_ms, h.proposer, h.raft_term,
                                               h.raft_index, decoded)
        if applied.header.hash != h.hash:
            self._fail(f"block {h.height} re-executed to {applied.header.hash.hex()[:16]}..., "
                       f"but {peer} has {h.hash.hex()[:16]}...")
            raise Diverged(f"block {h.height} differs")
        for raw in item[1]:
            with contextlib.suppress(DecodeError):
                self._store.add_attestation(Attestation.from_list(raw), self._verifier)
        self._pipeline.finish(applied)

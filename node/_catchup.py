"""Catch-up: blocks this node lacks, fetched from peers and executed here again.

Entries the driver delivered may be compacted from the Raft log before the applier
reached them; after a crash the driver then restores a snapshot, and `restore`
fetches those blocks from peers.

No peer is believed. A fetched block is accepted only when it carries valid
attestations (checked against the genesis keys) from a quorum of distinct member
states for that very block hash (`catchup_quorum`): one peer, hostile or not, cannot
make us take a block the member states did not attest. The node then re-executes the
block, which must come out with the attested hash (if it does not, a quorum attested
a state we cannot reproduce: this node diverged, and it stops). A stream that breaks
these rules is refused and the next peer asked.

The node decides itself how far it got: the Raft index of the last block it applied
(from the header its own execution produced) must reach the snapshot's index. A
snapshot's index is always the Raft index of a block or 0, since the driver compacts
only up to the applied index, which is the head block's Raft index (or an index
restored the same way); so a complete chain always gets there. A peer that stops
short (lagging or lying) only sends us on to the next one. The serving node still
sends `X-Tamga-Processed-Index`, which nobody reads any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgpack

from consensus import Snapshot
from ledger import (
    Attestation,
    Block,
    BlockHeader,
    DecodeError,
    Genesis,
    LedgerStore,
    Verifier,
    documents_root,
    finality_quorum,
)

from ._pipeline import ApplyPipeline
from ._transport import PeerLinks

log = logging.getLogger(__name__)

# The peer API's block stream still says in this header up to which Raft index the
# serving node had applied every entry. Catch-up does not believe it (a peer may lie);
# it stays for people and older nodes.
PROCESSED_HEADER = "X-Tamga-Processed-Index"
# How long a node that must restore a snapshot keeps trying to fetch the blocks.
RESTORE_DEADLINE_S = 120.0
# One streamed block is at most the genesis bound (16 MiB) plus framing and attestations.
STREAM_BUFFER_BYTES_MAX = 64 << 20
# Arrays in one streamed item, [block bytes, [attestation, ...]]: one attestation per
# member state at most, so a few hundred are plenty. The buffer bound alone would let a
# peer's 64 MiB of nested empty arrays become tens of millions of Python lists.
STREAM_ITEM_ARRAY_ELEMENTS_MAX = 4_096


def stream_unpacker() -> tuple[msgpack.Unpacker, Callable[[], None]]:
    """A bounded unpacker for a peer's block stream, and the call that starts the count
    of the next item. No maps, strings or extensions appear in the stream."""
    elements = 0

    def count(array: list[Any]) -> list[Any]:
        nonlocal elements
        elements += len(array) + 1
        if elements > STREAM_ITEM_ARRAY_ELEMENTS_MAX:
            raise Unproven(f"a streamed block holds more than {STREAM_ITEM_ARRAY_ELEMENTS_MAX} "
                           "array elements")
        return array

    def next_item() -> None:
        nonlocal elements
        elements = 0

    unpacker = msgpack.Unpacker(
        raw=False, max_buffer_size=STREAM_BUFFER_BYTES_MAX, list_hook=count,
        max_array_len=STREAM_ITEM_ARRAY_ELEMENTS_MAX, max_map_len=0, max_ext_len=0, max_str_len=64,
    )
    return unpacker, next_item
FETCH_TIMEOUT_S = 300.0


def catchup_quorum(genesis: Genesis) -> int:
    """How many distinct member states must attest a fetched block: a Byzantine quorum
    (ledger.finality_quorum), so catch-up takes only final blocks. A majority is not
    enough: a hostile leader can gather a majority on each of two blocks at one height."""
    return finality_quorum(len(genesis.states))


class Unproven(Exception):
    """A peer's block stream breaks the rules: missing attestations, a wrong height,
    documents that do not match the attested header. The next peer is asked."""


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
        self.refused_streams = 0  # peers' streams given up on (failed, or broke the rules)

    async def restore(self, snapshot: Snapshot) -> None:
        """Bring the ledger up to the snapshot's Raft index by fetching the blocks we lack
        from peers and re-executing them; each must be attested by a quorum."""
        target = snapshot.meta.index
        await self._pipeline.idle()
        if self._store.head.raft_index < target:
            log.info("restoring: fetching blocks from %d on from peers, up to raft index %d",
                     self._store.head.height + 1, target)
            await self._fetch_blocks(target)
        self._pipeline.note_restored(target)
        log.info("restored to block %d (raft index %d)", self._store.head.height, target)

    async def _fetch_blocks(self, target: int) -> None:
        """Ask peer after peer until the blocks we applied ourselves reach `target`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTORE_DEADLINE_S
        attempt = 0
        while True:
            for peer in self._peers_by_preference():
                try:
                    await self._fetch_from(peer, target)
                except Diverged:
                    raise
                except Exception as exc:  # any failure of one peer: try the next
                    self.refused_streams += 1
                    log.warning("fetching blocks from %s failed: %r", peer, exc)
                if self._store.head.raft_index >= target:
                    return
            attempt += 1
            if loop.time() > deadline:
                raise TimeoutError(f"could not fetch the blocks up to raft index {target} from any peer")
            await asyncio.sleep(min(0.1 * attempt, 2.0))

    def _peers_by_preference(self) -> list[str]:
        leader = self._leader()
        peers = [s.code for s in self._genesis.states if s.code != self._state]
        return sorted(peers, key=lambda p: self._genesis.state(p).node_id != leader)

    async def _fetch_from(self, peer: str, target: int) -> None:
        """Apply, one by one, the quorum-attested blocks `peer` streams beyond our head,
        until our own head reaches `target` or the stream ends."""
        start = self._store.head.height + 1
        response = await self._links.get(peer, f"/peer/blocks?from={start}", timeout_s=FETCH_TIMEOUT_S)
        try:
            if response.status != 200:
                raise Unproven(f"{peer} answered {response.status}")
            unpacker, next_item = stream_unpacker()
            async for chunk in response.content.iter_any():
                unpacker.feed(chunk)
                for item in unpacker:
                    next_item()
                    await self.replay(peer, item)
                    if self._store.head.raft_index >= target:
                        return
        finally:
            response.release()

    async def replay(self, peer: str, item: Any) -> None:
        """Check one streamed block against the quorum rule, re-execute it, keep it."""
        block, attestations = self._proven(peer, item)
        h = block.header
        decoded = self._pipeline.take_committed(block.documents)
        applied = await self._pipeline.execute(block.documents, h.time_ms, h.proposer, h.raft_term,
                                               h.raft_index, decoded)
        if applied.header.hash != h.hash:
            self._fail(f"block {h.height} re-executed to {applied.header.hash.hex()[:16]}..., "
                       f"but {len(attestations)} member states attested {h.hash.hex()[:16]}...")
            raise Diverged(f"block {h.height} differs")
        for att in attestations:
            self._store.add_attestation(att, self._verifier)
        self._pipeline.finish(applied)

    def _proven(self, peer: str, item: Any) -> tuple[Block, list[Attestation]]:
        """The block of a stream item and the attestations that prove it; `Unproven` when
        it is malformed, not the next block, or short of a quorum."""
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes) \
                or not isinstance(item[1], list):
            raise Unproven(f"{peer} sent a malformed block")
        try:
            block = Block.decode(item[0])
        except DecodeError as exc:
            raise Unproven(f"{peer} sent a block that does not decode: {exc}") from exc
        h = block.header
        head = self._store.head
        expected = head.height + 1
        if h.height != expected or h.prev_hash != head.hash or h.chain_id != self._genesis.chain_id:
            raise Unproven(f"{peer} sent block {h.height}, which does not extend our block {expected - 1}")
        if h.documents != len(block.documents) or documents_root(block.documents) != h.documents_root:
            raise Unproven(f"{peer} sent block {h.height} with documents its header does not name")
        attestations = self._attesting(h, item[1])
        needed = catchup_quorum(self._genesis)
        if len(attestations) < needed:
            raise Unproven(f"{peer} sent block {h.height} attested by {len(attestations)} member states; "
                           f"{needed} are needed")
        return block, attestations

    def _attesting(self, header: BlockHeader, raws: list[Any]) -> list[Attestation]:
        """The valid attestations of exactly this block, one per genesis state."""
        by_state: dict[str, Attestation] = {}
        # Keys of the member table before this block (our head is the block before it):
        # a removed node's attestation, or one under a replaced key, does not verify.
        members = self._store.members()
        for raw in raws[: 4 * len(self._genesis.states)]:  # more than a few per state is junk
            try:
                att = Attestation.from_list(raw)
            except DecodeError:
                continue
            if att.state in by_state or not att.names(header):
                continue
            if members.verify_attestation(att, self._verifier):  # an unknown state does not verify
                by_state[att.state] = att
        return list(by_state.values())

"""Where consensus meets the ledger: admission, mempool, blocks, attestations, gossip.

A `Node` is the Raft driver's application. Its life in one paragraph: a document
arrives (from a client, or gossiped by a peer); the node checks it and its signature
once, keeps it in the mempool and gossips it to every peer. Whichever node leads takes
documents out of its mempool into proposals (bounded by count, bytes and wait) and
proposes them through Raft. Every node applies each committed proposal as one block
with the ledger's state machine, drops the block's documents from its mempool, answers
the clients waiting for them, signs the block's hash and gossips that attestation.
If a majority of member states attest another hash than ours at some height, this node
has diverged: it stops loudly rather than serve or spread a wrong state.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from consensus import (
    Driver,
    DriverStopped,
    Entry,
    LogIndex,
    NotLeader,
    ProposalDropped,
    ProposalTimeout,
    Role,
    Snapshot,
)
from ledger import (
    DOMAIN_DOCUMENT,
    AppliedBlock,
    Attestation,
    Block,
    BlockHeader,
    DecodeError,
    Genesis,
    KeyPair,
    LedgerStore,
    Reason,
    SignedDocument,
    Verifier,
    decode_signed,
)
from ledger._records import ACTIVE, P_ATTEST, P_DOC, P_PARTICIPANT, ParticipantRecord, u64

from ._config import NodeConfig
from ._errors import Conflict, Forbidden, Refused, Unavailable
from ._mempool import Mempool, MempoolFull
from ._metrics import Metrics
from ._transport import PeerLinks

log = logging.getLogger(__name__)

VERSION = "tamga/0.1.0"

# Gossip item kinds: the first element of each gossip item's msgpack array.
GOSSIP_DOCUMENT = 0
GOSSIP_ATTESTATION = 1
GOSSIP_STATUS = 2

# Ids of documents whose signature this node checked at admission, so that applying
# their block skips the check. Bounded: a document forgotten here is checked at apply,
# which is slower but still right. Twice the default mempool covers every pending one.
VERIFIED_IDS_MAX = 200_000
# Attestations for blocks we have not applied yet wait here, bounded in heights ahead
# and in number, so that a peer far ahead cannot fill our memory.
EARLY_ATTESTATIONS_MAX = 20_000
EARLY_ATTESTATION_HEIGHTS_AHEAD = 10_000
# Committed blocks waiting for the applier. Enough to keep it busy through a burst,
# few enough that memory stays bounded (a block is at most a few MiB).
APPLY_QUEUE_MAX = 64
# The peer API's block stream says in this header up to which Raft index the serving
# node had applied every entry when it answered.
PROCESSED_HEADER = "X-Tamga-Processed-Index"
# Our latest attestations sent again to a peer whose link comes back: enough to cover
# what a crash or a broken connection may have lost, cheap to check for the peer.
ATTESTATIONS_RESENT = 256
# Documents waiting this long without a block are sent to the leader again (it may
# have missed the gossip, or been elected after it).
RESEND_AFTER_S = 3.0
RESEND_BATCH_MAX = 5_000
HOUSEKEEPING_INTERVAL_S = 0.25
STATUS_INTERVAL_S = 0.5
# A proposal not applied within this time is given up; its documents are proposed again.
PROPOSAL_TIMEOUT_S = 20.0
# How long a node that must restore a snapshot keeps trying to fetch the blocks.
RESTORE_DEADLINE_S = 120.0


class Diverged(Exception):
    """Our chain differs from the one a majority of member states attested."""


@dataclass(slots=True)
class PeerStatus:
    state: str
    height: int
    head_hash: str
    role: str
    term: int
    leader: int
    version: str
    seen_s: float

    def to_json(self, now_s: float) -> dict[str, Any]:
        return {
            "height": self.height,
            "head_hash": self.head_hash,
            "role": self.role,
            "term": self.term,
            "leader": self.leader,
            "version": self.version,
            "seen_ms_ago": int((now_s - self.seen_s) * 1000),
        }


@dataclass(slots=True)
class _Waiters:
    by_id: dict[bytes, list[asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)

    def add(self, doc_id: bytes) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.by_id.setdefault(doc_id, []).append(future)
        return future

    def discard(self, doc_id: bytes, future: asyncio.Future[dict[str, Any]]) -> None:
        futures = self.by_id.get(doc_id)
        if futures is not None and future in futures:
            futures.remove(future)
            if not futures:
                del self.by_id[doc_id]

    def resolve(self, doc_id: bytes, outcome: dict[str, Any]) -> None:
        for future in self.by_id.pop(doc_id, ()):
            if not future.done():
                future.set_result(outcome)

    def fail_all(self, exc: BaseException) -> None:
        for futures in self.by_id.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        self.by_id.clear()


@dataclass(frozen=True, slots=True)
class _Queued:
    index: int
    term: int
    time_ms: int
    proposer: str
    wires: list[bytes]


def encode_entry(time_ms: int, proposer: str, wires: Sequence[bytes]) -> bytes:
    """A Raft entry's data: one proposed block, [time ms, proposer state, [wires]]."""
    out: bytes = msgpack.packb([time_ms, proposer, list(wires)], use_bin_type=True)
    return out


def decode_entry(data: bytes) -> tuple[int, str, list[bytes]]:
    value = msgpack.unpackb(data, raw=False, use_list=True)
    if (
        not isinstance(value, list)
        or len(value) != 3
        or type(value[0]) is not int
        or not isinstance(value[1], str)
        or not isinstance(value[2], list)
        or not all(type(w) is bytes for w in value[2])
    ):
        raise ValueError("a block entry is [time_ms, proposer, [document wires]]")
    return value[0], value[1], value[2]


def outcome_json(doc_id: bytes, height: int, position: int, result: Any) -> dict[str, Any]:
    view = result.to_json()
    return {
        "id": doc_id.hex(),
        "status": view["status"],
        "reason": view["reason"],
        "message": view["message"],
        "height": height,
        "position": position,
    }


class _Verified:
    """The documents whose signatures this node checked, bounded, oldest forgotten first.

    Remembered by id with the signature that was checked: a forged copy of a document
    has the same id but another signature, and must be checked again at apply."""

    def __init__(self, bound: int) -> None:
        self._ids: OrderedDict[bytes, bytes] = OrderedDict()
        self._bound = bound

    def add(self, signed: SignedDocument) -> None:
        self._ids[signed.id] = signed.signature
        if len(self._ids) > self._bound:
            self._ids.popitem(last=False)

    def discard(self, doc_id: bytes) -> None:
        self._ids.pop(doc_id, None)

    def __contains__(self, verified_key: object) -> bool:
        """`verified_key` is a document's id followed by its signature."""
        if not isinstance(verified_key, bytes):
            return False
        return self._ids.get(verified_key[:32]) == verified_key[32:]


class Node:
    """One member state's node; the Raft driver's `Application`."""

    def __init__(
        self,
        config: NodeConfig,
        genesis: Genesis,
        key: KeyPair,
        store: LedgerStore,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.state = config.state
        self.member = genesis.state(config.state)
        self.key = key
        self.store = store
        self.metrics = metrics
        self.verifier = Verifier()
        self.mempool = Mempool(config.mempool.max_documents, config.mempool.max_bytes)
        self.verified = _Verified(VERIFIED_IDS_MAX)
        self.waiters = _Waiters()
        self.peers: dict[str, PeerStatus] = {}
        self.driver: Driver | None = None
        self.links: PeerLinks | None = None
        self.fatal_error: str | None = None
        self.on_fatal: Callable[[str], None] | None = None
        # Raft bookkeeping that the ledger store does not hold.
        self._restored_index = 0  # a snapshot restored up to here (raft index)
        self._delivered_term = 0  # term of the last entry the driver handed over
        self._delivered_index = 0
        self._last_queued = 0
        self._queue: collections.deque[_Queued] = collections.deque()
        self._queue_changed = asyncio.Event()
        self._applying: int | None = None
        # Documents in committed blocks that the applier has not reached yet: still
        # duplicates for admission, though no longer in the mempool.
        self._committed: set[bytes] = set()
        self._in_flight = 0
        self._wake_proposer = asyncio.Event()
        self._early_attestations: dict[int, list[Attestation]] = {}
        self._early_count = 0
        self._conflicts: dict[int, dict[str, bytes]] = {}
        # One worker applies blocks, so the event loop keeps answering meanwhile.
        self._apply_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"apply-{self.state}")

    def close(self) -> None:
        self._apply_pool.shutdown(wait=True)
        self.waiters.fail_all(Unavailable("the node is stopping", code="stopping"))

    # -- admission ---------------------------------------------------------------------

    def check_serving(self) -> None:
        if self.fatal_error is not None:
            raise Unavailable(self.fatal_error, code="diverged")
        if self.driver is None or not self.driver.running:
            raise Unavailable("the node is not running", code="stopping")

    def admit(self, signed: SignedDocument, wire: bytes, now_ms: int) -> bytes:
        """Check a client's document and keep it for a block; its id, or an ApiError."""
        doc = signed.document
        doc_id = signed.id
        if doc.chain_id != self.genesis.chain_id:
            raise Refused(f"the document is for chain {doc.chain_id!r}, this is {self.genesis.chain_id!r}",
                          code="wrong_chain")
        if doc_id in self.mempool or doc_id in self._committed:
            raise Conflict("this document is already pending", code="duplicate")
        if self.store.db.get(P_DOC + doc_id) is not None:
            raise Conflict("this document is already recorded", code="duplicate")
        if doc.expires_at_ms < now_ms:
            raise Refused("the document has expired", code="expired")
        raw = self.store.db.get(P_PARTICIPANT + doc.signer.encode())
        if raw is None:
            raise Forbidden(f"the signer {doc.signer} is not registered", code="not_registered")
        signer = ParticipantRecord.unpack(raw)
        if signer.status != ACTIVE:
            raise Forbidden(f"the signer {doc.signer} is revoked", code="revoked")
        if not self.verifier.verify(
            signer.public_key, signed.signature, DOMAIN_DOCUMENT, doc.chain_id, signed.body
        ):
            raise Refused("the signature does not match the signer's key", code="bad_signature")
        try:
            self.mempool.add(doc_id, wire, doc.expires_at_ms, time.monotonic())
        except MempoolFull as exc:
            raise Unavailable(str(exc), code="mempool_full") from exc
        self.verified.add(signed)
        if self.links is not None:
            self.links.gossip_all(msgpack.packb([GOSSIP_DOCUMENT, wire], use_bin_type=True))
        self._wake_proposer.set()
        return doc_id

    def _admit_gossiped(self, wire: bytes) -> None:
        """A peer's document: the same checks, failures dropped quietly (the peer's client
        has heard about them). A signer we do not know yet is left to the apply check."""
        try:
            signed = decode_signed(wire)
        except DecodeError:
            self.metrics.frames_dropped.inc()
            return
        doc = signed.document
        doc_id = signed.id
        if doc_id in self.mempool or doc_id in self._committed or doc.chain_id != self.genesis.chain_id:
            return
        if self.store.db.get(P_DOC + doc_id) is not None:
            return
        raw = self.store.db.get(P_PARTICIPANT + doc.signer.encode())
        if raw is not None:
            signer = ParticipantRecord.unpack(raw)
            if signer.status != ACTIVE or not self.verifier.verify(
                signer.public_key, signed.signature, DOMAIN_DOCUMENT, doc.chain_id, signed.body
            ):
                return
        try:
            self.mempool.add(doc_id, wire, doc.expires_at_ms, time.monotonic())
        except MempoolFull:
            return  # the origin and the other nodes still hold it
        if raw is not None:
            self.verified.add(signed)
        self._wake_proposer.set()

    async def wait_applied(self, doc_id: bytes, future: asyncio.Future[dict[str, Any]],
                           timeout_s: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            self.waiters.discard(doc_id, future)
            return None

    def document_status(self, doc_id: bytes) -> dict[str, Any]:
        record = self.store.document(doc_id)
        if record is not None:
            out = outcome_json(doc_id, record["height"], record["position"], record["result"])
            out["document"] = decode_signed(record["wire"]).to_json()
            return out
        if doc_id in self.mempool:
            return {"id": doc_id.hex(), "status": "pending", "reason": None, "message": "",
                    "height": None, "position": None, "document": None}
        return {"id": doc_id.hex(), "status": "unknown", "reason": None, "message": "",
                "height": None, "position": None, "document": None}

    # -- the Raft application ----------------------------------------------------------
    #
    # The driver hands committed entries to `apply`, which only queues them: a separate
    # applier task executes the blocks. So Raft keeps replicating, committing and
    # answering heartbeats while a large block is applied, and several blocks flow
    # through the pipeline at once. The queue is bounded: when the applier falls behind,
    # `apply` waits, and Raft slows down with it.
    #
    # Entries the driver delivered may be compacted from the Raft log before the applier
    # reached them; after a crash the driver then restores a snapshot, and `restore`
    # fetches those blocks from peers. Snapshots name the Raft index, and a peer serving
    # blocks says up to which index it has applied everything, so nothing is skipped.

    async def apply(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._delivered_term = entry.term
            self._delivered_index = max(self._delivered_index, entry.index)
            if not entry.data or entry.index <= max(self.store.head.raft_index, self._last_queued):
                continue
            try:
                time_ms, proposer, wires = decode_entry(entry.data)
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                # Every node sees the same bytes and skips them alike.
                log.error("raft entry %d is not a block proposal; skipped", entry.index)
                continue
            while len(self._queue) >= APPLY_QUEUE_MAX:
                self._queue_changed.clear()
                await self._queue_changed.wait()
            # Committed documents leave the mempool at once: the leader must not
            # propose them again while their block waits for the applier.
            self._committed.update(self.mempool.pop_wires(wires))
            self._queue.append(_Queued(entry.index, entry.term, time_ms, proposer, wires))
            self._last_queued = entry.index
            self._queue_changed.set()
        self._wake_proposer.set()

    async def run_applier(self) -> None:
        while True:
            if not self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            item = self._queue[0]
            self._applying = item.index
            try:
                started = time.perf_counter()
                applied = await self._run_apply(
                    item.wires, item.time_ms, item.proposer, item.term, item.index
                )
                self.metrics.apply_latency.observe(time.perf_counter() - started)
                self._after_apply(applied)
            except Exception as exc:
                self.fail(f"applying the block of raft entry {item.index} failed: {exc!r}")
                raise
            finally:
                self._applying = None
            self._queue.popleft()
            self._queue_changed.set()

    async def _applier_idle(self) -> None:
        while self._queue or self._applying is not None:
            self._queue_changed.clear()
            await self._queue_changed.wait()

    def processed_index(self) -> int:
        """The Raft index up to which every entry is applied to the ledger."""
        if self._applying is not None:
            return self._applying - 1
        if self._queue:
            return self._queue[0].index - 1
        return max(self._delivered_index, self.store.head.raft_index, self._restored_index)

    async def _run_apply(self, wires: list[bytes], time_ms: int, proposer: str, term: int,
                         index: int) -> AppliedBlock:
        loop = asyncio.get_running_loop()
        verified = self.verified

        def run() -> AppliedBlock:
            return self.store.apply_block(
                wires, time_ms, proposer, raft_term=term, raft_index=index,
                verified=verified.__contains__,
            )

        return await loop.run_in_executor(self._apply_pool, run)

    def _after_apply(self, applied: AppliedBlock) -> None:
        header = applied.header
        self.mempool.remove(applied.document_ids)
        applied_count = 0
        for position, (doc_id, result) in enumerate(zip(applied.document_ids, applied.results)):
            if doc_id is None:
                self.metrics.rejected(result.reason.value).inc()
                continue
            self.verified.discard(doc_id)
            self._committed.discard(doc_id)
            if result.applied:
                applied_count += 1
            else:
                self.metrics.rejected(result.reason.value).inc()
            # A second copy of a document (proposed again after a lost answer) is only
            # a duplicate: the client waited for the first.
            if result.reason is not Reason.DUPLICATE:
                self.waiters.resolve(doc_id, outcome_json(doc_id, header.height, position, result))
        self.metrics.documents_applied.inc(applied_count)
        self.metrics.height.set(header.height)
        self.metrics.mempool_documents.set(len(self.mempool))
        self.metrics.mempool_bytes.set(self.mempool.size_bytes)
        self._attest(header)

    def applied_index(self) -> LogIndex:
        return LogIndex(max(self.store.head.raft_index, self._restored_index))

    def snapshot(self) -> bytes:
        """The snapshot's data: our head when the driver compacts (a hint for people;
        `restore` relies on the snapshot's Raft index, since the applier may lag)."""
        # The driver compacts the Raft log up to our applied index next: the blocks
        # up to there must survive a power loss without it.
        self.store.make_durable()
        head = self.store.head
        out: bytes = msgpack.packb([head.height, head.hash], use_bin_type=True)
        return out

    async def restore(self, snapshot: Snapshot) -> None:
        """Bring the ledger up to the snapshot's Raft index by fetching the blocks we lack
        from peers and re-executing them; each must come out with the peer's very hash."""
        target = snapshot.meta.index
        await self._applier_idle()
        if self.store.head.raft_index < target:
            log.info("restoring: fetching blocks from %d on from peers, up to raft index %d",
                     self.store.head.height + 1, target)
            await self._fetch_blocks(target)
        self._restored_index = max(self._restored_index, target)
        self._delivered_index = max(self._delivered_index, target)
        self._last_queued = max(self._last_queued, target)
        log.info("restored to block %d (raft index %d)", self.store.head.height, target)

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
        leader = self.driver.leader if self.driver is not None else 0
        peers = [s.code for s in self.genesis.states if s.code != self.state]
        return sorted(peers, key=lambda p: self.genesis.state(p).node_id != leader)

    async def _fetch_from(self, peer: str) -> int:
        """Apply every block `peer` holds beyond our head; the Raft index up to which the
        peer had applied everything when it answered (so we now have all of that)."""
        assert self.links is not None
        start = self.store.head.height + 1
        response = await self.links.get(peer, f"/peer/blocks?from={start}", timeout_s=300)
        try:
            if response.status != 200:
                raise RuntimeError(f"{peer} answered {response.status}")
            processed = int(response.headers.get(PROCESSED_HEADER, "0"))
            unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
            async for chunk in response.content.iter_any():
                unpacker.feed(chunk)
                for item in unpacker:
                    await self._replay_fetched(peer, item)
        finally:
            response.release()
        return processed

    async def _replay_fetched(self, peer: str, item: Any) -> None:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise ValueError(f"{peer} sent a malformed block")
        block = Block.decode(item[0])
        expected = self.store.head.height + 1
        if block.header.height != expected:
            raise ValueError(f"{peer} sent block {block.header.height}, expected {expected}")
        h = block.header
        self._committed.update(self.mempool.pop_wires(block.documents))
        applied = await self._run_apply(block.documents, h.time_ms, h.proposer, h.raft_term, h.raft_index)
        if applied.header.hash != h.hash:
            self.fail(f"block {h.height} re-executed to {applied.header.hash.hex()[:16]}..., "
                      f"but {peer} has {h.hash.hex()[:16]}...")
            raise Diverged(f"block {h.height} differs")
        for raw in item[1]:
            with contextlib.suppress(DecodeError):
                self.store.add_attestation(Attestation.from_list(raw), self.verifier)
        self._after_apply(applied)

    # -- block production (leader) -----------------------------------------------------

    def can_propose(self) -> bool:
        driver = self.driver
        if driver is None or not driver.is_leader or self.fatal_error is not None:
            return False
        # A new leader first takes in every entry of earlier terms (its own empty entry
        # commits them), so that it does not propose documents already in a block.
        return self._delivered_term == driver.status().term

    async def run_proposer(self) -> None:
        block = self.config.block
        wait_s = block.max_wait_ms / 1000
        while True:
            self._wake_proposer.clear()
            if (
                not self.can_propose()
                or self._in_flight >= block.proposals_in_flight
                or not self.mempool.unproposed
            ):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_proposer.wait(), 0.05)
                continue
            pool = self.mempool
            full = pool.unproposed >= block.max_documents or pool.unproposed_bytes >= block.max_bytes
            if not full and self._in_flight > 0 and wait_s > 0:
                # Something is in flight already: gather a fuller block for a moment.
                await asyncio.sleep(wait_s)
            batch = self.mempool.take(block.max_documents, block.max_bytes)
            if batch:
                self._in_flight += 1
                asyncio.get_running_loop().create_task(self._propose(batch))

    async def _propose(self, batch: list[tuple[bytes, bytes]]) -> None:
        assert self.driver is not None
        data = encode_entry(int(time.time() * 1000), self.state, [w for _, w in batch])
        try:
            await self.driver.propose(data, timeout_s=PROPOSAL_TIMEOUT_S)
        except (NotLeader, ProposalDropped, ProposalTimeout, DriverStopped) as exc:
            log.debug("proposal of %d documents failed: %r", len(batch), exc)
            self.mempool.unmark(doc_id for doc_id, _ in batch)
        finally:
            self._in_flight -= 1
            self._wake_proposer.set()

    # -- attestations and divergence ---------------------------------------------------

    def _attest(self, header: BlockHeader) -> None:
        att = Attestation.make(self.key, self.genesis.chain_id, self.state, header)
        self.store.add_attestation(att, self.verifier)
        if self.links is not None:
            self.links.gossip_all(msgpack.packb([GOSSIP_ATTESTATION, att.to_list()], use_bin_type=True))
        early = self._early_attestations.pop(header.height, None)
        if early:
            self._early_count -= len(early)
            for other in early:
                self._check_attestation(other, header)

    def resend_attestations(self, peer: str) -> None:
        """A gossip link (re)connected: send it our latest attestations again, since
        those in flight when it broke (or the peer crashed) are lost."""
        if self.links is None:
            return
        head = self.store.head.height
        for height in range(max(1, head - ATTESTATIONS_RESENT + 1), head + 1):
            for att in self.store.attestations(height):
                if att.state == self.state:
                    item = msgpack.packb([GOSSIP_ATTESTATION, att.to_list()], use_bin_type=True)
                    self.links.gossip_to(peer, item)

    def on_attestation(self, peer: str, att: Attestation) -> None:
        if att.state != peer:
            return  # each node speaks for itself only
        header = self.store.header(att.height)
        if header is not None:
            self._check_attestation(att, header)
            return
        head = self.store.head.height
        soon = head < att.height <= head + EARLY_ATTESTATION_HEIGHTS_AHEAD
        if soon and self._early_count < EARLY_ATTESTATIONS_MAX:
            self._early_attestations.setdefault(att.height, []).append(att)
            self._early_count += 1

    def _check_attestation(self, att: Attestation, header: BlockHeader) -> None:
        if att.block_hash == header.hash:
            if self.store.db.get(P_ATTEST + u64(att.height) + att.state.encode()) is None:
                self.store.add_attestation(att, self.verifier)
            return
        if not att.verify(self.genesis, self.verifier):
            return
        log.error("%s attests block %d as %s..., we hold %s...", att.state, att.height,
                  att.block_hash.hex()[:16], header.hash.hex()[:16])
        others = self._conflicts.setdefault(att.height, {})
        others[att.state] = att.block_hash
        agreeing = sum(1 for h in others.values() if h == att.block_hash)
        if agreeing >= self.genesis.quorum:
            self.fail(
                f"DIVERGED at block {att.height}: a majority of member states attested "
                f"{att.block_hash.hex()[:16]}..., this node holds {header.hash.hex()[:16]}..."
            )

    def fail(self, reason: str) -> None:
        """Stop serving at once and have the process exit non-zero."""
        if self.fatal_error is not None:
            return
        self.fatal_error = reason
        log.critical("%s; the node stops", reason)
        self.waiters.fail_all(Unavailable(reason, code="diverged"))
        if self.on_fatal is not None:
            self.on_fatal(reason)

    # -- gossip ------------------------------------------------------------------------

    def on_gossip(self, peer: str, items: list[bytes]) -> None:
        for item in items:
            try:
                value = msgpack.unpackb(item, raw=False, use_list=True)
                kind = value[0]
                if kind == GOSSIP_DOCUMENT:
                    self._admit_gossiped(value[1])
                elif kind == GOSSIP_ATTESTATION:
                    self.on_attestation(peer, Attestation.from_list(value[1]))
                elif kind == GOSSIP_STATUS:
                    self._on_status(peer, value[1])
                else:
                    raise ValueError(f"unknown gossip kind {kind!r}")
            except (ValueError, TypeError, IndexError, KeyError, DecodeError,
                    msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                self.metrics.frames_dropped.inc()
                log.warning("dropped a malformed gossip item from %s: %r", peer, exc)

    def _on_status(self, peer: str, value: list[Any]) -> None:
        height, head_hash, role, term, leader, version = value
        if type(height) is not int or type(term) is not int or type(leader) is not int:
            raise ValueError("a status holds integers where integers belong")
        self.peers[peer] = PeerStatus(
            peer, height, str(head_hash), str(role), term, leader, str(version)[:64], time.monotonic()
        )
        self.metrics.peer_lag(peer).set(self.store.head.height - height)

    def _status_item(self) -> bytes:
        head = self.store.head
        role, term, leader = self.raft_view()
        value = [GOSSIP_STATUS, [head.height, head.hash.hex(), role, term, leader, VERSION]]
        out: bytes = msgpack.packb(value, use_bin_type=True)
        return out

    def raft_view(self) -> tuple[str, int, int]:
        if self.driver is None or not self.driver.running:
            return "stopped", 0, 0
        status = self.driver.status()
        return status.role.name.lower(), status.term, status.leader

    async def run_housekeeping(self) -> None:
        """Status gossip, resending stale documents to the leader, expiry, metrics."""
        last_status = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            now = time.monotonic()
            driver = self.driver
            if driver is not None and driver.failure is not None:
                self.fail(f"the Raft driver failed: {driver.failure!r}")
            if self.links is not None and now - last_status >= STATUS_INTERVAL_S:
                last_status = now
                self.links.gossip_all(self._status_item())
                for peer in self.links.raft:
                    self.metrics.peer_connected(peer).set(1 if self.links.connected(peer) else 0)
            self._resend_stale(now)
            self.mempool.expire(int(time.time() * 1000))
            if driver is not None and driver.running:
                status = driver.status()
                self.metrics.term.set(status.term)
                self.metrics.role.set(int(status.role))
                if status.role != Role.LEADER and self._in_flight == 0:
                    self.mempool.clear_proposed()
            self.metrics.mempool_documents.set(len(self.mempool))
            self.metrics.mempool_bytes.set(self.mempool.size_bytes)

    def _resend_stale(self, now_s: float) -> None:
        driver = self.driver
        if self.links is None or driver is None or driver.is_leader or not driver.leader:
            return
        try:
            leader = self.genesis.state_by_node(driver.leader).code
        except KeyError:
            return
        for wire in self.mempool.stale(RESEND_AFTER_S, now_s, RESEND_BATCH_MAX):
            self.links.gossip_to(leader, msgpack.packb([GOSSIP_DOCUMENT, wire], use_bin_type=True))

    # -- views -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        head = self.store.head
        now = time.monotonic()
        out: dict[str, Any] = {
            "state": self.state,
            "node_id": self.member.node_id,
            "chain_id": self.genesis.chain_id,
            "role": "stopped",
            "term": 0,
            "leader": None,
            "leader_state": None,
            "height": head.height,
            "head_hash": head.hash.hex(),
            "state_hash": head.state_hash.hex(),
            "time_ms": head.time_ms,
            "commit_index": 0,
            "applied_index": self.processed_index(),
            "mempool": {"documents": len(self.mempool), "bytes": self.mempool.size_bytes},
            "version": VERSION,
            "error": self.fatal_error,
            "peers": {p: s.to_json(now) for p, s in sorted(self.peers.items())},
        }
        if self.links is not None:
            for peer in self.links.raft:
                out["peers"].setdefault(peer, {})["connected"] = self.links.connected(peer)
        if self.driver is not None and self.driver.running:
            status = self.driver.status()
            out["role"] = status.role.name.lower()
            out["term"] = status.term
            out["commit_index"] = status.commit
            if status.leader:
                out["leader"] = status.leader
                with contextlib.suppress(KeyError):
                    out["leader_state"] = self.genesis.state_by_node(status.leader).code
        return out

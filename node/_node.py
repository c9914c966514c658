"""The composition root: one member state's node, built from parts that each do one job.

A document arrives from a client or a peer and passes `Admission` (the ledger's one
admission rule) into the `Mempool`; while this node leads, the `Proposer` takes
documents out into Raft proposals; the Raft `Driver` replicates and commits them and
hands committed entries to the `ApplyPipeline`, which applies each as one block;
`Attestations` signs each block's hash and checks the peers' signatures (a Byzantine
quorum attesting another hash means we diverged: the node stops); `Finality` counts
them into the final height clients may wait for; `EvidenceStore` keeps proofs that a
state signed two blocks at one height in one round, or two entries at one Raft term
and index, and `Defence` acts on them: Raft refuses that state's node as leader
(`evidence_against`) until the regulators clear it, and what it led is healed;
`CatchUp` fetches blocks a restored snapshot skipped; `GossipInbox` dispatches what
peers send; `Housekeeping` resends, expires and gossips status; `Views` answer what the
node shows.

Everything is built here, in dependency order, and each part gets what it needs in
its constructor; parts call each other only through the callables they were given.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import msgpack

from consensus import (
    ConfChange,
    ConfChangeType,
    Config,
    Driver,
    DriverConfig,
    Entry,
    LogIndex,
    NodeId,
    Snapshot,
    Storage,
)
from ledger import (
    AnyEvidence,
    AppliedBlock,
    Genesis,
    KeyPair,
    LedgerStore,
    SignedDocument,
    Verifier,
    conf_change_authorization,
    conf_change_follows,
)

from ._admission import Admission, Verified
from ._appends import AppendSigner, SignedAppends
from ._attestations import Attestations
from ._catchup import PROCESSED_HEADER, CatchUp
from ._censorship import CensorshipWatch
from ._config import NodeConfig
from ._defence import Defence, block_at
from ._errors import Refusal
from ._evidence import EvidenceStore
from ._feed import Feed, ruled_visible
from ._finality import Finality
from ._gossip import GossipInbox, append_item, document_item, evidence_item, status_item
from ._healing import Healing
from ._housekeeping import Housekeeping
from ._membership import MembershipFollower, peer_addresses
from ._mempool import Mempool
from ._metrics import Metrics
from ._pipeline import ApplyPipeline, decode_entry, encode_entry
from ._proposer import Proposer
from ._transport import PeerLinks, RaftTransport
from ._views import VERSION, Views
from ._waiters import Waiters

log = logging.getLogger(__name__)

# One Raft append carries at least one block whatever its size, and a few of them
# together when they are small.
RAFT_MESSAGE_BYTES_MAX = 8 << 20
RAFT_INFLIGHT_MESSAGES_MAX = 64
RAFT_UNCOMMITTED_BYTES_MAX = 256 << 20

__all__ = ["PROCESSED_HEADER", "VERSION", "Node", "decode_entry", "encode_entry"]


class _RaftApplication:
    """What the Raft driver sees of the node: the pipeline, and catch-up for snapshots."""

    def __init__(self, store: LedgerStore, pipeline: ApplyPipeline, catchup: CatchUp,
                 after_delivery: Callable[[], None]) -> None:
        self._store = store
        self._pipeline = pipeline
        self._catchup = catchup
        self._after_delivery = after_delivery

    async def apply(self, entries: Sequence[Entry]) -> None:
        await self._pipeline.deliver(entries)
        self._after_delivery()

    def applied_index(self) -> LogIndex:
        return self._pipeline.applied_index()

    def snapshot(self) -> bytes:
        """The snapshot's data: our head when the driver compacts (a hint for people;
        `restore` relies on the snapshot's Raft index, since the applier may lag)."""
        # The driver compacts the Raft log up to our applied index next: the blocks
        # up to there must survive a power loss without it.
        self._store.make_durable()
        head = self._store.head
        out: bytes = msgpack.packb([head.height, head.hash], use_bin_type=True)
        return out

    async def restore(self, snapshot: Snapshot) -> None:
        await self._catchup.restore(snapshot)


_CONF_TYPES = {"add": ConfChangeType.ADD_VOTER, "remove": ConfChangeType.REMOVE_NODE}


def governance_judge(genesis: Genesis) -> Callable[[ConfChange], bool]:
    """The Raft core's test for a configuration change: its context must be a governance
    certificate with a Byzantine quorum of regulators for exactly this change. Pure (the
    entry's bytes and genesis), so every honest node counts the same changes; a leader's
    change without one is a no-op everywhere (issue 10, finding 4)."""
    verifier = Verifier()  # its own: the core calls it from the driver task only

    def judge(cc: ConfChange) -> bool:
        granted = conf_change_authorization(genesis, verifier, cc.context)
        return granted is not None and cc.type == _CONF_TYPES[granted[0]] and cc.node == granted[1]

    return judge


def raft_config(config: NodeConfig, genesis: Genesis,
                leader_refused: Callable[[NodeId], bool] | None = None,
                entry_refused: Callable[[int, int], bool] | None = None,
                term_refused: Callable[[int], bool] | None = None) -> tuple[Config, DriverConfig]:
    raft = config.raft
    core = Config(
        conf_change_authorized=governance_judge(genesis),
        # A certificate's membership epoch must be above that of the change before it:
        # a change carried out once is never carried out again (a replayed removal).
        conf_change_follows=lambda prior, cc: conf_change_follows(prior, cc.context),
        leader_refused=leader_refused,
        entry_refused=entry_refused,
        term_refused=term_refused,
        id=NodeId(genesis.state(config.state).node_id),
        voters=tuple(NodeId(s.node_id) for s in genesis.states),
        election_tick=raft.election_ticks,
        heartbeat_tick=raft.heartbeat_ticks,
        rng=random.Random(),
        max_size_per_msg=RAFT_MESSAGE_BYTES_MAX,
        max_inflight_msgs=RAFT_INFLIGHT_MESSAGES_MAX,
        max_uncommitted_entries_size=RAFT_UNCOMMITTED_BYTES_MAX,
    )
    driver = DriverConfig(tick_interval_s=raft.tick_ms / 1000,
                          snapshot_every_entries=raft.snapshot_every_entries)
    return core, driver


class Node:
    """One member state's node: its parts, built and wired; start and stop are the app's."""

    def __init__(
        self,
        config: NodeConfig,
        genesis: Genesis,
        key: KeyPair,
        store: LedgerStore,
        raft_log: Storage,
        sessions: dict[str, aiohttp.ClientSession],
        metrics: Metrics,
        on_fatal: Callable[[str], None],
        make_session: Callable[[str], aiohttp.ClientSession | None] | None = None,
        pin_peers: Callable[[Mapping[str, str]], set[str]] | None = None,
    ) -> None:
        """`make_session(peer)` opens a session trusting the peer's pinned certificate
        and `pin_peers(pins)` moves the pins the peer API accepts, when governance
        changes the member table (None: the table's first pins stay)."""
        self.config = config
        self.genesis = genesis
        self.state = config.state
        self.member = genesis.state(config.state)
        self.store = store
        self.metrics = metrics
        self.verifier = Verifier()
        self.fatal_error: str | None = None
        self._on_fatal = on_fatal
        self._conf_asked: ConfChange | None = None  # the last change asked for, to log it once
        self.mempool = Mempool(config.mempool.documents_max, config.mempool.bytes_max)
        self.waiters = Waiters()
        verified = Verified()
        # Documents in committed blocks that the applier has not reached yet: still
        # duplicates for admission, though no longer in the mempool.
        committed: set[bytes] = set()

        # The peers are the member table's active nodes; they follow governance.
        self.links = PeerLinks(sessions, peer_addresses(store.members(), self.state),
                               on_raft_down=self._raft_down, on_gossip_up=self._gossip_up,
                               make_session=make_session)
        self.membership = MembershipFollower(self.state, key.public_key, store.members,
                                             pin_peers or (lambda _pins: set()), self.links.set_peers)
        # The event feed serves final blocks only, each followed by its `final` event, and
        # wakes its readers when the final height moves.
        self.feed = Feed(store, visible=ruled_visible(store), final=lambda: self.finality.final_height)
        self.finality = Finality(genesis, self.state, store, config.data_dir / "final_height", metrics,
                                 on_final=self._final_moved)
        self.evidence = EvidenceStore(config.data_dir / "evidence", genesis, Verifier(),
                                      cleared_below=store.evidence_cleared_below,
                                      block_at=lambda height: block_at(store, height))
        # Leader-signed appends (node/_appends.py): as leader, every entry sent is signed
        # once; as follower, an append is taken only with its entries signed by the
        # sender, and what it took is gossiped so that two branches meet.
        self.signer = AppendSigner(key, genesis.chain_id, self.state)
        self.appends = SignedAppends(
            self.state, genesis.chain_id, store.members, Verifier(),
            gossip_others=lambda sender, signed: self.links.gossip_others(sender, append_item(signed)),
            on_evidence=self._add_evidence, wants_evidence=self.evidence.wants,
            refused=self.evidence_against, dropped=metrics.dropped)
        self.attestations = Attestations(genesis, self.state, key, store, self.verifier,
                                         self.links.gossip_all, self.links.gossip_to, self.fail,
                                         on_stored=self.finality.attested, on_evidence=self._add_evidence,
                                         wants_evidence=self.evidence.wants,
                                         on_conflicting_quorum=self._conflicting_quorum,
                                         hostile=self.evidence.states_against)
        self.pipeline = ApplyPipeline(self.state, store, self.mempool, committed, verified, self.waiters,
                                      metrics, self._applied, self.fail)
        self._committed = committed
        # Healing (node/_healing.py): evidence, or a quorum attesting another block above
        # our final height, returns the ledger and the Raft log to the last final block.
        self.healing = Healing(store, config.data_dir / "healing",
                               rewind=lambda index, floor: self.defence.rewind_raft(index, floor),
                               offer_again=lambda wires: self.defence.offer_again(wires),
                               hold=self.pipeline.hold, release=self.pipeline.release, own_state=self.state)
        # What we attested of blocks a heal undid: the round rule must know it (issue 11).
        for undone in self.healing.undone():
            self.attestations.remember(undone.attestation, undone.parent)
        for piece in self.evidence.all():  # a hostile state's votes: it will not send them again
            self.attestations.learn_evidence(piece)
        self.attestations.resume()
        # Evidence in; refusals, heals and a cleaned Raft log out (node/_defence.py).
        self.defence = Defence(genesis, self.state, store, metrics, self.evidence, self.healing, raft_log,
                               driver=lambda: self.driver, gossip_all=self.links.gossip_all,
                               learn_evidence=self.attestations.learn_evidence,
                               rolled_back=self.attestations.rolled_back,
                               hold=self.pipeline.hold, release=self.pipeline.release,
                               readmit=lambda wire: self.admission.admit_from_peer(wire),
                               forget_committed=committed.discard, wake_proposer=self._wake_proposer,
                               fail=self.fail)
        self.catchup = CatchUp(genesis, self.state, store, self.verifier, self.pipeline, self.links,
                               leader=lambda: self.driver.leader, fail=self.fail)
        core, driver_config = raft_config(config, genesis, leader_refused=self.defence.leader_refused,
                                          entry_refused=self.defence.entry_refused,
                                          term_refused=self.healing.term_refused)
        # The Raft log is never compacted past the last final block, so that a rewind to
        # it finds what it keeps.
        self.driver = Driver(core, raft_log, RaftTransport(genesis, self.links, wrap=self.signer.wrap),
                             _RaftApplication(store, self.pipeline, self.catchup, self._wake_proposer),
                             driver_config, on_commit_latency=metrics.commit_latency.observe,
                             compaction_limit=self.healing.final_raft_index)
        self.proposer = Proposer(self.state, config.block, self.mempool, self.driver,
                                 delivered_term=lambda: self.pipeline.delivered_term,
                                 failed=lambda: self.fatal_error is not None,
                                 params=store.params, head_time_ms=lambda: store.head.time_ms)
        self.admission = Admission(genesis, store, self.mempool, committed, self.verifier, verified, metrics,
                                   self._admitted)
        self.gossip = GossipInbox(metrics, lambda: store.head.height, self.admission.admit_from_peer,
                                  self.attestations.receive, on_evidence=self._add_evidence,
                                  on_append=self.appends.receive)
        self.views = Views(genesis, self.state, store, self.mempool, self.driver, self.links,
                           self.gossip.peers, self.pipeline.processed_index, lambda: self.fatal_error,
                           metrics.alarms)
        # Censorship is visible (docs/THREATS.md): what we forward to the leader and it
        # leaves unordered is counted per leader; housekeeping checks it.
        self.censorship = CensorshipWatch(metrics.registry, self.state, campaign=self._campaign)
        # The inbox and the event feed. The read rule is the one callable `visible`:
        # the stand-in below until ledger/_access.py gives the real one; `final=` the
        # highest final height once finality exists (the feed then serves final blocks).
        self.housekeeping = Housekeeping(genesis, self.driver, self.links, self.mempool, self.proposer,
                                         metrics, self._status_item, self.fail,
                                         watch_censorship=self.censorship.check)

    def close(self) -> None:
        self.pipeline.close()
        self.waiters.fail_all(Refusal("stopping", "the node is stopping"))
        self.finality.fail_all(Refusal("stopping", "the node is stopping"))
        self.finality.close()

    # -- what the API uses -------------------------------------------------------------

    def check_serving(self) -> None:
        if self.fatal_error is not None:
            raise Refusal("diverged", self.fatal_error)
        if not self.driver.running:
            raise Refusal("stopping", "the node is not running")

    def admit(self, signed: SignedDocument, wire: bytes, now_ms: int) -> bytes:
        return self.admission.admit(signed, wire, now_ms)

    async def wait_applied(self, doc_id: bytes, future: Any, timeout_s: float) -> dict[str, Any] | None:
        return await self.waiters.wait(doc_id, future, timeout_s)

    async def wait_final(self, height: int, timeout_s: float) -> bool:
        return await self.finality.wait_final(height, timeout_s)

    def is_final(self, height: int) -> bool:
        return self.finality.is_final(height)

    def final_at(self, doc_id: bytes, height: int) -> bool:
        """Whether the document is in the final block at `height`: a heal may have undone
        the block it was applied in (the document is then proposed again)."""
        place = self.store.document_place(doc_id)
        return place is not None and place[0][0] == height and self.finality.is_final(height)

    def document_status(self, doc_id: bytes) -> dict[str, Any]:
        out = self.views.document_status(doc_id)
        out["final"] = out["height"] is not None and self.finality.is_final(out["height"])
        return out

    def status(self) -> dict[str, Any]:
        out = self.views.status()
        out["censorship"] = self.censorship.view()
        # The member table in force (governance proposals name its epoch).
        out["membership"] = self.store.members().to_json()
        out["final_height"] = self.finality.final_height
        out["finality"] = {**self.finality.to_json(),
                           # Applied blocks this node waits to sign (the round rule's proof).
                           "unsigned_heights": self.attestations.unsigned()[:16]}
        out["evidence"] = self.evidence.to_json()
        return out

    # -- evidence --------------------------------------------------------------------------

    def evidence_against(self, state: str) -> bool:
        """Whether this node holds evidence against `state` that the regulators have not
        cleared: its node must not lead (no vote, no pre-vote, its appends ignored)."""
        return self.evidence.against(state)

    def offer_at_start(self) -> None:
        self.defence.offer_at_start()

    # Parts built before the defence reach it through these two.
    def _add_evidence(self, evidence: AnyEvidence) -> None:
        self.defence.add_evidence(evidence)

    def _conflicting_quorum(self, height: int) -> None:
        self.defence.conflicting_quorum(height)

    def _final_moved(self) -> None:
        """The final height moved: the store prunes undo data below it (bounded by the
        head-to-final gap, which has an alarm), then the event feed serves it."""
        final = self.finality.final_height
        self.store.set_final_height(final)
        self.healing.final_moved(final)
        self.feed.advanced()

    def processed_index(self) -> int:
        return self.pipeline.processed_index()

    def on_gossip(self, peer: str, items: list[bytes]) -> None:
        self.gossip.receive(peer, items)

    def fail(self, reason: str) -> None:
        """Stop serving at once and have the process exit non-zero."""
        if self.fatal_error is not None:
            return
        self.fatal_error = reason
        log.critical("%s; the node stops", reason)
        self.waiters.fail_all(Refusal("diverged", reason))
        self.finality.fail_all(Refusal("diverged", reason))
        self._on_fatal(reason)

    # -- the wiring between parts ------------------------------------------------------

    def _admitted(self, signed: SignedDocument, wire: bytes, from_client: bool) -> None:
        """An admitted document goes to the leader, the one node that orders it; a
        follower keeps it until its block is applied and sends it again to a new
        leader (housekeeping). Raft then carries it to every node, once."""
        driver = self.driver
        if driver.is_leader:
            self.proposer.wake()
        elif driver.leader:
            with contextlib.suppress(KeyError):
                self.links.gossip_to(self.genesis.state_by_node(driver.leader).code, document_item(wire))
                self.censorship.forwarded(signed.id, signed.document.expires_at_ms, time.monotonic())

    def _applied(self, applied: AppliedBlock, accepted: bool) -> None:
        self.feed.advanced()
        header = applied.header
        # The round rule (ledger/_rounds.py) decides inside: at once, later, or never.
        self.attestations.attest(header, sign=accepted)
        self.finality.advance()
        self.censorship.ordered(applied.document_ids, time.monotonic())
        self.membership.follow()
        self.follow_governance()
        self.defence.block_applied(header)

    def _campaign(self) -> None:
        """Stand for election against a censoring leader (a pre-vote campaign, which
        respects the leader lease of voters that still follow the leader)."""
        self.driver.campaign()

    def _wake_proposer(self) -> None:
        self.proposer.wake()
        self.follow_governance()

    def follow_governance(self) -> None:
        """On the leader: propose the next Raft change the applied governance documents
        call for, one at a time (Raft refuses a second while one is pending; the next
        applied block or committed entry asks again). Followers do nothing here: the
        core's judge checks the certificate of whatever their leader appends."""
        driver = self.driver
        if not driver.is_leader or not driver.running or self.fatal_error is not None:
            return
        step = self.store.next_conf_change(driver.status().voters)
        if step is None:
            return
        kind, node, certificate = step
        cc = ConfChange(_CONF_TYPES[kind], NodeId(node), certificate)
        if cc != self._conf_asked:
            log.info("governance: proposing to %s node %d", kind, node)
        self._conf_asked = cc
        driver.request_conf_change(cc)

    def _raft_down(self, peer: str) -> None:
        self.driver.report_unreachable(NodeId(self.genesis.state(peer).node_id))

    def _gossip_up(self, peer: str) -> None:
        self.attestations.resend(peer)
        for evidence in self.evidence.all():
            self.links.gossip_to(peer, evidence_item(evidence))

    def _status_item(self) -> bytes:
        head = self.store.head
        role, term, leader = self.views.raft_view()
        return status_item(head.height, head.hash.hex(), role, term, leader, VERSION)

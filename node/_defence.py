"""What a node does with proof that a member state's node is hostile.

Evidence (two blocks attested at one height in one round, or two entries appended as
leader at one Raft term and index) is kept and passed on (`EvidenceStore`), and then:
the state's node may not lead (`leader_refused`: no vote, no pre-vote, its appends
ignored) until the regulators clear it; the Raft term it claimed is refused
(`Config.term_refused`); if it led what this node holds above the final height, the
ledger and the Raft log go back to the last final block (`Healing`) and the documents
of the undone blocks are offered again; an equivocated entry that reached the Raft log
before it applied is taken out of it.

Built by the node (node/_node.py) with what it needs; the driver and admission are
built after it and are reached through callables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from consensus import NONE, Driver, EntryType, LogIndex, NodeId, RaftUsageError, Storage
from ledger import (
    AnyEvidence,
    AppendEquivocation,
    BlockHeader,
    DecodeError,
    Genesis,
    LedgerStore,
    decode_signed,
)

from ._appends import entry_digest
from ._evidence import EvidenceStore
from ._gossip import evidence_item
from ._healing import Healed, Healing
from ._metrics import Metrics
from ._pipeline import decode_entry

log = logging.getLogger(__name__)

# How long append evidence waits for the equivocated entry to reach Raft's storage
# before looking for it there (it is persisted within milliseconds of arriving).
EQUIVOCATED_PERSIST_WAIT_S = 2.0
EQUIVOCATED_PERSIST_POLL_S = 0.02


def block_at(store: LedgerStore, height: int) -> tuple[int, str]:
    """The Raft term and proposer of the block at `height` ((0, ""): not held), which
    tell what append evidence a clearing block there clears."""
    header = store.header(height)
    return (header.raft_term, header.proposer) if header is not None else (0, "")


class Defence:
    """Evidence in; refusals, heals and a cleaned Raft log out."""

    def __init__(
        self,
        genesis: Genesis,
        state: str,
        store: LedgerStore,
        metrics: Metrics,
        evidence: EvidenceStore,
        healing: Healing,
        raft_log: Storage,
        *,
        driver: Callable[[], Driver],
        gossip_all: Callable[[bytes], None],
        learn_evidence: Callable[[AnyEvidence], None],
        rolled_back: Callable[[int], None],
        hold: Callable[[LogIndex], Awaitable[list[bytes]]],
        release: Callable[[], None],
        readmit: Callable[[bytes], None],
        forget_committed: Callable[[bytes], None],
        wake_proposer: Callable[[], None],
        fail: Callable[[str], None],
    ) -> None:
        """`readmit(wire)` offers a document again through admission, `forget_committed`
        stops counting one as in a committed block; `hold` and `release` pause the apply
        pipeline around a change of the Raft log."""
        self._genesis = genesis
        self._state = state
        self._store = store
        self._metrics = metrics
        self._evidence = evidence
        self._healing = healing
        self._raft_log = raft_log
        self._driver = driver
        self._gossip_all = gossip_all
        self._learn_evidence = learn_evidence
        self._rolled_back = rolled_back
        self._hold = hold
        self._release = release
        self._readmit = readmit
        self._forget_committed = forget_committed
        self._wake_proposer = wake_proposer
        self._fail = fail
        self._refused_nodes: frozenset[int] = frozenset()
        self._evidence_metric = metrics.evidence_gauge()
        self.heal_task: asyncio.Task[Any] | None = None
        self.refresh_refused()
        # A heal that finished at start (Healing.finish_at_start) leaves the Raft core to
        # rewind and documents to offer once the driver runs (`offer_at_start`).
        self._rewound_at_start = healing.pending
        self._offer_at_start = healing.finish_at_start(raft_log)

    # -- evidence --------------------------------------------------------------------------

    def add_evidence(self, evidence: AnyEvidence) -> None:
        """Evidence this node built or a peer gossiped: checked, kept, shown, passed on."""
        if not self._evidence.add(evidence):
            return
        if isinstance(evidence, AppendEquivocation):
            height, term = self._store.head.height, evidence.term
            what = f"two different entries as leader at Raft term {evidence.term} index {evidence.index}"
        else:
            height, term = evidence.height, 0
            what = f"two different blocks at height {evidence.height}"
        self._metrics.alarms.raise_alarm(
            "equivocation", height, f"{evidence.state} signed {what} (evidence {evidence.id.hex()[:16]}); "
            "its node may not lead until the regulators clear it")
        self._gossip_all(evidence_item(evidence))
        self.refresh_refused()
        self._learn_evidence(evidence)  # it may complete a round-rule proof
        if evidence.state == self._state:
            return
        if isinstance(evidence, AppendEquivocation) and self.claimed_term(evidence):
            # The term it claimed leadership in and equivocated in is refused at once,
            # whether or not it led what we hold: an honest node elected in that same
            # term would propose blocks of the hostile ones' round (Config.term_refused).
            self._healing.refuse_terms({evidence.term})
        led = self._led_what_we_hold(evidence.state)
        heal = self._healing.on_evidence(evidence.state, term) if led else None
        if isinstance(evidence, AppendEquivocation):
            self._start_heal(self._heal_appends(heal, evidence))
        elif heal is not None:
            self._start_heal(heal)

    def block_applied(self, header: BlockHeader) -> None:
        """After each applied block: a clearing block may lift a refusal, and a block of
        a state we hold evidence against, applied after the evidence came (its entry was
        in flight when the proof arrived: signed appends catch a leader before its block
        applies, and the entry could not be taken out yet), cannot be trusted to become
        final: back to the last final block."""
        if not len(self._evidence):  # every block, almost always: nothing is built
            return
        self.refresh_refused()  # a CLEAR_EVIDENCE in this block lifts a refusal
        proposer = header.proposer
        if (proposer != self._state and header.height > self._store.final_height
                and proposer in self._evidence.states_against()):
            log.error("applied block %d proposed by %s, which equivocated: healing", header.height, proposer)
            self._start_heal(self._healing.on_evidence(proposer, header.raft_term))

    def conflicting_quorum(self, height: int) -> None:
        """A Byzantine quorum attested another block above our final height."""
        self._start_heal(self._healing.on_conflicting_quorum(height))

    def leader_refused(self, node: NodeId) -> bool:
        return node in self._refused_nodes

    def refresh_refused(self) -> None:
        """Recompute the node ids Raft refuses as leader (cheap: a few states)."""
        refused = set()
        for s in self._genesis.states:
            if s.code != self._state and self._evidence.against(s.code):
                refused.add(s.node_id)
        self._refused_nodes = frozenset(refused)
        self._evidence_metric.set(len(self._evidence))

    def claimed_term(self, evidence: AppendEquivocation) -> bool:
        """Whether the state's appends could have made it leader of their term here: not
        when we follow another leader in that very term (a hostile state can sign two
        appends for any term; refusing the honest leader's term would stall it, once per
        term). Attestation evidence names a round, i.e. the term of a block the state
        attested, not one it led: it refuses no term (healing refuses the terms of the
        non-final blocks the state proposed)."""
        try:
            status = self._driver().status()
        except RuntimeError:
            return True  # not started: nothing to judge by
        try:
            claimant = NodeId(self._genesis.state(evidence.state).node_id)
        except KeyError:
            claimant = NONE
        return not (status.term == evidence.term and status.leader not in (NONE, claimant))

    def entry_refused(self, term: int, index: int) -> bool:
        """Healing refuses the entries of a term a refused leader equivocated in; but an
        honest node that never followed that leader may be elected in the same term
        number (it refused the leader before taking its append), and its entries of that
        term are its own: the one this node follows now, in that term, not refused."""
        if not self._healing.entry_refused(term, index):
            return False
        try:
            status = self._driver().status()
        except RuntimeError:
            return True  # not started: nothing to judge by
        honest_leader = status.leader != NONE and status.leader not in self._refused_nodes
        return not (status.term == term and honest_leader)

    def _led_what_we_hold(self, state: str) -> bool:
        """Whether `state`'s node leads now, or proposed a block we hold above the final
        height: only then can our non-final branch be its equivocation. Evidence against
        a state that only attests (a hostile follower signing two hashes) heals nothing,
        and healing on it would let any one state roll every honest node back at will."""
        with contextlib.suppress(KeyError):
            if self._driver().leader == self._genesis.state(state).node_id:
                return True
        store = self._store
        for height in range(store.final_height + 1, store.head.height + 1):
            header = store.header(height)
            if header is not None and header.proposer == state:
                return True
        return False

    # -- healing ---------------------------------------------------------------------------

    async def _heal_appends(self, heal: Any, evidence: AppendEquivocation) -> Healed | None:
        """Heal on append evidence (when the state led what we hold), then take the
        equivocated entry out of our Raft log if it is there. Signed appends catch a
        leader before what it sent commits: the ledger then holds nothing above its
        final block and the heal rewinds nothing, but the Raft log may end in the
        leader's entry, which another honest node holds differently at the same (term,
        index) (Raft's log matching cannot tell them apart), and which every node that
        followed that leader refuses in votes (`entry_refused`)."""
        healed: Healed | None = await heal if heal is not None else None
        await self._drop_equivocated(evidence)
        return healed

    async def _drop_equivocated(self, evidence: AppendEquivocation) -> None:
        index = LogIndex(evidence.index)
        driver = self._driver()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EQUIVOCATED_PERSIST_WAIT_S
        # The entry may be in Raft's log but not yet persisted: wait for it, bounded.
        while self._raft_log.last_index() < index:
            if not driver.running or driver.status().last_index < index or loop.time() > deadline:
                return
            await asyncio.sleep(EQUIVOCATED_PERSIST_POLL_S)
        held = self._raft_log.entries(index, LogIndex(index + 1))
        signed = {evidence.first.entry_hash, evidence.second.entry_hash}
        if not held or held[0].term != evidence.term or entry_digest(held[0]) not in signed:
            return  # not the equivocated entry (another term's, or an honest one)
        floor = self._healing.final_raft_index()
        target = LogIndex(max(index - 1, floor))
        dropped = await self._hold(target)
        try:
            # Only while the ledger holds nothing above it: Raft never goes below the ledger.
            if self._store.head.raft_index <= target:
                # The documents in the entries taken out go back through admission like
                # those of undone blocks: an honest follower may have forwarded them to
                # the hostile leader, whose clients wait for them (a hostile leader's own
                # inventions are refused there or applied once: ids are idempotent).
                above = LogIndex(self._raft_log.last_index() + 1)
                dropped += self._entry_documents(LogIndex(target + 1), above)
                await driver.rewind(target, floor)
                log.warning("dropped the Raft log above entry %d: it held %s's equivocated entry at term %d "
                            "index %d", target, evidence.state, evidence.term, index)
        except RaftUsageError as exc:
            # Not now (the log moved meanwhile): the entry stays, as it would without
            # signed appends, and a later heal of this term takes it out.
            log.error("could not drop %s's equivocated entry at index %d: %s", evidence.state, index, exc)
        finally:
            self._release()
        self.offer_again(dropped)

    def _entry_documents(self, lo: LogIndex, hi: LogIndex) -> list[bytes]:
        """The document wires of the block entries in Raft's log in [lo, hi)."""
        wires: list[bytes] = []
        if hi <= lo:
            return wires
        for entry in self._raft_log.entries(lo, hi):
            if entry.type is not EntryType.NORMAL or not entry.data:
                continue
            try:
                wires.extend(decode_entry(entry.data)[2])
            except DecodeError:
                continue  # not a block: nothing to offer
        return wires

    def _start_heal(self, heal: Any) -> None:
        """Heal in a task of its own (the trigger comes from a gossip or apply callback);
        heals run one after another (Healing holds a lock)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            heal.close()  # no loop (a test building the node): nothing is running to heal
            return
        self.heal_task = loop.create_task(self._heal(heal), name="healing")

    async def _heal(self, heal: Any) -> None:
        try:
            healed = await heal
        except Exception as exc:
            self._fail(f"healing failed: {exc!r}")
            return
        if isinstance(healed, Healed):
            self._rolled_back(healed.to_height)
            self._metrics.alarms.raise_alarm(
                "healed", healed.to_height,
                f"rolled back blocks {healed.to_height + 1}-{healed.from_height} (not final) and rewound "
                f"Raft to entry {healed.raft_index}; {healed.documents_offered} documents offered again")
            self._wake_proposer()

    async def rewind_raft(self, index: LogIndex, floor: LogIndex) -> None:
        # A driver that is not running raises: the marker stays, and the next start
        # finishes the heal (Healing.finish_at_start).
        await self._driver().rewind(index, floor)

    def offer_at_start(self) -> None:
        """After a heal finished at start, once the driver runs: the Raft core rewinds to
        the same index too, which marks it rewound (a leader that counted our old log
        then probes us again: consensus REJECT_REWOUND), and the undone documents are
        offered again."""
        wires, self._offer_at_start = self._offer_at_start, []
        target, self._rewound_at_start = self._rewound_at_start, None
        if target is not None:
            self._start_heal(self._mark_rewound(LogIndex(target), wires))
        else:
            self.offer_again(wires)

    async def _mark_rewound(self, target: LogIndex, wires: Sequence[bytes]) -> None:
        dropped = await self._hold(target)
        try:
            # Only while the ledger holds nothing above it: Raft never goes below the ledger.
            if self._store.head.raft_index <= target:
                await self._driver().rewind(target, target)
        finally:
            self._release()
        self.offer_again([*wires, *dropped])

    def offer_again(self, wires: Sequence[bytes]) -> None:
        """Documents of undone blocks go back through admission (the rolled-back ledger
        decides again whether they apply) into the mempool."""
        for wire in wires:
            try:
                doc_id = decode_signed(wire).id
            except DecodeError:
                continue
            self._forget_committed(doc_id)
            self._readmit(wire)

"""Seeded campaigns with a hostile leader that equivocates, and the healing rule.

Built on the RawNode simulator (`sim.py`): the same seeded network, clock and Ready
handling, with one of five nodes hostile. While it leads, every append it sends to the
followers of a chosen "other branch" carries other data at the same (term, index): the
followers persist, acknowledge and (since the leader counts their acknowledgements)
commit and apply different entries at one index. Raft's own invariants (log matching,
state machine safety) do not hold for such a run, so the Raft `Checker` is off; this
simulator checks what Tamga's finality promises instead.

The finality model. Each node attests, for every entry it applies, the hash chain of
its applied sequence up to that entry (as a block hash names the whole chain below it),
and so implicitly every chain below it. The hostile node attests every chain any node
applies (the strongest attacker for safety). A chain is final when a Byzantine quorum
of distinct nodes attested it (4 of 5), and then so is every chain below it.
Attestations reach everyone at once (gossip is not what this campaign tests).

The attestation rule of an honest node, per index (the Raft term of the entry there is
its round): never an entry of a lower term than one it attested there; never two
chains of one term; another chain only once every chain it attested there is proven
dead, or the new one is final already. A chain of term t is proven dead when k
distinct nodes attested other chains there in terms >= t (the rule forbids each of
them ever to attest it) and (n - k) + min(f, k) < quorum, or when the chain below it
is dead. With "one chain per index, ever" instead, a leader that splits the honest
nodes 2/2 leaves the index unfinalizable for ever; with the round rule the check "no
two final entries at one index" below is what shows it safe in these campaigns.

Healing. Two triggers, as in the issue: evidence against the hostile node (two honest
nodes persisted different entries at one (term, index) of a term it led, i.e. two
leader-signed appends), which each honest node learns after a seeded delay; and a
quorum attesting another chain at an index the node applied. Then the node:
  1. on evidence, refuses the hostile node as leader (`Config.leader_refused`), and
     refuses entries of the terms it led above what it rewinds to and above what it
     knows is final (`Config.entry_refused`): an honest node that has not healed yet
     may otherwise win an election with its longer log and bring them back;
  2. rolls its application back to its last final point: the highest index where its
     chain is a final chain;
  3. rewinds its Raft log to that index (`RawNode.rewind`, floor = the same index).
Every honest log is then a prefix of the one final sequence, so Raft's log matching
(broken by the equivocation: one (term, index), two entries) holds again among the
honest nodes, and the next honest leader's log is a superset of every honest voter's;
entries above the final point (honest ones too) are proposed again by their clients.

Checked after every event:
  no two final entries at one index (final chains all extend one another);
  no final entry rolled back: an honest node keeps, in its application and its Raft
  log, every entry up to the highest final point it ever reached;
and at the end, once the hostile node is isolated, every honest node applies one
sequence, and a barrier proposed then is final with everything below it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from consensus import NONE, Config, Entry, EntryType, LogIndex, Message, MessageType, NodeId, Ready, Role
from tests.consensus.sim import App, Faults, Sim, SimFailure, SimNode

N = 5
F = (N - 1) // 3
QUORUM = -(-(N + F + 1) // 2)  # ceil((n + f + 1) / 2): 4 of 5


@dataclass
class Ledger(App):
    """The application with what it applied kept per index (and the chain after each
    entry), so that it can roll back."""

    log: list[Entry] = field(default_factory=list)
    chains: list[bytes] = field(default_factory=list)

    def apply(self, e: Entry) -> None:
        super().apply(e)
        self.log.append(e)
        self.chains.append(self.chain)

    def chain_at(self, index: int) -> bytes | None:
        return self.chains[index - 1] if 0 < index <= len(self.chains) else None

    def rollback_to(self, index: int) -> None:
        del self.log[index:]
        del self.chains[index:]
        rebuilt = App(keep_values=self.keep_values)
        for e in self.log:
            rebuilt.apply(e)
        self.applied, self.chain, self.values = index, rebuilt.chain, rebuilt.values


class ByzantineSim(Sim):
    """Five nodes, one hostile; see the module docstring."""

    def __init__(self, seed: int, hostile: int, *, faults: Faults | None = None,
                 evidence_delay_ms: tuple[int, int] = (5, 200)) -> None:
        self.hostile = NodeId(hostile)
        self.refused: dict[NodeId, set[NodeId]] = {}
        self.floors: dict[NodeId, list[int]] = {}  # honest node -> [its last rewind point]
        self.other_branch: set[NodeId] = set()
        self.equivocating = False
        self.evidence_delay_ms = evidence_delay_ms
        self.heal_at: dict[NodeId, tuple[int, bool]] = {}  # node -> (when, on evidence)
        self.evidence_found = False
        self.term_leaders: dict[int, NodeId] = {}
        # index -> chain -> the distinct nodes that attested it
        # index -> chain -> (term of its entry there, the nodes that attested it)
        self.votes: dict[int, dict[bytes, tuple[int, set[NodeId]]]] = {}
        self.parent: dict[tuple[int, bytes], bytes] = {}  # (index, chain) -> its chain one below
        self.attested: dict[NodeId, dict[int, list[tuple[bytes, int]]]] = {}  # node -> index -> (chain, term)
        self.dead: set[tuple[int, bytes]] = set()  # chains proven never to become final
        self.final: dict[int, bytes] = {}  # index -> the final chain there
        self.final_max = 0
        self.kept: dict[NodeId, int] = {}  # honest node -> highest final point it reached
        self.rewinds = 0
        self.equivocations = 0
        self._honest: list[SimNode] | None = None
        super().__init__(seed, n=N, faults=faults, check=False, keep_values=True)
        for node in self.nodes.values():
            node.app = Ledger()

    # -- nodes: honest ones refuse what they hold evidence against ---------------------

    def _make_config(self, node: SimNode, **overrides: Any) -> Config:
        refused = self.refused.setdefault(node.id, set())
        floor = self.floors.setdefault(node.id, [0])

        def entry_refused(term: int, index: int) -> bool:
            # Above what it rewound to and above what it knows is final: a final entry
            # of a hostile term (the quorum attested it) is taken back from anyone.
            return index > max(floor[0], self.final_max) and self.term_leaders.get(term) in refused

        if node.id != self.hostile:
            overrides = {**overrides, "leader_refused": refused.__contains__, "entry_refused": entry_refused}
        return super()._make_config(node, **overrides)

    def honest(self) -> list[SimNode]:
        if self._honest is None:
            self._honest = [n for n in self.nodes.values() if n.id != self.hostile]
        return self._honest

    # -- the hostile leader equivocates on the wire ------------------------------------

    def send(self, m: Message) -> None:
        if (self.equivocating and m.frm == self.hostile and m.type == MessageType.APP
                and m.to in self.other_branch and m.entries):
            m = replace(m, entries=tuple(self._other_version(e) for e in m.entries))
        super().send(m)

    def _other_version(self, e: Entry) -> Entry:
        if e.type != EntryType.NORMAL or not e.data:
            return e
        self.equivocations += 1
        return replace(e, data=e.data + b"~other")

    # -- persisting, applying, attesting -------------------------------------------------

    def _persist(self, node: SimNode, rd: Ready) -> None:
        super()._persist(node, rd)
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            self.term_leaders[node.node().raft.term] = node.id
        if rd.entries and node.id != self.hostile and not self.evidence_found:
            self._look_for_evidence(node, rd.entries)

    def _look_for_evidence(self, node: SimNode, entries: Iterable[Entry]) -> None:
        """Two honest nodes holding different entries at one (term, index) of a term
        the hostile node led: the two leader-signed appends are the proof."""
        for e in entries:
            if self.term_leaders.get(e.term) != self.hostile:
                continue
            for other in self.honest():
                if other.id == node.id or not other.alive:
                    continue
                log = other.node().raft.log
                if not log.first_index() <= e.index <= log.last_index():
                    continue
                theirs = log.slice(e.index, LogIndex(e.index + 1))[0]
                if theirs.term == e.term and theirs.data != e.data:
                    self._log("evidence", node.id, other.id, e.index)
                    self.evidence_found = True
                    for honest in self.honest():
                        self._schedule_heal(honest.id, evidence=True)
                    return

    def _schedule_heal(self, node_id: NodeId, evidence: bool) -> None:
        pending = self.heal_at.get(node_id)
        if pending is not None and (pending[1] or not evidence):
            return
        self.heal_at[node_id] = (self.now + self.rng.randint(*self.evidence_delay_ms), evidence)

    def _apply(self, node: SimNode, rd: Ready) -> None:
        for e in rd.committed_entries:
            # The other branch applies other data at a proposal's (index, term): that is
            # the equivocation itself, not a client's proposal applied wrongly.
            if self.proposals.get((e.index, e.term), e.data) != e.data:
                del self.proposals[(e.index, e.term)]
        super()._apply(node, rd)
        app = _ledger(node)
        for e in rd.committed_entries:
            if app.chain_at(e.index) is None:
                self.fail(f"node {node.id} lost entry {e.index} while applying it")
            self._attest(node.id, app, e.index)
            if node.id != self.hostile:
                self._attest(self.hostile, app, e.index)  # it stands behind every branch
                final = self.final.get(e.index)
                if final == app.chain_at(e.index):
                    self.kept[node.id] = max(self.kept.get(node.id, 0), e.index)
                elif final is not None:
                    # It applied an entry where a quorum attests another: the second trigger.
                    self._schedule_heal(node.id, evidence=False)

    def _attest(self, node_id: NodeId, app: Ledger, index: int) -> None:
        """`node_id` attests the chain `app` holds at `index`, and so every chain below it
        (implied attestations, recorded down to where it attested the same chain)."""
        mine = self.attested.setdefault(node_id, {})
        changes: list[tuple[int, bytes, int]] = []
        for k in range(index, 0, -1):
            chain, term = app.chains[k - 1], app.log[k - 1].term
            if any(c == chain for c, _ in mine.get(k, ())):
                break
            changes.append((k, chain, term))
        if node_id != self.hostile and not all(self._may_attest(mine.get(k, []), k, c, t) for k, c, t in changes):
            return  # locked: it stays silent until what it attested is proven dead
        for k, chain, term in reversed(changes):
            mine.setdefault(k, []).append((chain, term))
            if k > 1:
                self.parent[(k, chain)] = app.chains[k - 2]
            voters = self.votes.setdefault(k, {}).setdefault(chain, (term, set()))[1]
            voters.add(node_id)
            if len(voters) >= QUORUM:
                self._finalize(k, chain)

    def _may_attest(self, before: list[tuple[bytes, int]], index: int, chain: bytes, term: int) -> bool:
        """The round rule at one index: never a lower term than attested there before,
        never two chains in one term, and another chain only once every chain attested
        there before is proven dead. A chain that is final already may always be
        attested: nothing that conflicts with it can become final any more."""
        if self.final.get(index) == chain:
            return True
        for other, other_term in before:
            if term < other_term or term == other_term:
                return False
            if not self._is_dead(index, other, other_term):
                return False
        return True

    def _is_dead(self, index: int, chain: bytes, term: int) -> bool:
        """Whether `chain` at `index` can never be final: k distinct nodes attested other
        chains there in a term >= its own (such nodes can never attest it: the round
        rule), and (n - k) + min(f, k) < quorum; or its chain one below is dead."""
        key = (index, chain)
        if key in self.dead:
            return True
        others: set[NodeId] = set()
        for other, (other_term, voters) in self.votes.get(index, {}).items():
            if other != chain and other_term >= term:
                others |= voters
        k = len(others)
        dead = (N - k) + min(F, k) < QUORUM
        if not dead and index > 1 and key in self.parent:
            below = self.parent[key]
            below_term = self.votes.get(index - 1, {}).get(below, (0, set()))[0]
            dead = self._is_dead(index - 1, below, below_term)
        if dead:
            self.dead.add(key)
        return dead

    def _finalize(self, index: int, chain: bytes) -> None:
        held = self.final.setdefault(index, chain)
        if held != chain:
            self.fail(f"two final entries at index {index}")
        if (index, chain) in self.dead:
            self.fail(f"a chain proven dead at {index} became final")
        if index <= self.final_max:
            return
        self.final_max = index
        self._log("final", index)
        for node in self.honest():
            self._note_final_point(node)
            app = _ledger(node)
            top = min(index, len(app.chains))
            if top and top in self.final and app.chain_at(top) != self.final[top]:
                self._schedule_heal(node.id, evidence=False)  # a quorum attests another chain

    def fail(self, what: str) -> None:
        raise SimFailure(f"seed={self.seed}: {what} (t={self.now}ms)")

    # -- healing --------------------------------------------------------------------

    def step(self) -> bool:
        progressed = super().step()
        for node_id, (at, evidence) in sorted(self.heal_at.items()):
            if at <= self.now:
                del self.heal_at[node_id]
                self._heal(self.nodes[node_id], evidence)
        self._check_no_final_lost()
        return progressed

    def final_point(self, app: Ledger) -> int:
        """The highest index where the node's chain is a final chain."""
        for k in range(min(self.final_max, len(app.chains)), 0, -1):
            if self.final.get(k) == app.chains[k - 1]:
                return k
        return 0

    def _heal(self, node: SimNode, evidence: bool) -> None:
        if evidence:
            self.refused[node.id].add(self.hostile)
        if not node.alive:
            return
        self.handle_ready(node)  # between Readies, as a driver would call it
        app = _ledger(node)
        point = self.final_point(app)
        if evidence:
            self.floors[node.id][0] = point
        if point == app.applied and node.node().raft.log.last_index() == point:
            return
        self._log("heal", node.id, point)
        app.rollback_to(point)
        node.node().rewind(LogIndex(point), floor=LogIndex(point))
        self.rewinds += 1
        self.handle_ready(node)

    def _note_final_point(self, node: SimNode) -> None:
        if node.id != self.hostile:
            self.kept[node.id] = max(self.kept.get(node.id, 0), self.final_point(_ledger(node)))

    def _check_no_final_lost(self) -> None:
        """Every honest node still holds, in its application and its Raft log, the
        highest final point it reached (hash chains: the entries below it too)."""
        for node_id, kept in self.kept.items():
            if not kept:
                continue
            node = self.nodes[node_id]
            app = node.app
            assert isinstance(app, Ledger)
            if len(app.chains) < kept or app.chains[kept - 1] != self.final[kept]:
                self.fail(f"honest node {node_id} rolled back final entry {kept}")
            raw = node.raw
            if raw is not None and raw.raft.log.term_or_none(LogIndex(kept)) != app.log[kept - 1].term:
                self.fail(f"honest node {node_id} lost final entry {kept} from its Raft log")

    # -- the end ----------------------------------------------------------------------

    def converge_honest(self, max_ms: int = 10_000) -> int:
        """Isolate the hostile node, heal the rest, commit a barrier through an honest
        leader, and check that every honest node applied one sequence, final up to the
        barrier. Returns the barrier's index."""
        self.isolate(self.hostile)
        self.faults = Faults()
        honest_ids = [n.id for n in self.honest()]

        def honest_leader() -> NodeId:
            lead = self.leader()
            return lead if lead in honest_ids else NONE

        # Indexes where honest nodes attested chains since rolled back stay locked: a
        # barrier there is applied but not final; the next index above them will be.
        end = self.now + max_ms
        index = count = 0
        while self.now < end:
            lead = honest_leader()
            barrier = b"barrier-%d-%d" % (self.seed, count)
            count += 1
            got = self.propose(barrier, lead) if lead != NONE else None
            if got is not None and self.run_until(
                lambda g=got, b=barrier: all(_applied_at(n, g[1]) == (g[0], b) for n in self.honest()), 2_000
            ):
                index = got[1]
                if self.final_point(_ledger(self.honest()[0])) >= index:
                    break
            self.run_for(50)
        if not index:
            self.fail("the honest nodes did not apply a barrier")
        self.run_for(100)
        logs = {tuple(_ledger(n).chains) for n in self.honest()}
        if len(logs) != 1:
            self.fail("honest nodes did not converge on one applied sequence")
        if self.final_point(_ledger(self.honest()[0])) < index:
            self.fail(f"no barrier became final (the last at {index})")
        return index


def _ledger(node: SimNode) -> Ledger:
    app = node.app
    if not isinstance(app, Ledger):
        raise SimFailure("not a Ledger")
    return app


def _applied_at(node: SimNode, index: int) -> tuple[int, bytes] | None:
    log = _ledger(node).log
    if index > len(log):
        return None
    e = log[index - 1]
    return e.term, e.data


@dataclass
class Outcome:
    seed: int
    equivocations: int
    evidence: bool
    rewinds: int
    barrier: int
    trace: str


def run_hostile(seed: int, duration_ms: int = 200) -> Outcome:
    """One campaign: the hostile node leads and equivocates to a random split of the
    followers under a lossy, reordering network, the honest nodes find the evidence
    and heal, proposals go on; then the hostile node is isolated and all must converge."""
    pick = random.Random(seed)
    hostile = NodeId(pick.randint(1, N))
    faults = Faults(loss=pick.choice([0.0, 0.01, 0.05]), dup=0.01, long_delay=pick.choice([0.0, 0.02]))
    sim = ByzantineSim(seed, hostile, faults=faults)
    followers = [n for n in sim.nodes if n != hostile]
    sim.other_branch = set(pick.sample(followers, pick.randint(1, 3)))
    # The hostile node stands first, so that it leads (its election timeout is its own).
    sim.raw(hostile).campaign()
    sim.handle_ready(sim.nodes[hostile])
    sim.run_until(lambda: sim.leader() != NONE, 2_000)
    sim.equivocating = True
    end = sim.now + duration_ms
    count = 0
    while sim.now < end:
        lead = sim.leader()
        if lead != NONE:
            sim.propose(b"s%d-%d" % (seed, count), lead)
            count += 1
        if pick.random() < 0.02 and sim.evidence_found:
            # Sometimes the hostile node is cut off mid-way: elections among the honest.
            sim.isolate(hostile)
        sim.run_for(pick.randint(1, 15))
    sim.equivocating = False
    index = sim.converge_honest()
    return Outcome(seed, sim.equivocations, sim.evidence_found, sim.rewinds, index, sim.trace_hash())


__all__ = ["ByzantineSim", "Outcome", "run_hostile"]

"""A node the application refuses as leader (evidence against its state) gets no vote
and no pre-vote, and its appends are ignored, until the refusal is lifted (issue 11)."""

from __future__ import annotations

from tests.consensus.sim import Sim


def test_honest_nodes_replace_a_refused_leader_and_never_elect_it() -> None:
    """Once the honest nodes hold evidence against the leader, another node leads, the
    cluster commits, and the refused node never wins an election; lifted, it may lead again."""
    refused: set[int] = set()
    sim = Sim(seed=111, n=5, leader_refused=lambda node: node in refused)
    bad = sim.wait_leader()
    sim.wait_applied(sim.commit(b"before"))
    refused.add(bad)
    assert sim.run_until(lambda: sim.leader() not in (bad, 0) and sim._leader_stable(), 10_000)
    honest = [n for n in range(1, 6) if n != bad]
    sim.wait_applied(sim.commit(b"after"), honest)
    # The refused node may campaign (the others ignore it, so it hears from no one it
    # leads); it never wins, and no honest node follows it.
    for _ in range(40):
        sim.run_for(100)
        assert sim.raw(bad).raft.role.name != "LEADER" or sim.raw(bad).raft.term < max(
            sim.raw(n).raft.term for n in honest), "a refused node leads"
        for n in honest:
            assert sim.raw(n).raft.lead != bad, f"node {n} follows the refused node"
    refused.clear()
    # Lifted: the node rejoins and follows the leader like any other.
    assert sim.run_until(lambda: all(sim.raw(n).raft.lead == sim.leader() for n in range(1, 6)), 10_000)
    sim.wait_applied(sim.commit(b"lifted"))


def test_without_a_judge_nothing_is_refused() -> None:
    """The default (no judge) keeps the leader: the hook changes nothing unless set."""
    sim = Sim(seed=112, n=5)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    sim.run_for(2_000)
    assert sim.leader() == lead

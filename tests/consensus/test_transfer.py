"""Leadership transfer (thesis section 3.10; etcd TestLeaderTransfer*)."""

from __future__ import annotations

import pytest

from consensus import (
    NONE,
    ConfChange,
    ConfChangeType,
    MessageType,
    NodeId,
    ProposalDropped,
    Role,
)
from tests.consensus.sim import Sim, drain, elect, msg, new_raw

ELECTION_MS = 100


def _transfer(sim: Sim, to: int) -> None:
    lead = sim.leader()
    sim.raw(lead).transfer_leader(NodeId(to))
    sim.handle_ready(sim.nodes[lead])


def test_transfer_to_up_to_date_node() -> None:
    """The leader hands over to a caught-up follower at once, which wins at the next
    term without waiting for an election timeout (etcd TestLeaderTransferToUpToDateNode)."""
    sim = Sim(seed=60, n=3)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    term = sim.raw(lead).status().term
    target = next(n for n in (1, 2, 3) if n != lead)
    _transfer(sim, target)
    assert sim.run_until(lambda: sim.leader() == target, ELECTION_MS // 2)
    assert sim.raw(target).status().term == term + 1
    sim.wait_applied(sim.commit(b"y"))


def test_transfer_via_a_follower_request() -> None:
    """A follower asked to transfer forwards the request to the leader (etcd
    TestLeaderTransferToUpToDateNodeFromFollower)."""
    sim = Sim(seed=61, n=3)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    target = next(n for n in (1, 2, 3) if n != lead)
    sim.raw(target).transfer_leader(NodeId(target))
    sim.handle_ready(sim.nodes[NodeId(target)])
    assert sim.run_until(lambda: sim.leader() == target, ELECTION_MS)


def test_transfer_to_slow_node_catches_it_up_first() -> None:
    """A lagging transferee first receives the missing entries; TIMEOUT_NOW follows
    only when its log matches (etcd TestLeaderTransferToSlowFollower)."""
    sim = Sim(seed=62, n=3)
    lead = sim.wait_leader()
    slow = next(n for n in (1, 2, 3) if n != lead)
    sim.isolate(slow)
    for i in range(20):
        sim.commit(b"s%d" % i)
    sim.heal()
    _transfer(sim, slow)
    assert sim.sent[MessageType.TIMEOUT_NOW] == 0
    assert sim.run_until(lambda: sim.leader() == slow, 3 * ELECTION_MS)
    assert sim.applied(slow) >= 21


def test_transfer_times_out() -> None:
    """A transfer to an unreachable node is abandoned after an election timeout and
    the leader accepts proposals again (etcd TestLeaderTransferTimeout)."""
    sim = Sim(seed=63, n=3)
    lead = sim.wait_leader()
    target = next(n for n in (1, 2, 3) if n != lead)
    sim.isolate(target)
    _transfer(sim, target)
    assert sim.raw(lead).status().lead_transferee == target
    with pytest.raises(ProposalDropped):
        sim.raw(lead).propose(b"refused")
    sim.run_for(ELECTION_MS + 2 * 10)
    assert sim.raw(lead).status().lead_transferee == NONE
    assert sim.leader() == lead
    sim.raw(lead).propose(b"accepted")


def test_proposals_are_refused_during_transfer() -> None:
    """While a transfer is under way, proposals are dropped so that the transferee's
    log can catch up (etcd TestLeaderTransferIgnoreProposal)."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.transfer_leader(NodeId(2))
    with pytest.raises(ProposalDropped) as info:
        raw.propose(b"x")
    assert "transfer" in str(info.value)


def test_second_transfer_to_same_node_is_ignored_and_other_node_replaces() -> None:
    """Asking again for the same transferee changes nothing; asking for another one
    aborts the first (etcd TestLeaderTransferSecondTransferToSameNode/AnotherNode)."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.transfer_leader(NodeId(2))
    drain(raw, st)
    for _ in range(3):
        raw.tick()
    drain(raw, st)
    raw.transfer_leader(NodeId(2))
    assert raw.raft.election_elapsed == 3  # not restarted: the same transfer goes on
    raw.transfer_leader(NodeId(3))
    assert raw.status().lead_transferee == 3 and raw.raft.election_elapsed == 0


def test_transfer_to_self_learner_or_stranger_is_ignored() -> None:
    """Transfers to the leader itself, to a non-voter or to an unknown node do nothing
    (etcd TestLeaderTransferToSelf, TestLeaderTransferToNonExistingNode)."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    for target in (1, 9):
        raw.transfer_leader(NodeId(target))
        assert raw.status().lead_transferee == NONE
    assert drain(raw, st) == []


def test_transfer_to_removed_node_is_ignored() -> None:
    """Once a node is removed it cannot be made leader (etcd
    TestLeaderTransferRemoveNode)."""
    sim = Sim(seed=64, n=3)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    gone = next(n for n in (1, 2, 3) if n != lead)
    index = sim.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(gone)))
    assert index is not None
    sim.wait_applied(index, [lead])
    _transfer(sim, gone)
    assert sim.raw(lead).status().lead_transferee == NONE
    sim.run_for(5 * ELECTION_MS)
    assert sim.leader() == lead


def test_transfer_to_node_with_pending_removal_is_ignored() -> None:
    """A node whose removal is in the leader's log, even uncommitted, is no longer a
    voter there and cannot become the transferee."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    raw.step(msg(MessageType.APP_RESP, 3, 1, term=1, index=1))
    drain(raw, st)
    raw.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3)))
    raw.transfer_leader(NodeId(3))
    assert raw.status().lead_transferee == NONE
    assert raw.status().voters == (1, 2)


def test_timeout_now_makes_a_follower_campaign_past_the_lease() -> None:
    """TIMEOUT_NOW starts a real election at once (no pre-vote), and its vote requests
    are granted even by followers that heard from the old leader recently."""
    raw, st = new_raw(2)
    raw.step(msg(MessageType.HEARTBEAT, 1, 2, term=1))
    drain(raw, st)
    raw.step(msg(MessageType.TIMEOUT_NOW, 1, 2, term=1))
    out = drain(raw, st)
    assert {m.type for m in out} == {MessageType.VOTE}
    assert all(m.context == b"transfer" for m in out)
    voter, vst = new_raw(3)
    voter.step(msg(MessageType.HEARTBEAT, 1, 3, term=1))
    drain(voter, vst)
    voter.step(next(m for m in out if m.to == 3))
    (answer,) = drain(voter, vst)
    assert answer.type == MessageType.VOTE_RESP and not answer.reject
    assert raw.status().role == Role.CANDIDATE

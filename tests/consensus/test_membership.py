"""Membership changes, one node at a time, and learners (thesis chapter 4; etcd
TestAddNode, TestRemoveNode, TestCommitAfterRemoveNode, TestLearner*)."""

from __future__ import annotations

import pytest

from consensus import (
    NONE,
    ConfChange,
    ConfChangeType,
    LogIndex,
    MessageType,
    NodeId,
    ProposalDropped,
    Role,
    apply_change,
)
from consensus._types import ConfState
from tests.consensus.sim import Sim, drain, elect, msg, new_raw

ELECTION_MS = 100


def _change(sim: Sim, kind: ConfChangeType, node: int) -> LogIndex:
    for _ in range(50):
        index = sim.propose_conf_change(ConfChange(kind, NodeId(node)))
        if index is not None:
            return index
        sim.run_for(20)
    raise AssertionError(f"could not propose {kind.name} {node}")


def test_add_a_voter() -> None:
    """A new node joins with an empty log, catches up, and then counts in the quorum
    (etcd TestAddNode)."""
    sim = Sim(seed=70, n=3)
    sim.wait_leader()
    sim.wait_applied(sim.commit(b"before"))
    sim.add_node(4)
    index = _change(sim, ConfChangeType.ADD_VOTER, 4)
    sim.wait_applied(index, (1, 2, 3, 4))
    assert sim.raw(4).status().voters == (1, 2, 3, 4)
    # With 4 voters, two nodes down leave no majority; with one down there is.
    lead = sim.leader()
    down = [n for n in (1, 2, 3, 4) if n != lead][:1]
    sim.isolate(down[0])
    sim.wait_applied(sim.commit(b"three of four"), [n for n in (1, 2, 3, 4) if n not in down])
    sim.heal()
    sim.converge()


def test_remove_a_follower() -> None:
    """A removed follower no longer counts; the rest commit without it and it does not
    disrupt them (etcd TestRemoveNode)."""
    sim = Sim(seed=71, n=3)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    gone = next(n for n in (1, 2, 3) if n != lead)
    index = _change(sim, ConfChangeType.REMOVE_NODE, gone)
    sim.wait_applied(index, [n for n in (1, 2, 3) if n != gone])
    assert sim.raw(lead).status().voters == tuple(n for n in (1, 2, 3) if n != gone)
    sim.crash(gone)
    sim.wait_applied(sim.commit(b"without it"), [n for n in (1, 2, 3) if n != gone])
    term = sim.raw(lead).status().term
    sim.restart(gone)
    sim.run_for(10 * ELECTION_MS)
    # It may not know it was removed, but pre-vote keeps it from disrupting anyone.
    assert sim.leader() == lead and sim.raw(lead).status().term == term


def test_remove_the_leader() -> None:
    """A leader that removes itself steps down once the change commits, and the
    remaining nodes elect a leader and go on (etcd TestRemoveLeader, thesis 4.2.2)."""
    sim = Sim(seed=72, n=3)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    index = _change(sim, ConfChangeType.REMOVE_NODE, lead)
    rest = [n for n in (1, 2, 3) if n != lead]
    sim.wait_applied(index, rest)
    assert sim.run_until(lambda: sim.leader() in rest, 5 * ELECTION_MS)
    assert sim.raw(lead).status().role == Role.FOLLOWER
    sim.wait_applied(sim.commit(b"after"), rest)
    sim.run_for(10 * ELECTION_MS)
    assert sim.leader() in rest


def test_commit_after_removing_a_node() -> None:
    """Removing a node lowers the quorum: an entry waiting for the removed node's
    acknowledgement commits once the removal applies (etcd TestCommitAfterRemoveNode)."""
    raw, st = new_raw(1, voters=(1, 2))
    elect(raw, st, (1, 2))
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    _, cc_index = raw.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(2)))
    # Under the new configuration {1} the change commits by the leader alone.
    assert raw.status().voters == (1,)
    assert raw.status().commit == cc_index
    raw.propose(b"solo")
    assert raw.status().commit == cc_index + 1


def test_new_leader_with_pending_change() -> None:
    """A change left uncommitted by a dead leader is completed by the next one, which
    refuses another change until then (etcd TestNewLeaderPendingConfig, thesis 4.1)."""
    sim = Sim(seed=73, n=3)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    sim.add_node(4)
    others = [n for n in (1, 2, 3) if n != lead]
    # The change reaches one follower, then the leader dies before it commits.
    sim.cut_link(lead, others[1])
    sim.cut_link(lead, 4)
    sim.cut_link(others[0], lead, one_way=True)  # its acknowledgement never arrives
    index = _change(sim, ConfChangeType.ADD_LEARNER, 4)
    sim.run_for(10)
    sim.crash(lead)
    sim.cut_link(others[0], others[1])
    assert sim.raw(others[0]).raft.last_conf_index() == index
    assert sim.raw(others[0]).status().commit < index
    # Only others[0] holds the change, so only it can win; until its own entry
    # commits (which needs others[1]), it refuses a further change.
    sim.raw(others[0]).campaign()
    sim.handle_ready(sim.nodes[NodeId(others[0])])
    sim.run_for(20)
    raw = sim.raw(others[0])
    with pytest.raises(ProposalDropped):
        raw.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, NodeId(4)))
    sim.heal()
    sim.restart(lead)
    new = sim.wait_leader()
    assert new == others[0]
    sim.wait_applied(sim.commit(b"y"))
    assert raw.status().learners == (4,)


def test_one_change_at_a_time() -> None:
    """A second change is refused while the first is uncommitted, and before the
    leader committed an entry of its own term (the single-server change rule)."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    with pytest.raises(ProposalDropped):
        raw.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, NodeId(4)))
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    raw.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, NodeId(4)))
    with pytest.raises(ProposalDropped):
        raw.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3)))


def test_the_last_voter_cannot_be_removed() -> None:
    """A change that would leave no voter is refused."""
    raw, st = new_raw(1, voters=(1,))
    raw.campaign()
    drain(raw, st)
    with pytest.raises(ProposalDropped):
        raw.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(1)))


def test_truncated_change_is_undone() -> None:
    """A follower that loses an uncommitted change to a new leader's log goes back to
    the membership before it (membership follows the log, thesis 4.1)."""
    raw, st = new_raw(2)
    cc = ConfChange(ConfChangeType.ADD_VOTER, NodeId(4))
    from consensus import encode_conf_change
    from consensus._types import Entry, EntryType, Term

    change = Entry(Term(1), LogIndex(1), EntryType.CONF_CHANGE, encode_conf_change(cc))
    raw.step(msg(MessageType.APP, 1, 2, term=1, index=0, log_term=0, entries=(change,)))
    drain(raw, st)
    assert raw.status().voters == (1, 2, 3, 4)
    other = Entry(Term(2), LogIndex(1), EntryType.NORMAL, b"")
    raw.step(msg(MessageType.APP, 3, 2, term=2, index=0, log_term=0, entries=(other,)))
    drain(raw, st)
    assert raw.status().voters == (1, 2, 3)


def test_learner_catches_up_without_voting() -> None:
    """A learner receives every entry but is never counted in a quorum and never
    campaigns (etcd TestLearnerElectionTimeout, TestLearnerLogReplication)."""
    sim = Sim(seed=74, n=3, learners=(4,))
    sim.wait_leader()
    last = 0
    for i in range(10):
        last = sim.commit(b"l%d" % i)
    sim.wait_applied(last, (1, 2, 3, 4))
    learner = sim.raw(4)
    assert learner.status().learners == (4,)
    sim.isolate(4)
    sim.run_for(20 * ELECTION_MS)
    assert learner.status().role == Role.FOLLOWER and learner.status().term == 1
    # Two voters down: the learner does not make up a majority.
    lead = sim.leader()
    for n in (1, 2, 3):
        if n != lead:
            sim.isolate(n)
    sim.heal()
    for n in (1, 2, 3):
        if n != lead:
            sim.isolate(n)
    got = sim.propose(b"no quorum")
    assert got is not None
    sim.run_for(5 * ELECTION_MS)
    assert sim.raw(lead).status().commit < got[1]


def test_learner_promotion() -> None:
    """A caught-up learner is promoted to voter and can then lead (etcd
    TestLearnerPromotion)."""
    sim = Sim(seed=75, n=3, learners=(4,))
    sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"), (1, 2, 3, 4))
    index = _change(sim, ConfChangeType.ADD_VOTER, 4)
    sim.wait_applied(index, (1, 2, 3, 4))
    assert sim.raw(4).status().voters == (1, 2, 3, 4)
    sim.raw(sim.leader()).transfer_leader(NodeId(4))
    sim.handle_ready(sim.nodes[sim.leader()])
    assert sim.run_until(lambda: sim.leader() == 4, 5 * ELECTION_MS)


def test_learner_ignores_timeout_now() -> None:
    """A learner asked to take over does not campaign."""
    raw, st = new_raw(4, voters=(1, 2, 3))
    raw.step(msg(MessageType.TIMEOUT_NOW, 1, 4, term=1))
    assert [m for m in drain(raw, st) if m.type == MessageType.VOTE] == []
    assert raw.status().leader in (NONE, 1)


def test_apply_change_sets_membership_outright() -> None:
    """Each change sets one node's membership, so applying it twice changes nothing."""
    conf = ConfState(voters=(NodeId(1), NodeId(2)), learners=(NodeId(3),))
    promote = ConfChange(ConfChangeType.ADD_VOTER, NodeId(3))
    once = apply_change(conf, promote)
    assert once == apply_change(once, promote) == ConfState((1, 2, 3), ())  # type: ignore[arg-type]
    demote = apply_change(once, ConfChange(ConfChangeType.ADD_LEARNER, NodeId(1)))
    assert demote == ConfState((2, 3), (1,))  # type: ignore[arg-type]
    gone = apply_change(demote, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(1)))
    assert gone == ConfState((2, 3), ())  # type: ignore[arg-type]

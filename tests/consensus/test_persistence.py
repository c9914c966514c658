"""Persistence: 6.5840 TestPersist1/2/3, the Ready ordering contract, torn writes."""

from __future__ import annotations

import random

import pytest

from consensus import (
    HardState,
    LogIndex,
    MemoryStorage,
    MessageType,
    NodeId,
    RawNode,
    StorageError,
    Term,
)
from tests.consensus.sim import Faults, Sim, drain, ent, msg, new_raw


def test_restart_all_nodes() -> None:
    """Every node crashes and restarts, repeatedly; what was committed stays, and new
    proposals commit (6.5840 TestPersist13C)."""
    sim = Sim(seed=30, n=3)
    sim.wait_leader()
    first = sim.commit(b"one")
    for round_ in range(3):
        for node in (1, 2, 3):
            sim.crash(node)
        for node in (1, 2, 3):
            sim.restart(node)
        sim.wait_leader()
        sim.wait_applied(sim.commit(b"after-%d" % round_))
    for node in (1, 2, 3):
        assert sim.nodes[NodeId(node)].app.values[:1] == [b"one"]
    assert first >= 2


def test_restart_leader_and_partitioned_nodes() -> None:
    """The leader and a follower crash and restart while others are cut off; agreement
    continues once a majority is back (6.5840 TestPersist23C)."""
    sim = Sim(seed=31, n=5)
    index = 0
    for i in range(5):
        lead = sim.wait_leader()
        follower = next(n for n in range(1, 6) if n != lead)
        sim.commit(b"a%d" % i)
        sim.crash(lead)
        sim.crash(follower)
        sim.restart(lead)
        sim.isolate(lead)
        sim.wait_leader()
        index = sim.commit(b"b%d" % i)
        sim.restart(follower)
        sim.heal()
    sim.wait_applied(index)
    sim.converge()


def test_restart_one_follower_while_leader_works() -> None:
    """A follower that crashes repeatedly while the leader keeps committing comes back
    with its log and catches up (6.5840 TestPersist33C)."""
    sim = Sim(seed=32, n=3)
    lead = sim.wait_leader()
    follower = next(n for n in (1, 2, 3) if n != lead)
    index = 0
    for i in range(10):
        index = sim.commit(b"x%d" % i)
        if i % 3 == 0:
            sim.crash_and_restart(follower)
    sim.wait_applied(index)


def test_vote_is_durable_before_the_answer() -> None:
    """A granted vote reaches stable storage, synced, in the Ready that carries the
    answer (paper Figure 2: persist before responding)."""
    raw, st = new_raw(1)
    raw.step(msg(MessageType.VOTE, 2, 1, term=4, index=0, log_term=0))
    rd = raw.ready()
    assert rd.must_sync
    assert rd.hard_state == HardState(Term(4), NodeId(2), LogIndex(0))
    assert [m.type for m in rd.messages] == [MessageType.VOTE_RESP]
    raw.advance(rd)
    # Same again where only the vote changes, not the term.
    other, ost = new_raw(1, check_quorum=False)
    other.step(msg(MessageType.APP, 2, 1, term=1, index=0, log_term=0, entries=(ent(1, 1),)))
    other.step(msg(MessageType.VOTE, 3, 1, term=4, index=0, log_term=0))  # refused: behind
    drain(other, ost)
    assert ost.crashed().hard_state() == HardState(Term(4), NodeId(0), LogIndex(0))
    other.step(msg(MessageType.VOTE, 2, 1, term=4, index=1, log_term=1))
    rd = other.ready()
    assert rd.must_sync and rd.hard_state == HardState(Term(4), NodeId(2), LogIndex(0))
    other.advance(rd)


def test_appended_entries_are_durable_before_the_ack() -> None:
    """Entries a follower acknowledges are in the same Ready as the ack, which asks for
    a sync (thesis section 10.2.1)."""
    raw, st = new_raw(1)
    raw.step(msg(MessageType.APP, 2, 1, term=1, index=0, log_term=0, entries=(ent(1, 1, b"a"),)))
    rd = raw.ready()
    assert rd.must_sync and [e.index for e in rd.entries] == [1]
    assert [(m.type, m.index) for m in rd.messages] == [(MessageType.APP_RESP, 1)]
    raw.advance(rd)


def test_commit_only_change_needs_no_sync() -> None:
    """A Ready that only moves the commit index does not ask for an fsync: the commit
    index can be relearned from the leader."""
    raw, st = new_raw(1)
    raw.step(msg(MessageType.APP, 2, 1, term=1, index=0, log_term=0, entries=(ent(1, 1),)))
    drain(raw, st)
    raw.step(msg(MessageType.HEARTBEAT, 2, 1, term=1, commit=1))
    rd = raw.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert not rd.must_sync
    raw.advance(rd)


def test_restart_recovers_term_vote_and_log() -> None:
    """A node restarted from its synced storage has the same term, vote and log."""
    raw, st = new_raw(1)
    raw.step(msg(MessageType.VOTE, 2, 1, term=3, index=0, log_term=0))
    drain(raw, st)
    raw.step(msg(MessageType.APP, 2, 1, term=3, index=0, log_term=0, entries=(ent(3, 1), ent(3, 2))))
    drain(raw, st)
    again, _ = new_raw(1, storage=st.crashed())
    status = again.status()
    assert (status.term, status.last_index) == (3, 2)
    assert st.crashed().hard_state().vote == 2


def test_unsynced_writes_are_lost_on_crash() -> None:
    """Writes made after the last sync vanish in a crash (the simulator's model)."""
    st = MemoryStorage()
    st.append([ent(1, 1)])
    st.sync()
    st.append([ent(1, 2)])
    st.set_hard_state(HardState(Term(1), NodeId(2), LogIndex(0)))
    after = st.crashed()
    assert after.last_index() == 1 and after.hard_state() == HardState()


def test_torn_writes_keep_a_prefix_of_unsynced_writes() -> None:
    """A crash with torn writes keeps some prefix of the unsynced writes, in order."""
    seen = set()
    for seed in range(30):
        st = MemoryStorage()
        st.append([ent(1, 1)])
        st.append([ent(1, 2)])
        st.append([ent(1, 3)])
        seen.add(st.crashed(random.Random(seed)).last_index())
    assert seen == {0, 1, 2, 3}


def test_crashes_inside_ready_handling() -> None:
    """Nodes die between persisting and syncing, and between syncing and sending, with
    torn writes; the cluster stays safe and recovers (storage faults on crash)."""
    for seed in range(5):
        sim = Sim(seed=40 + seed, n=3, faults=Faults(crash_in_ready=0.02, torn_writes=True))
        rng = random.Random(seed)
        for i in range(150):
            sim.propose(b"t%d" % i)
            sim.run_for(rng.randint(1, 20))
            for n in list(sim.nodes.values()):
                if not n.alive and rng.random() < 0.3:
                    sim.restart(n.id)
        sim.converge()


def test_refuses_a_commit_beyond_its_log() -> None:
    """A node whose hard state claims a commit past its last entry refuses to start
    instead of serving a corrupt log."""
    st = MemoryStorage()
    st.append([ent(1, 1)])
    st.set_hard_state(HardState(Term(1), NodeId(0), LogIndex(5)))
    with pytest.raises(StorageError):
        new_raw(1, storage=st)


def test_refuses_an_applied_index_beyond_its_log() -> None:
    """An application that claims to have applied more than the log holds is refused."""
    st = MemoryStorage()
    st.append([ent(1, 1)])
    with pytest.raises(StorageError):
        new_raw(1, storage=st, applied=LogIndex(3))


def test_applied_index_lifts_an_unsynced_commit() -> None:
    """If the application durably applied entries whose commit index was never synced,
    the restarted node takes the applied index as committed (it was)."""
    st = MemoryStorage()
    st.append([ent(1, 1), ent(1, 2)])
    st.set_hard_state(HardState(Term(1), NodeId(2), LogIndex(1)))
    raw, _ = new_raw(1, storage=st, applied=LogIndex(2))
    assert raw.status().commit == 2 and raw.status().applied == 2
    assert not raw.ready().committed_entries


def test_restarted_node_reapplies_committed_entries() -> None:
    """A restarted node hands out every committed entry after its applied index."""
    st = MemoryStorage()
    st.append([ent(1, 1, b"a"), ent(1, 2, b"b"), ent(1, 3, b"c")])
    st.set_hard_state(HardState(Term(1), NodeId(2), LogIndex(3)))
    raw = RawNode(new_raw(1)[0].raft.config, st)
    rd = raw.ready()
    assert [e.data for e in rd.committed_entries] == [b"a", b"b", b"c"]

"""ReadIndex: linearizable reads without writing the log (thesis section 6.4; etcd
TestReadOnlyOptionSafe, TestReadOnlyForNewLeader)."""

from __future__ import annotations

import pytest

from consensus import LogIndex, MessageType, NodeId, RaftUsageError
from tests.consensus.sim import Sim, drain, elect, msg, new_raw


def test_read_index_on_leader_and_followers() -> None:
    """A read asked at any node comes back with an index at least the commit index at
    the time of asking, once a majority confirmed the leader (etcd TestReadOnlyOptionSafe)."""
    sim = Sim(seed=80, n=3)
    sim.wait_leader()
    index = sim.commit(b"x")
    sim.wait_applied(index)
    for n, node in sim.nodes.items():
        node.node().read_index(b"read-%d" % n)
        sim.handle_ready(node)
    assert sim.run_until(lambda: all(node.read_states for node in sim.nodes.values()), 200)
    for n, node in sim.nodes.items():
        (state,) = node.read_states
        assert state.request_ctx == b"read-%d" % n and state.index >= index


def test_read_index_waits_for_a_heartbeat_quorum() -> None:
    """A leader cut off from its followers does not answer reads: it might be deposed."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    raw.read_index(b"r1")
    sent = drain(raw, st)
    beats = [m for m in sent if m.type == MessageType.HEARTBEAT]
    assert {m.context for m in beats} == {b"r1"}
    assert not raw.has_ready()
    raw.step(msg(MessageType.HEARTBEAT_RESP, 3, 1, term=1, context=b"r1"))
    rd = raw.ready()
    assert [(s.index, s.request_ctx) for s in rd.read_states] == [(1, b"r1")]
    raw.advance(rd)


def test_new_leader_answers_reads_only_after_committing_in_its_term() -> None:
    """Until its empty entry commits, a new leader's commit index may be stale; reads
    wait for it (etcd TestReadOnlyForNewLeader)."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.read_index(b"early")
    assert not [m for m in drain(raw, st) if m.context == b"early"]
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    sent = drain(raw, st)
    assert any(m.type == MessageType.HEARTBEAT and m.context == b"early" for m in sent)
    raw.step(msg(MessageType.HEARTBEAT_RESP, 2, 1, term=1, context=b"early"))
    rd = raw.ready()
    assert [s.index for s in rd.read_states] == [LogIndex(1)]
    raw.advance(rd)


def test_one_acknowledgement_confirms_earlier_reads_too() -> None:
    """A heartbeat quorum for a later read confirms every read queued before it."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    for ctx in (b"a", b"b", b"c"):
        raw.read_index(ctx)
    drain(raw, st)
    raw.step(msg(MessageType.HEARTBEAT_RESP, 2, 1, term=1, context=b"c"))
    rd = raw.ready()
    assert [s.request_ctx for s in rd.read_states] == [b"a", b"b", b"c"]
    raw.advance(rd)


def test_follower_forwards_reads_and_single_node_answers_at_once() -> None:
    """A follower forwards a read to its leader; a single-voter leader answers itself."""
    raw, st = new_raw(2)
    raw.step(msg(MessageType.HEARTBEAT, 1, 2, term=1))
    drain(raw, st)
    raw.read_index(b"f")
    (fwd,) = drain(raw, st)
    assert (fwd.type, fwd.to, fwd.context, fwd.term) == (MessageType.READ_INDEX, 1, b"f", 0)
    solo, sst = new_raw(1, voters=(1,))
    solo.campaign()
    drain(solo, sst)
    solo.read_index(b"s")
    rd = solo.ready()
    assert [s.request_ctx for s in rd.read_states] == [b"s"]
    solo.advance(rd)
    with pytest.raises(RaftUsageError):
        solo.read_index(b"")
    assert NodeId(1) == solo.id

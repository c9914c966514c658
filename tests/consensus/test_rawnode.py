"""The RawNode contract with its driver: Ready, advance, misuse, peer garbage."""

from __future__ import annotations

import random

import pytest

from consensus import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    LogIndex,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    NotLeader,
    RaftUsageError,
    RawNode,
    Role,
    Snapshot,
    SnapshotMeta,
    Term,
)
from tests.consensus.sim import drain, elect, ent, msg, new_raw


def test_single_node_commits_on_its_own() -> None:
    """A one-voter cluster elects itself and commits proposals in the next Ready, never
    sending messages to itself."""
    raw, st = new_raw(1, voters=(1,))
    raw.campaign()
    rd = raw.ready()
    assert rd.soft_state is not None and rd.soft_state.role == Role.LEADER
    assert rd.messages == () and rd.must_sync
    assert [e.index for e in rd.committed_entries] == [1]  # persisted before applied
    st.append(list(rd.entries))
    raw.advance(rd)
    term, index = raw.propose(b"hello")
    rd = raw.ready()
    assert [e.data for e in rd.entries] == [b"hello"]
    assert [e.index for e in rd.committed_entries] == [2]
    assert rd.messages == ()
    assert (term, index) == (1, 2)
    st.append(list(rd.entries))
    raw.advance(rd)
    assert raw.status().applied == 2 and not raw.has_ready()


def test_ready_must_be_advanced_before_the_next() -> None:
    """ready() twice without advance() is a usage error, as is advancing a stranger."""
    raw, st = new_raw(1, voters=(1,))
    raw.campaign()
    rd = raw.ready()
    assert not raw.has_ready()
    with pytest.raises(RaftUsageError):
        raw.ready()
    with pytest.raises(RaftUsageError):
        raw.advance(type(rd)())
    raw.advance(rd)


def test_follower_propose_raises_not_leader_with_leader_hint() -> None:
    """A follower refuses proposals, naming the leader it knows."""
    raw, st = new_raw(2)
    with pytest.raises(NotLeader) as unknown:
        raw.propose(b"x")
    assert unknown.value.leader == NONE
    raw.step(msg(MessageType.HEARTBEAT, 3, 2, term=1))
    with pytest.raises(NotLeader) as known:
        raw.propose(b"x")
    assert known.value.leader == 3


def test_malformed_peer_messages_are_ignored() -> None:
    """Messages with the wrong recipient, no sender, local-only types, a missing term,
    gapped entries or a snapshot without data are dropped without an exception."""
    raw, st = new_raw(1)
    before = raw.status()
    bad = [
        msg(MessageType.HEARTBEAT, 2, 9, term=5),
        msg(MessageType.HEARTBEAT, 0, 1, term=5),
        msg(MessageType.HUP, 2, 1, term=0),
        msg(MessageType.APP, 2, 1, term=0),
        msg(MessageType.APP, 2, 1, term=5, index=0, entries=(ent(5, 2),)),
        msg(MessageType.APP, 2, 1, term=5, index=0, entries=(ent(6, 1),)),
        msg(MessageType.APP, 2, 1, term=5, index=0, log_term=0, entries=(ent(3, 1), ent(2, 2))),
        msg(MessageType.SNAP, 2, 1, term=5),
        msg(MessageType.VOTE, 1, 1, term=5),
        msg(MessageType.PROPOSE, 2, 1, term=0),
        msg(MessageType.READ_INDEX, 2, 1, term=3),
    ]
    for m in bad:
        raw.step(m)
    assert drain(raw, st) == []
    assert raw.status() == before


def test_random_peer_messages_never_raise() -> None:
    """A storm of random but type-correct messages never makes step() raise."""
    rng = random.Random(7)
    for seed in range(20):
        raw, st = new_raw(1, seed=seed)
        if seed % 2:
            elect(raw, st, (1, 2, 3))
        for _ in range(300):
            entries = tuple(
                Entry(Term(rng.randint(0, 5)), LogIndex(rng.randint(0, 6)), EntryType.NORMAL)
                for _ in range(rng.randint(0, 3))
            )
            snap = None
            if rng.random() < 0.1:
                snap = Snapshot(SnapshotMeta(LogIndex(rng.randint(0, 9)), Term(rng.randint(0, 5))))
            m = Message(
                type=MessageType(rng.randint(0, 15)),
                to=NodeId(rng.choice((1, 1, 1, 2))),
                frm=NodeId(rng.randint(0, 4)),
                term=Term(rng.randint(0, 6)),
                log_term=Term(rng.randint(0, 6)),
                index=LogIndex(rng.randint(0, 8)),
                entries=entries,
                commit=LogIndex(rng.randint(0, 8)),
                reject=rng.random() < 0.3,
                reject_hint=LogIndex(rng.randint(0, 8)),
                snapshot=snap,
                snap_offset=rng.randint(0, 3),
                snap_done=rng.random() < 0.5,
                context=rng.choice((b"", b"transfer", b"r")),
            )
            raw.step(m)
            if rng.random() < 0.2:
                raw.tick()
            drain(raw, st)


def test_apply_conf_change_matches_handed_out_entries() -> None:
    """apply_conf_change returns the membership as of the handed-out change, and refuses
    a change that was never handed out."""
    raw, st = new_raw(1, voters=(1,))
    raw.campaign()
    drain(raw, st)
    raw.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(2)))
    rd = raw.ready()
    st.append(list(rd.entries))
    (cc_entry,) = [e for e in rd.committed_entries if e.type == EntryType.CONF_CHANGE]
    conf = raw.apply_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(2)))
    assert conf.voters == (1,) and conf.learners == (2,)
    with pytest.raises(RaftUsageError):
        raw.apply_conf_change(ConfChange(ConfChangeType.ADD_VOTER, NodeId(3)))
    raw.advance(rd)
    assert cc_entry.index == 2


def test_compact_before_applied_is_refused() -> None:
    """The application may only snapshot what it applied."""
    raw, st = new_raw(1, voters=(1,))
    raw.campaign()
    drain(raw, st)
    raw.propose(b"x")
    with pytest.raises(RaftUsageError):
        raw.compact(LogIndex(2), b"")
    drain(raw, st)
    raw.compact(LogIndex(2), b"state")
    assert st.first_index() == 3
    raw.compact(LogIndex(1), b"old")  # already compacted: a no-op


def test_config_is_validated() -> None:
    """Nonsense configurations are refused at construction."""
    rng = random.Random(0)
    with pytest.raises(ValueError):
        Config(id=NodeId(0), voters=(NodeId(1),), rng=rng)
    with pytest.raises(ValueError):
        Config(id=NodeId(1), voters=(NodeId(1),), rng=rng, election_tick=1, heartbeat_tick=1)
    with pytest.raises(ValueError):
        Config(id=NodeId(1), voters=(NodeId(1),), learners=(NodeId(1),), rng=rng)
    with pytest.raises(ValueError):
        Config(id=NodeId(1), voters=(NodeId(1),), rng=rng, max_inflight_msgs=0)


def test_election_jitter_comes_from_the_injected_rng() -> None:
    """Two nodes with equally seeded rngs time out at the same tick; the timeout lies
    in [election_tick, 2 * election_tick)."""
    timeouts = set()
    for _ in range(2):
        cfg = Config(id=NodeId(1), voters=(NodeId(1), NodeId(2)), rng=random.Random(42))
        raw = RawNode(cfg, MemoryStorage())
        ticks = 0
        while raw.status().role == Role.FOLLOWER:
            raw.tick()
            ticks += 1
        timeouts.add(ticks)
    (only,) = timeouts
    assert 10 <= only < 20


def test_forwarded_proposal_is_appended_by_the_leader() -> None:
    """A PROPOSE message (term 0, normal entries) from a peer is appended by the
    leader; a forwarded configuration change is not accepted this way."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    last = raw.status().last_index
    raw.step(msg(MessageType.PROPOSE, 2, 1, term=0, entries=(ent(0, 0, b"fwd"),)))
    assert raw.status().last_index == last + 1
    cc = Entry(Term(0), LogIndex(0), EntryType.CONF_CHANGE, b"")
    raw.step(msg(MessageType.PROPOSE, 2, 1, term=0, entries=(cc,)))
    assert raw.status().last_index == last + 1


def test_report_snapshot_moves_follower_out_of_snapshot_state() -> None:
    """report_snapshot(ok=False) sends a follower back to probing (etcd
    TestSnapshotFailure); report_snapshot on a follower in another state does nothing."""
    from consensus import ProgressState

    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.propose(b"a")
    raw.step(msg(MessageType.APP_RESP, 3, 1, term=1, index=2))
    drain(raw, st)
    raw.compact(LogIndex(2), b"s")
    raw.step(msg(MessageType.HEARTBEAT_RESP, 2, 1, term=1))
    drain(raw, st)
    pr = raw.raft.tracker.progress[NodeId(2)]
    assert pr.state == ProgressState.SNAPSHOT
    raw.report_snapshot(NodeId(2), ok=False)
    assert pr.state == ProgressState.PROBE and pr.probe_sent
    raw.report_snapshot(NodeId(3), ok=True)
    assert raw.raft.tracker.progress[NodeId(3)].state == ProgressState.REPLICATE

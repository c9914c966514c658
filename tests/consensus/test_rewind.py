"""Rewinding the Raft log to a final point, and refusing a node as leader."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from consensus import (
    Config,
    HardState,
    LevelDBStorage,
    LogIndex,
    MemoryStorage,
    MessageType,
    NodeId,
    RaftUsageError,
    RawNode,
    Role,
    Term,
)
from tests.consensus.sim import drain, ent, msg, new_raw


def follower_with_commits(
    last: int = 6, commit: int = 6, storage: MemoryStorage | None = None, **config: object
) -> tuple[RawNode, MemoryStorage]:
    """Node 2 following leader 1 in term 2, holding entries 1..last committed up to `commit`."""
    raw, st = new_raw(2, voters=(1, 2, 3, 4, 5), storage=storage, **config)
    entries = tuple(ent(2, i, b"e%d" % i) for i in range(1, last + 1))
    raw.step(msg(MessageType.APP, 1, 2, 2, index=LogIndex(0), log_term=Term(0), entries=entries,
                 commit=LogIndex(commit)))
    drain(raw, st)
    assert raw.status().applied == commit
    return raw, st


def test_rewind_discards_committed_entries_down_to_the_index_and_persists_it() -> None:
    """A rewind truncates the log above the index (committed entries included), lowers
    commit and applied, and one synced write holds both: a crash right after keeps it."""
    raw, st = follower_with_commits()
    raw.rewind(LogIndex(3), floor=LogIndex(3))
    status = raw.status()
    assert (status.last_index, status.commit, status.applied) == (3, 3, 3)
    assert status.role == Role.FOLLOWER and status.leader == 0 and status.term == 2
    assert st.last_index() == 3 and st.hard_state().commit == 3
    assert st.unsynced_writes() == 0
    after_crash = st.crashed()
    assert after_crash.last_index() == 3 and after_crash.initial_state()[0] == HardState(Term(2), NodeId(0),
                                                                                        LogIndex(3))


def test_after_a_rewind_a_new_leader_replaces_the_suffix_and_it_applies() -> None:
    """Entries that a new leader sends above the rewind point are accepted and applied,
    where before the rewind they conflicted with committed entries and were refused."""
    raw, st = follower_with_commits()
    other = tuple(ent(3, i, b"f%d" % i) for i in range(4, 7))
    raw.step(msg(MessageType.APP, 3, 2, 3, index=LogIndex(3), log_term=Term(2), entries=other,
                 commit=LogIndex(6)))
    drain(raw, st)
    assert st.entries(LogIndex(4), LogIndex(5))[0].data == b"e4"  # ignored: below the commit
    raw.rewind(LogIndex(3), floor=LogIndex(3))
    raw.step(msg(MessageType.APP, 3, 2, 3, index=LogIndex(3), log_term=Term(2), entries=other,
                 commit=LogIndex(6)))
    committed = []
    while raw.has_ready():
        rd = raw.ready()
        st.append(list(rd.entries))
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        st.sync()
        committed.extend(rd.committed_entries)
        raw.advance(rd)
    assert [e.data for e in committed] == [b"f4", b"f5", b"f6"]
    assert raw.status().applied == 6


@pytest.mark.parametrize(("index", "floor"), [(2, 3), (7, 3)])
def test_rewind_refuses_below_the_floor_or_beyond_the_log(index: int, floor: int) -> None:
    """Below the floor (the last final entry) or beyond the log: a usage error, nothing changes."""
    raw, st = follower_with_commits()
    with pytest.raises(RaftUsageError):
        raw.rewind(LogIndex(index), floor=LogIndex(floor))
    assert st.last_index() == 6 and raw.status().commit == 6


def test_rewind_refuses_while_a_ready_is_outstanding_or_entries_are_unpersisted() -> None:
    """A rewind happens between Readies, on a log persisted up to its index."""
    raw, st = follower_with_commits(last=4, commit=4)
    raw.step(msg(MessageType.APP, 1, 2, 2, index=LogIndex(4), log_term=Term(2),
                 entries=(ent(2, 5), ent(2, 6)), commit=LogIndex(4)))
    rd = raw.ready()
    with pytest.raises(RaftUsageError):
        raw.rewind(LogIndex(4), floor=LogIndex(4))
    st.append(list(rd.entries))
    st.sync()
    raw.advance(rd)
    raw.rewind(LogIndex(4), floor=LogIndex(4))
    assert st.last_index() == 4


def test_a_leader_that_rewinds_steps_down() -> None:
    """A leader's rewind makes it a follower of nobody: the next election decides."""
    raw, st = new_raw(1, voters=(1,))
    raw.campaign()
    drain(raw, st)
    for i in range(3):
        raw.propose(b"p%d" % i)
    drain(raw, st)
    assert raw.status().role == Role.LEADER and raw.status().commit == 4
    raw.rewind(LogIndex(2), floor=LogIndex(1))
    assert raw.status().role == Role.FOLLOWER and st.last_index() == 2


def test_leveldb_rewind_is_one_durable_write(tmp_path: Path) -> None:
    """On LevelDB the truncation and the hard state reach disk together, and a reopened
    store reads the rewound log; appending after it works."""
    st = LevelDBStorage(tmp_path / "log")
    st.append([ent(2, i, b"e%d" % i) for i in range(1, 9)])
    st.set_hard_state(HardState(Term(2), NodeId(1), LogIndex(8)))
    st.sync()
    st.rewind(LogIndex(5), HardState(Term(2), NodeId(1), LogIndex(5)))
    assert st.last_index() == 5 and [e.data for e in st.entries(LogIndex(4), LogIndex(6))] == [b"e4", b"e5"]
    st.close()
    again = LevelDBStorage(tmp_path / "log")
    assert again.last_index() == 5 and again.initial_state()[0].commit == 5
    again.append([ent(3, 6, b"x6")])
    again.sync()
    assert again.entries(LogIndex(6), LogIndex(7))[0].data == b"x6"
    again.close()


def test_a_refused_node_cannot_lead_or_win_votes() -> None:
    """With node 1 refused as leader, its appends and heartbeats (even of a higher
    term) are dropped without moving the term, and its vote requests get no answer."""
    refused = {NodeId(1)}
    raw, st = new_raw(2, voters=(1, 2, 3), leader_refused=refused.__contains__)
    raw.step(msg(MessageType.APP, 1, 2, 5, index=LogIndex(0), log_term=Term(0),
                 entries=(ent(5, 1, b"x"),), commit=LogIndex(1)))
    raw.step(msg(MessageType.HEARTBEAT, 1, 2, 6))
    raw.step(msg(MessageType.VOTE, 1, 2, 7, index=LogIndex(9), log_term=Term(6)))
    raw.step(msg(MessageType.PRE_VOTE, 1, 2, 7, index=LogIndex(9), log_term=Term(6)))
    out = drain(raw, st)
    assert out == [] and raw.status().term == 0 and st.last_index() == 0
    assert raw.raft.refused_messages == 4
    # Another node is still heard.
    raw.step(msg(MessageType.APP, 3, 2, 5, index=LogIndex(0), log_term=Term(0),
                 entries=(ent(5, 1, b"y"),), commit=LogIndex(1)))
    drain(raw, st)
    assert raw.status().term == 5 and st.last_index() == 1


async def test_driver_rewind_rolls_back_and_the_follower_catches_up_again(tmp_path: Path) -> None:
    """Driver.rewind on a follower whose application rolled back: the log is cut at the
    index, the driver keeps running, and the leader replicates the suffix again, so the
    application reaches the others' state; a rewind below the floor is refused."""
    from tests.consensus.test_driver import Cluster, propose_all, until

    cluster = Cluster(tmp_path)
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        await propose_all(leader, [b"p%d" % i for i in range(10)])
        follower = cluster.follower()
        app = cluster.apps[follower.node_id]
        await until(lambda: len(app.applied) == 10, what="the follower applied everything", timeout_s=30)
        index = LogIndex(app.applied[4][0])
        with pytest.raises(RaftUsageError):
            await follower.rewind(LogIndex(index - 1), floor=index)
        cluster.net.isolate(follower.node_id)
        # The application rolls back first (Tamga: LedgerStore.rollback_to), then Raft.
        app.applied = app.applied[:5]
        app._applied_index = index
        await follower.rewind(index, floor=index)
        assert follower.stats.rewinds == 1 and follower.status().last_index == index
        assert cluster.storages[follower.node_id].last_index() == index
        cluster.net.heal()
        await propose_all(leader, [b"after"])
        await until(lambda: app.data() == cluster.apps[leader.node_id].data(), what="catch-up", timeout_s=30)
        assert follower.failure is None
    finally:
        await cluster.stop_all()


async def test_compaction_stops_at_the_limit_so_a_rewind_finds_its_entries(tmp_path: Path) -> None:
    """With a compaction limit (the last final entry), snapshots never compact the log
    past it, however far the application applied; a rewind to it is then possible."""
    from consensus import Driver, DriverConfig
    from tests.consensus.test_driver import FAST, IDS, ListApp, Network, propose_all, until

    limit = [LogIndex(5)]
    net = Network()
    drivers = []
    storages = []
    apps = []
    for node in IDS:
        config = Config(id=node, voters=IDS, rng=random.Random(node))
        storage = LevelDBStorage(tmp_path / f"n{node}")
        app = ListApp()
        driver = Driver(config, storage, net.transport(node), app,
                        DriverConfig(tick_interval_s=FAST.tick_interval_s, snapshot_every_entries=4),
                        compaction_limit=lambda: limit[0])
        net.drivers[node] = driver
        await driver.start()
        drivers.append(driver)
        storages.append(storage)
        apps.append(app)
    try:
        await until(lambda: any(d.is_leader for d in drivers), timeout_s=30, what="a leader")
        leader = next(d for d in drivers if d.is_leader)
        await propose_all(leader, [b"p%d" % i for i in range(30)])
        assert all(s.first_index() <= 6 for s in storages)
        # Snapshots follow each node's own applying: wait for one to compact, to the limit.
        await until(lambda: any(s.first_index() == 6 for s in storages), timeout_s=30, what="a compaction")
        follower = next(d for d in drivers if not d.is_leader)
        app = apps[drivers.index(follower)]
        await until(lambda: len(app.applied) == 30, what="the follower applied everything", timeout_s=30)
        net.isolate(follower.node_id)
        app.applied = [(i, d) for i, d in app.applied if i <= 5]
        app._applied_index = LogIndex(5)
        await follower.rewind(LogIndex(5), floor=LogIndex(5))
        assert follower.status().last_index == 5
    finally:
        for d in drivers:
            await d.stop()
        for s in storages:
            s.close()


def test_entries_of_a_refused_term_are_kept_out_and_their_holders_get_no_vote() -> None:
    """With term 2's entries above index 3 refused (a hostile leader's, rewound away), an
    append that carries one is dropped, and a candidate whose log ends with one gets no
    vote or pre-vote; an entry of term 2 at or below 3, and other terms, still pass."""
    def refused(term: int, index: int) -> bool:
        return term == 2 and index > 3

    raw, st = new_raw(2, voters=(1, 2, 3), entry_refused=refused, check_quorum=False)
    raw.step(msg(MessageType.APP, 3, 2, 4, index=LogIndex(0), log_term=Term(0),
                 entries=(ent(2, 1), ent(2, 2), ent(2, 3), ent(2, 4)), commit=LogIndex(0)))
    drain(raw, st)
    assert st.last_index() == 0 and raw.raft.refused_messages == 1
    raw.step(msg(MessageType.APP, 3, 2, 4, index=LogIndex(0), log_term=Term(0),
                 entries=(ent(2, 1), ent(2, 2), ent(2, 3), ent(4, 4)), commit=LogIndex(0)))
    drain(raw, st)
    assert st.last_index() == 4
    raw.step(msg(MessageType.VOTE, 1, 2, 9, index=LogIndex(9), log_term=Term(2)))
    raw.step(msg(MessageType.PRE_VOTE, 1, 2, 9, index=LogIndex(9), log_term=Term(2)))
    answers = drain(raw, st)
    assert [m.reject for m in answers if m.to == 1] == [True, True]

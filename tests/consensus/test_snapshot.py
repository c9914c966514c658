"""Snapshots and chunked InstallSnapshot: 6.5840 lab 3D, etcd TestRestoreSnapshot etc."""

from __future__ import annotations

import random

from consensus import (
    LogIndex,
    MemoryStorage,
    MessageType,
    NodeId,
    ProgressState,
    Snapshot,
    SnapshotMeta,
    Term,
)
from consensus._types import ConfState
from tests.consensus.sim import Faults, Sim, drain, elect, ent, msg, new_raw


def _lagging_follower(sim: Sim, entries: int) -> tuple[NodeId, LogIndex]:
    lead = sim.wait_leader()
    loner = next(n for n in sim.nodes if n != lead)
    sim.isolate(loner)
    last = LogIndex(0)
    for i in range(entries):
        last = sim.commit(b"s%d" % i)
    return loner, last


def test_snapshot_basic() -> None:
    """Nodes compact their logs as they apply, and keep agreeing (6.5840
    TestSnapshotBasic3D)."""
    sim = Sim(seed=50, n=3, snapshot_every=10)
    sim.wait_leader()
    last = 0
    for i in range(60):
        last = sim.commit(b"b%d" % i)
    sim.wait_applied(last)
    for node in sim.nodes.values():
        assert node.storage.first_index() > 40
    sim.converge()


def test_snapshot_install_to_lagging_follower_in_chunks() -> None:
    """A follower behind the leader's compacted log receives the snapshot in several
    chunks, installs it and catches up (6.5840 TestSnapshotInstall3D)."""
    sim = Sim(seed=51, n=3, snapshot_every=10, snapshot_chunk_bytes=64)
    loner, last = _lagging_follower(sim, 60)
    sim.heal()
    sim.wait_applied(last)
    assert sim.sent[MessageType.SNAP] >= 3
    assert sim.nodes[loner].storage.snapshot().meta.index > 0
    sim.converge()


def test_snapshot_install_over_unreliable_network() -> None:
    """Chunks are lost, duplicated and reordered; the transfer still completes
    (6.5840 TestSnapshotInstallUnreliable3D)."""
    faults = Faults(loss=0.2, dup=0.2, long_delay=0.2)
    sim = Sim(seed=52, n=3, snapshot_every=10, snapshot_chunk_bytes=32, faults=faults)
    loner, last = _lagging_follower(sim, 60)
    sim.heal()
    sim.wait_applied(last, max_ms=30_000)
    assert sim.nodes[loner].storage.snapshot().meta.index > 0
    sim.converge()


def test_snapshot_install_with_crashes() -> None:
    """The follower and the leader crash in the middle of transfers; the follower ends
    up with a correct state (6.5840 TestSnapshotInstallCrash3D)."""
    rng = random.Random(53)
    sim = Sim(seed=53, n=3, snapshot_every=8, snapshot_chunk_bytes=48)
    for round_ in range(6):
        loner, _ = _lagging_follower(sim, 30)
        sim.heal()
        sim.run_for(rng.randint(5, 40))
        sim.crash_and_restart(loner if round_ % 2 else sim.leader())
    sim.converge()
    assert sim.sent[MessageType.SNAP] > 6


def test_restart_every_node_from_its_snapshot() -> None:
    """Every node restarts from its snapshot; its applied index never goes back below
    the snapshot and its state matches everyone's (6.5840 TestSnapshotAllCrash3D)."""
    sim = Sim(seed=54, n=3, snapshot_every=5)
    sim.wait_leader()
    for round_ in range(4):
        for i in range(12):
            sim.commit(b"r%d-%d" % (round_, i))
        for node in list(sim.nodes):
            sim.crash(node)
        for node in list(sim.nodes):
            sim.restart(node)
            snap = sim.nodes[node].storage.snapshot().meta.index
            assert snap > 0 and sim.applied(node) == snap
            assert sim.raw(node).status().applied == snap
        sim.wait_leader()
    sim.converge()


def test_applied_index_never_goes_back() -> None:
    """Within a node's life the applied index only grows, snapshots included (6.5840
    TestSnapshotInit3D)."""
    sim = Sim(seed=55, n=3, snapshot_every=7, snapshot_chunk_bytes=40)
    high = {n: 0 for n in sim.nodes}
    lives = {n: 0 for n in sim.nodes}

    def watch() -> None:
        for node in sim.nodes.values():
            if node.incarnation != lives[node.id]:
                lives[node.id] = node.incarnation
                high[node.id] = node.app.applied
            assert node.app.applied >= high[node.id]
            high[node.id] = node.app.applied

    sim.after_event = watch
    loner, _ = _lagging_follower(sim, 40)
    sim.heal()
    sim.converge()


def test_follower_restores_a_snapshot_and_adopts_its_membership() -> None:
    """A complete snapshot replaces the follower's log, sets its commit and its
    membership (etcd TestRestoreSnapshot)."""
    raw, st = new_raw(1, voters=(1, 2, 3))
    meta = SnapshotMeta(LogIndex(10), Term(3), ConfState(voters=(NodeId(1), NodeId(2))))
    raw.step(
        msg(
            MessageType.SNAP,
            2,
            1,
            term=3,
            snapshot=Snapshot(meta, b"abc"),
            snap_offset=0,
            snap_done=False,
        )
    )
    (ack,) = drain(raw, st)
    assert (ack.type, ack.snap_offset) == (MessageType.SNAP_RESP, 3)
    raw.step(msg(MessageType.SNAP, 2, 1, term=3, snapshot=Snapshot(meta, b"def"), snap_offset=3))
    rd = raw.ready()
    assert rd.snapshot is not None and rd.snapshot.data == b"abcdef"
    assert [(m.type, m.index) for m in rd.messages] == [(MessageType.APP_RESP, 10)]
    st.apply_snapshot(rd.snapshot)
    raw.advance(rd)
    status = raw.status()
    assert (status.commit, status.applied, status.last_index) == (10, 10, 10)
    assert status.voters == (1, 2)


def test_follower_asks_again_for_a_missing_chunk() -> None:
    """A chunk after a gap is refused with the offset the follower needs next."""
    raw, st = new_raw(1)
    meta = SnapshotMeta(LogIndex(10), Term(3), ConfState(voters=(NodeId(1), NodeId(2))))
    chunk = Snapshot(meta, b"abc")
    raw.step(msg(MessageType.SNAP, 2, 1, term=3, snapshot=chunk, snap_offset=0, snap_done=False))
    raw.step(msg(MessageType.SNAP, 2, 1, term=3, snapshot=chunk, snap_offset=6, snap_done=False))
    raw.step(msg(MessageType.SNAP, 2, 1, term=3, snapshot=chunk, snap_offset=0, snap_done=False))
    out = drain(raw, st)
    assert [(m.snap_offset, m.reject) for m in out] == [(3, False), (3, True), (3, False)]


def test_stale_snapshot_is_not_installed() -> None:
    """A snapshot at or below the commit index changes nothing; the answer tells the
    leader how far the follower is (etcd TestRestoreIgnoreSnapshot)."""
    raw, st = new_raw(1)
    entries = tuple(ent(1, i) for i in range(1, 6))
    raw.step(msg(MessageType.APP, 2, 1, term=1, index=0, log_term=0, entries=entries, commit=5))
    drain(raw, st)
    meta = SnapshotMeta(LogIndex(3), Term(1), ConfState(voters=(NodeId(1),)))
    raw.step(msg(MessageType.SNAP, 2, 1, term=1, snapshot=Snapshot(meta, b"x")))
    out = drain(raw, st)
    assert [(m.type, m.index) for m in out] == [(MessageType.APP_RESP, 5)]
    assert raw.status().last_index == 5


def test_leader_sends_snapshot_when_entries_are_compacted() -> None:
    """A follower that needs compacted entries is moved to SNAPSHOT state and gets
    chunks; after it installs, the leader probes and replicates again (etcd
    TestProvideSnap, TestSnapshotSucceed)."""
    raw, st = new_raw(1, snapshot_chunk_bytes=4)
    elect(raw, st, (1, 2, 3))
    for i in range(5):
        raw.propose(b"e%d" % i)
    raw.step(msg(MessageType.APP_RESP, 3, 1, term=1, index=6))
    drain(raw, st)
    raw.compact(LogIndex(6), b"state-at-6")
    raw.step(msg(MessageType.HEARTBEAT_RESP, 2, 1, term=1))
    out = drain(raw, st)
    snaps = [m for m in out if m.type == MessageType.SNAP and m.to == 2]
    assert [m.snap_offset for m in snaps] == [0, 4, 8]
    assert snaps[-1].snap_done and not snaps[0].snap_done
    assert raw.raft.tracker.progress[NodeId(2)].state == ProgressState.SNAPSHOT
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=6))
    drain(raw, st)
    assert raw.raft.tracker.progress[NodeId(2)].state == ProgressState.REPLICATE


def test_compaction_keeps_membership_in_the_snapshot() -> None:
    """The snapshot a compaction writes carries the membership as of its index."""
    raw, st = new_raw(1)
    elect(raw, st, (1, 2, 3))
    raw.propose(b"a")
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=2))
    drain(raw, st)
    raw.compact(LogIndex(2), b"state")
    snap = MemoryStorage.snapshot(st)
    assert snap.meta.index == 2 and snap.meta.conf.voters == (1, 2, 3)

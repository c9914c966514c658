"""Flow control: probe/replicate/snapshot states, inflight windows, message size, the
uncommitted bound (etcd TestMsgAppFlowControl*, TestUncommittedEntryLimit)."""

from __future__ import annotations

import pytest

from consensus import LogIndex, MessageType, NodeId, ProgressState, ProposalDropped
from consensus._progress import Inflights, Progress
from tests.consensus.sim import drain, elect, msg, new_raw


def _leader(**config: object):  # type: ignore[no-untyped-def]
    raw, st = new_raw(1, **config)
    elect(raw, st, (1, 2, 3))
    return raw, st


def test_proposals_between_readies_share_one_append() -> None:
    """Proposals made before the driver asks for the next Ready travel together: one
    append per follower, not one per proposal (batching)."""
    raw, st = _leader()
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    for i in range(20):
        raw.propose(b"b%d" % i)
    apps = [m for m in drain(raw, st) if m.type == MessageType.APP and m.to == 2]
    assert [len(m.entries) for m in apps] == [20]


def test_probe_sends_one_append_until_answered() -> None:
    """In PROBE a follower gets one append, then nothing until it answers or a
    heartbeat comes back (etcd TestMsgAppFlowControlFull, probe case)."""
    raw, st = _leader()
    for i in range(5):
        raw.propose(b"p%d" % i)
    assert [m for m in drain(raw, st) if m.type == MessageType.APP] == []
    raw.step(msg(MessageType.HEARTBEAT_RESP, 2, 1, term=1))
    apps = [m for m in drain(raw, st) if m.type == MessageType.APP]
    assert len(apps) == 1 and len(apps[0].entries) == 6


def test_replicate_window_is_bounded_by_max_inflight() -> None:
    """In REPLICATE at most max_inflight_msgs appends are unacknowledged; an ack frees
    room (etcd TestMsgAppFlowControlFull, TestMsgAppFlowControlMoveForward)."""
    raw, st = _leader(max_inflight_msgs=3)
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    assert raw.raft.tracker.progress[NodeId(2)].state == ProgressState.REPLICATE
    apps = []
    for i in range(10):
        raw.propose(b"r%d" % i)
        apps += [m for m in drain(raw, st) if m.type == MessageType.APP and m.to == 2]
    assert len(apps) == 3
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=apps[0].entries[-1].index))
    more = [m for m in drain(raw, st) if m.type == MessageType.APP and m.to == 2]
    assert len(more) == 1 and more[0].index == apps[-1].entries[-1].index


def test_append_size_is_bounded() -> None:
    """An append carries at most max_size_per_msg bytes of entries, but at least one."""
    raw, st = _leader(max_size_per_msg=10)
    for _ in range(4):
        raw.propose(b"12345678")
    raw.propose(b"x" * 50)
    drain(raw, st)
    raw.step(msg(MessageType.HEARTBEAT_RESP, 2, 1, term=1))
    (app,) = [m for m in drain(raw, st) if m.type == MessageType.APP]
    assert sum(len(e.data) for e in app.entries) <= 10
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=app.entries[-1].index))
    sizes = [[len(e.data) for e in m.entries] for m in drain(raw, st) if m.type == MessageType.APP]
    assert [50] in sizes


def test_uncommitted_bound_drops_proposals() -> None:
    """A leader refuses proposals once too much data is uncommitted, and accepts again
    as entries commit (etcd TestUncommittedEntryLimit)."""
    raw, st = _leader(max_uncommitted_entries_size=100)
    for _ in range(10):
        raw.propose(b"x" * 10)
    with pytest.raises(ProposalDropped):
        raw.propose(b"y")
    raw.propose(b"")  # empty proposals never count
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=raw.status().last_index))
    drain(raw, st)
    raw.propose(b"z" * 10)


def test_a_single_large_proposal_is_accepted_when_nothing_is_pending() -> None:
    """A proposal larger than the bound is still accepted when nothing is uncommitted,
    or the leader could never make progress with it."""
    raw, st = _leader(max_uncommitted_entries_size=10)
    raw.propose(b"x" * 100)
    with pytest.raises(ProposalDropped):
        raw.propose(b"y")


def test_unreachable_follower_drops_to_probe() -> None:
    """report_unreachable moves a REPLICATE follower back to PROBE (etcd
    TestMsgUnreachable)."""
    raw, st = _leader()
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=1, index=1))
    drain(raw, st)
    raw.report_unreachable(NodeId(2))
    assert raw.raft.tracker.progress[NodeId(2)].state == ProgressState.PROBE


def test_progress_decrements_on_reject_and_ignores_stale_rejects() -> None:
    """maybe_decr_to follows the hint in PROBE, falls back to match+1 in REPLICATE and
    ignores rejections of appends it did not just send (etcd TestProgressMaybeDecr)."""
    pr = Progress(LogIndex(10), 4)
    assert not pr.maybe_decr_to(LogIndex(5), LogIndex(3))  # stale: next-1 is 9
    assert pr.maybe_decr_to(LogIndex(9), LogIndex(3)) and pr.next == 4
    pr.maybe_update(LogIndex(5))
    pr.become_replicate()
    assert not pr.maybe_decr_to(LogIndex(4), LogIndex(0))
    assert pr.maybe_decr_to(LogIndex(7), LogIndex(0)) and pr.next == 6


def test_inflights_free_in_order() -> None:
    """The inflight window frees everything up to an acknowledged index."""
    window = Inflights(3)
    for i in (5, 7, 9):
        window.add(LogIndex(i))
    assert window.full()
    window.free_le(LogIndex(7))
    assert window.count() == 1 and not window.full()
    window.free_first_one()
    assert window.count() == 0

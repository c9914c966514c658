"""Log replication: 6.5840 labs 3B/3C, etcd raft_paper_test section 5.3/5.4, Figure 8."""

from __future__ import annotations

import random

from consensus import NONE, LogIndex, MessageType, Role
from tests.consensus.sim import Faults, Sim, drain, elect, ent, msg, new_raw

ELECTION_MS = 100


def test_basic_agreement_and_message_counts() -> None:
    """Every proposal commits on every node, with a bounded number of messages per
    proposal and only heartbeats while idle (6.5840 TestBasicAgree3B, TestCount3B)."""
    sim = Sim(seed=10, n=3)
    sim.wait_leader()
    assert sim.sent[MessageType.VOTE] <= 4
    for i in range(1, 11):
        index = sim.commit(b"cmd%d" % i)
        sim.wait_applied(index)
    before = sum(sim.sent.values())
    heartbeats = sim.sent[MessageType.HEARTBEAT] + sim.sent[MessageType.HEARTBEAT_RESP]
    index = 0
    for i in range(20):
        got = sim.propose(b"batch%d" % i)
        assert got is not None
        index = got[1]
    sim.wait_applied(index)
    used = sum(sim.sent.values()) - before
    used -= sim.sent[MessageType.HEARTBEAT] + sim.sent[MessageType.HEARTBEAT_RESP] - heartbeats
    # 6.5840's bound: (1 + proposals + 3) round trips per server, two messages each.
    assert used <= 2 * (1 + 20 + 3) * 3, used

    idle = dict(sim.sent)
    sim.run_for(1_000)  # 100 ticks
    grown = {t: sim.sent[t] - idle.get(t, 0) for t in sim.sent}
    assert grown.get(MessageType.VOTE, 0) == 0 and grown.get(MessageType.PRE_VOTE, 0) == 0
    assert grown.get(MessageType.APP, 0) <= 4
    assert grown[MessageType.HEARTBEAT] <= 100 * 2 + 2


def test_no_commit_without_majority() -> None:
    """With 3 of 5 followers cut off nothing commits; after repair the uncommitted
    index may be replaced, and new proposals commit (6.5840 TestFailNoAgree3B)."""
    sim = Sim(seed=11, n=5)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"first"))
    others = [i for i in range(1, 6) if i != lead]
    for node in others[:3]:
        sim.isolate(node)
    got = sim.propose(b"lost?")
    assert got is not None
    _, index = got
    sim.run_for(10 * ELECTION_MS)
    assert all(sim.raw(i).status().commit < index for i in range(1, 6))
    assert all(sim.applied(i) < index for i in range(1, 6))
    sim.heal()
    sim.wait_leader()
    sim.wait_applied(sim.commit(b"after"))


def test_follower_rejoins_and_catches_up() -> None:
    """A follower cut off while entries commit receives them all once back (6.5840
    TestFailAgree3B)."""
    sim = Sim(seed=12, n=3)
    lead = sim.wait_leader()
    loner = next(i for i in (1, 2, 3) if i != lead)
    sim.isolate(loner)
    last = 0
    for i in range(30):
        last = sim.commit(b"v%d" % i)
    assert sim.applied(loner) < last
    sim.heal()
    sim.wait_applied(last, (1, 2, 3))


def test_partitioned_leader_entries_are_overwritten() -> None:
    """An old leader cut off with a minority appends entries that never commit; after
    healing they are replaced by the new leader's (6.5840 TestRejoin3B, etcd
    TestLeaderElectionOverwriteNewerLogs)."""
    sim = Sim(seed=13, n=5)
    lead1 = sim.wait_leader()
    sim.wait_applied(sim.commit(b"base"))
    buddy = next(i for i in range(1, 6) if i != lead1)
    sim.partition([lead1, buddy], [i for i in range(1, 6) if i not in (lead1, buddy)])
    doomed = []
    for i in range(5):
        got = sim.propose(b"doomed%d" % i, lead1)
        assert got is not None
        doomed.append(got)
    lead2 = sim.wait_leader()
    assert lead2 not in (lead1, buddy)
    for i in range(3):
        sim.commit(b"winner%d" % i)
    sim.heal()
    final = sim.commit(b"final")
    sim.wait_applied(final)
    for term, index in doomed:
        for node in range(1, 6):
            assert sim.raw(node).raft.log.term(index) != term  # replaced everywhere
    assert all(b"doomed" not in v for v in sim.nodes[lead1].app.values)  # type: ignore[index]


def test_fast_backtracking_over_long_divergent_logs() -> None:
    """Two rounds of 50 divergent uncommitted entries are repaired in a few round trips,
    not one per entry (6.5840 TestBackup3B, etcd TestFastLogRejection)."""
    sim = Sim(seed=14, n=5)
    lead1 = sim.wait_leader()
    sim.wait_applied(sim.commit(b"base"))
    ids = list(range(1, 6))
    buddy = next(i for i in ids if i != lead1)
    rest = [i for i in ids if i not in (lead1, buddy)]
    # The old leader and one follower pile up 50 entries that never commit.
    sim.partition([lead1, buddy], rest)
    for i in range(50):
        sim.propose(b"dead1-%d" % i, lead1)
    sim.run_for(50)
    # The other three elect a leader and commit 50 entries.
    for i in range(50):
        sim.commit(b"ok1-%d" % i)
    # That leader and one follower pile up 50 more that never commit.
    lead2 = sim.leader()
    other = next(i for i in rest if i != lead2)
    sim.partition([lead1, buddy], [i for i in rest if i != other], [other])
    for i in range(50):
        sim.propose(b"dead2-%d" % i, lead2)
    sim.run_for(50)
    # The first pair comes back with `other`, which holds the committed entries.
    sim.partition([lead1, buddy, other], [i for i in rest if i != other])
    rejects = sim.rejected_appends
    for i in range(50):
        sim.commit(b"ok2-%d" % i)
    # A naive leader needs one round trip per divergent entry (50) per follower.
    assert sim.rejected_appends - rejects <= 2 * 3
    sim.heal()
    rejects = sim.rejected_appends
    final = sim.commit(b"final")
    sim.wait_applied(final)
    assert sim.rejected_appends - rejects <= 2 * 3
    assert sim.acked_count >= 101


def test_fast_backtracking_hint_skips_a_term() -> None:
    """A follower's rejection names where its log may match and the term there; the
    leader jumps straight past all of its entries of the follower's divergent term
    (etcd TestFastLogRejection)."""
    # Leader log: terms 1 1 1 4 4 4 4 ; follower log: terms 1 1 1 2 2 2 3 3 3.
    leader, lst = new_raw(1, check_quorum=False, pre_vote=False)
    leader.step(
        msg(
            MessageType.APP,
            2,
            1,
            term=4,
            index=0,
            log_term=0,
            entries=tuple(ent(t, i + 1) for i, t in enumerate([1, 1, 1, 4, 4, 4, 4])),
        )
    )
    drain(leader, lst)
    follower, fst = new_raw(2, check_quorum=False, pre_vote=False)
    follower.step(
        msg(
            MessageType.APP,
            3,
            2,
            term=3,
            index=0,
            log_term=0,
            entries=tuple(ent(t, i + 1) for i, t in enumerate([1, 1, 1, 2, 2, 2, 3, 3, 3])),
        )
    )
    drain(follower, fst)
    for _ in range(40):
        leader.tick()
    drain(leader, lst)
    leader.campaign()
    votes = drain(leader, lst)
    term = max(m.term for m in votes)
    for m in votes:
        leader.step(msg(MessageType.VOTE_RESP, m.to, 1, term))
    sent = drain(leader, lst)
    assert leader.status().role == Role.LEADER
    trips = 0
    app = next(m for m in sent if m.type == MessageType.APP and m.to == 2)
    while True:
        trips += 1
        follower.step(app)
        (resp,) = [m for m in drain(follower, fst) if m.type == MessageType.APP_RESP]
        leader.step(resp)
        if not resp.reject:
            break
        app = next(m for m in drain(leader, lst) if m.type == MessageType.APP and m.to == 2)
    assert trips <= 3, trips


def test_leader_only_commits_entries_of_its_term_by_counting() -> None:
    """A new leader does not commit an old-term entry because a majority holds it;
    only its own term's entry, once replicated, commits it too (paper 5.4.2, etcd
    TestLeaderOnlyCommitsLogFromCurrentTerm, TestCannotCommitWithoutNewTermEntry)."""
    raw, st = new_raw(1, check_quorum=False, pre_vote=False)
    old = (ent(1, 1, b"a"), ent(2, 2, b"b"))
    raw.step(msg(MessageType.APP, 2, 1, term=2, index=0, log_term=0, entries=old))
    drain(raw, st)
    sent = elect(raw, st, (1, 2, 3))
    assert raw.status().term == 3
    # Node 2 acknowledges index 2 (old term) only: a majority holds it, yet no commit.
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=3, index=2))
    drain(raw, st)
    assert raw.status().commit == 0
    # Once node 2 holds the leader's own empty entry (index 3, term 3), all commit.
    raw.step(msg(MessageType.APP_RESP, 2, 1, term=3, index=3))
    out = drain(raw, st)
    assert raw.status().commit == 3
    assert any(m.type == MessageType.APP and m.commit == 3 for m in out)
    assert sent  # the first appends went out to both followers


def _figure8(seed: int, faults: Faults, rounds: int) -> Sim:
    rng = random.Random(seed)
    sim = Sim(seed, 5, faults=faults)
    sim.wait_leader()
    for i in range(rounds):
        lead = sim.leader()
        if lead != NONE:
            sim.propose(b"f8-%d-%d" % (seed, i), lead)
        sim.run_for(rng.choice((rng.randint(1, 15), rng.randint(20, 300))))
        lead = sim.leader()
        if lead != NONE and rng.random() < 0.5:
            sim.crash(lead)
        down = [n.id for n in sim.nodes.values() if not n.alive]
        if len(down) >= 3 or (down and rng.random() < 0.3):
            sim.restart(rng.choice(down))
    sim.converge()
    return sim


def test_figure8_reliable() -> None:
    """Leaders crash right after proposing, over and over; nothing committed is ever
    lost and old-term entries never commit by counting (6.5840 TestFigure83C)."""
    sim = _figure8(15, Faults(), rounds=1000)
    assert sim.acked_count > 10


def test_figure8_unreliable() -> None:
    """Figure 8 again over a network that loses, delays and reorders messages (6.5840
    TestFigure8Unreliable3C)."""
    sim = _figure8(16, Faults(loss=0.1, long_delay=0.25, dup=0.05), rounds=1000)
    assert sim.acked_count > 5


def test_unreliable_agreement() -> None:
    """Concurrent proposals over a lossy, reordering, duplicating network all commit
    (6.5840 TestUnreliableAgree3C)."""
    sim = Sim(seed=17, n=5, faults=Faults(loss=0.1, dup=0.1, long_delay=0.2))
    sim.wait_leader()
    proposed = set()
    for i in range(50):
        data = b"u%d" % i
        if sim.propose(data) is not None:
            proposed.add(data)
        sim.run_for(5)
    sim.converge()
    applied = set(sim.nodes[sim.leader()].app.values)  # type: ignore[index]
    acked = {d for _, d in sim.checker.acked.values()}
    assert acked <= applied
    assert len(acked) >= len(proposed) // 2


def _churn(seed: int, faults: Faults) -> Sim:
    rng = random.Random(seed)
    sim = Sim(seed, 5, faults=faults, snapshot_every=20)
    sim.wait_leader()
    for i in range(600):
        sim.propose(b"c%d" % i)
        sim.run_for(rng.randint(1, 20))
        what = rng.random()
        node = rng.randint(1, 5)
        if what < 0.05:
            sim.crash(node)
        elif what < 0.1:
            sim.restart(node)
        elif what < 0.15:
            sim.isolate(node)
        elif what < 0.2:
            sim.heal()
        down = [n.id for n in sim.nodes.values() if not n.alive]
        if len(down) > 2:
            sim.restart(down[0])
    sim.converge()
    return sim


def test_reliable_churn() -> None:
    """Clients propose while nodes crash, restart and are cut off at random; every
    acknowledged value is in the final log (6.5840 TestReliableChurn3C)."""
    sim = _churn(18, Faults())
    assert sim.acked_count > 50


def test_unreliable_churn() -> None:
    """Churn over a lossy, reordering network (6.5840 TestUnreliableChurn3C)."""
    sim = _churn(19, Faults(loss=0.1, long_delay=0.1, dup=0.05))
    assert sim.acked_count > 20


def test_old_reordered_and_duplicated_messages_change_nothing() -> None:
    """Replaying every message of a run, in random order, long after the fact leaves
    committed state and invariants intact (etcd TestOldMessages, TestDuplicate...)."""
    sim = Sim(seed=20, n=3, faults=Faults(dup=0.2, long_delay=0.2))
    recorded = []
    real_send = sim.send

    def record(m):  # type: ignore[no-untyped-def]
        recorded.append(m)
        real_send(m)

    sim.send = record  # type: ignore[method-assign]
    sim.wait_leader()
    for i in range(20):
        sim.commit(b"o%d" % i)
    lead = sim.leader()
    sim.crash_and_restart(lead)
    sim.wait_leader()
    for i in range(5):
        sim.commit(b"p%d" % i)
    sim.send = real_send  # type: ignore[method-assign]
    before = {i: (sim.applied(i), sim.raw(i).status().commit) for i in (1, 2, 3)}
    rng = random.Random(20)
    rng.shuffle(recorded)
    for m in recorded:
        sim.deliver(m)
    after = {i: (sim.applied(i), sim.raw(i).status().commit) for i in (1, 2, 3)}
    assert all(after[i] >= before[i] for i in (1, 2, 3))
    sim.converge()


def test_append_below_commit_is_answered_not_applied() -> None:
    """An append older than the follower's commit is answered with the commit index
    and changes nothing (etcd TestHandleMsgApp)."""
    raw, st = new_raw(1, check_quorum=False)
    entries = tuple(ent(1, i) for i in range(1, 4))
    raw.step(msg(MessageType.APP, 2, 1, term=1, index=0, log_term=0, entries=entries, commit=3))
    drain(raw, st)
    raw.step(msg(MessageType.APP, 2, 1, term=1, index=1, log_term=1, entries=(ent(1, 2, b"z"),)))
    (resp,) = drain(raw, st)
    assert resp.index == 3 and not resp.reject
    assert st.entries(LogIndex(2), LogIndex(3))[0].data == b""

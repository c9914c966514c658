"""Leader election: 6.5840 lab 3A, etcd's raft_paper_test section 5.2 and the vote rules."""

from __future__ import annotations

import random

from consensus import NONE, MessageType, Role
from tests.consensus.sim import Sim, drain, ent, msg, new_raw

ELECTION_MS = 10 * 10  # election_tick x TICK_MS


def test_initial_election() -> None:
    """Exactly one leader is elected, all agree on its term, and nothing changes while
    nothing fails (6.5840 TestInitialElection3A)."""
    sim = Sim(seed=1, n=3)
    lead = sim.wait_leader()
    term = sim.raw(lead).status().term
    sim.run_for(ELECTION_MS // 2)
    assert {sim.raw(i).status().term for i in (1, 2, 3)} == {term}
    assert {sim.raw(i).status().leader for i in (1, 2, 3)} == {lead}
    sim.run_for(20 * ELECTION_MS)
    assert sim.leader() == lead
    assert {sim.raw(i).status().term for i in (1, 2, 3)} == {term}
    assert sim.sent[MessageType.VOTE] <= 2 and sim.sent[MessageType.PRE_VOTE] <= 4


def test_reelection() -> None:
    """A cut-off leader is replaced and rejoins as a follower; without a majority there
    is no leader; once a majority returns one is elected (6.5840 TestReElection3A)."""
    sim = Sim(seed=2, n=3)
    lead1 = sim.wait_leader()
    sim.isolate(lead1)
    sim.run_for(5 * ELECTION_MS)
    lead2 = sim.leader()
    assert lead2 not in (NONE, lead1)
    assert sim.raw(lead1).status().role != Role.LEADER  # check-quorum made it step down

    sim.heal()
    sim.run_for(3 * ELECTION_MS)
    assert sim.leader() == lead2
    assert sim.raw(lead1).status().role == Role.FOLLOWER

    others = [i for i in (1, 2, 3) if i != lead2]
    sim.isolate(lead2)
    sim.isolate(others[0])
    sim.run_for(5 * ELECTION_MS)
    assert sim.leader() == NONE, "no node may lead without a majority"

    sim.heal()
    sim.isolate(lead2)
    lead3 = sim.wait_leader()
    assert lead3 in others
    sim.heal()
    sim.run_for(3 * ELECTION_MS)
    assert sim.leader() == lead3


def test_many_elections_seven_nodes() -> None:
    """With up to 3 of 7 nodes cut off at random, round after round, a leader always
    emerges and no term ever has two (6.5840 TestManyElections3A)."""
    sim = Sim(seed=3, n=7)
    sim.wait_leader()
    rng = random.Random(3)
    for _ in range(10):
        cut = rng.sample(range(1, 8), 3)
        for node in cut:
            sim.isolate(node)
        lead = sim.wait_leader()
        assert lead not in cut
        sim.heal()
    sim.wait_leader()
    assert len(sim.checker.leaders) >= 2


def test_split_votes_resolve() -> None:
    """Candidates that split the vote time out at random and one of them wins."""
    sim = Sim(seed=4, n=5, pre_vote=False)
    for node in (1, 2, 3, 4, 5):
        sim.raw(node).campaign()  # everyone votes for itself: a split for sure
        sim.handle_ready(sim.nodes[node])  # type: ignore[index]
    lead = sim.wait_leader()
    assert lead != NONE
    assert sim.raw(lead).status().term >= 2


def test_stale_term_messages_are_rejected() -> None:
    """A message from an older term changes nothing; a pre-vote from it is refused
    (etcd TestStepIgnoreOldTermMsg, paper section 5.1)."""
    raw, st = new_raw(1, check_quorum=False, pre_vote=False)
    raw.step(msg(MessageType.HEARTBEAT, 2, 1, term=5))
    drain(raw, st)
    before = raw.status()
    raw.step(msg(MessageType.APP, 3, 1, term=3, index=0, entries=(ent(3, 1, b"x"),)))
    raw.step(msg(MessageType.VOTE, 3, 1, term=4, index=9, log_term=4))
    assert drain(raw, st) == []
    assert raw.status() == before


def test_one_vote_per_term_first_come_first_served() -> None:
    """A node grants one vote per term, to the first candidate that asks; it repeats
    the grant to that candidate (etcd TestVoter, TestVoteFromAnyState)."""
    raw, st = new_raw(1, check_quorum=False)
    raw.step(msg(MessageType.VOTE, 2, 1, term=2, index=0, log_term=0))
    raw.step(msg(MessageType.VOTE, 3, 1, term=2, index=0, log_term=0))
    raw.step(msg(MessageType.VOTE, 2, 1, term=2, index=0, log_term=0))
    answers = [(m.to, m.reject) for m in drain(raw, st)]
    assert answers == [(2, False), (3, True), (2, False)]
    assert st.hard_state().vote == 2 and st.hard_state().term == 2


def test_no_vote_for_a_less_up_to_date_log() -> None:
    """A vote is refused to a candidate whose last term is lower, or whose last term is
    equal and last index shorter (paper section 5.4.1, etcd TestVoteRequest)."""
    for index, log_term, granted in [
        (1, 1, False),  # same last term, shorter log
        (2, 1, True),  # same last term, equal length
        (9, 0, False),  # longer but older
        (1, 2, True),  # newer last term wins however short
    ]:
        raw, st = new_raw(1, check_quorum=False)
        raw.step(msg(MessageType.APP, 2, 1, term=1, index=0, log_term=0, entries=(ent(1, 1), ent(1, 2))))
        drain(raw, st)
        raw.step(msg(MessageType.VOTE, 3, 1, term=3, index=index, log_term=log_term))
        (answer,) = [m for m in drain(raw, st) if m.type == MessageType.VOTE_RESP]
        assert answer.reject is (not granted), (index, log_term)


def test_prevote_keeps_a_rejoining_node_from_disrupting() -> None:
    """A node that was cut off does not raise its term with pre-vote, so when it
    rejoins the leader stays in place (etcd TestPreVoteWithCheckQuorum, thesis 9.6)."""
    sim = Sim(seed=5, n=3)
    lead = sim.wait_leader()
    term = sim.raw(lead).status().term
    loner = next(i for i in (1, 2, 3) if i != lead)
    sim.isolate(loner)
    sim.run_for(20 * ELECTION_MS)
    assert sim.raw(loner).status().term == term
    sim.heal()
    sim.run_for(5 * ELECTION_MS)
    assert sim.leader() == lead and sim.raw(lead).status().term == term


def test_without_prevote_a_rejoining_node_disrupts() -> None:
    """The contrast: without pre-vote and check-quorum the loner's term runs ahead and
    its return deposes the leader."""
    sim = Sim(seed=5, n=3, pre_vote=False, check_quorum=False)
    lead = sim.wait_leader()
    term = sim.raw(lead).status().term
    loner = next(i for i in (1, 2, 3) if i != lead)
    sim.isolate(loner)
    sim.run_for(20 * ELECTION_MS)
    assert sim.raw(loner).status().term > term + 3
    sim.heal()
    sim.run_for(3 * ELECTION_MS)
    sim.wait_leader()
    assert sim.raw(sim.leader()).status().term > term


def test_prevote_node_with_smaller_term_completes_election() -> None:
    """A node whose term is behind but whose log is longest can still win after the
    leader dies: a refused pre-vote teaches it the higher term (etcd
    TestPreVoteMigrationCanCompleteElection)."""
    sim = Sim(seed=6, n=3)
    lead = sim.wait_leader()
    a, b = [i for i in (1, 2, 3) if i != lead]
    # b misses entries while it is away and, with pre-vote off, inflates its term.
    sim.isolate(b)
    sim.nodes[b].overrides = {"pre_vote": False}  # type: ignore[index]
    sim.crash_and_restart(b)
    sim.isolate(b)
    for i in range(5):
        sim.commit(b"x%d" % i)
    sim.run_for(10 * ELECTION_MS)
    assert sim.raw(b).status().term > sim.raw(a).status().term
    sim.crash(lead)
    sim.heal()
    sim.isolate(lead)
    new = sim.wait_leader()
    assert new == a, "only a holds every committed entry"


def test_check_quorum_leader_steps_down() -> None:
    """A leader that hears from no majority for an election timeout steps down (etcd
    TestLeaderStepdownWhenQuorumLost)."""
    sim = Sim(seed=7, n=5)
    lead = sim.wait_leader()
    sim.isolate(lead)
    sim.run_for(3 * ELECTION_MS)
    assert sim.raw(lead).status().role == Role.FOLLOWER


def test_check_quorum_frees_a_stuck_candidate() -> None:
    """Without pre-vote, a cut-off node campaigns its term up; once back, the leader's
    heartbeat draws a higher-term answer, the leader steps down and the cluster moves
    to the candidate's term (etcd TestFreeStuckCandidateWithCheckQuorum)."""
    sim = Sim(seed=8, n=3, pre_vote=False)
    lead = sim.wait_leader()
    loner = next(i for i in (1, 2, 3) if i != lead)
    sim.isolate(loner)
    sim.run_for(10 * ELECTION_MS)
    stuck_term = sim.raw(loner).status().term
    assert sim.raw(loner).status().role == Role.CANDIDATE
    assert stuck_term > sim.raw(lead).status().term
    sim.heal()
    sim.run_until(lambda: sim.leader() != NONE and sim.raw(sim.leader()).status().term > stuck_term)
    sim.wait_leader()
    assert sim.raw(loner).status().role != Role.CANDIDATE


def test_check_quorum_lease_ignores_disruptive_votes() -> None:
    """While a follower hears from its leader, a vote request with a higher term is
    ignored altogether: no answer, no term change (etcd TestLeaderElectionWithCheckQuorum,
    thesis section 4.2.3)."""
    raw, st = new_raw(1)
    raw.step(msg(MessageType.HEARTBEAT, 2, 1, term=2))
    drain(raw, st)
    raw.step(msg(MessageType.VOTE, 3, 1, term=3, index=5, log_term=3))
    raw.step(msg(MessageType.PRE_VOTE, 3, 1, term=3, index=5, log_term=3))
    assert drain(raw, st) == []
    assert raw.status().term == 2 and raw.status().leader == 2
    # Once an election timeout passes without the leader, it votes again.
    for _ in range(10):
        raw.tick()
    drain(raw, st)
    raw.step(msg(MessageType.VOTE, 3, 1, term=9, index=5, log_term=3))
    assert [m.reject for m in drain(raw, st) if m.type == MessageType.VOTE_RESP] == [False]


def test_pre_vote_changes_neither_term_nor_vote() -> None:
    """Answering and asking for pre-votes leaves term and vote as they were (thesis
    section 9.6)."""
    raw, st = new_raw(1)
    raw.step(msg(MessageType.PRE_VOTE, 2, 1, term=5, index=0, log_term=0))
    out = drain(raw, st)
    assert [(m.type, m.term, m.reject) for m in out] == [(MessageType.PRE_VOTE_RESP, 5, False)]
    assert raw.status().term == 0 and st.hard_state().vote == NONE
    raw.campaign()
    out = drain(raw, st)
    assert {m.type for m in out} == {MessageType.PRE_VOTE}
    assert raw.status().role == Role.PRE_CANDIDATE and raw.status().term == 0

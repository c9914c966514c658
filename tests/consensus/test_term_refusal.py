"""No campaign in, and no vote for, a term a hostile node claimed leadership in (issue 11).

Raft followers take a leader's term from its appends without checking its election, so
a hostile node can append blocks in term t it never won. If an honest node were then
elected in that same term t, its blocks would be of the hostile blocks' round, and the
honest nodes that attested a hostile block in round t could never attest the honest
one (the round rule allows one block per round): no block at that height could become
final. Found by the five-state equivocation test (an honest node that refused the
hostile leader's append before taking it stayed at term t - 1 and won term t with the
votes of the healed nodes). `Config.term_refused` makes every campaign skip such terms
and every voter refuse them.
"""

from __future__ import annotations

from consensus import MessageType, Role
from tests.consensus.sim import Sim, drain, msg, new_raw


def test_a_campaign_skips_refused_terms() -> None:
    refused = {2, 3}
    raw, storage = new_raw(1, voters=(1, 2, 3), term_refused=refused.__contains__, pre_vote=False)
    drain(raw, storage)
    assert raw.raft.term == 0
    raw.campaign()
    out = drain(raw, storage)
    assert raw.raft.role is Role.CANDIDATE
    assert raw.raft.term == 1  # term 1 is free
    raw2, storage2 = new_raw(1, voters=(1, 2, 3), term_refused=refused.__contains__, pre_vote=False)
    raw2.raft.term = 1  # as if it had followed a leader in term 1
    raw2.campaign()
    out = drain(raw2, storage2)
    assert raw2.raft.term == 4, "terms 2 and 3 are refused: the campaign stands in term 4"
    votes = [m for m in out if m.type == MessageType.VOTE]
    assert votes and all(m.term == 4 for m in votes)


def test_a_pre_vote_asks_for_the_next_free_term() -> None:
    refused = {1}
    raw, storage = new_raw(1, voters=(1, 2, 3), term_refused=refused.__contains__, pre_vote=True)
    raw.campaign()
    out = drain(raw, storage)
    pre = [m for m in out if m.type == MessageType.PRE_VOTE]
    assert pre and all(m.term == 2 for m in pre)
    assert raw.raft.term == 0  # a pre-vote changes no term


def test_no_vote_or_pre_vote_is_granted_for_a_refused_term() -> None:
    refused = {5}
    raw, storage = new_raw(2, voters=(1, 2, 3), term_refused=refused.__contains__)
    for kind, answer in ((MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP), (MessageType.VOTE, MessageType.VOTE_RESP)):
        raw.step(msg(kind, 1, 2, 5, index=0, log_term=0))
        replies = [m for m in drain(raw, storage) if m.type == answer]
        assert replies and all(m.reject for m in replies), kind
    # A free term is granted as before.
    raw.step(msg(MessageType.VOTE, 1, 2, 6, index=0, log_term=0))
    replies = [m for m in drain(raw, storage) if m.type == MessageType.VOTE_RESP]
    assert replies and not replies[-1].reject


def test_a_cluster_elects_a_leader_above_the_refused_terms_and_commits() -> None:
    refused = {2, 3, 4}
    sim = Sim(seed=211, n=5, term_refused=refused.__contains__)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    term = sim.raw(lead).raft.term
    assert term not in refused
    # Every term any node reached is free, and so is every leader's.
    for n in range(1, 6):
        assert sim.raw(n).raft.term not in refused

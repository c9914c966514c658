"""Configuration changes take effect only when the application's pure judge authorizes
them: a hostile leader's "remove node 3" is a no-op on every honest node (issue 10,
finding 4)."""

from __future__ import annotations

from dataclasses import replace

from consensus import (
    ConfChange,
    ConfChangeType,
    NodeId,
    ProposalDropped,
    decode_conf_change,
    encode_conf_change,
)
from tests.consensus.sim import Sim

GRANT = b"granted by the states"


def _authorized(cc: ConfChange) -> bool:
    return cc.context == GRANT


def _propose(sim: Sim, cc: ConfChange, node: int | None = None) -> int:
    for _ in range(50):
        index = sim.propose_conf_change(cc, node)
        if index is not None:
            return index
        sim.run_for(20)
    raise AssertionError(f"could not propose {cc}")


def test_an_unauthorized_change_from_a_hostile_leader_moves_no_honest_node() -> None:
    """The leader skips its own check and appends 'remove node 3'; it commits, yet
    every honest node keeps three voters, and the cluster goes on committing."""
    sim = Sim(seed=90, n=3, conf_change_authorized=_authorized)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"before"))
    gone = next(n for n in (1, 2, 3) if n != lead)
    hostile = sim.raw(lead).raft
    hostile.config = replace(hostile.config, conf_change_authorized=None)
    index = _propose(sim, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(gone)))
    honest = [n for n in (1, 2, 3) if n != lead]
    other = next(n for n in honest if n != gone)
    # The hostile leader stops sending to `gone` (as it may: it can censor anyway);
    # the change commits with the third node.
    sim.wait_applied(index, [other])
    for n in honest:
        assert sim.raw(n).status().voters == (1, 2, 3), n
    # The removed-in-name node still votes: with the leader isolated, the two honest
    # nodes elect one of themselves, commit, and both hold three voters after the entry.
    sim.isolate(lead)
    assert sim.run_until(lambda: sim.leader() in honest)
    sim.wait_applied(sim.commit(b"after"), honest)
    for n in honest:
        assert sim.raw(n).status().voters == (1, 2, 3), n


def test_an_authorized_change_takes_effect_everywhere() -> None:
    """The same change with the context the judge accepts removes the node on every node."""
    sim = Sim(seed=91, n=3, conf_change_authorized=_authorized)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"before"))
    gone = next(n for n in (1, 2, 3) if n != lead)
    index = _propose(sim, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(gone), GRANT))
    rest = [n for n in (1, 2, 3) if n != lead and n != gone] + [lead]
    sim.wait_applied(index, rest)
    for n in rest:
        assert sim.raw(n).status().voters == tuple(sorted(rest)), n


def test_an_honest_leader_refuses_to_propose_an_unauthorized_change() -> None:
    """The leader's own check drops the proposal before anything is appended."""
    sim = Sim(seed=92, n=3, conf_change_authorized=_authorized)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    raw = sim.raw(lead)
    try:
        raw.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3), b"forged"))
    except ProposalDropped as exc:
        assert "not authorized" in str(exc)
    else:
        raise AssertionError("an unauthorized change was proposed")


def test_a_judge_that_raises_refuses() -> None:
    """A judge that fails on hostile bytes refuses the change instead of stopping the node."""

    def broken(cc: ConfChange) -> bool:
        raise ValueError("cannot judge")

    sim = Sim(seed=93, n=3, conf_change_authorized=broken)
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"x"))
    hostile = sim.raw(lead).raft
    hostile.config = replace(hostile.config, conf_change_authorized=None)
    gone = next(n for n in (1, 2, 3) if n != lead)
    index = _propose(sim, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(gone)))
    honest = [n for n in (1, 2, 3) if n != lead]
    sim.wait_applied(index, [n for n in honest if n != gone])
    assert all(sim.raw(n).status().voters == (1, 2, 3) for n in honest)


def test_the_context_round_trips_and_the_old_form_is_unchanged() -> None:
    """A change without context encodes as before (three fields); with one, four."""
    plain = ConfChange(ConfChangeType.ADD_VOTER, NodeId(4))
    assert encode_conf_change(plain) == b"\x93\x01\x00\x04"
    assert decode_conf_change(encode_conf_change(plain)) == plain
    rich = ConfChange(ConfChangeType.REMOVE_NODE, NodeId(2), b"certificate")
    assert decode_conf_change(encode_conf_change(rich)) == rich

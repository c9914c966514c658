"""The node's Raft judge with real governance certificates: a leader's "remove node 3"
without a quorum of regulators is a no-op on every honest node, with one it takes
effect everywhere (issue 10, finding 4)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consensus import ConfChange, ConfChangeType, NodeId
from ledger import (
    Action,
    DocType,
    NodeSpec,
    certificate_bytes,
    conf_change_follows,
    make_proposal,
    next_conf_change,
)
from node._node import governance_judge
from tests.consensus.sim import Sim
from tests.ledger.world import CHAIN_ID, World, make_genesis, seeded_key

pytestmark = pytest.mark.unit

STATES = ("AM", "BY", "KZ")  # node ids 1, 2, 3; a quorum is 2 of 3


def _certificate(signers: tuple[str, ...], state: str = "KZ", chain_id: str = CHAIN_ID) -> bytes:
    proposal = make_proposal(chain_id, Action.REMOVE_NODE, state, 1, 2**40)
    sigs = [proposal.sign(seeded_key(f"regulator-{s}")).to_list() for s in signers]
    return certificate_bytes(proposal.canonical_bytes(), sigs)


def _cluster(seed: int) -> tuple[Sim, int]:
    sim = Sim(seed=seed, n=3, conf_change_authorized=governance_judge(make_genesis(STATES)))
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"before"))
    return sim, lead


def _hostile_remove(sim: Sim, lead: int, context: bytes) -> int:
    """The leader skips its own judge (as a hostile one would) and appends the change."""
    raft = sim.raw(lead).raft
    raft.config = replace(raft.config, conf_change_authorized=None, conf_change_follows=None)
    return _propose(sim, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3), context))


def _propose(sim: Sim, cc: ConfChange) -> int:
    for _ in range(50):
        index = sim.propose_conf_change(cc)
        if index is not None:
            return index
        sim.run_for(20)
    raise AssertionError("could not propose")


@pytest.mark.parametrize(
    ("label", "context"),
    [
        ("no certificate", b""),
        ("one of three regulators", _certificate(("AM",))),
        ("a quorum for another state's node", _certificate(("AM", "BY"), state="BY")),
        ("a quorum on another chain", _certificate(("AM", "BY"), chain_id="other-chain")),
        ("junk", b"\x92\xc4\x00\x90"),
    ],
)
def test_an_unauthorized_removal_moves_no_honest_node(label: str, context: bytes) -> None:
    """Every honest node keeps three voters after the hostile leader's entry commits."""
    sim, lead = _cluster(seed=100)
    index = _hostile_remove(sim, lead, context)
    honest = [n for n in (1, 2, 3) if n != lead]
    sim.wait_applied(index, [n for n in honest if n != 3] or honest)
    for n in honest:
        assert sim.raw(n).status().voters == (1, 2, 3), (label, n)


def test_a_quorum_certificate_removes_node_3_everywhere() -> None:
    """Two of three regulators' signatures: every node drops node 3, honest leader or not."""
    sim, lead = _cluster(seed=101)
    del lead
    index = _propose(sim, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3), _certificate(("AM", "KZ"))))
    sim.wait_applied(index, [1, 2])
    for n in (1, 2):
        assert sim.raw(n).status().voters == (1, 2)


def test_the_leader_follows_the_ledger_one_change_at_a_time(tmp_path: Path) -> None:
    """After a removal is applied by the ledger, the next Raft change is exactly it,
    with the certificate the ledger recorded; once Raft agrees, nothing is left."""
    world = World(tmp_path, make_genesis(STATES))
    assert next_conf_change(world.store.db, world.genesis, [1, 2, 3]) is None
    proposal = make_proposal(CHAIN_ID, Action.REMOVE_NODE, "KZ", 1, world.time_ms + 60_000)
    sigs = [proposal.sign(world.regulator(s)).to_list() for s in ("AM", "BY")]
    world.apply_ok(world.doc(world.regulator("AM"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                             signatures=sigs))
    step = next_conf_change(world.store.db, world.genesis, [1, 2, 3])
    assert step is not None and step[:2] == ("remove", 3)
    assert governance_judge(world.genesis)(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3), step[2]))
    assert next_conf_change(world.store.db, world.genesis, [1, 2]) is None


def _epoch_certificate(action: Action, epoch: int) -> bytes:
    node = NodeSpec(seeded_key("node-KZ-new").public_key, "ab" * 32, "127.0.0.1:7100", "http://127.0.0.1:8100")
    proposal = make_proposal(CHAIN_ID, action, "KZ", 1, 2**40, node=node if action is Action.ADD_NODE else None,
                             epoch=epoch)
    sigs = [proposal.sign(seeded_key(f"regulator-{s}")).to_list() for s in ("AM", "BY")]
    return certificate_bytes(proposal.canonical_bytes(), sigs)


def test_a_replayed_removal_certificate_moves_no_node_after_the_node_is_added_back() -> None:
    """Raft carried out "remove node 3" (epoch 0) and "add node 3" (epoch 1); a hostile
    leader then appends the old removal, a valid quorum certificate: no honest node
    drops node 3, also one that restarted from a snapshot taken after the add (the
    snapshot's metadata carries the context the judge compares with)."""
    genesis = make_genesis(STATES)
    sim = Sim(seed=102, n=3, snapshot_every=1, conf_change_authorized=governance_judge(genesis),
              conf_change_follows=lambda prior, cc: conf_change_follows(prior, cc.context))
    lead = sim.wait_leader()
    sim.wait_applied(sim.commit(b"before"))
    remove, add = _epoch_certificate(Action.REMOVE_NODE, 0), _epoch_certificate(Action.ADD_NODE, 1)
    sim.wait_applied(_propose(sim, ConfChange(ConfChangeType.REMOVE_NODE, NodeId(3), remove)), [1, 2])
    assert sim.raw(1).status().voters == (1, 2)
    lead = sim.wait_leader()
    sim.wait_applied(_propose(sim, ConfChange(ConfChangeType.ADD_VOTER, NodeId(3), add)), [1, 2])
    sim.wait_applied(sim.commit(b"after the add"))
    assert all(sim.raw(n).status().voters == (1, 2, 3) for n in (1, 2, 3))
    # A restart reads the membership and its context from the snapshot, not the log.
    other = next(n for n in (1, 2) if n != sim.wait_leader())
    sim.crash(other)
    sim.restart(other)
    assert sim.raw(other).raft.conf_base_context == add
    lead = sim.wait_leader()
    index = _hostile_remove(sim, lead, remove)
    honest = [n for n in (1, 2, 3) if n != lead]
    # The hostile leader stops sending to node 3 (in its own view 3 is gone); the other
    # honest node applies the entry, and neither honest node's membership moves.
    sim.run_until(lambda: any(sim.raw(n).raft.log.committed >= index for n in honest), 5_000)
    assert any(sim.raw(n).raft.log.committed >= index for n in honest)
    for n in honest:
        assert sim.raw(n).status().voters == (1, 2, 3), n


def test_the_snapshot_metadata_keeps_the_last_change_context(tmp_path: Path) -> None:
    """What the judge compares with survives the LevelDB log and a snapshot message."""
    from consensus import (
        ConfState,
        Entry,
        EntryType,
        LevelDBStorage,
        LogIndex,
        Message,
        MessageType,
        Snapshot,
        SnapshotMeta,
        Term,
        decode_message,
        encode_message,
    )

    add = _epoch_certificate(Action.ADD_NODE, 1)
    meta = SnapshotMeta(LogIndex(2), Term(1), ConfState(voters=(NodeId(1), NodeId(2), NodeId(3))), add)
    storage = LevelDBStorage(tmp_path / "raft")
    storage.append([Entry(Term(1), LogIndex(i), EntryType.NORMAL, b"x") for i in (1, 2, 3)])
    storage.compact(LogIndex(2), Snapshot(meta, b"data"))
    storage.close()
    reopened = LevelDBStorage(tmp_path / "raft")
    assert reopened.snapshot().meta == meta
    reopened.close()
    message = Message(MessageType.SNAP, NodeId(2), NodeId(1), Term(1), snapshot=Snapshot(meta, b"data"))
    decoded = decode_message(encode_message(message))
    assert decoded.snapshot is not None and decoded.snapshot.meta.conf_context == add
    plain = Message(MessageType.SNAP, NodeId(2), NodeId(1), Term(1),
                    snapshot=Snapshot(SnapshotMeta(LogIndex(2), Term(1), ConfState(voters=(NodeId(1),))), b""))
    assert decode_message(encode_message(plain)) == plain

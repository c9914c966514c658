"""Governance by the states: a Byzantine quorum of regulators changes membership and
chain parameters, and nothing less does (issue 10, finding 4)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from ledger import (
    Action,
    DecodeError,
    DocType,
    NodeSpec,
    Proposal,
    Reason,
    Verifier,
    byzantine_quorum,
    certificate_bytes,
    certificate_epoch,
    conf_change_authorization,
    conf_change_follows,
    decode_proposal,
    decode_signed,
    desired_voters,
    document_from_json,
    faults_tolerated,
    governance_applied,
    governed_member,
    governed_membership,
    governed_params,
    make_proposal,
    membership_epoch,
)
from tests.ledger.world import CHAIN_ID, World, make_genesis, seeded_key

STATES = ("AM", "BY", "KZ", "KG", "RU")
NEW_NODE = NodeSpec(seeded_key("node-KZ-new").public_key, "ab" * 32, "127.0.0.1:7100", "http://127.0.0.1:8100")


@pytest.mark.parametrize(
    ("n", "f", "quorum"),
    [(1, 0, 1), (2, 0, 2), (3, 0, 2), (4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5)],
)
def test_byzantine_quorum_table(n: int, f: int, quorum: int) -> None:
    """The quorum is ceil((n+f+1)/2), and any two quorums share at least f+1 states."""
    assert faults_tolerated(n) == f
    assert byzantine_quorum(n) == quorum == -(-(n + f + 1) // 2)
    assert quorum <= n  # the honest states alone can always form one: n - f >= quorum
    assert n - f >= quorum
    for a, b in itertools.combinations(itertools.combinations(range(n), quorum), 2):
        assert len(set(a) & set(b)) >= f + 1


def _proposal(world: World, action: Action, state: str = "KZ", **kw: Any) -> Proposal:
    return make_proposal(CHAIN_ID, action, state, kw.pop("nonce", 1), kw.pop("expires", world.time_ms + 60_000), **kw)


def _cosigned(world: World, proposal: Proposal, signers: tuple[str, ...]) -> list[list[Any]]:
    return [proposal.sign(world.regulator(s)).to_list() for s in signers]


def _submit(world: World, proposal: Proposal, signatures: list[list[Any]], by: str = "AM") -> Any:
    doc = world.doc(world.regulator(by), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                    signatures=signatures)
    (result,) = world.apply(doc)
    return result


def test_a_quorum_removes_a_node_and_one_fewer_does_not(tmp_path: Path) -> None:
    """Four of five regulators remove KZ's node; three of five change nothing."""
    world = World(tmp_path)
    proposal = _proposal(world, Action.REMOVE_NODE)
    result = _submit(world, proposal, _cosigned(world, proposal, ("AM", "BY", "KG")))
    assert result.reason is Reason.NO_QUORUM, result
    assert governed_member(world.store.db, world.genesis, "KZ").status == "active"

    result = _submit(world, proposal, _cosigned(world, proposal, ("AM", "BY", "KG", "RU")))
    assert result.applied, result
    assert governed_member(world.store.db, world.genesis, "KZ").status == "removed"
    assert [code for _, code, _ in desired_voters(world.store.db, world.genesis)] == ["AM", "BY", "KG", "RU"]
    assert governance_applied(world.store.db, proposal.id) is not None
    # The same proposal again, even signed by all, is a replay.
    assert _submit(world, proposal, _cosigned(world, proposal, STATES)).reason is Reason.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("label", "tamper", "reason"),
    [
        ("duplicate signer", lambda sigs, w, p: [*sigs[:3], sigs[0]], Reason.BAD_SIGNATURE),
        ("non-regulator", lambda sigs, w, p: [*sigs[:3], p.sign(seeded_key("stranger")).to_list()],
         Reason.BAD_SIGNATURE),
        ("forged signature", lambda sigs, w, p: [*sigs[:3], [sigs[3][0], bytes(64)]], Reason.BAD_SIGNATURE),
        ("signature on another proposal",
         lambda sigs, w, p: [*sigs[:3], _proposal(w, Action.REMOVE_NODE, nonce=2).sign(w.regulator("RU")).to_list()],
         Reason.BAD_SIGNATURE),
    ],
)
def test_a_certificate_with_a_bad_entry_is_refused(tmp_path: Path, label: str, tamper: Any, reason: Reason) -> None:
    """Three good signatures plus a bad fourth (a repeat, a stranger, a forgery) is no quorum."""
    world = World(tmp_path)
    proposal = _proposal(world, Action.REMOVE_NODE)
    sigs = _cosigned(world, proposal, ("AM", "BY", "KG", "RU"))
    result = _submit(world, proposal, tamper(sigs, world, proposal))
    assert result.reason is reason, (label, result)
    assert governed_member(world.store.db, world.genesis, "KZ").status == "active"


def test_only_a_regulator_submits_and_only_before_expiry(tmp_path: Path) -> None:
    """A business cannot submit a certificate; an expired proposal is refused."""
    world = World(tmp_path)
    business = world.register("KZ", ["producer"])
    proposal = _proposal(world, Action.REMOVE_NODE)
    doc = world.doc(business, DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                    signatures=_cosigned(world, proposal, STATES))
    assert world.apply(doc)[0].reason is Reason.FORBIDDEN_ROLE
    old = _proposal(world, Action.REMOVE_NODE, expires=world.time_ms - 1)
    assert _submit(world, old, _cosigned(world, old, STATES)).reason is Reason.EXPIRED


def test_add_replace_and_params(tmp_path: Path) -> None:
    """Remove, add back with a new key, replace, and set a parameter: each recorded in state."""
    world = World(tmp_path)
    quorum = ("AM", "BY", "KG", "RU")
    remove = _proposal(world, Action.REMOVE_NODE)
    assert _submit(world, remove, _cosigned(world, remove, quorum)).applied
    add = _proposal(world, Action.ADD_NODE, node=NEW_NODE, epoch=1)
    assert _submit(world, add, _cosigned(world, add, quorum)).applied
    member = governed_member(world.store.db, world.genesis, "KZ")
    assert member.status == "active" and member.node == NEW_NODE and member.proposal == add.id
    again = _proposal(world, Action.ADD_NODE, node=NEW_NODE, nonce=2, epoch=2)
    assert _submit(world, again, _cosigned(world, again, quorum)).reason is Reason.ALREADY_EXISTS
    params = _proposal(world, Action.SET_PARAMS, params={"block_documents_max": 500})
    assert _submit(world, params, _cosigned(world, params, quorum)).applied
    assert governed_params(world.store.db, world.genesis).block_documents_max == 500
    assert governed_params(world.store.db, world.genesis).block_bytes_max == world.genesis.params.block_bytes_max


def test_the_last_node_is_never_removed(tmp_path: Path) -> None:
    """With one state, its regulator alone is a quorum, but it cannot remove the only node."""
    world = World(tmp_path, make_genesis(("RU",)))
    proposal = _proposal(world, Action.REMOVE_NODE, state="RU")
    assert _submit(world, proposal, _cosigned(world, proposal, ("RU",)), by="RU").reason is Reason.WRONG_STATUS


def test_proposal_bytes_are_canonical_and_checked() -> None:
    """A proposal decodes back to itself; malformed ones raise DecodeError only."""
    p = make_proposal(CHAIN_ID, "add_node", "KZ", 7, 10**12, node=NEW_NODE)
    assert decode_proposal(p.canonical_bytes()) == p
    for bad in (
        lambda: make_proposal(CHAIN_ID, "add_node", "KZ", 1, 1),  # add without a node
        lambda: make_proposal(CHAIN_ID, "remove_node", "KZ", 1, 1, node=NEW_NODE),
        lambda: make_proposal(CHAIN_ID, "set_params", "KZ", 1, 1, params={"nope": 1}),
        lambda: make_proposal(CHAIN_ID, "set_params", "KZ", 1, 1, params={"block_bytes_max": 0}),
        lambda: make_proposal(CHAIN_ID, "explode", "KZ", 1, 1),
        lambda: decode_proposal(b"\xc1"),
        lambda: decode_proposal(b"\x90"),
    ):
        with pytest.raises(DecodeError):
            bad()


def test_the_document_round_trips_through_json(tmp_path: Path) -> None:
    """The governance document's JSON form (hex bytes) gives back the same bytes."""
    world = World(tmp_path)
    proposal = _proposal(world, Action.REMOVE_NODE)
    doc = world.doc(world.regulator("AM"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                    signatures=_cosigned(world, proposal, STATES))
    assert document_from_json(doc.document.to_json()).body_bytes() == doc.body
    assert decode_signed(doc.wire()).document == doc.document


def test_conf_change_authorization_is_pure(tmp_path: Path) -> None:
    """A Raft change is authorized by a quorum certificate for exactly that node, on this
    chain; anything else (no quorum, other chain, params, junk) authorizes nothing."""
    from ledger import certificate_bytes

    world = World(tmp_path)
    genesis, verifier = world.genesis, Verifier()
    remove = _proposal(world, Action.REMOVE_NODE)
    good = certificate_bytes(remove.canonical_bytes(), _cosigned(world, remove, ("AM", "BY", "KG", "RU")))
    assert conf_change_authorization(genesis, verifier, good) == ("remove", 3)
    short = certificate_bytes(remove.canonical_bytes(), _cosigned(world, remove, ("AM", "BY", "KG")))
    assert conf_change_authorization(genesis, verifier, short) is None
    other = make_proposal("another-chain", "remove_node", "KZ", 1, 10**13)
    assert conf_change_authorization(
        genesis, verifier, certificate_bytes(other.canonical_bytes(), _cosigned(world, other, STATES))
    ) is None
    params = _proposal(world, Action.SET_PARAMS, params={"block_bytes_max": 1024})
    assert conf_change_authorization(
        genesis, verifier, certificate_bytes(params.canonical_bytes(), _cosigned(world, params, STATES))
    ) is None
    for junk in (b"", b"\xc1", b"\x92\xc4\x01x\x90", bytes(100)):
        assert conf_change_authorization(genesis, verifier, junk) is None


def test_two_stores_agree_on_governance(tmp_path: Path) -> None:
    """Two nodes applying the same governance block reach the same state hash."""
    a, b = World(tmp_path / "a"), World(tmp_path / "b")
    for world in (a, b):
        proposal = make_proposal(CHAIN_ID, Action.REMOVE_NODE, "KZ", 1, a.genesis.time_ms + 10**9)
        _submit(world, proposal, _cosigned(world, proposal, STATES))
    assert a.store.head.state_hash == b.store.head.state_hash


def test_parameters_set_by_governance_are_the_ones_applied(tmp_path: Path) -> None:
    """A quorum lowers block_documents_max: the next block's documents beyond it are block_full,
    and the store, the state machine and the node all read the parameters in force."""
    world = World(tmp_path)
    quorum = ("AM", "BY", "KG", "RU")
    params = _proposal(world, Action.SET_PARAMS, params={"block_documents_max": 2})
    assert _submit(world, params, _cosigned(world, params, quorum)).applied
    assert world.store.params().block_documents_max == 2
    docs = [world.doc(world.regulator("KZ"), DocType.REGISTER_PARTICIPANT,
                      public_key=seeded_key(f"late-{n}").public_key, state="KZ", roles=["retailer"],
                      name=f"Late {n}") for n in range(3)]
    results = world.apply(*docs)
    assert [r.applied for r in results[:2]] == [True, True]
    assert results[2].reason is Reason.BLOCK_FULL


def test_a_replayed_removal_certificate_is_refused_after_the_node_is_added_back(tmp_path: Path) -> None:
    """The regulators signed two removals of KZ's node (two proposals, e.g. two
    regulators collected signatures at once); one removed it, KZ was added back, and the
    other, submitted now, is refused as stale: KZ stays a member. Before the membership
    epoch the second certificate removed KZ again."""
    world = World(tmp_path)
    quorum = ("AM", "BY", "KG", "RU")
    first = _proposal(world, Action.REMOVE_NODE, nonce=1)
    second = _proposal(world, Action.REMOVE_NODE, nonce=2)
    held_back = _cosigned(world, second, quorum)
    assert _submit(world, first, _cosigned(world, first, quorum)).applied
    add = _proposal(world, Action.ADD_NODE, node=NEW_NODE, epoch=1)
    assert _submit(world, add, _cosigned(world, add, quorum)).applied
    replayed = _submit(world, second, held_back)
    assert replayed.reason is Reason.STALE_EPOCH, replayed
    assert governed_member(world.store.db, world.genesis, "KZ").status == "active"
    assert membership_epoch(world.store.db) == 2
    # A certificate made for an epoch not reached yet is refused too.
    future = _proposal(world, Action.REMOVE_NODE, nonce=3, epoch=5)
    assert _submit(world, future, _cosigned(world, future, quorum)).reason is Reason.STALE_EPOCH


def test_the_member_table_follows_governance(tmp_path: Path) -> None:
    """store.members(): genesis's table at first; a replacement changes KZ's key, pin and
    address; a removal makes KZ inactive (no key, no pin); each change moves the epoch."""
    world = World(tmp_path)
    quorum = ("AM", "BY", "KG", "RU")
    table = world.store.members()
    kz = world.genesis.state("KZ")
    assert table.epoch == 0 and table.node_key("KZ") == kz.node_public_key
    assert table.pins()["KZ"] == kz.tls_cert_sha256
    replace = _proposal(world, Action.REPLACE_NODE, node=NEW_NODE)
    assert _submit(world, replace, _cosigned(world, replace, quorum)).applied
    table = world.store.members()
    member = table.member("KZ")
    assert member is not None and member.active and table.epoch == 1
    assert (member.node_public_key, member.tls_cert_sha256, member.peer_address) == (
        NEW_NODE.public_key, NEW_NODE.tls_cert_sha256, NEW_NODE.peer_address)
    assert table.pins()["KZ"] == NEW_NODE.tls_cert_sha256
    remove = _proposal(world, Action.REMOVE_NODE, epoch=1)
    assert _submit(world, remove, _cosigned(world, remove, quorum)).applied
    table = world.store.members()
    assert table.epoch == 2 and "KZ" not in table.pins() and table.node_key("KZ") is None
    assert [m.code for m in table.active()] == ["AM", "BY", "KG", "RU"]
    assert table == governed_membership(world.store.db, world.genesis)


def test_raft_accepts_certificates_only_in_increasing_epochs(tmp_path: Path) -> None:
    """The judge's order rule: a change follows the one before it only with a higher
    epoch, so a certificate Raft carried out cannot be carried out again."""
    world = World(tmp_path)
    quorum = ("AM", "BY", "KG", "RU")

    def cert(action: Action, epoch: int, **kw: Any) -> bytes:
        p = _proposal(world, action, epoch=epoch, **kw)
        return certificate_bytes(p.canonical_bytes(), _cosigned(world, p, quorum))

    remove0, add1 = cert(Action.REMOVE_NODE, 0), cert(Action.ADD_NODE, 1, node=NEW_NODE)
    assert certificate_epoch(remove0) == 0 and certificate_epoch(add1) == 1
    assert conf_change_follows(b"", remove0)
    assert conf_change_follows(remove0, add1)
    assert not conf_change_follows(add1, remove0)  # the replay
    assert not conf_change_follows(remove0, remove0)
    assert not conf_change_follows(b"", b"junk")
    params = _proposal(world, Action.SET_PARAMS, params={"block_bytes_max": 1024})
    assert certificate_epoch(certificate_bytes(params.canonical_bytes(), [])) is None


def test_a_replaced_node_key_attests_for_its_state_in_the_store_and_the_audit(tmp_path: Path) -> None:
    """Once governance replaced KZ's node key, the store keeps KZ's attestations under
    the new key and refuses the old one's; the auditor, replaying, accepts both where
    each was in force. Before, the store checked genesis's key only."""
    from ledger import Attestation, Auditor

    world = World(tmp_path / "db")
    quorum = ("AM", "BY", "KG", "RU")
    replace = _proposal(world, Action.REPLACE_NODE, node=NEW_NODE)
    assert _submit(world, replace, _cosigned(world, replace, quorum)).applied
    world.register("KZ", ["retailer"], "After the replacement")
    header = world.store.header(world.store.head.height)
    assert header is not None
    verifier = Verifier()
    old = Attestation.make(world.node_key("KZ"), CHAIN_ID, "KZ", header)
    new = Attestation.make(seeded_key("node-KZ-new"), CHAIN_ID, "KZ", header)
    assert not world.store.add_attestation(old, verifier)
    assert world.store.add_attestation(new, verifier)
    for state in ("AM", "BY", "RU"):
        assert world.store.add_attestation(Attestation.make(world.node_key(state), CHAIN_ID, state, header), verifier)
    world.store.close()
    with Auditor(world.genesis, tmp_path / "replica") as auditor:
        report = auditor.verify_data_dir(tmp_path / "db")
    assert report.ok, report.to_json()
    assert header.height not in report.unattested

"""The finality rule (a Byzantine quorum of attestations) and equivocation evidence."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ledger import (
    Attestation,
    DecodeError,
    Evidence,
    LedgerStore,
    ProofError,
    Verifier,
    byzantine_quorum,
    faults_tolerated,
    final_states,
    finality_quorum,
    finality_verdict,
    inclusion_proof,
    not_final_heights,
    provenance,
    verify_inclusion_proof,
    verify_provenance,
)
from ledger._encoding import pack

from .test_chain import attest_all, build_chain
from .world import World, make_genesis, seeded_key

# n -> (f, quorum): 1 of 1, 2 of 2, 2 of 3, 3 of 4, 4 of 5, 4 of 6, 5 of 7.
EXPECTED = {1: (0, 1), 2: (0, 2), 3: (0, 2), 4: (1, 3), 5: (1, 4), 6: (1, 4), 7: (2, 5)}


@pytest.mark.parametrize("n", range(1, 8))
def test_quorum_sizes_and_any_two_quorums_share_f_plus_one_states(n: int) -> None:
    """For n = 1..7: the quorum is ceil((n+f+1)/2), and every two quorums intersect in f+1 states."""
    f, quorum = EXPECTED[n]
    assert faults_tolerated(n) == f
    assert finality_quorum(n) == quorum == byzantine_quorum(n)
    states = range(n)
    for a, b in itertools.combinations(list(itertools.combinations(states, quorum)), 2):
        assert len(set(a) & set(b)) >= f + 1, (n, a, b)
    # And no quorum is so small that two of them may share only hostile states.
    assert 2 * quorum - n >= f + 1


def test_a_majority_is_not_final_with_five_states() -> None:
    """Three of five attestations (a majority) do not make a block final; four do."""
    genesis = make_genesis()
    assert genesis.raft_majority == 3 and finality_quorum(5) == 4
    assert not final_states(genesis, ["AM", "BY", "KZ"])
    assert final_states(genesis, ["AM", "BY", "KZ", "KG"])
    assert not final_states(genesis, ["AM", "BY", "KZ", "XX"])  # not a member: not counted


def _atts(genesis, height: int, block_hash: bytes, states) -> list[Attestation]:
    from ledger._chain import attestation_message
    from ledger._identity import DOMAIN_ATTESTATION
    message = attestation_message(height, 0, block_hash)
    return [Attestation(s, height, 0, block_hash,
                        seeded_key(f"node-{s}").sign(DOMAIN_ATTESTATION, genesis.chain_id, message))
            for s in states]


def test_the_verdict_counts_distinct_valid_states_for_one_hash() -> None:
    """A verdict counts each state once, refuses another block's or a forged attestation."""
    genesis, verifier = make_genesis(), Verifier()
    h = b"\x11" * 32
    four = _atts(genesis, 7, h, ["AM", "BY", "KZ", "KG"])
    assert finality_verdict(genesis, 7, 0, h, four, verifier).final
    assert not finality_verdict(genesis, 7, 0, h, four[:3] + four[:1], verifier).final  # AM twice
    other = _atts(genesis, 7, b"\x22" * 32, ["RU"])
    assert finality_verdict(genesis, 7, 0, h, four + other, verifier).problem is not None
    # The same hash in another round is another block: it does not count towards this one.
    assert finality_verdict(genesis, 7, 1, h, four, verifier).problem is not None
    forged = Attestation("RU", 7, 0, h, b"\x00" * 64)
    verdict = finality_verdict(genesis, 7, 0, h, four[:3] + [forged], verifier)
    assert not verdict.final and "does not verify" in (verdict.problem or "")


def test_proofs_and_bundles_refuse_blocks_with_only_a_majority(tmp_path: Path) -> None:
    """An inclusion proof or bundle whose blocks three of five attest is refused as not final."""
    world, facts = build_chain(tmp_path / "chain")
    world.store.close()
    store = LedgerStore(tmp_path / "chain", world.genesis, sync=False)
    try:
        proof = inclusion_proof(store, facts["ship"].id)
        bundle = provenance(store, facts["codes"][0])
    finally:
        store.close()
    assert proof is not None and bundle is not None
    three = type(proof)(proof.header, proof.attestations[:3], *proof.to_list()[2:4], proof.document_path,
                        proof.result, proof.result_path)
    with pytest.raises(ProofError, match="not final.*Byzantine quorum of 4"):
        verify_inclusion_proof(three, world.genesis)
    assert not_final_heights(bundle, world.genesis) == []
    cut = type(bundle)(bundle.code, bundle.genesis_hash,
                       [type(e)(e.header, e.attestations[:3], e.position, e.document, e.document_path,
                       e.result, e.result_path) if i == 1 else e
                        for i, e in enumerate(bundle.entries)], bundle.registrations)
    assert not_final_heights(cut, world.genesis) == [bundle.entries[1].header.height]
    with pytest.raises(ProofError, match="not final"):
        verify_provenance(cut, world.genesis)


def test_an_auditor_counts_final_only_with_a_byzantine_quorum(tmp_path: Path) -> None:
    """The audit report's final height stops below blocks that only a majority attests."""
    from ledger import Auditor
    world = World(tmp_path / "w")
    world.apply()
    world.apply()
    attest_all(world, ("AM", "BY", "KZ", "KG"))
    world.apply()
    header = world.store.header(3)
    assert header is not None
    for state in ("AM", "BY", "KZ"):
        assert world.store.add_attestation(
            Attestation.make(world.node_key(state), world.genesis.chain_id, state, header), Verifier())
    world.store.close()
    auditor = Auditor(world.genesis, tmp_path / "replica")
    try:
        report = auditor.verify_data_dir(tmp_path / "w")
    finally:
        auditor.close()
    assert report.final_height == 2 and report.unattested == [3]


def test_evidence_is_canonical_and_verifies_with_genesis_alone() -> None:
    """Two attestations by one state for two hashes at one height verify as evidence, in either order."""
    genesis, verifier = make_genesis(), Verifier()
    (a,) = _atts(genesis, 9, b"\x01" * 32, ["RU"])
    (b,) = _atts(genesis, 9, b"\x02" * 32, ["RU"])
    one, two = Evidence.of(a, b), Evidence.of(b, a)
    assert one == two and one.id == two.id and one.state == "RU" and one.height == 9
    assert one.verify(genesis, verifier)
    assert Evidence.decode(one.encode()) == one
    assert one.to_json()["attestations"][0]["block_hash"] == "01" * 32


def test_evidence_refuses_what_is_not_a_conflict_or_not_signed() -> None:
    """No evidence from one hash twice, two states, two heights, two rounds, a forged signature or junk bytes."""
    genesis, verifier = make_genesis(), Verifier()
    (a,) = _atts(genesis, 9, b"\x01" * 32, ["RU"])
    (same,) = _atts(genesis, 9, b"\x01" * 32, ["RU"])
    (other_state,) = _atts(genesis, 9, b"\x02" * 32, ["KZ"])
    (other_height,) = _atts(genesis, 10, b"\x02" * 32, ["RU"])
    # Another hash in a later round is what the round rule lets an honest node sign.
    other_round = Attestation("RU", 9, 1, b"\x02" * 32, b"\x00" * 64)
    for b in (same, other_state, other_height, other_round):
        with pytest.raises(ValueError):
            Evidence.of(a, b)
    forged = Evidence.of(a, Attestation("RU", 9, 0, b"\x02" * 32, b"\x00" * 64))
    assert not forged.verify(genesis, verifier)
    good = Evidence.of(a, _atts(genesis, 9, b"\x02" * 32, ["RU"])[0])
    swapped = pack([2, good.second.to_list(), good.first.to_list()])
    # Version 1 (attestations without a round) and unknown versions do not decode.
    for junk in (b"", b"\xc1", swapped, good.encode() + b"\x00", pack([2, [], []]), b"\x91" * 600,
                 pack([1, good.first.to_list(), good.second.to_list()]),
                 pack([3, good.first.to_list(), good.second.to_list()])):
        with pytest.raises(DecodeError):
            Evidence.decode(junk)


def test_a_clear_evidence_document_records_the_height_it_clears_below(tmp_path: Path) -> None:
    """A CLEAR_EVIDENCE certificate for KZ (4 of 5 regulators) records the height of its
    block: evidence about lower heights no longer holds; three regulators clear nothing."""
    from ledger import Action, DocType, evidence_cleared_below, make_proposal

    from .world import CHAIN_ID

    world = World(tmp_path / "w")
    world.apply()
    assert evidence_cleared_below(world.store.db, "KZ") == 0

    def submit(nonce: int, signers: tuple[str, ...]) -> object:
        proposal = make_proposal(CHAIN_ID, Action.CLEAR_EVIDENCE, "KZ", nonce, world.time_ms + 60_000)
        signatures = [proposal.sign(world.regulator(s)).to_list() for s in signers]
        doc = world.doc(world.regulator("AM"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                        signatures=signatures)
        (result,) = world.apply(doc)
        return result

    assert not submit(1, ("AM", "BY", "KZ")).applied
    assert evidence_cleared_below(world.store.db, "KZ") == 0
    assert submit(2, ("AM", "BY", "KZ", "KG")).applied
    height = world.store.head.height
    assert evidence_cleared_below(world.store.db, "KZ") == height
    assert evidence_cleared_below(world.store.db, "RU") == 0

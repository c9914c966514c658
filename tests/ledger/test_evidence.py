"""Leader-signed appends: two for different entries at one (term, index) prove equivocation."""

from __future__ import annotations

import pytest

from ledger import (
    AppendEquivocation,
    DecodeError,
    EvidenceRefused,
    SignedAppend,
    Verifier,
    pack,
    unpack_untrusted,
)

from .world import CHAIN_ID, make_genesis, seeded_key

GENESIS = make_genesis()


def signed(state: str, term: int, index: int, data: bytes, key_of: str | None = None) -> SignedAppend:
    return SignedAppend.make(seeded_key(f"node-{key_of or state}"), CHAIN_ID, state, term, index, data)


def test_two_signed_appends_for_different_entries_prove_the_leader_hostile() -> None:
    """Checked with genesis alone: the proof names the state whose node signed both."""
    proof = AppendEquivocation(signed("KZ", 7, 42, b"to-AM-BY"), signed("KZ", 7, 42, b"to-KG-RU"))
    assert proof.check(GENESIS, Verifier()) == "KZ"


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        (signed("KZ", 7, 42, b"a"), signed("KZ", 7, 42, b"a"), "same entry"),
        (signed("KZ", 7, 42, b"a"), signed("KZ", 7, 43, b"b"), r"different \(term, index\)"),
        (signed("KZ", 7, 42, b"a"), signed("KZ", 8, 42, b"b"), r"different \(term, index\)"),
        (signed("KZ", 7, 42, b"a"), signed("RU", 7, 42, b"b"), "different states"),
        # A state cannot be framed: a statement signed with another state's key fails.
        (signed("KZ", 7, 42, b"a"), signed("KZ", 7, 42, b"b", key_of="RU"), "does not verify"),
        (signed("XX", 7, 42, b"a"), signed("XX", 7, 42, b"b"), "does not verify"),
    ],
)
def test_what_proves_nothing_is_refused_with_a_reason(first: SignedAppend, second: SignedAppend, why: str) -> None:
    """Same entry, other slot, two states, a forged or unknown signer: EvidenceRefused."""
    with pytest.raises(EvidenceRefused, match=why):
        AppendEquivocation(first, second).check(GENESIS, Verifier())


def test_a_signature_over_another_chain_does_not_count() -> None:
    """The chain id is in the signed bytes: a statement made for another chain fails here."""
    other = SignedAppend.make(seeded_key("node-KZ"), "another-chain", "KZ", 7, 42, b"b")
    with pytest.raises(EvidenceRefused, match="does not verify"):
        AppendEquivocation(signed("KZ", 7, 42, b"a"), other).check(GENESIS, Verifier())


def test_evidence_round_trips_canonically_and_bad_bytes_are_refused() -> None:
    """One equivocation has one encoding whichever order it was found in; malformed
    evidence from a peer is a DecodeError, never an exception of another kind."""
    a, b = signed("KZ", 7, 42, b"x"), signed("KZ", 7, 42, b"y")
    one, two = AppendEquivocation(a, b), AppendEquivocation(b, a)
    assert pack(one.to_list()) == pack(two.to_list())
    back = AppendEquivocation.from_list(unpack_untrusted(pack(one.to_list())))
    assert back.check(GENESIS, Verifier()) == "KZ"
    for bad in (None, [], ["append-equivocation", [], []], ["x", a.to_list(), b.to_list()],
                ["append-equivocation", a.to_list()[:4], b.to_list()],
                ["append-equivocation", ["KZ", -1, 42, a.entry_hash, a.signature], b.to_list()],
                ["append-equivocation", ["KZ", True, 42, a.entry_hash, a.signature], b.to_list()],
                ["append-equivocation", ["KZ", 7, 42, b"short", a.signature], b.to_list()]):
        with pytest.raises(DecodeError):
            AppendEquivocation.from_list(bad)

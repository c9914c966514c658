"""The round rule (ledger/_rounds.py): a hostile leader's split never makes two final blocks, and the honest states can finalize a replacement."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import pytest

from ledger import Attestation, RoundBook, Verdict, byzantine_quorum, faults_tolerated, proof_bound

X, Y, Z = b"X" * 32, b"Y" * 32, b"Z" * 32


def att(state: str, height: int, round_: int, block_hash: bytes) -> Attestation:
    return Attestation(state, height, round_, block_hash, b"")  # the book holds verified ones


def book_of(states: Iterable[str], atts: Iterable[Attestation] = ()) -> RoundBook:
    book = RoundBook(states)
    for a in atts:
        book.add(a)
    return book


FIVE = ("AM", "BY", "KZ", "KG", "RU")


def test_rule_one_never_a_lower_round_nor_a_second_hash_in_one_round() -> None:
    """An honest state never attests a lower round than before at a height, nor two hashes in one round."""
    book = book_of(FIVE, [att("AM", 3, 5, X)])
    assert book.verdict("AM", 3, (5, X)) is Verdict.SIGN  # the same block again
    assert book.verdict("AM", 3, (4, Z)) is Verdict.NEVER
    assert book.verdict("AM", 3, (5, Z)) is Verdict.NEVER
    assert book.verdict("AM", 3, (6, Z)) is Verdict.WAIT  # later round, X not proven dead
    assert book.verdict("BY", 3, (6, Z)) is Verdict.SIGN  # BY attested nothing at 3


def test_the_split_of_five_is_unlocked_by_three_other_attestations() -> None:
    """After a 2/2 split where the hostile leader attests both, X is dead (2 + 1 < 4) and AM attests Z."""
    split = [att("AM", 1, 2, X), att("BY", 1, 2, X), att("KG", 1, 2, Y), att("RU", 1, 2, Y),
             att("KZ", 1, 2, X), att("KZ", 1, 2, Y)]
    book = RoundBook(FIVE)
    rivals = [book.add(a) for a in split]
    assert rivals[-1] == split[-2]  # KZ's two hashes in round 2: evidence
    assert book.proven_dead(1, (2, X)) and book.proven_dead(1, (2, Y))
    assert book.verdict("AM", 1, (3, Z)) is Verdict.SIGN


def test_a_hostile_state_on_one_side_only_needs_evidence_to_unlock_it() -> None:
    """KZ attests only X: Y is dead, but X is not (KG or RU might be the hostile one) until evidence names KZ."""
    book = book_of(FIVE, [att("AM", 1, 2, X), att("BY", 1, 2, X), att("KZ", 1, 2, X),
                          att("KG", 1, 2, Y), att("RU", 1, 2, Y)])
    assert book.proven_dead(1, (2, Y))
    assert book.verdict("AM", 1, (3, Z)) is Verdict.WAIT
    # Z attested in round 3 by KG and RU (they were free: Y is dead) does not change X:
    book.add(att("KG", 1, 3, Z))
    book.add(att("RU", 1, 3, Z))
    assert book.verdict("AM", 1, (3, Z)) is Verdict.WAIT
    # Evidence against KZ: at most f - 1 = 0 hostile states among KG and RU.
    assert book.verdict("AM", 1, (3, Z), hostile={"KZ"}) is Verdict.SIGN
    assert proof_bound(5, 2) == 4 and proof_bound(5, 2, known_hostile_outside=1) == 3


def test_a_final_block_may_always_be_attested() -> None:
    """Whatever a state attested at a height, a block a quorum attests there may be signed."""
    book = book_of(FIVE, [att("AM", 1, 5, X)] + [att(s, 1, 4, Z) for s in ("BY", "KZ", "KG", "RU")])
    assert book.is_final(1, (4, Z)) and book.verdict("AM", 1, (4, Z)) is Verdict.SIGN


def test_rule_three_the_parent_first_and_a_dead_parent_kills_its_children() -> None:
    """A block waits until its parent is attested by the state (or final); a child of a dead block is dead."""
    book = book_of(FIVE, [att("AM", 1, 2, X), att("AM", 2, 2, b"x" * 32)])
    book.link(2, (2, b"x" * 32), (2, X))
    assert book.verdict("BY", 2, (3, b"z" * 32), parent=(3, Z)) is Verdict.WAIT  # BY never attested Z
    book.add(att("BY", 1, 3, Z))
    assert book.verdict("BY", 2, (3, b"z" * 32), parent=(3, Z)) is Verdict.SIGN
    # X dies at height 1 (three others attested Z in round 3): AM's block at 2 dies with it.
    assert not book.proven_dead(2, (2, b"x" * 32))
    for s in ("KZ", "KG"):
        book.add(att(s, 1, 3, Z))
    assert book.proven_dead(1, (2, X)) and book.proven_dead(2, (2, b"x" * 32))
    assert book.verdict("AM", 2, (3, b"z" * 32)) is Verdict.SIGN


def test_the_book_keeps_two_rounds_per_state_and_forgets_old_heights() -> None:
    """A state that signs many rounds at one height costs two entries; heights below a floor go."""
    book = RoundBook(FIVE)
    for r in range(100):
        book.add(att("KZ", 1, r, bytes([r % 256]) * 32))
    assert book.votes(1, "KZ") == [(99, bytes([99]) * 32), (98, bytes([98]) * 32)]
    assert book.add(att("XX", 1, 1, X)) is None and book.size() == 2  # not a member
    book.add(att("AM", 2, 1, X))
    book.forget_below(2)
    assert book.heights() == [2]


# -- the table: n = 1..7, every split a hostile leader can make ---------------------------


def _final(atts: Sequence[Attestation], quorum: int) -> set[tuple[int, bytes]]:
    by_block: dict[tuple[int, bytes], set[str]] = {}
    for a in atts:
        by_block.setdefault((a.round, a.block_hash), set()).add(a.state)
    return {block for block, states in by_block.items() if len(states) >= quorum}


def split_outcome(n: int, hostile: int, sides: Sequence[int], hostile_attests: str) -> set[tuple[int, bytes]]:
    """The leader splits the honest states at height 1, round 1 (side 0: X, 1: Y, 2: nothing);
    the hostile states attest X and/or Y (and Z); then every honest state tries Z in round 2
    until nothing changes, seeing every attestation. The final blocks at height 1."""
    states = [f"S{i}" for i in range(n)]
    bad, good = states[:hostile], states[hostile:]
    atts = [att(s, 1, 1, (X, Y)[side]) for s, side in zip(good, sides, strict=True) if side < 2]
    for s in bad:
        atts += [att(s, 1, 1, h) for h in ((X, Y) if hostile_attests == "both" else (X,))]
        atts += [att(s, 1, 2, Z)] if hostile_attests == "both" else []
    book = book_of(states, atts)  # every state sees every attestation
    changed = True
    while changed:
        changed = False
        for s in good:
            if (2, Z) not in book.votes(1, s) and book.verdict(s, 1, (2, Z), hostile=bad) is Verdict.SIGN:
                atts.append(att(s, 1, 2, Z))
                book.add(atts[-1])
                changed = True
    return _final(atts, byzantine_quorum(n))


# n -> (splits checked, of which some block at the height ends final, of which the
# replacement Z is): every hostile count 0..f, both modes, each split as counts of
# honest states per side. Every split is safe; those left without a final block are
# where the honest states of one side cannot prove their block dead (it might still
# gather a quorum if up to f of the others were hostile): they wait, as they must.
SPLITS = {1: (6, 6, 2), 2: (12, 12, 8), 3: (20, 20, 8), 4: (50, 38, 16), 5: (72, 58, 36),
          6: (98, 81, 36), 7: (170, 118, 54)}


@pytest.mark.parametrize("n", range(1, 8))
def test_no_split_by_a_hostile_leader_yields_two_final_blocks_for_n_1_to_7(n: int) -> None:
    """For n = 1..7, 0..f hostile states attesting both sides or one, every split of the honest states: never two final blocks at the height."""
    f = faults_tolerated(n)
    checked = some_final = replaced = 0
    for hostile in range(f + 1):
        # Honest states are alike: a split is a count of them per side (sorted sides).
        for sides in itertools.combinations_with_replacement(range(3), n - hostile):
            for mode in ("both", "x_only"):
                final = split_outcome(n, hostile, sides, mode)
                assert len(final) <= 1, (n, hostile, sides, mode, final)
                checked += 1
                some_final += len(final)
                replaced += (2, Z) in final
    assert (checked, some_final, replaced) == SPLITS[n]


def test_the_five_state_split_of_the_real_test_finalizes_the_replacement() -> None:
    """Five states, KZ hostile, AM+BY on X and KG+RU on Y: Z is final, whether KZ attests both sides or (with evidence) one."""
    assert split_outcome(5, 1, (0, 0, 1, 1), "both") == {(2, Z)}
    assert split_outcome(5, 1, (0, 0, 1, 1), "x_only") == {(2, Z)}


def test_more_than_f_hostile_states_can_make_two_final_blocks() -> None:
    """The bound is tight: with f + 1 hostile of 4, a 1/1 split makes X and Y both final."""
    atts = [att("S0", 1, 1, X), att("S0", 1, 1, Y), att("S1", 1, 1, X), att("S1", 1, 1, Y),
            att("S2", 1, 1, X), att("S3", 1, 1, Y)]
    assert _final(atts, byzantine_quorum(4)) == {(1, X), (1, Y)}


def test_the_figures_of_the_split_table() -> None:
    """The smallest k that proves a block dead, per n (the proof's arithmetic): the table in the docstring's terms."""
    need: dict[int, int] = {}
    for n in range(1, 8):
        q = byzantine_quorum(n)
        need[n] = next(k for k in range(n + 1) if proof_bound(n, k) < q)
    assert need == {1: 1, 2: 1, 3: 2, 4: 3, 5: 3, 6: 4, 7: 5}

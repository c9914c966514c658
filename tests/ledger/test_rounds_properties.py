"""Random attestation sequences: states that follow the round rule and at most f hostile states that sign anything never make two final blocks at one height."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Attestation, RoundBook, Verdict, byzantine_quorum, faults_tolerated

pytestmark = __import__("pytest").mark.sim

# Few blocks, so that random scripts often attest the same ones: two heights (the
# parent rule), two rounds (a split and its replacement), two blocks per round
# (a hostile leader's two versions).
HEIGHTS = 2
ROUNDS = 2
LABELS = 2

Block = tuple[int, int, int]  # (height, round, label)


def block_hash(b: Block) -> bytes:
    return bytes(b) * 11 + b"\x00" * 2  # 32 bytes, one per block


class Honest:
    """One rule-following state: its own view of the attestations (what reached it)."""

    def __init__(self, name: str, states: list[str]) -> None:
        self.name = name
        self.book = RoundBook(states)
        self.hostile: set[str] = set()  # states it holds evidence against

    def learn(self, att: Attestation) -> None:
        if self.book.add(att) is not None:
            self.hostile.add(att.state)  # two hashes in one round: evidence

    def apply(self, b: Block, parent: Block | None) -> Attestation | None:
        """It applied block b (on parent): attest it if the rule says so."""
        height, round_, _ = b
        vote = (round_, block_hash(b))
        parent_vote = (parent[1], block_hash(parent)) if parent is not None else None
        if parent_vote is not None:
            self.book.link(height, vote, parent_vote)
        if self.book.verdict(self.name, height, vote, parent_vote, self.hostile) is not Verdict.SIGN:
            return None
        att = Attestation(self.name, height, round_, block_hash(b), b"")
        self.learn(att)
        return att


def final_blocks(pool: list[Attestation], quorum: int) -> dict[int, set[tuple[int, bytes]]]:
    by_block: dict[tuple[int, int, bytes], set[str]] = {}
    for a in pool:
        by_block.setdefault(a.block, set()).add(a.state)
    out: dict[int, set[tuple[int, bytes]]] = {}
    for (h, r, bh), states in by_block.items():
        if len(states) >= quorum:
            out.setdefault(h, set()).add((r, bh))
    return out


blocks = st.tuples(st.integers(1, HEIGHTS), st.integers(1, ROUNDS), st.integers(0, LABELS - 1))
# A step: an honest state applies a block after learning all, some or none of the
# attestations made so far; or a hostile state signs a block.
events = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["apply_seeing_all", "apply_seeing_one", "apply_seeing_none"]),
                  st.integers(0, 6), blocks, st.integers(0, 10_000)),
        st.tuples(st.just("hostile"), st.integers(0, 6), blocks, st.just(0)),
    ),
    max_size=60,
)
EVERY_BLOCK = [(h, r, label) for h in range(1, HEIGHTS + 1) for r in range(1, ROUNDS + 1) for label in range(LABELS)]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.sampled_from([1, 2, 3, 4, 4, 5, 5, 5, 5, 6, 7]), data=st.data(), script=events)
def test_no_two_final_blocks_at_one_height_with_at_most_f_hostile(n: int, data: st.DataObject,
                                                                   script: list[tuple[str, int, Block, int]]) -> None:
    """Honest states follow the rule on what reached them; hostile ones (<= f) sign any block: no two final blocks at one height."""
    f = faults_tolerated(n)
    hostile_count = data.draw(st.integers(0, f), label="hostile")
    states = [f"S{i}" for i in range(n)]
    hostile, honest_names = states[:hostile_count], states[hostile_count:]
    honest = [Honest(s, states) for s in honest_names]
    # Each block extends one block a height below, of a round not above its own.
    parents: dict[Block, Block] = {}
    for h in range(2, HEIGHTS + 1):
        for r in range(1, ROUNDS + 1):
            for label in range(LABELS):
                parents[(h, r, label)] = (h - 1, data.draw(st.integers(1, r)), data.draw(st.integers(0, LABELS - 1)))
    quorum = byzantine_quorum(n)
    pool: list[Attestation] = []
    if hostile and data.draw(st.booleans(), label="hostile signs every block"):
        pool += [Attestation(s, b[0], b[1], block_hash(b), b"") for s in hostile for b in EVERY_BLOCK]
    for kind, who, b, pick in script:
        if kind == "hostile":
            if hostile:
                pool.append(Attestation(hostile[who % len(hostile)], b[0], b[1], block_hash(b), b""))
        elif honest:
            node = honest[who % len(honest)]
            seen = pool if kind == "apply_seeing_all" else pool[pick % len(pool):][:1] if pool and \
                kind == "apply_seeing_one" else []
            for att in seen:
                node.learn(att)
            made = node.apply(b, parents.get(b))
            if made is not None:
                pool.append(made)
        for height, final in final_blocks(pool, quorum).items():
            assert len(final) == 1, (n, hostile_count, height, final)

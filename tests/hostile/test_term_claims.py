"""A hostile state's signed appends for the honest leader's term stall nothing (issue 11).

Two different appends signed by one state at one (term, index) prove it equivocated as
leader, and honest nodes refuse that term (no campaign, no vote, its entries above the
final block dropped: `consensus.Config.term_refused`), so that no honest leader is ever
elected in a term a hostile node claimed. But a hostile state can sign such a pair for
any term, the honest leader's own included; the honest leader must go on. Two guards
give that, each enough alone (this test passes with either one disabled): a node refuses
no term it follows another leader in (`Defence.claimed_term`), and the entries of the
leader it follows in that very term are never refused (`Defence.entry_refused`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus import Entry, EntryType, LogIndex, Term
from ledger import AppendEquivocation
from node._gossip import evidence_item
from testnet import poll_until

from .world import HOSTILE, World, build_world

pytestmark = pytest.mark.process

DETECT_TIMEOUT_S = 20.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build_world(tmp_path / "net")
    try:
        yield w
    finally:
        w.close()


def test_self_incriminating_appends_for_the_honest_leaders_term_do_not_stall_it(world: World) -> None:
    w = world
    w.submit_acked(w.honest[0])
    leader = w.leader()
    term = int(w.status(leader)["term"])
    index = int(w.status(leader)["commit_index"]) + 2
    signed = [w.h.sign_append(Entry(Term(term), LogIndex(index), EntryType.NORMAL, data)) for data in (b"1", b"2")]
    first, second = sorted(signed, key=lambda a: a.entry_hash)  # the canonical order
    for state in w.honest:
        w.h.gossip(state, [evidence_item(AppendEquivocation(first, second))])

    def proof_held() -> bool:
        return all(HOSTILE in w.status(s)["evidence"]["against"] for s in w.honest)

    poll_until(proof_held, DETECT_TIMEOUT_S, "every honest node to hold the append evidence")
    # The honest leader's term goes on: documents through each honest node commit (each
    # within the world's commit bound), in the same term.
    for state in w.honest:
        w.submit_acked(state)
    assert int(w.status(leader)["term"]) == term, "the honest leader's term ended"

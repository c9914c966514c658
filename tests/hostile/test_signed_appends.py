"""Leader-signed appends against a hostile leader on real node processes (issue 11).

The hostile-peer harness holds KZ's real identity (its node key included) on a three-state
testnet (tests/hostile/world.py). An append whose entries lack a valid signature of the
sender's node key — none, a random one, or KZ's signature over another entry — is
dropped whole by every honest node and counted, and changes nothing (no term jump, no
entry). An equivocating leader that signs two different entries at one (term, index),
one for each follower, is caught as an `AppendEquivocation` by every honest node from
the headers the followers gossip, before any block at that index is attested (the
hostile append does not even commit); the honest nodes then refuse KZ, elect an honest
leader and go on committing; a CLEAR_EVIDENCE governance document clears the proof.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from consensus import Entry, EntryType, LogIndex, Message, MessageType, NodeId, Term, encode_message
from ledger import Action, AppendEquivocation, DocType, Verifier, decode_evidence, make_proposal
from node import SyncNodeClient
from node._appends import pack_envelope
from node._pipeline import encode_entry
from testnet import poll_until

from .harness import block_entry
from .world import COMMIT_TIMEOUT_S, HOSTILE, World, build_world

pytestmark = pytest.mark.process

DROP_TIMEOUT_S = 15.0
DETECT_TIMEOUT_S = 20.0
LEADER_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("signed-appends") / "net")
    try:
        yield w
    finally:
        w.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def node_id(w: World, state: str) -> NodeId:
    return NodeId(w.net.genesis.state(state).node_id)


def hostile_append(w: World, state: str, term: int, data: bytes) -> Message:
    """An append in a new term after the follower's commit index, committing it at once."""
    view = w.status(state)
    prev_index, prev_term = int(view["commit_index"]), int(view["term"])
    entry = block_entry(prev_index + 1, term, data)
    return Message(MessageType.APP, to=node_id(w, state), frm=w.h.node_id, term=Term(term),
                   log_term=Term(prev_term), index=LogIndex(prev_index), entries=(entry,),
                   commit=LogIndex(prev_index + 1))


def unsigned(w: World, m: Message) -> bytes:
    return encode_message(m)


def random_signature(w: World, m: Message) -> bytes:
    return pack_envelope(encode_message(m), [os.urandom(64)])


def signed_over_another_entry(w: World, m: Message) -> bytes:
    entry = m.entries[0]
    other = Entry(entry.term, entry.index, EntryType.NORMAL, entry.data + b" (another)")
    return pack_envelope(encode_message(m), [w.h.sign_append(other).signature])


BAD = [
    (unsigned, "append_unsigned"),
    (random_signature, "append_signature"),
    (signed_over_another_entry, "append_signature"),
]


@pytest.mark.parametrize(("make", "reason"), BAD, ids=[make.__name__ for make, _ in BAD])
def test_an_append_without_the_leaders_valid_signature_is_dropped_counted_and_changes_nothing(
        world: World, make: Callable[[World, Message], bytes], reason: str) -> None:
    """Every honest node drops it whole under its reason; its term and log do not move;
    the network goes on (the world's invariants)."""
    w = world
    before_docs = [w.submit_acked(s) for s in w.honest]
    w.h.quiesce()
    before = {s: w.status(s) for s in w.honest}
    drops = {s: w.metric(s, "tamga_peer_drops_total", reason=reason) for s in w.honest}
    term = max(int(v["term"]) for v in before.values()) + 1
    for state in w.honest:
        data = encode_entry(now_ms(), HOSTILE, [])
        w.h.send_items(state, "raft", [make(w, hostile_append(w, state, term, data))])
    for state in w.honest:
        poll_until(lambda s=state: w.metric(s, "tamga_peer_drops_total", reason=reason) >= drops[s] + 1,
                   DROP_TIMEOUT_S, f"{state} to count the append as {reason}")
        view = w.status(state)
        assert int(view["term"]) < term, f"{state} followed the unsigned append's term"
        assert view["leader_state"] != HOSTILE
    w.check_invariants(before_docs)
    for state in w.honest:
        assert w.status(state)["evidence"]["against"] == [], "a bad signature is no evidence"


def equivocate(w: World, datas: dict[str, bytes]) -> tuple[int, int]:
    """KZ claims a new term towards each honest node with its own entry at one index,
    both signed by KZ's node key, not committed: (term, index). Whether Raft takes them
    does not matter: a follower checks and keeps the signed statement first (and the
    first follower to see the conflict refuses KZ before it answers)."""
    prev_term, prev_index = w.h.quiesce()
    term = prev_term + 1
    w.h.clear_inbox()
    for state, data in datas.items():
        w.h.send_raft(state, [Message(
            MessageType.APP, to=node_id(w, state), frm=w.h.node_id, term=Term(term),
            log_term=Term(prev_term), index=LogIndex(prev_index),
            entries=(block_entry(prev_index + 1, term, data),), commit=LogIndex(prev_index))])
    return term, prev_index + 1


def test_an_equivocating_leader_is_caught_by_every_honest_node_before_anything_is_attested(
        world: World) -> None:
    """Two signed entries at one (term, index), one per follower: each follower gossips
    the header it took, each finds the other's, and every honest node holds an
    AppendEquivocation against KZ that verifies against genesis alone; no honest node
    attested a block at that index (it never committed); the honest nodes refuse KZ,
    elect one of themselves and commit; clearing the evidence by governance works."""
    w = world
    before_docs = [w.submit_acked(s) for s in w.honest]
    heights = {s: int(w.status(s)["height"]) for s in w.honest}
    at_ms = now_ms()
    a, b = w.honest
    term, index = equivocate(w, {a: encode_entry(at_ms, HOSTILE, []), b: encode_entry(at_ms + 1, HOSTILE, [])})
    w.h.heartbeat(term)
    started = time.monotonic()
    try:
        for state in w.honest:
            poll_until(lambda s=state: HOSTILE in w.status(s)["evidence"]["against"], DETECT_TIMEOUT_S,
                       f"{state} to hold evidence against {HOSTILE}")
        detected_s = time.monotonic() - started
        for state in w.honest:
            pieces = [p for p in w.http(state, "GET", "/v1/evidence").json()["evidence"]
                      if p["kind"] == "append_equivocation"]
            assert [(p["state"], p["term"], p["index"]) for p in pieces] == [(HOSTILE, term, index)], pieces
            raw = bytes.fromhex(w.http(state, "GET", f"/v1/evidence/{pieces[0]['id']}").json()["bytes"])
            proof = decode_evidence(raw)
            assert isinstance(proof, AppendEquivocation) and proof.check(w.net.genesis, Verifier()) == HOSTILE
        # Caught before anything at the split was attested: neither hostile block ever
        # applied (nor could it be attested) on an honest node.
        hostile_blocks_applied(w, heights)
    finally:
        w.h.stop_heartbeat()

    def honest_leader() -> bool:
        views = [w.status(s) for s in w.honest]
        leaders = {v.get("leader_state") for v in views}
        # At or above the hostile term: an honest node that refused KZ before taking its
        # append never entered that term and may be elected in it.
        return len(leaders) == 1 and leaders.pop() in w.honest and all(int(v["term"]) >= term for v in views)

    try:
        poll_until(honest_leader, LEADER_TIMEOUT_S, "an honest leader")
    except Exception:
        views = {s: {k: w.status(s).get(k) for k in ("role", "term", "leader_state", "commit_index", "height",
                                                     "final_height")} for s in w.honest}
        raise AssertionError(f"no honest leader (hostile term {term}): {views}; "
                             + " || ".join(w.log_tail(s, 12) for s in w.honest)) from None
    w.check_invariants(before_docs)
    hostile_blocks_applied(w, heights)
    print(f"append equivocation -> evidence on both honest nodes: {detected_s:.2f} s")

    clear_evidence(w)
    for state in w.honest:
        poll_until(lambda s=state: w.status(s)["evidence"]["against"] == [], DETECT_TIMEOUT_S,
                   f"{state} to clear the evidence against {HOSTILE}")


def client(w: World, state: str) -> SyncNodeClient:
    regulator = w.net.regulator(w.honest[0])
    return SyncNodeClient(w.url(state), key=regulator, genesis=w.net.genesis, chain_id=w.net.chain_id)


def hostile_blocks_applied(w: World, heights: dict[str, int]) -> None:
    """Asserts that no honest node holds a block KZ proposed above the heights before the attack."""
    for state in w.honest:
        head = int(w.status(state)["height"])
        if head > heights[state]:
            proposers = {h["proposer"] for h in client(w, state).headers(heights[state] + 1, head)}
            assert HOSTILE not in proposers, f"{state} applied a block of the equivocating leader"


def clear_evidence(w: World) -> None:
    """A CLEAR_EVIDENCE governance document for KZ signed by the honest regulators (a
    Byzantine quorum of three), committed in a term after the equivocation."""
    proposal = make_proposal(w.net.chain_id, Action.CLEAR_EVIDENCE, HOSTILE, time.time_ns(),
                             int(time.time() * 1000) + 600_000)
    signatures = [proposal.sign(w.net.regulator(s)).to_list() for s in w.honest]
    doc = w.docs.doc(w.net.regulator(w.honest[0]), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                     signatures=signatures)
    result = client(w, w.honest[0]).submit(doc, wait=True, timeout_s=COMMIT_TIMEOUT_S)
    assert result.status == "applied", f"clearing the evidence: {result}"

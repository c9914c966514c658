"""Leader-signed appends (issue 11): signed once, checked once, and two make evidence."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from consensus import (
    Entry,
    EntryType,
    LogIndex,
    MalformedMessage,
    Message,
    MessageType,
    NodeId,
    Term,
    encode_message,
)
from ledger import (
    AppendEquivocation,
    DecodeError,
    Evidence,
    Member,
    Membership,
    SignedAppend,
    Verifier,
    decode_evidence,
    entry_hash,
)
from node._appends import (
    AppendRefused,
    AppendSigner,
    SignedAppends,
    entry_digest,
    pack_envelope,
    unwrap,
)
from node._evidence import EvidenceStore
from node._gossip import (
    GOSSIP_APPEND,
    GOSSIP_EVIDENCE,
    MalformedItem,
    append_item,
    decode_item,
    evidence_item,
)

from ..ledger.world import CHAIN_ID, make_genesis, seeded_key

pytestmark = pytest.mark.unit

GENESIS = make_genesis()
KZ, RU = "KZ", "RU"


def key_of(state: str):  # type: ignore[no-untyped-def]
    return seeded_key(f"node-{state}")


def members(removed: tuple[str, ...] = ()) -> Membership:
    return Membership(CHAIN_ID, 0, tuple(
        Member(s.code, s.node_id, s.code not in removed, s.node_public_key, "", "", "") for s in GENESIS.states))


def append(term: int, index: int, *datas: bytes, kind: EntryType = EntryType.NORMAL) -> Message:
    entries = tuple(Entry(Term(term), LogIndex(index + i), kind, d) for i, d in enumerate(datas))
    return Message(MessageType.APP, to=NodeId(5), frm=NodeId(3), term=Term(term), index=LogIndex(index - 1),
                   log_term=Term(term), entries=entries)


class Follower:
    """One follower's SignedAppends with what it gossips and the evidence it builds."""

    def __init__(self, state: str = "AM", table: Membership | None = None) -> None:
        self.gossiped: list[tuple[str, SignedAppend]] = []
        self.evidence: list[AppendEquivocation] = []
        self.drops: list[str] = []
        self.appends = SignedAppends(
            state, CHAIN_ID, lambda: table or members(), Verifier(),
            gossip_others=lambda sender, signed: self.gossiped.append((sender, signed)),
            on_evidence=self.evidence.append, dropped=self.drops.append)


def test_the_leader_signs_each_entry_once_and_bare_messages_stay_bare() -> None:
    """Sent three times (retransmissions, four followers): one signature per (term, index).
    A heartbeat or an append without entries is the bare encoded message, as before."""
    signer = AppendSigner(key_of(KZ), CHAIN_ID, KZ)
    m = append(7, 42, b"block-1", b"block-2")
    items = [signer.wrap(m) for _ in range(3)]
    assert signer.signatures == 2 and len(set(items)) == 1
    message, signatures = unwrap(items[0])
    assert message == m and signatures is not None and len(signatures) == 2
    for entry, signature in zip(m.entries, signatures, strict=True):
        signed = SignedAppend(KZ, entry.term, entry.index, entry_digest(entry), signature)
        assert signed.verify(GENESIS, Verifier())
    heartbeat = Message(MessageType.HEARTBEAT, to=NodeId(5), frm=NodeId(3), term=Term(7))
    empty = append(7, 44)
    for bare in (heartbeat, empty):
        assert signer.wrap(bare) == encode_message(bare) and unwrap(signer.wrap(bare)) == (bare, None)


def test_the_leader_never_signs_two_entries_at_one_term_and_index() -> None:
    """A second, different entry at a (term, index) it signed goes unsigned (followers drop
    it) rather than give anyone a proof against this node."""
    signer = AppendSigner(key_of(KZ), CHAIN_ID, KZ)
    signer.wrap(append(7, 42, b"a"))
    other = append(7, 42, b"b")
    assert signer.wrap(other) == encode_message(other) and signer.refused == 1


def test_the_entry_hash_binds_the_entry_type() -> None:
    """A conf change and a block with the same bytes are different entries."""
    normal = Entry(Term(1), LogIndex(1), EntryType.NORMAL, b"x")
    change = Entry(Term(1), LogIndex(1), EntryType.CONF_CHANGE, b"x")
    assert entry_digest(normal) != entry_digest(change)
    assert entry_digest(normal) == entry_hash(b"\x00x")


def test_a_follower_takes_an_append_only_with_every_entry_signed_by_the_sender() -> None:
    """No signatures, too few, a random one, one over another entry, one by another
    state's key, a removed node's: AppendRefused with the drop counter's reason."""
    m = append(7, 42, b"block-1", b"block-2")
    signer = AppendSigner(key_of(KZ), CHAIN_ID, KZ)
    good = unwrap(signer.wrap(m))[1]
    assert good is not None
    over_other = unwrap(AppendSigner(key_of(KZ), CHAIN_ID, KZ).wrap(append(7, 42, b"other", b"block-2")))[1]
    by_ru = unwrap(AppendSigner(key_of(RU), CHAIN_ID, KZ).wrap(m))[1]
    assert over_other is not None and by_ru is not None
    cases = [
        (None, "append_unsigned"),
        (good[:1], "append_unsigned"),
        ([b"\x00" * 64, good[1]], "append_signature"),
        ([over_other[0], good[1]], "append_signature"),
        (by_ru, "append_signature"),
    ]
    f = Follower()
    for signatures, reason in cases:
        with pytest.raises(AppendRefused) as refused:
            f.appends.check(KZ, m, signatures)
        assert refused.value.reason == reason
    with pytest.raises(AppendRefused, match="no active node key"):
        Follower(table=members(removed=(KZ,))).appends.check(KZ, m, good)
    assert f.gossiped == [] and f.evidence == []
    f.appends.check(KZ, m, good)
    assert [(s, a.index) for s, a in f.gossiped] == [(KZ, 42), (KZ, 43)]


def test_a_retransmitted_append_is_verified_once_and_gossiped_once() -> None:
    m = append(7, 42, b"block-1")
    signatures = unwrap(AppendSigner(key_of(KZ), CHAIN_ID, KZ).wrap(m))[1]
    f = Follower()
    for _ in range(5):
        f.appends.check(KZ, m, signatures)
    assert f.appends.verifications == 1 and len(f.gossiped) == 1


def test_messages_without_entries_and_from_a_refused_leader_pass_unchecked() -> None:
    """Heartbeats need no signature; a leader refused by evidence goes on to Raft, which
    ignores it (Config.leader_refused), without costing a verification."""
    f = Follower()
    f.appends.check(KZ, append(7, 42), None)
    refused = SignedAppends("AM", CHAIN_ID, members, Verifier(), lambda s, a: None, lambda e: None,
                            refused=lambda state: state == KZ)
    refused.check(KZ, append(7, 42, b"x"), None)
    assert refused.verifications == 0


def test_two_followers_on_two_branches_find_the_equivocation_from_each_others_headers() -> None:
    """The leader signs A for AM and B for KG at one (term, index); each gossips what it
    took; each then holds an AppendEquivocation that checks with genesis alone."""
    a, b = append(7, 42, b"branch A"), append(7, 42, b"branch B")
    am, kg = Follower("AM"), Follower("KG")
    am.appends.check(KZ, a, unwrap(_sign_all(a))[1])
    kg.appends.check(KZ, b, unwrap(_sign_all(b))[1])
    (_, header_a), (_, header_b) = am.gossiped[0], kg.gossiped[0]
    kg.appends.receive("AM", header_a)
    am.appends.receive("KG", header_b)
    for f in (am, kg):
        assert len(f.evidence) == 1
        assert f.evidence[0].check(GENESIS, Verifier()) == KZ
        assert (f.evidence[0].term, f.evidence[0].index) == (7, 42)
    assert am.evidence[0].encode() == kg.evidence[0].encode()  # one proof, one encoding
    # Heard again: no second proof, no new verification.
    before = am.appends.verifications
    am.appends.receive("KG", header_b)
    assert len(am.evidence) == 1 and am.appends.verifications == before


def test_a_follower_that_heard_a_header_first_catches_the_leaders_other_entry() -> None:
    """The gossip may arrive before the leader's own append: the conflict is the same."""
    a, b = append(7, 42, b"branch A"), append(7, 42, b"branch B")
    am = Follower("AM")
    am.appends.receive("KG", _header(b))
    am.appends.check(KZ, a, unwrap(_sign_all(a))[1])
    assert len(am.evidence) == 1 and am.gossiped == []  # not gossiped: it was no news


def test_a_gossiped_header_that_does_not_verify_is_dropped_and_counted() -> None:
    """Signed with another key, or naming a removed or unknown state: dropped, counted;
    our own state's headers are ignored (we know what we signed)."""
    f = Follower("AM")
    forged = SignedAppend.make(key_of(RU), CHAIN_ID, KZ, 7, 42, b"x")
    unknown = SignedAppend.make(key_of(RU), CHAIN_ID, "XX", 7, 42, b"x")
    f.appends.receive("RU", forged)
    f.appends.receive("RU", unknown)
    f.appends.receive("RU", SignedAppend.make(key_of("AM"), CHAIN_ID, "AM", 7, 42, b"x"))
    assert f.drops == ["append_gossip", "append_gossip"] and f.evidence == []


def test_append_items_and_append_evidence_items_decode_bounded() -> None:
    """The new gossip kind and the append evidence ride the existing decoders: what a
    node sends comes back equal; malformed ones are MalformedItem or DecodeError."""
    header = _header(append(7, 42, b"x"))
    assert decode_item(append_item(header)) == (GOSSIP_APPEND, header)
    proof = AppendEquivocation(_header(append(7, 42, b"A")), _header(append(7, 42, b"B")))
    kind, back = decode_item(evidence_item(proof))
    assert kind == GOSSIP_EVIDENCE and isinstance(back, AppendEquivocation) and back.id == proof.id
    for bad in ([GOSSIP_APPEND, ["KZ", 7, 42, b"short", b"s" * 64]], [GOSSIP_APPEND, ["KZ", -1, 42]],
                [GOSSIP_APPEND, b"x"], [GOSSIP_APPEND, ["KZ", 7, 42, b"h" * 32, b"s" * 64, 1]]):
        with pytest.raises((MalformedItem, DecodeError)):
            decode_item(msgpack.packb(bad, use_bin_type=True))


def test_append_evidence_decodes_only_in_canonical_form_and_beside_attestation_evidence() -> None:
    """decode_evidence reads either kind; append evidence out of order, about two slots,
    or naming one entry twice is a DecodeError."""
    first, second = _header(append(7, 42, b"A")), _header(append(7, 42, b"B"))
    proof = AppendEquivocation(first, second)
    back = decode_evidence(proof.encode())
    assert isinstance(back, AppendEquivocation) and back.encode() == proof.encode() and back.id == proof.id
    assert proof.to_json()["kind"] == "append_equivocation" and proof.verify(GENESIS, Verifier())
    low, high = sorted([first.to_list(), second.to_list()], key=lambda v: v[3])
    other_slot = _header(append(7, 43, b"B")).to_list()
    for bad in (["append-equivocation", high, low], ["append-equivocation", low, low],
                ["append-equivocation", low, other_slot], ["append-equivocation", low]):
        with pytest.raises(DecodeError):
            decode_evidence(msgpack.packb(bad, use_bin_type=True))
    with pytest.raises(DecodeError):
        decode_evidence(b"\x93" + b"\x00" * 600)
    assert isinstance(decode_evidence(_attestation_evidence().encode()), Evidence)


def test_the_evidence_store_keeps_append_evidence_on_disk_and_clears_it_by_term(tmp_path: Path) -> None:
    """Kept, shown and held against the state; a restart reads it back; a clearing
    block in a later term clears it, and one in the same term too unless the state's
    own node proposed it (it leads that term and may equivocate after it)."""
    proof = AppendEquivocation(_header(append(7, 42, b"A")), _header(append(7, 42, b"B")))
    cleared = {"KZ": 0}
    blocks = {10: (8, "RU"), 11: (7, "KZ"), 12: (7, "RU"), 13: (6, "RU")}
    store = EvidenceStore(tmp_path, GENESIS, Verifier(), cleared_below=lambda s: cleared.get(s, 0),
                          block_at=lambda h: blocks.get(h, (0, "")))
    assert store.add(proof) and not store.add(proof)
    assert store.against(KZ) and store.holds(proof) and [e.id for e in store.all()] == [proof.id]
    again = EvidenceStore(tmp_path, GENESIS, Verifier(), cleared_below=lambda s: 0)
    assert [e.id for e in again.all()] == [proof.id]
    cleared["KZ"] = 11  # cleared in term 7, the equivocation's own, in a block KZ proposed
    assert store.against(KZ)
    cleared["KZ"] = 13  # in term 6, before it
    assert store.against(KZ)
    for after in (10, 12):  # in term 8; in term 7 under another leader
        cleared["KZ"] = after
        assert not store.against(KZ) and not store.holds(proof)
    forged = AppendEquivocation(_header(append(7, 43, b"A")),
                                SignedAppend.make(key_of(RU), CHAIN_ID, KZ, 7, 43, b"B"))
    cleared["KZ"] = 0
    assert not store.add(forged) and store.refused == 1


def _sign_all(m: Message) -> bytes:
    """What a hostile leader sends: signed whatever it signed before."""
    return pack_envelope(encode_message(m), [_header_of(e).signature for e in m.entries])


def _header_of(entry: Entry) -> SignedAppend:
    return SignedAppend.of_hash(key_of(KZ), CHAIN_ID, KZ, entry.term, entry.index, entry_digest(entry))


def _header(m: Message) -> SignedAppend:
    return _header_of(m.entries[0])


def _attestation_evidence() -> Evidence:
    from ledger import Attestation

    class H:
        def __init__(self, hashed: bytes) -> None:
            self.height, self.raft_term, self.hash = 5, 2, hashed  # one round: evidence

    a = Attestation.make(key_of(KZ), CHAIN_ID, KZ, H(b"\x01" * 32))  # type: ignore[arg-type]
    b = Attestation.make(key_of(KZ), CHAIN_ID, KZ, H(b"\x02" * 32))  # type: ignore[arg-type]
    return Evidence.of(a, b)


def test_an_envelope_of_the_wrong_shape_is_a_malformed_message() -> None:
    """Anything that starts like an envelope but is not [message, [64-byte signatures]]."""
    raw = encode_message(append(7, 42, b"x"))
    for bad in ([raw], [raw, [b"s" * 63]], [raw, b"x"], [1, []], [raw, [b"s" * 64], 1]):
        with pytest.raises(MalformedMessage):
            unwrap(msgpack.packb(bad, use_bin_type=True))
    with pytest.raises(MalformedMessage):
        unwrap(b"\x92\xc1")
    with pytest.raises(MalformedMessage):
        unwrap(pack_envelope(b"not a message", []))


def test_the_envelope_is_msgpack_of_the_message_and_its_signatures() -> None:
    """Built with one copy of the message, it is byte for byte msgpack's [message, signatures]."""
    for size in (0, 255, 256, 65_535, 65_536, 1 << 20):
        raw, signatures = b"m" * size, [bytes([i]) * 64 for i in range(3)]
        assert pack_envelope(raw, signatures) == msgpack.packb([raw, signatures], use_bin_type=True)

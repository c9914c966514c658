"""Blocks, attestations, proofs and the auditor: tampering is caught with height and reason."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import plyvel
import pytest

from ledger import (
    Attestation,
    Auditor,
    BlockHeader,
    DecodeError,
    DocType,
    LedgerStore,
    ProofError,
    ProvenanceBundle,
    Verifier,
    inclusion_proof,
    pack,
    provenance,
    verify_inclusion_proof,
    verify_provenance,
)
from ledger._records import P_ATTEST, P_BLOCK, P_BLOCK_DOC, P_RESULTS, u32, u64

from .world import World, make_genesis, seeded_key

SSCC = "00157035381410375177"
ROOT = Path(__file__).resolve().parents[2]


# A Byzantine quorum of the five states (4 of 5): what makes a block final.
def attest_all(world: World, states: tuple[str, ...] = ("AM", "BY", "KZ", "KG")) -> None:
    verifier = Verifier()
    for height in range(1, world.store.head.height + 1):
        header = world.store.header(height)
        assert header is not None
        for state in states:
            att = Attestation.make(world.node_key(state), world.genesis.chain_id, state, header)
            assert world.store.add_attestation(att, verifier)


def build_chain(path: Path) -> tuple[World, dict[str, object]]:
    """A short cross-border chain with a pallet, a sale and a refused counterfeit."""
    world = World(path)
    producer = world.register("RU", ["producer"], "Factory")
    wholesaler = world.register("KZ", ["wholesaler"], "Wholesale")
    retailer = world.register("KG", ["retailer"], "Shop")
    codes = world.introduced("RU", producer, 5)
    world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=SSCC, codes=codes))
    ship = world.doc(producer, DocType.SHIP, receiver=wholesaler.participant_id, codes=[SSCC])
    world.apply_ok(ship)
    world.apply_ok(world.doc(wholesaler, DocType.ACCEPT, shipment=ship.id, codes=[]))
    world.apply_ok(world.doc(wholesaler, DocType.DISAGGREGATE, sscc=SSCC))
    ship2 = world.doc(wholesaler, DocType.SHIP, receiver=retailer.participant_id, codes=codes[:2])
    world.apply_ok(ship2)
    world.apply_ok(world.doc(retailer, DocType.ACCEPT, shipment=ship2.id, codes=[]))
    sale = world.doc(retailer, DocType.RETIRE, reason="retail_sale", codes=codes[:1])
    fake = world.doc(retailer, DocType.SHIP, receiver=wholesaler.participant_id, codes=codes[:1])
    world.apply(sale, fake)
    attest_all(world)
    return world, {"codes": codes, "ship": ship, "sale": sale}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World, dict[str, object]]:
    path = tmp_path_factory.mktemp("chain") / "db"
    world, facts = build_chain(path)
    world.store.close()
    return path, world, facts


def audit(data: Path, tmp: Path, workers: int = 1) -> object:
    with Auditor(make_genesis(), tmp / f"replica-{random.random()}", workers=workers) as auditor:
        return auditor.verify_data_dir(data)


def tampered(chain_dir: Path, tmp: Path) -> tuple[Path, plyvel.DB]:
    copy = tmp / "copy"
    shutil.copytree(chain_dir, copy)
    return copy, plyvel.DB(str(copy))


def flip(db: plyvel.DB, key: bytes, offset: int = -1) -> None:
    value = bytearray(db.get(key))
    value[offset] ^= 0x01
    db.put(key, bytes(value))


def test_auditor_accepts_an_honest_chain(chain, tmp_path: Path) -> None:
    """An untouched chain verifies to its head, with counts and every block final."""
    path, world, _ = chain
    report = audit(path, tmp_path)
    assert report.ok, report.failure
    assert report.height == world.store.head.height and report.head_hash == world.store.head.hash
    assert report.final_height == report.height and report.unattested == []
    assert report.rejected == 1 and report.applied == report.documents - 1


def test_two_workers_give_the_same_report(chain, tmp_path: Path) -> None:
    """Signature checks in worker processes reach the same verdict."""
    path, _, _ = chain
    one, two = audit(path, tmp_path, 1), audit(path, tmp_path, 2)
    assert one.to_json() == two.to_json() and two.ok


def test_worker_counts_agree_where_signatures_decide(tmp_path: Path) -> None:
    """A forged signature, a signer registered in the very block it signs in, and a
    damaged attestation: 1, 2 and 3 workers give the same report and the same replica."""
    world = World(tmp_path / "db")
    producer = world.register("RU", ["producer"], "Factory")
    codes = world.introduced("RU", producer, 4)
    late = seeded_key("registered-and-signing-in-one-block")
    register = world.doc(
        world.regulator("KZ"), DocType.REGISTER_PARTICIPANT,
        public_key=late.public_key, state="KZ", roles=["wholesaler"], name="Late",
    )
    ship = world.doc(producer, DocType.SHIP, receiver=late.participant_id, codes=codes[:2])
    accept = world.doc(late, DocType.ACCEPT, shipment=ship.id, codes=[])
    genuine = world.doc(producer, DocType.RETIRE, reason="destroyed", codes=codes[2:3])
    forged = pack([genuine.body, bytes(64)])
    results = world.apply(register, ship, accept, forged, genuine)
    assert [r.reason.value for r in results] == ["applied", "applied", "applied", "bad_signature", "applied"]
    attest_all(world)
    flip(world.store.db, P_ATTEST + u64(world.store.head.height) + b"BY", 7)
    world.store.close()
    reports, heads = [], []
    for workers in (1, 2, 3):
        with Auditor(world.genesis, tmp_path / f"replica-{workers}", workers=workers) as auditor:
            reports.append(auditor.verify_data_dir(tmp_path / "db").to_json())
            heads.append(auditor.replica.head)
    assert reports[0]["failure"]["what"] == "attestation", reports[0]
    assert reports[1:] == reports[:1] * 2 and heads[1:] == heads[:1] * 2


HEIGHT = 9  # the block holding the first shipment


@pytest.mark.parametrize(
    ("name", "damage", "what"),
    [
        ("header byte", lambda db: flip(db, P_BLOCK + u64(HEIGHT), -1), {"header", "documents"}),
        ("header prev hash", lambda db: flip(db, P_BLOCK + u64(HEIGHT), 20), {"link", "header"}),
        ("document byte", lambda db: flip(db, P_BLOCK_DOC + u64(HEIGHT) + u32(0), 30), {"documents"}),
        ("signature byte", lambda db: flip(db, P_BLOCK_DOC + u64(HEIGHT) + u32(0), -1), {"documents"}),
        ("result byte", lambda db: flip(db, P_RESULTS + u64(HEIGHT), 3), {"results"}),
        ("attestation byte", lambda db: flip(db, P_ATTEST + u64(HEIGHT) + b"KZ", 5), {"attestation"}),
        ("dropped block", lambda db: db.delete(P_BLOCK + u64(HEIGHT)), {"missing"}),
    ],
)
def test_tampering_is_caught_at_its_height(chain, tmp_path: Path, name: str, damage, what: set[str]) -> None:
    """Each kind of damage to stored bytes fails the audit at the damaged height, with a reason."""
    path, _, _ = chain
    copy, db = tampered(path, tmp_path)
    damage(db)
    db.close()
    report = audit(copy, tmp_path)
    assert not report.ok
    assert report.failure.height == HEIGHT, report.failure
    assert report.failure.what in what, report.failure
    assert report.failure.why
    assert report.height == HEIGHT - 1


def test_swapped_blocks_are_caught(chain, tmp_path: Path) -> None:
    """Two blocks stored in each other's place fail at the first of them."""
    path, _, _ = chain
    copy, db = tampered(path, tmp_path)
    a, b = db.get(P_BLOCK + u64(5)), db.get(P_BLOCK + u64(6))
    db.put(P_BLOCK + u64(5), b)
    db.put(P_BLOCK + u64(6), a)
    db.close()
    report = audit(copy, tmp_path)
    assert report.failure.height == 5 and report.failure.what == "order"


def test_a_block_from_another_chain_is_caught(chain, tmp_path: Path) -> None:
    """A block lifted from another chain fails as belonging to that chain."""
    path, _, _ = chain
    other = World(tmp_path / "other", genesis=make_genesis(("BY", "KZ", "RU")))
    other.register("RU", ["producer"], "Elsewhere")
    foreign = other.store.db.get(P_BLOCK + u64(1))
    other.store.close()
    copy, db = tampered(path, tmp_path)
    db.put(P_BLOCK + u64(1), foreign)
    db.close()
    report = audit(copy, tmp_path)
    assert report.failure.height == 1 and report.failure.what in {"link", "documents", "header"}


def test_a_consistent_forgery_is_caught_by_replay_and_attestations(chain, tmp_path: Path) -> None:
    """Rewriting a result and recomputing the header still fails: replay disagrees."""
    path, world, _ = chain
    copy, db = tampered(path, tmp_path)
    results = db.get(P_RESULTS + u64(HEIGHT))
    forged_results = results.replace(b"applied", b"expired")
    db.put(P_RESULTS + u64(HEIGHT), forged_results)
    db.close()
    report = audit(copy, tmp_path)
    assert report.failure.height == HEIGHT and report.failure.what == "results"
    assert "replay gives applied" in report.failure.why


def test_audit_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A second audit starts where the first ended and still checks the join."""
    world, _ = build_chain(tmp_path / "db")
    first_height = world.store.head.height
    world.store.close()
    replica = tmp_path / "replica"
    with Auditor(world.genesis, replica) as auditor:
        assert auditor.verify_data_dir(tmp_path / "db").ok
    world.store = LedgerStore(tmp_path / "db", world.genesis, sync=False)
    world.register("BY", ["retailer"], "Later")
    world.store.close()
    with Auditor(world.genesis, replica) as auditor:
        report = auditor.verify_data_dir(tmp_path / "db")
    assert report.ok and report.start_height == first_height and report.height == first_height + 1
    assert report.unattested == [first_height + 1]


def test_an_auditor_keeps_its_workers_across_calls_and_after_a_failure(chain, tmp_path: Path) -> None:
    """Like a follower: one auditor with workers audits, fails on damage, then audits the
    undamaged chain from its checkpoint to the same head as a fresh one-worker audit."""
    path, world, _ = chain
    copy, db = tampered(path, tmp_path)
    flip(db, P_ATTEST + u64(HEIGHT) + b"KZ", 5)
    db.close()
    with Auditor(world.genesis, tmp_path / "replica", workers=2) as auditor:
        failed = auditor.verify_data_dir(copy)
        resumed = auditor.verify_data_dir(path)
        again = auditor.verify_data_dir(path)
    fresh = audit(path, tmp_path)
    assert failed.failure is not None and failed.failure.height == HEIGHT
    assert resumed.ok and resumed.start_height == HEIGHT - 1
    assert resumed.head_hash == fresh.head_hash and again.ok and again.documents == 0


def test_inclusion_proofs_verify_against_genesis_only(chain) -> None:
    """A document's inclusion proof checks with genesis alone; any change breaks it."""
    path, world, facts = chain
    store = LedgerStore(path, world.genesis, sync=False)
    try:
        proof = inclusion_proof(store, facts["ship"].id)
    finally:
        store.close()
    assert proof is not None and proof.result.applied
    verify_inclusion_proof(proof, world.genesis)
    again = type(proof).from_json(proof.to_json())
    verify_inclusion_proof(again, world.genesis)
    with pytest.raises(ProofError):
        verify_inclusion_proof(type(proof).from_list([*proof.to_list()[:3], proof.document[:-1] + b"\x00", *proof.to_list()[4:]]), world.genesis)
    with pytest.raises(ProofError, match="attested by 2"):
        verify_inclusion_proof(type(proof)(proof.header, proof.attestations[:2], *proof.to_list()[2:4], proof.document_path, proof.result, proof.result_path), world.genesis)


def test_provenance_bundle_verifies_offline_and_fails_on_any_altered_byte(chain) -> None:
    """A code's bundle verifies with genesis alone, tells its story, and no altered byte passes."""
    path, world, facts = chain
    store = LedgerStore(path, world.genesis, sync=False)
    try:
        bundle = provenance(store, facts["codes"][0])
    finally:
        store.close()
    assert bundle is not None
    events = verify_provenance(bundle, world.genesis)
    assert [e.type for e in events] == [
        "emit", "introduce", "aggregate", "ship", "accept", "disaggregate", "ship", "accept", "retire",
    ]
    data = bundle.encode()
    assert ProvenanceBundle.from_json(bundle.to_json()) == bundle
    verifier = Verifier()
    rng = random.Random(7)
    positions = sorted(rng.sample(range(len(data)), min(400, len(data))))
    for position in positions:
        altered = bytearray(data)
        altered[position] ^= 1 << rng.randrange(8)
        with pytest.raises((DecodeError, ProofError)):
            verify_provenance(ProvenanceBundle.decode(bytes(altered)), world.genesis, verifier)


def test_a_provenance_bundle_is_never_cut_to_one_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code whose history is longer than a page still gets every document in its bundle."""
    monkeypatch.setattr("ledger._store.PAGE_LIMIT_MAX", 3)
    world, facts = build_chain(tmp_path / "db")
    code = facts["codes"][0]
    assert len(world.store.history(code, limit=100)) == 3
    bundle = provenance(world.store, code)
    assert bundle is not None and len(bundle.entries) == 9
    assert len(verify_provenance(bundle, world.genesis)) == 9


WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.ledger.world import World
from ledger import DocType
world = World(__import__("pathlib").Path({path!r}))
world.store.sync = True
producer = world.register("RU", ["producer"], "P-" + str(world.store.head.height))
print("ready", flush=True)
while True:
    codes = world.emit("RU", producer, 200)
    world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes))
"""


def test_a_writer_killed_at_random_moments_never_leaves_half_a_block(tmp_path: Path) -> None:
    """SIGKILL during block writes, again and again: the store always reopens whole and audits clean."""
    path = tmp_path / "db"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "1")))
    heights = []
    for _round in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER.format(root=str(ROOT), path=str(path))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.15))  # a random moment inside the write loop
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        store = LedgerStore(path, make_genesis(), sync=False)
        head = store.head
        header = store.header(head.height)
        assert header is not None and header.hash == head.hash
        assert store.header(head.height + 1) is None
        heights.append(head.height)
        store.close()
    assert heights == sorted(heights) and heights[-1] > heights[0]
    with Auditor(make_genesis(), tmp_path / "replica") as auditor:
        report = auditor.verify_data_dir(path)
    assert report.ok and report.height == heights[-1]


def test_header_round_trips_and_refuses_garbage() -> None:
    """A header decodes to itself; wrong types and lengths are refused."""
    header = BlockHeader("c", 1, bytes(32), bytes(32), bytes(32), bytes(32), 5, "RU", 1, 2, 0)
    assert BlockHeader.decode(header.encode()) == header
    with pytest.raises(DecodeError):
        BlockHeader.decode(header.encode()[:-1])

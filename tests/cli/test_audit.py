"""`tamga audit` and `tamga export epcis` against the in-process network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgpack
import pytest

import ledger
from node.client import SyncNodeClient

from .conftest import World, as_json, fails, ok


def sold_code(world: World) -> str:
    """A code that went producer -> wholesaler (KZ) -> retailer (KG) and was sold."""
    codes = world.fresh_codes(2)
    first = ok(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args()]).stdout.strip()
    ok(["code", "accept", first, *world.wholesaler.args()])
    second = ok(["code", "ship", "--to", world.retailer.id, codes[0], *world.wholesaler.args()]).stdout.strip()
    ok(["code", "accept", second, *world.retailer.args()])
    sale = as_json(ok(["code", "retire", "--reason", "retail_sale", codes[0], *world.retailer.args(), "--json"]))
    # The auditor reads another node, which may apply the sale a moment after the retailer's.
    SyncNodeClient(world.auditor.node, genesis=ledger.Genesis.load(Path(world.genesis))).wait_height(sale["height"])
    return codes[0]


def test_audit_verify_replays_the_chain_from_a_node(world: World) -> None:
    """`audit verify --node` checks every block from genesis and reports the head it reached."""
    world.fresh_codes(1)
    head = SyncNodeClient(world.auditor.node, genesis=ledger.Genesis.load(Path(world.genesis))).status()
    report = as_json(ok(["audit", "verify", "--genesis", world.genesis, "--workers", "1", "--json",
                         *world.auditor.args()]))
    assert report["ok"] is True and report["failure"] is None
    assert report["height"] >= head["height"] and report["documents"] >= head["height"]
    text = ok(["audit", "verify", "--genesis", world.genesis, "--workers", "1", *world.auditor.args()]).stdout
    assert text.startswith("verified: blocks 1..")


def test_audit_verify_resumes_from_its_replica(world: World, tmp_path: Path) -> None:
    """With --replica the second run starts where the first stopped."""
    replica = tmp_path / "replica"
    args = ["audit", "verify", "--genesis", world.genesis, "--workers", "1", "--replica", str(replica), "--json",
            *world.auditor.args()]
    first = as_json(ok(args))
    world.fresh_codes(1)
    second = as_json(ok(args))
    assert second["start_height"] == first["height"] and second["height"] > first["height"]


def tampered_stream(height: int) -> Any:
    """A stand-in for SyncNodeClient.stream_blocks that corrupts one document of block `height`."""
    real = SyncNodeClient.stream_blocks

    def stream(self: SyncNodeClient, first: int, last: int | None = None) -> Iterator[tuple[bytes, list[Any]]]:
        for offset, (block_bytes, atts) in enumerate(real(self, first, last)):
            if first + offset == height:
                header, docs, results = ledger.unpack(block_bytes)
                docs[0] = docs[0][:-1] + bytes([docs[0][-1] ^ 1])
                block_bytes = msgpack.packb([header, docs, results], use_bin_type=True)
            yield block_bytes, atts

    return stream


def test_audit_verify_stops_at_the_first_bad_block(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that serves a tampered block: exit 1 naming that height and what failed."""
    world.fresh_codes(1)
    monkeypatch.setattr(SyncNodeClient, "stream_blocks", tampered_stream(3))
    result = fails(["audit", "verify", "--genesis", world.genesis, "--workers", "1", *world.auditor.args()])
    assert "audit failed at height 3: documents" in result.stderr
    report = as_json(fails(["audit", "verify", "--genesis", world.genesis, "--workers", "1", "--json",
                            *world.auditor.args()]))
    assert report["ok"] is False and report["failure"]["height"] == 3 and report["height"] == 2


def test_audit_verify_reads_a_data_directory(world: World, tmp_path: Path) -> None:
    """--data-dir audits a node's store (here a copy, since the node holds its lock)."""
    import shutil

    source = world.net.net.node("KG").data_dir / "ledger"
    copy = tmp_path / "copy"
    shutil.copytree(source, copy / "ledger", ignore=shutil.ignore_patterns("LOCK"))
    report = as_json(ok(["audit", "verify", "--data-dir", str(copy), "--genesis", world.genesis, "--json",
                         "--workers", "1"]))
    assert report["ok"] and report["height"] > 0
    assert "in use by a running node" in fails(
        ["audit", "verify", "--data-dir", str(source.parent), "--genesis", world.genesis, "--workers", "1"]
    ).stderr


def test_audit_follow_resumes_and_refuses_to_pass_a_bad_block(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """follow stops before a tampered block and stays there; without tampering it resumes to the head."""
    world.fresh_codes(1)
    replica = tmp_path / "replica"

    def follow(*extra: str) -> list[str]:
        return ["audit", "follow", "--genesis", world.genesis, "--data-dir", str(replica), "--once",
                "--workers", "1", *world.auditor.args(), *extra]

    with monkeypatch.context() as m:
        m.setattr(SyncNodeClient, "stream_blocks", tampered_stream(4))
        first = as_json(fails(follow("--json")))
        assert first["failure"]["height"] == 4 and first["height"] == 3
        refused = fails(follow(), progress_lines=1).stderr.splitlines()
        assert refused[0].startswith("following ") and "refusing to go past height 4" in refused[1]
    resumed = as_json(ok(follow("--json")))
    assert resumed["ok"] and resumed["height"] >= 4 and resumed["unattested"] == []
    world.fresh_codes(1)
    text = ok(follow())
    assert f"from height {resumed['height']}" in text.stderr and "verified up to" in text.stdout


def test_prove_and_check_a_provenance_offline(world: World, tmp_path: Path) -> None:
    """`audit prove` writes a bundle that `audit check` verifies against genesis; a tampered one fails."""
    code = sold_code(world)
    proof = tmp_path / "proof.bin"
    info = as_json(ok(["audit", "prove", code, "--out", str(proof), "--json", *world.auditor.args()]))
    assert info["documents"] == 7 and proof.stat().st_size == info["bytes"]
    checked = as_json(ok(["audit", "check", str(proof), "--genesis", world.genesis, "--json"]))
    assert [e["type"] for e in checked["events"]] == ["emit", "introduce", "ship", "accept", "ship", "accept",
                                                      "retire"]
    text = ok(["audit", "check", str(proof), "--genesis", world.genesis]).stdout
    assert text.strip().endswith("in a final block (attested by a Byzantine quorum of member states)")
    bundle = ledger.ProvenanceBundle.decode(proof.read_bytes())
    proof_json = tmp_path / "proof.json"
    proof_json.write_text(json.dumps(bundle.to_json()))
    ok(["audit", "check", str(proof_json), "--genesis", world.genesis])
    # Drop attestations below the quorum: every proof needs a Byzantine quorum of member states.
    first = bundle.entries[0]
    weak = type(first)(first.header, first.attestations[:1], first.position, first.document, first.document_path,
                       first.result, first.result_path)
    forged = ledger.ProvenanceBundle(bundle.code, bundle.genesis_hash, [weak, *bundle.entries[1:]],
                                     bundle.registrations)
    bad = tmp_path / "forged.bin"
    bad.write_bytes(forged.encode())
    assert "does not verify" in fails(["audit", "check", str(bad), "--genesis", world.genesis]).stderr
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x93\x01\x02")
    assert "not a provenance bundle" in fails(["audit", "check", str(garbage), "--genesis", world.genesis]).stderr


def test_export_epcis_validates_against_the_schema(world: World, tmp_path: Path,
                                                   epcis_schema: dict[str, Any]) -> None:
    """`export epcis` writes EPCIS 2.0 JSON-LD that validates, with Digital Link EPCs and hash eventIDs."""
    code = sold_code(world)
    out = tmp_path / "epcis.json"
    summary = as_json(ok(["export", "epcis", code, "--out", str(out), "--genesis", world.genesis, "--json",
                          *world.auditor.args()]))
    assert summary["verified"] is True
    document = json.loads(out.read_text())
    jsonschema.validate(document, epcis_schema, format_checker=jsonschema.FormatChecker())
    events = document["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in events] == [
        "encoding", "commissioning", "shipping", "receiving", "shipping", "receiving", "retail_selling"]
    assert ledger.parse_key(code).digital_link() in events[-1]["epcList"]
    assert all(e["eventID"].startswith("ni:///sha-256;") for e in events)
    printed = json.loads(ok(["export", "epcis", code, *world.auditor.args()]).stdout)
    assert [e["eventID"] for e in printed["epcisBody"]["eventList"]] == [e["eventID"] for e in events]

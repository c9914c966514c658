"""Auditor verification rate, bytes on disk per transfer, and store open time.

    .venv/bin/python -m bench.chain_bench [--documents 200000] [--open-documents 1000000]

Builds a chain of single-code shipment documents (blocks of 1,000, each attested by
three member states), then measures in the same run:
  1. raw Ed25519 verifications per second on one core (the same documents' bytes);
  2. the auditor's verification rate (documents per second) with 1 and 2 workers;
  3. bytes on disk per single-code transfer (after compaction);
  4. (--open-documents N) the time to open a store holding N documents.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.world import World, raw_verify_seconds
from ledger import Attestation, Auditor, DocType, LedgerStore, SignedDocument, Verifier

BLOCK_DOCUMENTS = 1_000


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(path: Path, documents: int, attest: bool = True) -> tuple[World, list[SignedDocument]]:
    """A chain of `documents` single-code shipments, applied without re-verifying."""
    world = World(path)
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    sample: list[SignedDocument] = []
    made = 0
    while made < documents:
        count = min(30_000, documents - made)
        codes = world.emit("RU", producer, count)
        world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes))
        docs = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]) for c in codes]
        if not sample:
            sample = docs[:20_000]
        for i in range(0, len(docs), BLOCK_DOCUMENTS):
            wires = [d.wire() for d in docs[i : i + BLOCK_DOCUMENTS]]
            world.store.apply_block(wires, world.next_block_time(), "RU", verified=lambda _key: True)
        made += count
    if attest:
        verifier = Verifier()
        for height in range(1, world.store.head.height + 1):
            header = world.store.header(height)
            if header is None:
                raise RuntimeError(f"block {height} of the chain just built is missing")
            for state in ("AM", "BY", "KZ"):
                att = Attestation.make(world.node_key(state), world.genesis.chain_id, state, header)
                world.store.add_attestation(att, verifier)
    return world, sample


def raw_rate(docs: list[SignedDocument], world: World) -> float:
    signer = world.store.participant(docs[0].document.signer)
    if signer is None:
        raise RuntimeError("the sample's signer is not registered")
    public_key = bytes.fromhex(signer["public_key"])
    return len(docs) / raw_verify_seconds(public_key, world.genesis.chain_id, docs)


def audit_rate(world: World, path: Path, tmp: Path, workers: int) -> dict[str, float]:
    replica = tmp / f"replica-{workers}"
    shutil.rmtree(replica, ignore_errors=True)
    with Auditor(world.genesis, replica, workers=workers) as auditor:
        start = time.perf_counter()
        report = auditor.verify_data_dir(path)
        elapsed = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(f"the audit of the benchmark's own chain failed: {report.failure}")
    return {
        "workers": workers,
        "documents": report.documents,
        "seconds": round(elapsed, 2),
        "docs_per_s": report.documents / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--open-documents", type=int, default=0)
    args = parser.parse_args()
    out: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "chain"
        start = time.perf_counter()
        world, sample = build(path, args.documents)
        out["build_seconds"] = round(time.perf_counter() - start, 1)
        world.store.db.compact_range()
        out["documents"] = args.documents
        out["bytes_on_disk_per_transfer"] = round(dir_bytes(path) / args.documents)
        raw = raw_rate(sample, world)
        world.store.close()
        out["raw_verify_per_s"] = raw
        for workers in (1, 2):
            result = audit_rate(world, path, tmp, workers)
            result["ratio_to_raw"] = result["docs_per_s"] / raw
            out[f"audit_workers_{workers}"] = result
            print(json.dumps(result), file=sys.stderr)
        if args.open_documents:
            big = tmp / "big"
            big_world, _ = build(big, args.open_documents, attest=False)
            big_world.store.close()
            start = time.perf_counter()
            store = LedgerStore(big, big_world.genesis)
            out["open_seconds"] = {
                "documents": args.open_documents,
                "seconds": round(time.perf_counter() - start, 3),
            }
            store.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

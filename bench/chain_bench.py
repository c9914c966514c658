"""Auditor verification rate, bytes on disk per transfer, and store open time.

    .venv/bin/python -m bench.chain_bench [--documents 200000] [--repeats 3] [--open-documents 1000000]

Builds a chain of single-code shipment documents (blocks of 1,000, each attested by
three member states), then measures in the same run, `--repeats` times (median, spread):
  1. raw Ed25519 verifications per second on one core (the same documents' bytes);
  2. the auditor's verification rate (documents per second) with 1 and 2 workers, by
     wall clock and by CPU time (see `audit_rate`), and their ratios;
  3. bytes on disk per single-code transfer (after compaction);
  4. (--open-documents N) the time to open a store holding N documents.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.world import World
from ledger import DOMAIN_DOCUMENT, Attestation, Auditor, DocType, LedgerStore, SignedDocument, signing_bytes

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
            world.time_ms += 1_000
            wires = [d.wire() for d in docs[i : i + BLOCK_DOCUMENTS]]
            world.store.apply_block(wires, world.time_ms, "RU", verified=lambda _key: True)
        made += count
    if attest:
        for height in range(1, world.store.head.height + 1):
            header = world.store.header(height)
            if header is None:
                raise RuntimeError(f"block {height} is missing from the benchmark's own chain")
            for state in ("AM", "BY", "KZ"):
                att = Attestation.make(world.node_key(state), world.genesis.chain_id, state, header)
                world.store.add_attestation(att, world.store.machine.verifier)
    return world, sample


def raw_sample(docs: list[SignedDocument], world: World) -> tuple[Any, list[tuple[bytes, bytes]]]:
    """The signer's parsed key and the exact bytes its signatures cover (store still open)."""
    signer = world.store.participant(docs[0].document.signer)
    if signer is None:
        raise RuntimeError("the sample's signer is not registered")
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer["public_key"]))
    return key, [(d.signature, signing_bytes(DOMAIN_DOCUMENT, world.genesis.chain_id, d.body)) for d in docs]


def raw_rate(key: Any, messages: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Raw Ed25519 verifications per second on one core, by wall clock and by CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    for signature, message in messages:
        key.verify(signature, message)
    return {
        "per_s": len(messages) / (time.perf_counter() - wall),
        "per_cpu_s": len(messages) / (time.process_time() - cpu),
    }


def audit_rate(world: World, path: Path, tmp: Path, workers: int) -> dict[str, float]:
    """The auditor's documents per second by wall clock, and what its CPU time allows.

    The machine may be shared, so wall-clock rates move with other load. CPU time does
    not: `per_cpu_s` is documents per CPU-second of the main process and its workers
    together, and `two_core_capacity_per_s` is the rate two otherwise idle cores allow,
    bounded by the sequential main process and by the total work shared over two cores."""
    replica = tmp / f"replica-{workers}"
    shutil.rmtree(replica, ignore_errors=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Auditor(world.genesis, replica, workers=workers) as auditor:
        wall, cpu = time.perf_counter(), time.process_time()
        report = auditor.verify_data_dir(path)
        elapsed, main_cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    if not report.ok:
        raise RuntimeError(f"the audit of the benchmark's own chain failed: {report.failure}")
    shutil.rmtree(replica, ignore_errors=True)
    total_cpu = main_cpu + workers_cpu
    return {
        "documents": report.documents,
        "per_s": report.documents / elapsed,
        "per_cpu_s": report.documents / total_cpu,
        "main_cpu_us_per_doc": 1e6 * main_cpu / report.documents,
        "workers_cpu_us_per_doc": 1e6 * workers_cpu / report.documents,
        "two_core_capacity_per_s": report.documents / max(main_cpu, total_cpu / 2),
    }


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def measure_audits(
    world: World, sample: tuple[Any, list[tuple[bytes, bytes]]], path: Path, tmp: Path, repeats: int
) -> dict[str, object]:
    """Each repeat measures the raw verify rate, then 1 and 2 workers, so that every ratio
    compares figures taken moments apart in one process."""
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        raw = raw_rate(*sample)
        one = audit_rate(world, path, tmp, 1)
        two = audit_rate(world, path, tmp, 2)
        figures = {
            "raw_verify_per_s": raw["per_s"],
            "raw_verify_per_cpu_s": raw["per_cpu_s"],
            "audit_1_per_s": one["per_s"],
            "audit_2_per_s": two["per_s"],
            "ratio_1_to_raw_wall": one["per_s"] / raw["per_s"],
            "ratio_1_to_raw_cpu": one["per_cpu_s"] / raw["per_cpu_s"],
            "ratio_2_to_1_wall": two["per_s"] / one["per_s"],
            "ratio_2_to_1_two_core_capacity": two["two_core_capacity_per_s"] / one["per_cpu_s"],
            "main_cpu_us_per_doc_2": two["main_cpu_us_per_doc"],
            "workers_cpu_us_per_doc_2": two["workers_cpu_us_per_doc"],
        }
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}), file=sys.stderr)
        for name, value in figures.items():
            runs.setdefault(name, []).append(value)
    return {name: summary(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--open-documents", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
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
        raw = raw_sample(sample, world)
        world.store.close()
        out["audit"] = measure_audits(world, raw, path, tmp, args.repeats)
        out["load_average_at_end"] = os.getloadavg()
        if args.open_documents:
            out["open_seconds"] = open_time(tmp / "big", args.open_documents)
    print(json.dumps(out, indent=2))


def open_time(big: Path, documents: int) -> dict[str, float]:
    big_world, _ = build(big, documents, attest=False)
    big_world.store.close()
    start = time.perf_counter()
    store = LedgerStore(big, big_world.genesis)
    seconds = time.perf_counter() - start
    store.close()
    return {"documents": documents, "seconds": round(seconds, 3)}


if __name__ == "__main__":
    main()

"""Apply rate of 1,000-code shipments of goods with attributes, beside plain ones, same run.

    .venv/bin/python -m bench.lifecycle_bench [--shipments 100] [--rounds 3] [--compact-first]

One process, one core, a chain with the product catalogue (testnet/product_groups.json).
Each round applies, in turn, blocks of ten 1,000-code shipments of:
  - plain goods (packaged water, no attributes),
  - goods with attributes (dairy: expiry and net weight, given at introduce and stored
    per code),
  - plain goods whose shipments carry business details (document date, number, price
    and VAT: the optional trailing field of issue 13),
and 1,000-code print reports (`apply`) with attributes. Rounds alternate so that every
kind sees the machine in the same states; the best round of each kind is reported
beside the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.world import GTIN, World, make_genesis
from ledger import DocType, Genesis, Result
from testnet import product_groups

CODES_PER_SHIPMENT = 1_000
SHIPMENTS_PER_BLOCK = 10
COMPACT_FIRST = False  # --compact-first
DAIRY_GTIN = "04609999000341"  # shared/data/codes/layouts.tsv, RU dairy (serials of 6)
ATTRIBUTES = [["17", "270630"], ["3103", "000750"]]  # expiry, net weight (kg, 3 decimals)
DETAILS = [
    ["doc_date", 1_790_000_000_000], ["doc_number", "UPD-000123"], ["price", 1_250_000], ["vat", 208_333],
]


def catalogued_genesis() -> Genesis:
    base = make_genesis()
    return Genesis(base.chain_id, base.time_ms, base.states, base.params, product_groups=product_groups())


def _ok(results: list[Result]) -> None:
    bad = [r for r in results if not r.applied]
    if bad:
        raise RuntimeError(f"{len(bad)} documents did not apply, the first: {bad[0]}")


class Bench:
    def __init__(self, path: Path) -> None:
        self.world = World(path, catalogued_genesis())
        w = self.world
        self.producer = w.register("RU", ["producer"], "Producer")
        self.buyer = w.register("RU", ["wholesaler"], "Buyer")
        reg = w.regulator("RU")
        for gtin, group, tnved in ((GTIN, "water", "2201"), (DAIRY_GTIN, "dairy", "0403")):
            w.apply_ok(w.doc(reg, DocType.REGISTER_PRODUCT, gtin=gtin, group=group, name=group, tnved=tnved,
                             producer=self.producer.participant_id))
        self._dairy = 0

    def dairy_codes(self, count: int) -> list[str]:
        serials = [f"{n:06d}" for n in range(self._dairy, self._dairy + count)]
        self._dairy += count
        w = self.world
        w.apply_ok(w.doc(w.regulator("RU"), DocType.EMIT, owner=self.producer.participant_id, gtin=DAIRY_GTIN,
                         serials=serials))
        return ["01" + DAIRY_GTIN + "21" + s for s in serials]

    def goods(self, count: int, attributes: bool) -> list[str]:
        out: list[str] = []
        while len(out) < count:
            n = min(30_000, count - len(out))
            batch = self.dairy_codes(n) if attributes else self.world.emit("RU", self.producer, n)
            fields = {"attributes": ATTRIBUTES} if attributes else {}
            self.world.apply_ok(self.world.doc(self.producer, DocType.INTRODUCE, codes=batch, **fields))
            out.extend(batch)
        return out

    def timed_blocks(self, docs: list[bytes]) -> float:
        if COMPACT_FIRST:
            # Settle LevelDB's compaction debt from the setup (introducing 100,000 codes with
            # attributes writes 100,000 more keys) so that the timing is of the apply alone.
            self.world.store.db.compact_range()
        start = time.perf_counter()
        for i in range(0, len(docs), SHIPMENTS_PER_BLOCK):
            _ok(self.world.store.apply_block(docs[i : i + SHIPMENTS_PER_BLOCK], self.world.next_block_time(),
                                             "RU").results)
        return time.perf_counter() - start

    def shipments(self, shipments: int, attributes: bool, details: bool) -> float:
        codes = self.goods(shipments * CODES_PER_SHIPMENT, attributes)
        extra = {"details": DETAILS} if details else {}
        docs = [
            self.world.doc(self.producer, DocType.SHIP, receiver=self.buyer.participant_id,
                           codes=codes[i : i + CODES_PER_SHIPMENT], **extra).wire()
            for i in range(0, len(codes), CODES_PER_SHIPMENT)
        ]
        return len(codes) / self.timed_blocks(docs)

    def print_reports(self, reports: int) -> float:
        codes: list[str] = []
        while len(codes) < reports * CODES_PER_SHIPMENT:
            codes += self.dairy_codes(min(30_000, reports * CODES_PER_SHIPMENT - len(codes)))
        docs = [
            self.world.doc(self.producer, DocType.APPLY, codes=codes[i : i + CODES_PER_SHIPMENT],
                           attributes=ATTRIBUTES).wire()
            for i in range(0, len(codes), CODES_PER_SHIPMENT)
        ]
        return len(codes) / self.timed_blocks(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, default=100, help="1,000-code documents per kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compact-first", action="store_true",
                        help="compact LevelDB before each timed kind (the apply alone)")
    args = parser.parse_args()
    global COMPACT_FIRST
    COMPACT_FIRST = args.compact_first
    rates: dict[str, list[float]] = {
        "plain": [], "attributes": [], "plain_with_details": [], "apply_attributes": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp) / "db")
        kinds: list[tuple[str, Callable[[], float]]] = [
            ("plain", lambda: bench.shipments(args.shipments, False, False)),
            ("attributes", lambda: bench.shipments(args.shipments, True, False)),
            ("plain_with_details", lambda: bench.shipments(args.shipments, False, True)),
            ("apply_attributes", lambda: bench.print_reports(args.shipments)),
        ]
        for round_ in range(args.rounds):
            order = kinds if round_ % 2 == 0 else kinds[::-1]
            for name, run in order:
                rates[name].append(run())
        bench.world.store.close()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "codes_per_kind_per_round": args.shipments * CODES_PER_SHIPMENT,
        "compact_first": args.compact_first,
        "codes_per_s": {
            name: {"best": round(max(v)), "median": round(statistics.median(v))} for name, v in rates.items()
        },
        "attributes_vs_plain_median": round(
            statistics.median(rates["attributes"]) / statistics.median(rates["plain"]), 3),
        "details_vs_plain_median": round(
            statistics.median(rates["plain_with_details"]) / statistics.median(rates["plain"]), 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Decoding a signed document, beside a bare msgpack decode of the same bytes.

    .venv/bin/python -m bench.decode_bench [--documents 20000] [--repeats 5] [--codes 1]

Every node decodes each document it admits or applies once, and an audit decodes each
again. This times `ledger.decode_signed` (bounded, canonical and structural checks
included) on single-code shipment documents, and in the same run the floor: a bare
`msgpack.unpackb` of the wire and of its body with no check at all. Reported: the median
CPU microseconds per document of each over the repeats, and their ratio. To compare two
trees, run this file from one tree with the other's packages first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from bench.world import World
from ledger import DocType, decode_signed


def _per_document_us(decode: Callable[[bytes], Any], wires: list[bytes]) -> float:
    start = time.process_time()
    for wire in wires:
        decode(wire)
    return (time.process_time() - start) / len(wires) * 1e6


def _bare(wire: bytes) -> Any:
    body, _signature = msgpack.unpackb(wire)
    return msgpack.unpackb(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--codes", type=int, default=1, help="codes per document")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp) / "w")
        producer = world.register("RU", ["producer"], "Producer")
        buyer = world.register("KZ", ["wholesaler"], "Buyer")
        codes = world.emit("RU", producer, args.codes)
        wires = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes).wire()
                 for _ in range(args.documents)]
        world.store.close()
    checked, bare = [], []
    for _ in range(args.repeats):
        checked.append(_per_document_us(decode_signed, wires))
        bare.append(_per_document_us(_bare, wires))
    out = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "documents": args.documents, "codes_per_document": args.codes, "wire_bytes": len(wires[0]),
        "decode_signed_us_per_document": round(statistics.median(checked), 2),
        "bare_msgpack_us_per_document": round(statistics.median(bare), 2),
        "ratio_to_bare": round(statistics.median(checked) / statistics.median(bare), 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

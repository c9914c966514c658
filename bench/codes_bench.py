"""Parsing rate of marking codes as the product groups print them, one core.

Inputs: every unit and SSCC row of ../shared/data/codes (layouts.tsv, valid.tsv, sscc.tsv),
each also as HRI and as Digital Link, cycled to `--codes` inputs. Three parsers on the
same inputs:

- `read_code` (this round): identification and attributes apart, every layout;
- the parser before it (`ledger/_codes.py` at 03fbba6, kept as bench/_codes_before.py): it refuses
  codes with attributes (8005, 17, 10, 3103, 240), the 29-character pack code, the
  27-character SGTIN and fur signs, so the two are compared on the inputs both parse;
- biip's own `biip.parse` on the GS1 inputs, for scale: what calling biip per code would
  cost (the ledger takes only biip's AI table, once, at import).

    .venv/bin/python -m bench.codes_bench [--codes N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import biip

from ledger import CodeError, UnitCode, read_code

from . import _codes_before as before

ROOT = Path(__file__).resolve().parent.parent
GS = "\x1d"


def shared_codes() -> Path:
    """../shared/data/codes beside the checkout, or under TAMGA_SHARED_DATA."""
    override = os.environ.get("TAMGA_SHARED_DATA")
    beside = [ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    candidates = [Path(override)] if override else beside
    for data in candidates:
        if (data / "codes").is_dir():
            return data / "codes"
    raise SystemExit("shared test data not found: put shared/ beside the checkout or set TAMGA_SHARED_DATA")


def inputs() -> list[str]:
    """Every shared row as printed, and each unit as HRI and as Digital Link."""
    data = shared_codes()
    raws: list[str] = []
    for name, column in (("layouts.tsv", 1), ("valid.tsv", 0), ("sscc.tsv", 0)):
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith(("#", "group\t")):
                raws.append(line.split("\t")[column].replace("\\x1d", GS))
    forms = list(raws)
    for raw in raws:
        scanned = read_code(raw)
        code = scanned.code
        if isinstance(code, UnitCode):
            forms.append(scanned.digital_link())
            forms.append(code.element_string() + "".join(f"({ai}){v}" for ai, v in scanned.attributes))
    return forms


def rates(runs: dict[str, tuple[Callable[[str], Any], list[str]]], repeats: int) -> dict[str, float]:
    """Codes per second of each parser on its inputs, best of `repeats` passes taken in
    turn (one pass of each, then again), so that load from other processes on a shared
    machine falls on all of them alike. Timed in this process's CPU time: on a machine
    shared with other jobs, wall time counts the time others held the core."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for label, (parse, codes) in runs.items():
            start = time.process_time()
            for raw in codes:
                parse(raw)
            best[label] = min(best[label], time.process_time() - start)
    return {label: len(runs[label][1]) / best[label] for label in runs}


def accepted(parse: Callable[[str], Any], raws: list[str]) -> list[str]:
    out = []
    for raw in raws:
        try:
            parse(raw)
        except (CodeError, ValueError):
            continue
        out.append(raw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codes", type=int, default=50_000, help="inputs per pass (the mix cycled)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    mix = inputs()
    both = accepted(before.parse_code, mix)
    gs1 = [raw for raw in mix if read_code(raw).form == "gs1" and not raw.startswith("http")]

    def cycled(raws: list[str]) -> list[str]:
        return [raws[i % len(raws)] for i in range(args.codes)]

    print(f"mix: {len(mix)} distinct inputs; the parser before reads {len(both)} of them "
          f"({len(mix) - len(both)} refused: attributes, pack, SGTIN, fur)")
    measured = rates({
        "read_code, the whole mix": (read_code, cycled(mix)),
        "read_code, inputs both parse": (read_code, cycled(both)),
        "parser before, inputs both parse": (before.parse_code, cycled(both)),
        "biip.parse, GS1 element strings and HRI": (biip.parse, cycled(gs1)[: args.codes // 10]),
    }, args.repeats)
    for label, codes_per_s in measured.items():
        print(f"{label:<42} {codes_per_s:>12,.0f} codes/s")
    ratio = measured["read_code, inputs both parse"] / measured["parser before, inputs both parse"]
    print(f"read_code / parser before on the same inputs: x{ratio:.2f}")


if __name__ == "__main__":
    main()

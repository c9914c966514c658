"""`make testnet`'s main job, end to end: the demonstration tells its whole story.

The README gives a new user two commands; this is the first. It runs the demonstration
as `make testnet` does (a child process, five member states on loopback), with `--stop`,
and checks that each act of the story happened, not just that it exited 0.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import testnet

ROOT = Path(__file__).resolve().parent.parent.parent
DEMO_TIMEOUT_S = 300  # about 10 s on a quiet machine; a loaded shared one is far slower


def test_the_demonstration_tells_the_whole_cross_border_story(tmp_path: Path) -> None:
    directory = tmp_path / "testnet"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-m", "testnet.demo", "--dir", str(directory), "--stop"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    finally:
        if (directory / "testnet.json").exists():  # the nodes were started: stop what still runs
            with contextlib.suppress(testnet.TestnetError):
                testnet.down(directory)
    out = done.stdout
    assert done.returncode == 0, f"the demonstration failed:\n{out[-3000:]}\n{done.stderr[-3000:]}"
    # The acts a regulator, a business and an auditor would look for.
    assert "refused in block" in out and "is retired, not in circulation" in out  # the counterfeit copy
    assert "export record" in out and "INN" in out and "BIN" in out  # the cross-border trade record
    assert "403 not_entitled" in out  # need-to-know reads
    assert "is final: 4 of the 5 member states attest it" in out  # Byzantine finality
    assert "saved as" in out and "provenance-epcis.json" in out
    heads = [line.split()[-2] for line in out.splitlines()
             if line.strip()[:2] in ("AM", "BY", "KZ", "KG", "RU") and "height" in line and "head" in line]
    assert len(heads) == 5 and len(set(heads)) == 1, f"the five nodes do not hold one chain: {heads}"
    assert (directory / "demo" / "provenance-epcis.json").exists()

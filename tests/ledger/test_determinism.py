"""Determinism across processes: hash randomisation must not reach results or state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, {root!r})
from ledger import DocType
from tests.ledger.test_chain import build_chain
from tests.ledger.test_state import _setup, CASES
from tests.ledger.world import World
with tempfile.TemporaryDirectory() as tmp:
    world, _ = build_chain(Path(tmp) / "chain")
    # Every refusal of the table, whose messages name roles, states and codes.
    table = World(Path(tmp) / "table")
    keys, codes = _setup(table)
    # Reversed, so that refusals naming sets of roles come before the auditor's revocation.
    results = table.apply(*[case.build(table, keys, codes) for case in reversed(CASES)])
    roles = sum(r.reason.value == "forbidden_role" and " or " in r.message for r in results)
    print(world.store.head.hash.hex(), table.store.head.hash.hex(), table.store.head.state_hash.hex(), roles)
"""


def run_with_hash_seed(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=str(ROOT))],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    return done.stdout.strip()


def test_two_processes_with_different_hash_seeds_build_the_same_chain() -> None:
    """Set and dict order under different PYTHONHASHSEEDs gives the same head and state hashes."""
    first, second = run_with_hash_seed("1"), run_with_hash_seed("2")
    assert first and len(first.split()) == 4
    assert int(first.split()[3]) > 0, "no refusal named several roles"
    assert first == second

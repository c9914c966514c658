"""Every test is in exactly one layer: unit, sim or process (STYLE.md, "Tests in three layers").

- unit: pure and fast; `make check` runs these in the inner loop.
- sim: seeded simulation and property campaigns; longer with SIM_SEEDS (`make sim`).
- process: starts real node processes, servers on loopback, or other interpreters.

A module may say its layer itself (`pytestmark = pytest.mark.unit`); otherwise the most
specific entry of LAYERS (a test, a file, or a directory) gives it. A test in no layer, or in
two, stops the collection: a new test directory needs an entry here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("unit", "sim", "process")
LAYERS: dict[str, str] = {
    "tests/ledger": "unit",
    "tests/ledger/test_properties.py": "sim",  # random document sequences (hypothesis)
    "tests/ledger/test_access_properties.py": "sim",  # random journeys against the access rule (hypothesis)
    "tests/ledger/test_determinism.py": "process",  # interpreters with other hash seeds
    # Writers in child processes, killed with SIGKILL.
    "tests/ledger/test_chain.py::test_a_writer_killed_at_random_moments_never_leaves_half_a_block": "process",
    "tests/consensus/test_leveldb_storage.py::test_sigkill_recovers_exactly_the_synced_state": "process",
    "tests/consensus": "unit",
    "tests/consensus/test_random.py": "sim",
    "tests/node": "process",  # in-process nodes serve on loopback; test_cluster runs processes
    "tests/node/test_units.py": "unit",
    "tests/node/test_feed_client.py": "unit",  # the feed's client side, without a node
    "tests/node/test_feed_properties.py": "sim",  # random journeys against the feed and inbox (seeded)
    "tests/node/test_finality.py::test_evidence_items_decode_bounded_and_the_store_is_bounded": "unit",
    "tests/node/test_finality.py::test_after_a_clear_new_evidence_against_the_state_is_kept_again": "unit",
    "tests/cli": "process",  # commands against a three-state network on loopback
    "tests/cli/test_offline.py": "unit",
    "tests/cli/test_epcis.py": "unit",
    "tests/cli/test_analytics.py": "unit",  # a ledger built in-process, exported and queried
    "tests/cli/test_dashboards.py": "unit",
    "tests/hostile": "process",  # the hostile-peer harness against a three-state network
    "tests/console": "process",  # the console in headless Chromium against a three-state testnet
    "tests/console/test_units.py": "unit",
    "tests/test_boundaries.py": "unit",
    "tests/test_decoders_fuzz.py": "unit",  # bounded examples; FUZZ_EXAMPLES for more
    "tests/test_layers.py": "unit",
}


def layer_of(rel: str, name: str = "") -> str | None:
    """The layer LAYERS gives test `name` of the file at `rel` (a path under the repository)."""
    if f"{rel}::{name}" in LAYERS:
        return LAYERS[f"{rel}::{name}"]
    matches = [key for key in LAYERS if rel == key or rel.startswith(key + "/")]
    return LAYERS[max(matches, key=len)] if matches else None


def _rel(item: pytest.Item) -> str:
    return item.path.resolve().relative_to(ROOT).as_posix()


def _name(item: pytest.Item) -> str:
    return item.originalname if isinstance(item, pytest.Function) else item.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        own = {m.name for m in item.iter_markers() if m.name in MARKERS}
        if not own:
            layer = layer_of(_rel(item), _name(item))
            if layer is not None:
                item.add_marker(getattr(pytest.mark, layer))
                own = {layer}
        if len(own) != 1:
            problems.append(f"{item.nodeid}: {sorted(own) or 'no layer'}")
    if problems:
        raise pytest.UsageError(
            "each test needs exactly one of the markers unit, sim, process (tests/conftest.py LAYERS):\n  "
            + "\n  ".join(problems[:20])
        )

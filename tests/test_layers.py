"""The layer table of tests/conftest.py stays true to the tests it names."""

from __future__ import annotations

import ast

from tests.conftest import LAYERS, MARKERS, ROOT, layer_of


def test_every_layer_entry_names_a_test_file_or_directory_that_exists() -> None:
    """Each LAYERS key is a directory, a file, or a test function in a file, all present."""
    missing = []
    for key in LAYERS:
        rel, _, name = key.partition("::")
        path = ROOT / rel
        if not path.exists():
            missing.append(key)
        elif name:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
            if name not in defined:
                missing.append(key)
    assert missing == []
    assert set(LAYERS.values()) <= set(MARKERS)


def test_every_test_file_has_a_layer() -> None:
    """No test file falls outside the table (collection would stop on it anyway)."""
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py"))
    assert files
    assert [f for f in files if layer_of(f) is None] == []


def test_the_most_specific_entry_wins() -> None:
    """A test entry beats its file, a file beats its directory."""
    assert layer_of("tests/consensus/test_log.py") == "unit"
    assert layer_of("tests/consensus/test_random.py") == "sim"
    assert layer_of("tests/consensus/test_leveldb_storage.py") == "unit"
    assert layer_of("tests/consensus/test_leveldb_storage.py", "test_sigkill_recovers_exactly_the_synced_state") == "process"

"""The layers import only downwards: ledger and consensus never reach up or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "ledger": {"node", "consensus", "cli", "aiohttp", "click"},
    "consensus": {"ledger", "node", "cli", "aiohttp", "click"},
    "node": {"cli"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_layers_import_only_downwards() -> None:
    """Every module of ledger/, consensus/ and node/ avoids the packages above it."""
    violations = []
    checked = 0
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            checked += 1
            bad = imported_top_levels(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert checked > 3
    assert violations == []


def test_boundary_checker_sees_forbidden_imports(tmp_path: Path) -> None:
    """The checker itself notices both plain and from-imports."""
    sample = tmp_path / "m.py"
    sample.write_text("import aiohttp.web\nfrom node.app import x\nfrom . import y\n")
    assert imported_top_levels(sample) == {"aiohttp", "node"}

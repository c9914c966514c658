"""The packages import only along the edges DESIGN.md draws, and only each other's public names.

Imports are read from the source (ast), so a lazy import inside a function counts, and
so does a string handed to `importlib.import_module` or `__import__`. Outside tests,
importing a file by its path and putting directories on `sys.path` are refused: a
package is reached by its name or not at all.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "consensus", "node", "cli", "testnet", "bench", "tests")

# The first-party modules each package may import (a name and everything under it);
# a package always may import itself. Only public modules: see `is_private`.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "ledger": frozenset(),
    "consensus": frozenset(),
    "node": frozenset({"ledger", "consensus"}),
    # The CLI reaches nodes over HTTP through the client library, and builds, signs
    # and verifies with the ledger.
    "cli": frozenset({"ledger", "node.client"}),
    "testnet": frozenset({"ledger", "node"}),
    "bench": frozenset({"ledger", "consensus", "node", "testnet"}),
    "tests": frozenset(PACKAGES),
}
# Modules with an edge more than their package, each for a reason.
MODULE_MAY_IMPORT: dict[str, frozenset[str]] = {
    # `tamga testnet ...`, `tamga node run` (a node in this process) and `tamga bench`.
    "cli/_cmd_ops.py": frozenset({"node", "testnet", "bench"}),
    # The demonstration walks the same library calls as the `tamga` commands.
    "testnet/demo.py": frozenset({"cli"}),
    # Times `tamga export parquet` and `tamga sql` in-process too, beside the commands.
    "bench/analytics_bench.py": frozenset({"cli"}),
    # The console's screenshots (and browser tests) need a live testnet with the demonstration's documents.
    "cli/console/screenshots.py": frozenset({"testnet"}),
}
# Third-party packages: consensus knows only its storage and wire format; the ledger
# is deterministic and knows nothing of HTTP or the command line.
THIRD_PARTY_ONLY: dict[str, frozenset[str]] = {"consensus": frozenset({"msgpack", "plyvel"})}
THIRD_PARTY_NEVER: dict[str, frozenset[str]] = {
    "ledger": frozenset({"aiohttp", "yarl", "click", "prometheus_client"}),
}
# Private imports across packages that another change is taking away. Removed by the
# node restructure (node/ stops importing the ledger's record types by their private
# module); `test_known_private_imports_still_exist` says when an entry can go.
KNOWN_PRIVATE_IMPORTS: frozenset[tuple[str, str]] = frozenset({
})
IMPORT_CALLS = {"import_module", "__import__"}
FILE_PATH_IMPORTS = {"spec_from_file_location", "module_from_spec", "SourceFileLoader"}


@dataclass(frozen=True, slots=True)
class Import:
    line: int
    module: str  # dotted, e.g. "ledger._records.Record" for `from ledger._records import Record`


def imports(tree: ast.AST) -> list[Import]:
    """Every absolute import in a module: statements, and string arguments of import calls."""
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.extend(Import(node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and _called_name(node) in IMPORT_CALLS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(Import(node.lineno, first.value))
    return found


def _called_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return ""


def path_tricks(tree: ast.AST) -> list[str]:
    """Imports by file path, dynamic import names, and `sys.path` edits."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node)
        if name in FILE_PATH_IMPORTS:
            out.append(f"line {node.lineno}: imports a file by its path ({name})")
        elif name in IMPORT_CALLS and not (
            node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
        ):
            out.append(f"line {node.lineno}: imports a module whose name is computed ({name})")
        elif (
            isinstance(node.func, ast.Attribute)
            and name in ("insert", "append", "extend")
            and ast.unparse(node.func.value) == "sys.path"
        ):
            out.append(f"line {node.lineno}: edits sys.path")
    return out


def is_private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:])


def _covers(allowed: frozenset[str], module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def violations_of(rel: str, tree: ast.AST) -> list[str]:
    """What is wrong with the imports of the module at `rel` (a path under the root)."""
    package = rel.split("/")[0]
    may = MAY_IMPORT[package] | MODULE_MAY_IMPORT.get(rel, frozenset()) | {package}
    out = []
    for imp in imports(tree):
        top = imp.module.split(".")[0]
        where = f"{rel}:{imp.line} imports {imp.module}"
        if top in PACKAGES:
            if top != package and not _covers(may, imp.module):
                out.append(f"{where}: {package} may import only {sorted(may)}")
            elif top != package and package != "tests" and is_private(imp.module):
                private = ".".join(imp.module.split(".")[:2])
                if (rel, private) not in KNOWN_PRIVATE_IMPORTS:
                    out.append(f"{where}: a private module of {top}")
        elif top in THIRD_PARTY_NEVER.get(package, ()):
            out.append(f"{where}: {package} never imports {top}")
        elif package in THIRD_PARTY_ONLY and top not in sys.stdlib_module_names | THIRD_PARTY_ONLY[package]:
            out.append(f"{where}: {package} imports only the standard library and "
                       f"{sorted(THIRD_PARTY_ONLY[package])}")
    if package != "tests":
        out.extend(f"{rel} {trick}" for trick in path_tricks(tree))
    return out


def sources() -> list[tuple[str, ast.AST]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            out.append((rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)))
    return out


def test_every_package_imports_only_along_its_edges() -> None:
    """Every module of every package imports only what its package (or it) may, and only public modules."""
    checked = sources()
    assert {rel.split("/")[0] for rel, _ in checked} == set(PACKAGES)
    violations = [v for rel, tree in checked for v in violations_of(rel, tree)]
    assert violations == []


def test_known_private_imports_still_exist() -> None:
    """Each allowed private import is still there; once it is gone, its entry must go too."""
    present = {
        (rel, ".".join(imp.module.split(".")[:2]))
        for rel, tree in sources()
        for imp in imports(tree)
        if is_private(imp.module)
    }
    stale = sorted(KNOWN_PRIVATE_IMPORTS - present)
    assert stale == [], f"no longer imported: remove {stale} from KNOWN_PRIVATE_IMPORTS"


def _check(rel: str, source: str) -> list[str]:
    return violations_of(rel, ast.parse(source))


@pytest.mark.parametrize(
    ("rel", "source", "complaint"),
    [
        ("ledger/x.py", "import aiohttp.web\n", "never imports aiohttp"),
        ("ledger/x.py", "from node.client import NodeClient\n", "ledger may import only"),
        ("consensus/x.py", "import cryptography\n", "imports only the standard library"),
        ("cli/x.py", "from node import NodeClient\n", "cli may import only"),
        ("cli/x.py", "from node._api import MSGPACK\n", "cli may import only"),
        ("bench/x.py", "from tests.ledger.world import World\n", "bench may import only"),
        ("bench/x.py", "from ledger._records import Record\n", "a private module of ledger"),
        ("bench/x.py", "from ledger import _records\n", "a private module of ledger"),
        ("testnet/x.py", "import importlib\nimportlib.import_module('tests.ledger')\n", "testnet may import only"),
        ("testnet/x.py", "__import__('ledger._state')\n", "a private module of ledger"),
        ("cli/x.py", "import importlib.util\nimportlib.util.spec_from_file_location('m', 'p.py')\n",
         "imports a file by its path"),
        ("cli/x.py", "import importlib\nname = 'bench'\nimportlib.import_module(name)\n", "name is computed"),
        ("bench/x.py", "import sys\nsys.path.insert(0, '..')\n", "edits sys.path"),
    ],
)
def test_the_checker_sees_each_kind_of_forbidden_import(rel: str, source: str, complaint: str) -> None:
    """The checker notices plain, from-, lazy and dynamic imports, private modules and path tricks."""
    found = _check(rel, source)
    assert any(complaint in v for v in found), found


def test_the_checker_allows_the_drawn_edges() -> None:
    """Public imports along the edges, relative imports and a package's own privates pass."""
    assert _check("cli/x.py", "from node.client import SyncNodeClient\nimport ledger\nfrom . import _options\n") == []
    assert _check("cli/_cmd_ops.py", "import testnet\nfrom bench.tamga_bench import run_bench\n") == []
    assert _check("node/x.py", "from node._app import create_app\nfrom consensus import RawNode\n") == []
    assert _check("tests/x.py", "from node._mempool import Mempool\nimport sys\nsys.path.insert(0, '.')\n") == []


# The ledger's LevelDB keys are its own: outside ledger/ the store is read through typed
# `LedgerStore` methods (issue 9), so a key layout change stays inside one package. The
# node had drifted back to `store.db.get` twice (recall records, then the event feed).
RAW_STORE_READERS = ("node", "cli", "testnet")


def test_no_package_outside_the_ledger_reads_its_leveldb_handle() -> None:
    found = []
    for package in RAW_STORE_READERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Attribute) and node.attr == "db"
                        and isinstance(node.value, (ast.Name, ast.Attribute))
                        and (getattr(node.value, "id", None) or getattr(node.value, "attr", "")).endswith("store")):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], f"raw LevelDB reads of the ledger store outside ledger/: {found}"

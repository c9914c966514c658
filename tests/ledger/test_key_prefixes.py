"""Every LevelDB key prefix of the ledger is distinct: two tables sharing a prefix would
read each other's keys in a prefix scan (the product attributes and the audit grants
once both took b"a", on branches written side by side)."""

from __future__ import annotations

import importlib
import pkgutil

import ledger


def test_every_key_prefix_names_one_table() -> None:
    owners: dict[bytes, list[str]] = {}
    for info in pkgutil.iter_modules(ledger.__path__):
        module = importlib.import_module(f"ledger.{info.name}")
        for name, value in vars(module).items():
            if name.startswith("P_") and isinstance(value, bytes) and getattr(value, "__len__", None):
                qualified = f"{info.name}.{name}"
                if qualified not in owners.setdefault(value, []):
                    owners[value].append(qualified)
    # A constant re-exported by another module is the same table, not a clash.
    clashes = {p: names for p, names in owners.items() if len({n.split(".")[1] for n in names}) > 1}
    assert len(owners) >= 20, owners  # the scan found the tables
    assert not clashes, clashes

"""`tamga export parquet --node` against the in-process network: the tables agree with
the node's API (block headers, a sold code's history), and a second run appends."""

from __future__ import annotations

import json
from pathlib import Path

import ledger
from node.client import SyncNodeClient

from .conftest import World, as_json, ok
from .test_audit import sold_code


def test_an_export_from_a_node_agrees_with_its_api(world: World, tmp_path: Path) -> None:
    """Counts of blocks and documents equal the node's headers; the sold code's history in
    DuckDB equals the node's history of it; a second export appends a part."""
    code = sold_code(world)
    reader = world.regulators["RU"]
    client = SyncNodeClient(reader.node, ledger.KeyPair.load(reader.key), genesis=ledger.Genesis.load(Path(world.genesis)))
    out = tmp_path / "export"
    first = as_json(ok(["export", "parquet", "--out", str(out), "--json", *reader.args()]))
    height = first["last"]
    headers = client.headers(1, height)
    assert first["rows"]["blocks"] == height == len(headers)
    assert first["rows"]["documents"] == sum(h["documents"] for h in headers)
    expected = [(e["height"], e["position"], e["document_id"], e["type"]) for e in client.history(code)
                if e["height"] <= height]
    query = (f"SELECT height, position, document_id, type FROM code_history WHERE code = '{code}' "
             "ORDER BY height, position")
    rows = [json.loads(line) for line in ok(["sql", "--data", str(out), "--json", query]).stdout.splitlines()]
    assert [(r["height"], r["position"], r["document_id"], r["type"]) for r in rows] == expected
    assert [r[3] for r in expected][-1] == "retire"
    world.fresh_codes(1)
    SyncNodeClient(reader.node, genesis=ledger.Genesis.load(Path(world.genesis))).wait_height(height + 1)
    second = as_json(ok(["export", "parquet", "--out", str(out), "--json", *reader.args()]))
    assert second["first"] == height + 1 and second["parts"] == 2

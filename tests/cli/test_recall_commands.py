"""`tamga recall`, `tamga import` and `tamga trade` against the three-state network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from .conftest import GTIN, World, as_json, fails, make_actor, ok


def test_recall_file_show_list_release(world: World, epcis_schema: dict[str, Any]) -> None:
    """The producer recalls listed codes: moves are refused as recalled, the RU regulator
    sees the holder per state, a release frees them."""
    codes = world.fresh_codes(2)
    recall_id = ok(["recall", "file", "--gtin", GTIN, "--reason", "mislabelled", *codes,
                    *world.producer.args()]).stdout.strip()
    failed = fails(["code", "ship", "--to", world.wholesaler.id, codes[0], *world.producer.args()])
    assert "recalled" in failed.stderr
    # Anyone scanning the pack learns it is recalled (the public check).
    check = as_json(ok(["code", "check", codes[0], *world.node_args(world.producer.node), "--json"]))
    assert check["recalled"] is True
    view = as_json(ok(["recall", "show", recall_id, *world.regulators["RU"].args(), "--json"]))
    assert view["status"] == "active" and view["codes"] == 2
    assert view["states"]["RU"]["holders"] == [{"participant": world.producer.id, "codes": 2}]
    # Another state's regulator reads the recall, but no RU holder.
    kz_view = as_json(ok(["recall", "show", recall_id, *world.regulators["KZ"].args(), "--json"]))
    assert "RU" not in kz_view["states"]
    listed = as_json(ok(["recall", "list", "--status", "active", *world.retailer.args(), "--json"]))
    assert recall_id in [r["id"] for r in listed["recalls"]]
    assert "mislabelled" in ok(["recall", "show", recall_id, *world.producer.args()]).stdout
    ok(["recall", "release", recall_id, "--note", "relabelled", *world.regulators["RU"].args()])
    ok(["code", "ship", "--to", world.wholesaler.id, codes[0], *world.producer.args()])
    # The recall and its release as EPCIS 2.0, valid against the shared schema.
    document = json.loads(ok(["recall", "epcis", recall_id, *world.retailer.args()]).stdout)
    jsonschema.validate(document, epcis_schema, format_checker=jsonschema.FormatChecker())
    assert [e["persistentDisposition"] for e in document["epcisBody"]["eventList"]] == [
        {"set": ["recalled"]}, {"unset": ["recalled"]}]


def test_recall_needs_one_selector(world: World) -> None:
    fails(["recall", "file", "--gtin", GTIN, "--reason", "x", *world.producer.args()], code=2)


def test_trade_lists_an_accepted_cross_border_shipment(world: World) -> None:
    codes = world.fresh_codes(2)
    shipment = ok(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args()]).stdout.strip()
    ok(["code", "accept", shipment, *world.wholesaler.args()])
    exports = as_json(ok(["trade", "--state", "RU", "--direction", "export", *world.regulators["RU"].args(),
                          "--json"]))
    mine = [r for r in exports["records"] if r["shipment"] == shipment]
    assert mine and mine[0]["importer"]["id"] == world.wholesaler.id
    assert mine[0]["products"] == [{"gtin": GTIN, "units": 2}]
    # The exporter's and importer's tax ids, as their registrations gave them.
    for side, actor in (("exporter", world.producer), ("importer", world.wholesaler)):
        registered = as_json(ok(["participant", "show", actor.id, *world.regulators[actor.state].args(), "--json"]))
        assert mine[0][side]["tax_id"] == registered["tax_id"] and registered["tax_id"]
    text = ok(["trade", "--state", "RU", "--direction", "export", *world.regulators["RU"].args()]).stdout
    assert f"(tax id {mine[0]['importer']['tax_id']})" in text
    imports = as_json(ok(["trade", "--state", "KZ", "--direction", "import", *world.regulators["KZ"].args(),
                          "--json"]))
    assert shipment in [r["shipment"] for r in imports["records"]]
    # RU's exports are not KZ's regulator's to list.
    assert "not entitled" in fails(["trade", "--state", "RU", "--direction", "export",
                                    *world.regulators["KZ"].args()]).stderr


def test_import_declare_and_confirm(world: World, tmp_path: Path) -> None:
    importer = make_actor(tmp_path, world.net, "importer", "RU", "importer")
    ru = world.regulators["RU"]
    codes = ok(["code", "emit", "--gtin", GTIN, "--count", "2", "--to", importer.id, *ru.args()]).stdout.split()
    import_id = ok(["import", "declare", "--declaration", "10702020/300126/0001234", "--country", "CN",
                    *codes, *importer.args()]).stdout.strip()
    assert as_json(ok(["import", "show", import_id, *ru.args(), "--json"]))["status"] == "pending"
    assert "wrong status" in fails(["code", "ship", "--to", world.wholesaler.id, codes[0],
                                    *importer.args()]).stderr
    assert "another member state" in fails(["import", "confirm", import_id, *world.regulators["KZ"].args()]).stderr
    ok(["import", "confirm", import_id, *ru.args()])
    assert as_json(ok(["import", "show", import_id, *importer.args(), "--json"]))["status"] == "confirmed"
    ok(["code", "ship", "--to", world.wholesaler.id, codes[0], *importer.args()])

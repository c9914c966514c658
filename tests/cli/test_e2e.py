"""The `make testnet` story, typed as `tamga` commands against five real node processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

import ledger
from cli import documents
from testnet import poll_until

from .conftest import GTIN, as_json, fails, ok, tax_id_of


def test_cross_border_journey_through_the_cli_on_a_real_testnet(tmp_path: Path, epcis_schema: dict[str, Any]) -> None:
    """Producer (RU) -> pallet -> wholesaler (KZ) -> retailer (KG) -> sale; a counterfeit is refused;
    audit verify, audit prove + check and export epcis all succeed; every node ends on the same head."""
    directory = tmp_path / "testnet"
    ok(["testnet", "init", "--dir", str(directory)])
    try:
        rows = {r["state"]: r for r in as_json(ok(["testnet", "up", "--dir", str(directory), "--json"]))}
        assert set(rows) == {"AM", "BY", "KZ", "KG", "RU"} and all(r["pid"] for r in rows.values())
        journey(tmp_path, directory, rows, epcis_schema)
    finally:
        ok(["testnet", "down", "--dir", str(directory)])
    stopped = as_json(ok(["testnet", "status", "--dir", str(directory), "--json"]))
    assert all(r["pid"] is None for r in stopped)


def journey(tmp: Path, directory: Path, rows: dict[str, dict[str, Any]], schema: dict[str, Any]) -> None:
    genesis = str(directory / "genesis.json")

    def at(state: str, key: Path | str) -> list[str]:
        return ["--node", rows[state]["url"], "--genesis", genesis, "--key", str(key)]

    def regulator(state: str) -> list[str]:
        return at(state, rows[state]["regulator_key"])

    ids: dict[str, str] = {}
    keys: dict[str, Path] = {}
    for name, state, role in (("producer", "RU", "producer"), ("wholesaler", "KZ", "wholesaler"),
                              ("retailer", "KG", "retailer"), ("auditor", "RU", "auditor")):
        keys[name] = tmp / f"{name}.pem"
        ids[name] = as_json(ok(["keys", "new", "--out", str(keys[name]), "--json"]))["participant"]
        tax_id = ["--tax-id", tax_id_of(state)] if role != "auditor" else []  # an auditor trades nothing
        out = ok(["participant", "register", f"{keys[name]}.pub", "--role", role, "--name", name, *tax_id,
                  *regulator(state)])
        assert out.stdout.strip() == ids[name]
    # Reads follow need to know (docs/ACCESS.md): Russia lets the auditor audit it.
    ok(["participant", "grant-audit", ids["auditor"], *regulator("RU")])

    # Dairy: the catalogue gives the group, the group its 6-character serials and the expiry
    # date that introduce must give.
    ok(["product", "register", "--gtin", GTIN, "--group", "dairy", "--name", "Kefir 1 l", "--tnved", "0403",
        "--producer", ids["producer"], *regulator("RU")])
    shown = as_json(ok(["product", "show", GTIN, "--node", rows["KG"]["url"], "--genesis", genesis, "--json"]))
    assert shown["group"] == "dairy" and shown["required"] == ["17"], shown
    codes = ok(["code", "emit", "--gtin", GTIN, "--count", "6", "--to", ids["producer"], *regulator("RU")])
    assert all(len(c) == 2 + 14 + 2 + 6 for c in codes.stdout.split()), codes.stdout
    codes_file = tmp / "codes.txt"
    codes_file.write_text(codes.stdout)
    producer, wholesaler, retailer = at("RU", keys["producer"]), at("KZ", keys["wholesaler"]), at("KG", keys["retailer"])
    assert "needs attribute(s) 17" in fails(["code", "introduce", "--file", str(codes_file), *producer]).stderr
    ok(["code", "introduce", "--file", str(codes_file), "--attr", "17=270630", *producer])
    pallet = documents.make_sscc("4600000")
    ok(["code", "aggregate", "--sscc", pallet, "--file", str(codes_file), *producer])
    to_kz = ok(["code", "ship", "--to", ids["wholesaler"], pallet, *producer]).stdout.strip()
    ok(["code", "accept", to_kz, *wholesaler])
    ok(["code", "disaggregate", pallet, *wholesaler])
    units = codes.stdout.split()
    to_kg = ok(["code", "ship", "--to", ids["retailer"], *units[:2], *wholesaler]).stdout.strip()
    ok(["code", "accept", to_kg, *retailer])
    sold = units[0]
    ok(["code", "retire", "--reason", "retail_sale", sold, *retailer])

    def checked_in_armenia() -> str:
        # Committed means durable on a majority; the Armenian node may apply it a moment later.
        status = as_json(ok(["code", "check", sold, "--node", rows["AM"]["url"], "--genesis", genesis, "--json"]))["status"]
        return str(status) if status == "retired" else ""

    poll_until(checked_in_armenia, 10, "the Armenian node to see the sale")

    counterfeit = fails(["code", "ship", "--to", ids["wholesaler"], sold, *retailer, "--json"])
    assert counterfeit.stderr.startswith("rejected (wrong status): ") and "retired" in counterfeit.stderr
    last_height = as_json(counterfeit)["height"]

    def same_head() -> bool:
        status = as_json(ok(["testnet", "status", "--dir", str(directory), "--json"]))
        return len({(r["height"], r["head_hash"]) for r in status}) == 1 and status[0]["height"] == last_height

    # Committed means durable on a majority; every node applies it a moment later.
    poll_until(same_head, 20, "every node to hold the same head")

    flows = as_json(ok(["flows", "--from-state", "RU", "--to-state", "KZ", *regulator("RU"), "--json"]))
    assert [f["id"] for f in flows] == [to_kz]
    history = as_json(ok(["code", "history", sold, *at("BY", keys["auditor"]), "--json"]))["entries"]
    assert [e["type"] for e in history] == [
        "emit", "introduce", "aggregate", "ship", "accept", "disaggregate", "ship", "accept", "retire"]

    auditor = at("AM", keys["auditor"])
    report = as_json(ok(["audit", "verify", "--genesis", genesis, "--workers", "2", "--json", *auditor]))
    # Two rejected documents: the introduce without the expiry dairy requires, and the one
    # the journey provokes further on.
    assert report["ok"] and report["failure"] is None and report["rejected"] == 2

    proof = tmp / "proof.bin"
    ok(["audit", "prove", sold, "--out", str(proof), *auditor])
    checked = as_json(ok(["audit", "check", str(proof), "--genesis", genesis, "--json"]))
    assert checked["ok"] and [e["type"] for e in checked["events"]] == [e["type"] for e in history]

    epcis = tmp / "epcis.json"
    ok(["export", "epcis", sold, "--out", str(epcis), "--genesis", genesis, *auditor])
    document = json.loads(epcis.read_text())
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    events = document["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in events] == [
        "encoding", "commissioning", "packing", "shipping", "receiving", "unpacking", "shipping", "receiving",
        "retail_selling"]
    assert events[3]["epcList"] == [ledger.parse_key(pallet).digital_link()]
    assert report["height"] == last_height

"""`tamga governance propose|sign|submit|show` round trip against a three-state network:
a quorum of regulators (2 of 3) changes a chain parameter or the product-group table; one
signature does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testnet import poll_until

from .conftest import World, as_json, fails, ok


def _propose(world: World, out: Path) -> str:
    result = ok(["governance", "propose", "--action", "set_params", "--state", "RU",
                 "--param", "block_documents_max=10000", "--genesis", world.genesis, "--out", str(out)])
    return result.stdout.strip()


def test_propose_sign_submit_show_round_trip(world: World, tmp_path: Path) -> None:
    """Two regulators sign, a third submits; show reads it back from the chain, quorum met."""
    file = tmp_path / "params.json"
    proposal_id = _propose(world, file)
    shown = as_json(ok(["governance", "show", str(file), "--genesis", world.genesis, "--json"]))
    assert shown["id"] == proposal_id and shown["quorum"]["quorum_met"] is False
    for state in ("RU", "KZ"):
        ok(["governance", "sign", str(file), "--key", str(world.regulators[state].key)])
    # Signing twice keeps one signature per regulator.
    ok(["governance", "sign", str(file), "--key", str(world.regulators["KZ"].key)])
    shown = as_json(ok(["governance", "show", str(file), "--genesis", world.genesis, "--json"]))
    quorum = shown["quorum"]
    assert sorted(quorum.pop("signed_by")) == ["KZ", "RU"]
    assert quorum == {"needed": 2, "of": 3, "problem": None, "quorum_met": True}
    submitted = as_json(ok(["governance", "submit", str(file), *world.regulators["KG"].args(), "--json"]))
    assert submitted["status"] == "applied", submitted
    assert submitted["proposal"] == proposal_id
    on_chain = as_json(ok(["governance", "show", submitted["id"], "--node", world.regulators["KG"].node,
                           "--key", str(world.regulators["KG"].key), "--genesis", world.genesis, "--json"]))
    assert on_chain["status"] == "applied" and on_chain["id"] == proposal_id
    assert on_chain["quorum"]["quorum_met"] is True
    text = ok(["governance", "show", str(file), "--genesis", world.genesis]).stdout
    assert "quorum:" in text and "met" in text
    # The same proposal again is a replay: refused, exit 1, one line.
    fails(["governance", "submit", str(file), *world.regulators["RU"].args()])


def test_one_signature_is_not_a_quorum(world: World, tmp_path: Path) -> None:
    """With one of three regulators the document is rejected (no_quorum), exit 1."""
    file = tmp_path / "lonely.json"
    _propose(world, file)
    ok(["governance", "sign", str(file), "--key", str(world.regulators["RU"].key)])
    result = fails(["governance", "submit", str(file), *world.regulators["RU"].args()])
    assert "quorum" in result.stderr


def test_bad_input_is_one_line(world: World, tmp_path: Path) -> None:
    """Misuse and unreadable files fail with one line and no traceback."""
    fails(["governance", "show", str(tmp_path / "missing.json")])
    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"tamga_governance": 1, "proposal_bytes": "zz", "signatures": []}))
    fails(["governance", "sign", str(junk), "--key", str(world.regulators["RU"].key)])
    fails(["governance", "propose", "--action", "add_node", "--state", "KZ", "--genesis", world.genesis,
           "--out", str(tmp_path / "x.json")], code=2)
    unsigned = tmp_path / "unsigned.json"
    _propose(world, unsigned)
    fails(["governance", "submit", str(unsigned), *world.regulators["RU"].args()])


def test_a_membership_proposal_names_its_epoch(world: World, tmp_path: Path) -> None:
    """`--epoch` goes into what the regulators sign (show prints it); a parameter change
    takes none."""
    file = tmp_path / "remove.json"
    ok(["governance", "propose", "--action", "remove_node", "--state", "KZ", "--epoch", "3",
        "--genesis", world.genesis, "--out", str(file)])
    shown = as_json(ok(["governance", "show", str(file), "--json"]))
    assert shown["proposal"]["epoch"] == 3
    assert "membership epoch: 3" in ok(["governance", "show", str(file)]).stdout
    fails(["governance", "propose", "--action", "set_params", "--state", "RU", "--param", "block_documents_max=5",
           "--epoch", "1", "--genesis", world.genesis, "--out", str(tmp_path / "p.json")], code=2)


def test_a_quorum_sets_a_product_group_that_then_takes_products(world: World, tmp_path: Path) -> None:
    """`propose --action set_product_group --group-file` carries a group (JSON as genesis
    writes one); with two of three signatures it is in force: `product groups` lists it,
    a product registers under it and its codes are emitted. Retiring it needs a quorum too."""
    group = {"name": "kvass", "title": "Kvass", "layouts": [{"form": "gs1", "serial_chars": 13, "ais": ["93"]}],
             "required": [], "withdrawal_reasons": ["destroyed", "retail_sale"],
             "reasons_needing_document": ["destroyed"], "documents": ["emit", "introduce", "retire", "ship"]}
    group_file = tmp_path / "kvass-group.json"
    group_file.write_text(json.dumps(group))
    file = tmp_path / "kvass.json"
    ok(["governance", "propose", "--action", "set_product_group", "--state", "RU", "--group-file", str(group_file),
        "--genesis", world.genesis, "--out", str(file)])
    shown = ok(["governance", "show", str(file), "--genesis", world.genesis]).stdout
    assert "product group:" in shown and "kvass" in shown
    ru = world.regulators["RU"]
    product = ["product", "register", "--gtin", "02900002317701", "--group", "kvass", "--name", "Kvass 1 l",
               "--tnved", "2206", "--producer", world.producer.id, *ru.args()]
    assert "no product group 'kvass'" in fails(product).stderr
    ok(["governance", "sign", str(file), "--key", str(ru.key)])
    assert "quorum" in fails(["governance", "submit", str(file), *ru.args()]).stderr
    ok(["governance", "sign", str(file), "--key", str(world.regulators["KZ"].key)])
    ok(["governance", "submit", str(file), *world.regulators["KG"].args()])
    table = as_json(ok(["product", "groups", *world.node_args(ru.node), "--json"]))
    (kvass,) = [g for g in table["groups"] if g["name"] == "kvass"]
    assert kvass["status"] == "active" and kvass["reasons_needing_document"] == ["destroyed"]
    assert "kvass" in ok(["product", "groups", *world.node_args(ru.node)]).stdout

    # Every node applies the change: each lists the same table (the block's state hash,
    # which every node attests, covers it: tests/ledger/test_group_governance.py).
    def tables() -> list[Any]:
        return [as_json(ok(["product", "groups", *world.node_args(r.node), "--json"]))["groups"]
                for r in world.regulators.values()]

    poll_until(lambda: all(t == table["groups"] for t in tables()), 20.0, "every node lists the new group")
    ok(product)
    assert as_json(ok(["product", "show", "02900002317701", *world.node_args(ru.node), "--json"]))[
        "group_status"] == "active"
    ok(["code", "emit", "--gtin", "02900002317701", "--count", "1", "--to", world.producer.id, *ru.args()])
    # A group takes a group file, a retirement a name; not both, nor either on other actions.
    fails(["governance", "propose", "--action", "retire_product_group", "--state", "RU", "--group-file",
           str(group_file), "--genesis", world.genesis, "--out", str(tmp_path / "x.json")], code=2)
    fails(["governance", "propose", "--action", "set_params", "--state", "RU", "--group", "kvass",
           "--param", "block_documents_max=10000", "--genesis", world.genesis, "--out", str(tmp_path / "x.json")],
          code=2)
    bad = tmp_path / "bad-group.json"
    bad.write_text(json.dumps({**group, "reasons_needing_document": ["lost"]}))
    fails(["governance", "propose", "--action", "set_product_group", "--state", "RU", "--group-file", str(bad),
           "--genesis", world.genesis, "--out", str(tmp_path / "x.json")])

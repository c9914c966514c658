"""Every node-talking command against an in-process three-state network: success and each rejection."""

from __future__ import annotations

from pathlib import Path

import ledger
from cli import documents
from cli.documents import REASON_WORDS
from testnet import poll_until

from .conftest import GTIN, World, as_json, fails, ok, run, tax_id_of

GS = "\x1d"


def sscc() -> str:
    return documents.make_sscc("4600000")


def rejected(result_stderr: str, reason: str) -> None:
    """The one-line verdict names the ledger's reason in words, then the node's detail."""
    assert result_stderr.startswith(f"rejected ({REASON_WORDS[reason]}): "), result_stderr


# Participants.


def test_register_prints_the_participant_and_show_reads_it_back(world: World, tmp_path: Path) -> None:
    """A regulator registers a key from its .pub file; `participant show` and `holdings` read it back."""
    key_file = tmp_path / "shop.pem"
    info = as_json(ok(["keys", "new", "--out", str(key_file), "--json"]))
    kg = world.regulators["KG"]
    # A business without its tax id is refused on a chain with the catalogue; a tax id of
    # another state's shape (a Russian INN of 10 digits) too.
    args = ["participant", "register", str(key_file) + ".pub", "--role", "retailer", "--role", "wholesaler",
            "--name", "Osh Bazaar", *kg.args()]
    rejected(fails(args).stderr, "bad_tax_id")
    rejected(fails([*args, "--tax-id", "7707000001"]).stderr, "bad_tax_id")
    fails([*args, "--tax-id", "12-34"], code=2)
    result = ok([*args, "--tax-id", "01234200000099"])
    assert result.stdout.strip() == info["participant"]
    assert result.stderr.startswith("applied: register participant")
    shown = as_json(ok(["participant", "show", info["participant"], *world.retailer.args(), "--json"]))
    assert shown["state"] == "KG" and shown["roles"] == ["retailer", "wholesaler"] and shown["status"] == "active"
    assert shown["tax_id"] == "01234200000099"
    text = ok(["participant", "show", info["participant"], *kg.args()]).stdout
    assert any(line.startswith("tax id:") and line.endswith(" 01234200000099") for line in text.splitlines())
    holdings = as_json(ok(["participant", "holdings", info["participant"], *kg.args(), "--json"]))
    assert holdings["codes"] == []


def test_only_a_regulator_registers_and_only_once(world: World) -> None:
    """A producer registering is forbidden_role; registering a known key again is already_exists."""
    key = ledger.KeyPair.generate()
    result = fails(["participant", "register", key.public_key.hex(), "--role", "retailer", "--name", "x",
                    "--state", "RU", *world.producer.args()])
    rejected(result.stderr, "forbidden_role")
    again = fails(["participant", "register", ledger.KeyPair.load(world.producer.key).public_key.hex(),
                   "--role", "producer", "--name", "again", "--tax-id", tax_id_of("RU"), *world.regulators["RU"].args(),
                   "--json"])
    body = as_json(again)
    assert body["status"] == "rejected" and body["reason"] == "already_exists"


def test_revoked_participants_cannot_act_or_read(world: World, tmp_path: Path) -> None:
    """After `participant revoke`, the participant's documents are rejected as revoked and reads refused."""
    key_file = tmp_path / "gone.pem"
    pid = as_json(ok(["keys", "new", "--out", str(key_file), "--json"]))["participant"]
    kz = world.regulators["KZ"]
    ok(["participant", "register", str(key_file) + ".pub", "--role", "wholesaler", "--name", "Gone",
        "--tax-id", tax_id_of("KZ"), *kz.args()])
    fails(["participant", "revoke", pid, *world.regulators["RU"].args()])  # wrong state
    ok(["participant", "revoke", pid, *kz.args()])
    assert as_json(ok(["participant", "show", pid, *kz.args(), "--json"]))["status"] == "revoked"
    codes = world.fresh_codes(1)
    # The node refuses it at the door (403) or the ledger rejects it in a block: either way, revoked.
    result = fails(["code", "ship", "--to", world.wholesaler.id, *codes, *world.node_args(kz.node), "--key", str(key_file)])
    assert "revoked" in result.stderr
    assert "revoked" in fails(["code", "show", codes[0], *world.node_args(kz.node), "--key", str(key_file)]).stderr


# Emission and introduction.


def test_emit_prints_codes_and_introduce_reads_them_from_a_file_with_gs(world: World, tmp_path: Path) -> None:
    """Emitted codes print one per line; a file of scanned codes (GS tails kept) introduces them."""
    ru = world.regulators["RU"]
    result = ok(["code", "emit", "--gtin", GTIN[1:], "--count", "4", "--to", world.producer.id, *ru.args()])
    codes = result.stdout.split()
    assert len(codes) == 4 and all(c.startswith(f"01{GTIN}21") for c in codes)
    scanned = tmp_path / "scan.txt"
    scanned.write_bytes(b"".join(f"]d2{c}{GS}93Ab1x\r\n".encode() for c in codes[:3]))
    out = ok(["code", "introduce", "--file", str(scanned), *world.producer.args()])
    assert len(out.stdout.strip()) == 64 and out.stderr.startswith("applied: introduce")
    ok(["code", "introduce", "-", *world.producer.args()], input=(codes[3] + "\n").encode())
    shown = as_json(ok(["code", "show", codes[0], *world.producer.args(), "--json"]))
    assert shown["status"] == "introduced" and shown["owner"] == world.producer.id


def test_emit_with_a_bad_gtin_fails_before_signing(world: World) -> None:
    """A GTIN with a wrong check digit is refused locally with the digit expected."""
    result = fails(["code", "emit", "--gtin", GTIN[:-1] + "1", "--count", "1", "--to", world.producer.id,
                    *world.regulators["RU"].args()])
    assert "expected 8" in result.stderr


def test_introduce_rejections_name_their_reason(world: World) -> None:
    """Introducing twice is wrong_status, someone else's code not_owner, an unknown code unknown_code."""
    codes = world.fresh_codes(1)
    rejected(fails(["code", "introduce", *codes, *world.producer.args()]).stderr, "wrong_status")
    ru = world.regulators["RU"]
    emitted = ok(["code", "emit", "--gtin", GTIN, "--count", "1", "--to", world.producer.id, *ru.args()])
    other = ledger.KeyPair.generate()
    other_file = Path(str(world.producer.key) + ".other")
    other.save(other_file)
    ok(["participant", "register", other.public_key.hex(), "--role", "importer", "--name", "Importer",
        "--tax-id", tax_id_of("RU"), *ru.args()])
    rejected(fails(["code", "introduce", emitted.stdout.strip(), *world.node_args(ru.node), "--key", str(other_file)]).stderr,
             "not_owner")
    rejected(fails(["code", "introduce", f"01{GTIN}21NEVERISSUED", *world.producer.args()]).stderr,
             "unknown_code")
    rejected(fails(["code", "introduce", *codes, *world.retailer.args()]).stderr, "forbidden_role")


# Moving goods.


def test_pallet_journey_with_every_shipment_rejection(world: World) -> None:
    """Aggregate, ship, accept, disaggregate succeed; packed, in-transit and foreign codes are refused."""
    codes = world.fresh_codes(3)
    pallet = sscc()
    out = ok(["code", "aggregate", "--sscc", f"(00){pallet[2:]}", *codes, *world.producer.args()])
    assert out.stdout.strip() == pallet
    rejected(fails(["code", "ship", "--to", world.wholesaler.id, codes[0], *world.producer.args()]).stderr,
             "in_aggregate")
    shipment = ok(["code", "ship", "--to", world.wholesaler.id, pallet, *world.producer.args()]).stdout.strip()
    assert len(shipment) == 64
    rejected(fails(["code", "ship", "--to", world.retailer.id, pallet, *world.producer.args()]).stderr, "in_transit")
    rejected(fails(["code", "accept", shipment, *world.retailer.args()]).stderr, "not_owner")
    rejected(fails(["code", "accept", "ab" * 32, *world.wholesaler.args()]).stderr, "unknown_shipment")
    ok(["code", "accept", shipment, *world.wholesaler.args()])
    shown = as_json(ok(["code", "show", codes[1], *world.wholesaler.args(), "--json"]))
    assert shown["owner"] == world.wholesaler.id and shown["outermost_aggregate"] == pallet
    ok(["code", "disaggregate", pallet[2:], *world.wholesaler.args()])
    holdings = ok(["participant", "holdings", world.wholesaler.id, *world.wholesaler.args()]).stdout.split()
    assert set(codes) <= set(holdings)
    rejected(fails(["code", "ship", "--to", world.retailer.id, codes[0], *world.producer.args()]).stderr,
             "not_owner")
    history = as_json(ok(["code", "history", codes[0], *world.wholesaler.args(), "--json"]))["entries"]
    assert [e["type"] for e in history] == ["emit", "introduce", "aggregate", "ship", "accept", "disaggregate"]
    assert history[3]["via"] == pallet
    text = ok(["code", "history", codes[0], *world.wholesaler.args()]).stdout
    assert f"with {pallet}" in text and f"into {pallet}" in text


def test_cancel_reject_and_partial_accept(world: World) -> None:
    """A shipper cancels, a receiver rejects or accepts part; foreign codes are not_in_shipment."""
    codes = world.fresh_codes(3)
    producer, wholesaler = world.producer, world.wholesaler
    first = ok(["code", "ship", "--to", wholesaler.id, *codes, *producer.args()]).stdout.strip()
    rejected(fails(["code", "cancel", first, *wholesaler.args()]).stderr, "not_owner")
    ok(["code", "cancel", first, *producer.args()])
    rejected(fails(["code", "accept", first, *wholesaler.args()]).stderr, "wrong_status")
    second = ok(["code", "ship", "--to", wholesaler.id, *codes, *producer.args()]).stdout.strip()
    ok(["code", "reject", second, *wholesaler.args()])
    third = ok(["code", "ship", "--to", wholesaler.id, *codes, *producer.args()]).stdout.strip()
    rejected(fails(["code", "accept", third, f"01{GTIN}21NOTINIT", *wholesaler.args()]).stderr, "not_in_shipment")
    ok(["code", "accept", third, codes[0], *wholesaler.args()])
    # Read where the last document went: another node may apply it a moment later.
    # The Kazakh regulator reads them all (they were shipped into Kazakhstan); the wholesaler
    # only the code it holds now (docs/ACCESS.md).
    kz = world.regulators["KZ"]
    owners = [as_json(ok(["code", "show", c, *kz.args(), "--json"]))["owner"] for c in codes]
    assert owners == [wholesaler.id, producer.id, producer.id]
    assert as_json(ok(["code", "show", codes[0], *wholesaler.args(), "--json"]))["owner"] == wholesaler.id
    refused = fails(["code", "show", codes[1], *wholesaler.args()])
    assert refused.exit_code == 1 and refused.stderr.startswith("Error: not entitled:")
    assert fails(["code", "cancel", "not-hex", *producer.args()]).stderr.startswith("Error: 'not-hex' is not a shipment")


def test_retail_sale_return_and_roles(world: World) -> None:
    """Only a retailer sells; a sold code can be returned and sold again, but not shipped."""
    codes = world.fresh_codes(2)
    shipment = ok(["code", "ship", "--to", world.retailer.id, *codes, *world.producer.args()]).stdout.strip()
    ok(["code", "accept", shipment, *world.retailer.args()])
    rejected(fails(["code", "retire", "--reason", "retail_sale", codes[0], *world.producer.args()]).stderr,
             "forbidden_role")
    ok(["code", "retire", "--reason", "retail_sale", codes[0], *world.retailer.args()])
    check = as_json(ok(["code", "check", codes[0], *world.node_args(world.retailer.node), "--json"]))
    assert check == {"code": codes[0], "status": "retired", "suspended": False, "gtin": GTIN}
    rejected(fails(["code", "ship", "--to", world.wholesaler.id, codes[0], *world.retailer.args()]).stderr,
             "wrong_status")
    ok(["code", "return", codes[0], *world.retailer.args()])
    rejected(fails(["code", "return", codes[0], *world.retailer.args()]).stderr, "wrong_status")
    # Destruction needs its supporting document (issue 13): the act's type, number and date.
    ok(["code", "retire", "--reason", "destroyed", codes[1], "--doc-type", "destruction_act", "--doc-number", "D-1",
        "--doc-date", "2026-01-05", *world.retailer.args()])


def test_suspend_blocks_movement_until_release(world: World) -> None:
    """The regulator of the holder's state suspends; others get wrong_state; moves fail as suspended."""
    codes = world.fresh_codes(1)
    rejected(fails(["code", "suspend", *codes, "--note", "lab", *world.regulators["KZ"].args()]).stderr,
             "wrong_state")
    ok(["code", "suspend", *codes, "--note", "lab test", *world.regulators["RU"].args()])
    assert as_json(ok(["code", "check", *codes, *world.node_args(world.producer.node), "--json"]))["suspended"] is True
    rejected(fails(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args()]).stderr,
             "suspended")
    ok(["code", "release", *codes, *world.regulators["RU"].args()])
    ok(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args()])


def test_no_wait_prints_the_id_and_doc_show_tells_the_result(world: World) -> None:
    """--no-wait returns the document id at once; `doc show` later says applied, with its block."""
    codes = world.fresh_codes(1)
    doc_id = ok(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args(), "--no-wait"]).stdout
    doc_id = doc_id.strip()
    assert len(doc_id) == 64

    def applied() -> dict[str, object] | None:
        info = as_json(ok(["doc", "show", doc_id, *world.producer.args(), "--json"]))
        return info if info["status"] == "applied" else None

    info = poll_until(applied, 10, "the document to apply")
    assert info["document"]["document"]["type"] == "ship"
    text = ok(["doc", "show", doc_id, *world.producer.args()]).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines())
    assert fields["status"].strip() == "applied" and fields["block"].strip() == str(info["height"])


def test_rejected_json_is_one_object_and_exit_1(world: World) -> None:
    """--json prints the result object on stdout even when the document is rejected."""
    result = fails(["code", "introduce", f"01{GTIN}21NOPE", *world.producer.args(), "--json"])
    body = as_json(result)
    assert body["status"] == "rejected" and body["reason"] == "unknown_code" and body["type"] == "introduce"
    assert len(body["id"]) == 64 and isinstance(body["height"], int)


def test_check_is_public_and_unknown_codes_fail(world: World) -> None:
    """`code check` needs no key; a code nobody issued exits 1 saying so."""
    codes = world.fresh_codes(1)
    text = ok(["code", "check", ledger.parse_key(codes[0]).digital_link(), *world.node_args(world.producer.node)]).stdout
    assert "introduced" in text and GTIN in text
    assert "unknown" in fails(["code", "check", f"01{GTIN}21FAKE", *world.node_args(world.producer.node)]).stderr


def test_reads_without_a_key_say_what_is_needed(world: World) -> None:
    """Commercial reads without --key tell the user to give one."""
    codes = world.fresh_codes(1)
    assert "give --key FILE" in fails(["code", "show", codes[0], *world.node_args(world.producer.node)]).stderr


def test_flows_list_cross_border_shipments(world: World) -> None:
    """A RU->KZ shipment appears in `flows --from-state RU --to-state KZ`."""
    codes = world.fresh_codes(1)
    shipment = ok(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args()]).stdout.strip()
    flows = as_json(ok(["flows", "--from-state", "ru", "--to-state", "KZ", *world.regulators["RU"].args(), "--json"]))
    assert shipment in [f["id"] for f in flows]
    text = ok(["flows", "--from-state", "RU", "--to-state", "KZ", *world.regulators["RU"].args()]).stdout
    assert shipment in text


def test_errors_from_the_node_are_one_line(world: World) -> None:
    """A malformed request the node refuses (unknown document) is one line, exit 1."""
    result = fails(["participant", "show", "0" * 40, *world.producer.args()])
    assert "not registered" in result.stderr


def test_commands_read_the_environment(world: World) -> None:
    """TAMGA_NODE, TAMGA_KEY and TAMGA_GENESIS replace --node, --key and --genesis."""
    codes = world.fresh_codes(1)
    env = {"TAMGA_NODE": world.producer.node, "TAMGA_KEY": str(world.producer.key), "TAMGA_GENESIS": world.genesis}
    assert as_json(ok(["code", "show", codes[0], "--json"], env=env))["owner"] == world.producer.id


def test_status_line_goes_to_stderr_and_data_to_stdout(world: World) -> None:
    """Scripts capture only data: ship prints the shipment id alone on stdout."""
    codes = world.fresh_codes(1)
    result = ok(["code", "ship", "--to", world.wholesaler.id, *codes, *world.producer.args()])
    assert result.stdout.count("\n") == 1 and len(result.stdout.strip()) == 64
    assert "applied: ship" in result.stderr
    assert run(["code", "show", codes[0], *world.producer.args()]).stderr == ""


def test_repeated_codes_and_bad_receivers_are_rejected(world: World) -> None:
    """A code listed twice is repeated_code; shipping to oneself or to an auditor is invalid_receiver."""
    codes = world.fresh_codes(1)
    rejected(fails(["code", "ship", "--to", world.wholesaler.id, codes[0], codes[0], *world.producer.args()]).stderr,
             "repeated_code")
    rejected(fails(["code", "ship", "--to", world.producer.id, *codes, *world.producer.args()]).stderr,
             "invalid_receiver")
    rejected(fails(["code", "ship", "--to", world.auditor.id, *codes, *world.producer.args()]).stderr,
             "invalid_receiver")


def test_bench_reports_throughput_and_latency(world: World) -> None:
    """`tamga bench` drives the network for a second and reports docs/s, codes/s and percentiles."""
    result = as_json(ok(["bench", "--testnet", str(world.net.dir), "--kind", "single", "--duration", "1",
                         "--clients", "4", "--json"]))
    assert result["documents"] > 0 and result["errors"] == 0
    for key in ("docs_per_s", "codes_per_s", "p50_ms", "p95_ms", "p99_ms"):
        assert result[key] > 0


# The product catalogue.


def test_product_register_show_and_list(world: World) -> None:
    """The regulator registers a product; anyone shows and lists it; a business may not
    register one, and a GTIN is registered once."""
    ru = world.regulators["RU"]
    tobacco = "04609999000020"
    registered = ok(["product", "register", "--gtin", tobacco, "--group", "tobacco", "--name", "Filter 20",
                     "--tnved", "2402209000", "--producer", world.producer.id, *ru.args()])
    assert registered.stdout.splitlines()[0] == tobacco
    shown = ok(["product", "show", tobacco, *world.node_args(world.wholesaler.node)]).stdout
    assert "tobacco" in shown and "pack29: serial of 7, 8005" in shown and "required:" in shown
    listed = as_json(ok(["product", "list", "--group", "tobacco", "--json", *world.node_args(ru.node)]))
    assert [p["gtin"] for p in listed["products"]] == [tobacco] and listed["next"] is None
    rejected(fails(["product", "register", "--gtin", tobacco, "--group", "tobacco", "--name", "X", "--tnved",
                    "2402", "--producer", world.producer.id, *ru.args()]).stderr, "already_exists")
    rejected(fails(["product", "register", "--gtin", "04609999000105", "--group", "tobacco", "--name", "X",
                    "--tnved", "2402", "--producer", world.producer.id, *world.producer.args()]).stderr,
             "forbidden_role")
    emitted = ok(["code", "emit", "--gtin", tobacco, "--count", "2", "--to", world.producer.id, *ru.args()])
    codes = emitted.stdout.split()
    assert all(len(c) == 2 + 14 + 2 + 7 for c in codes), codes
    rejected(fails(["code", "introduce", *codes, *world.producer.args()]).stderr, "missing_attribute")
    ok(["code", "introduce", *codes, "--attr", "8005=015000", *world.producer.args()])
    assert "--attr" in fails(["code", "introduce", *codes, "--attr", "8005=15", *world.producer.args()], 2).stderr


# The lifecycle of real goods (issue 13).


def test_apply_write_off_remark_reaggregate_and_retire_with_a_document(world: World) -> None:
    """The print report, a write-off, a remark, a reaggregation and a withdrawal with its
    supporting document, each through its command; each refusal names its reason."""
    ru, producer = world.regulators["RU"], world.producer
    emitted = ok(["code", "emit", "--gtin", GTIN, "--count", "4", "--to", producer.id, *ru.args()]).stdout.split()
    applied = as_json(ok(["code", "apply", emitted[0], "--doc-date", "2026-01-01", *producer.args(), "--json"]))
    assert applied["status"] == "applied"
    shown = as_json(ok(["code", "show", emitted[0], *producer.args(), "--json"]))
    assert shown["status"] == "applied"
    rejected(fails(["code", "apply", emitted[0], *producer.args()]).stderr, "wrong_status")
    rejected(fails(["code", "apply", emitted[1], "--doc-date", "2999-01-01", *producer.args()]).stderr, "future_date")
    ok(["code", "write-off", "--reason", "spoiled", emitted[1], *producer.args()])
    live = world.fresh_codes(3)
    ok(["code", "remark", live[0], emitted[0], *producer.args()])
    old = as_json(ok(["code", "show", live[0], *producer.args(), "--json"]))
    assert old["status"] == "written_off" and old["replaced_by"] == emitted[0]
    pallet = sscc()
    ok(["code", "aggregate", "--sscc", pallet, live[1], *producer.args()])
    ok(["code", "reaggregate", "--sscc", pallet, "--add", live[2], "--remove", live[1], *producer.args()])
    assert as_json(ok(["code", "show", live[2], *producer.args(), "--json"]))["aggregate"] == pallet
    rejected(fails(["code", "retire", "--reason", "donation", live[1], *producer.args()]).stderr,
             "missing_document")
    ok(["code", "retire", "--reason", "donation", live[1], "--doc-type", "gift_deed", "--doc-number", "G-1",
        "--doc-date", "2026-01-02", *producer.args()])
    assert as_json(ok(["code", "show", live[1], *producer.args(), "--json"]))["retire_reason"] == "donation"


def test_ship_with_price_and_accept_per_child(world: World) -> None:
    """A shipment with its number, price and VAT; the buyer keeps one code of the pallet and
    the other goes back to the shipper."""
    producer, wholesaler = world.producer, world.wholesaler
    codes = world.fresh_codes(2)
    pallet = sscc()
    ok(["code", "aggregate", "--sscc", pallet, *codes, *producer.args()])
    shipment = as_json(ok(["code", "ship", "--to", wholesaler.id, pallet, "--doc-number", "UPD-7",
                           "--price", "120000", "--vat", "20000", "--doc-date", "2026-01-03",
                           *producer.args(), "--json"]))["id"]
    ok(["code", "accept", shipment, pallet, codes[0], *wholesaler.args()])
    back = as_json(ok(["code", "show", codes[1], *producer.args(), "--json"]))
    assert back["owner"] == producer.id and back["aggregate"] is None
    kept = as_json(ok(["code", "show", codes[0], *wholesaler.args(), "--json"]))
    assert kept["owner"] == wholesaler.id and kept["aggregate"] == pallet

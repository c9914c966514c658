"""Commands that need no node, misuse (exit 2), unreachable nodes and unreadable keys (exit 1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import ledger
from cli import documents

from .conftest import GTIN, as_json, fails, ok, run

GS = "\x1d"
UNIT = f"01{GTIN}21ABC123xyz"
DEAD_NODE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_keys_new_writes_an_owner_only_key_and_its_public_half(tmp_path: Path) -> None:
    """`keys new` prints the participant id and public key and writes FILE (0600) and FILE.pub."""
    out = tmp_path / "me.pem"
    info = as_json(ok(["keys", "new", "--out", str(out), "--json"]))
    key = ledger.KeyPair.load(out)
    assert info["participant"] == key.participant_id
    assert info["public_key"] == key.public_key.hex()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert ledger.parse_public_key((tmp_path / "me.pem.pub").read_bytes()) == key.public_key
    shown = ok(["keys", "show", str(out)])
    assert key.participant_id in shown.stdout and "BEGIN PUBLIC KEY" in shown.stdout


def test_keys_new_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    """An existing key file is never overwritten without --force."""
    out = tmp_path / "me.pem"
    ok(["keys", "new", "--out", str(out)])
    before = out.read_bytes()
    assert "exists" in fails(["keys", "new", "--out", str(out)]).stderr
    assert out.read_bytes() == before
    ok(["keys", "new", "--out", str(out), "--force"])
    assert out.read_bytes() != before


def test_encrypted_keys_need_their_passphrase(tmp_path: Path) -> None:
    """--encrypt asks for a passphrase; using the key needs TAMGA_KEY_PASSPHRASE."""
    out = tmp_path / "secret.pem"
    ok(["keys", "new", "--out", str(out), "--encrypt"], input="s3cret\ns3cret\n")
    fails(["keys", "show", str(out)])
    ok(["keys", "show", str(out)], env={"TAMGA_KEY_PASSPHRASE": "s3cret"})
    assert "passphrase is wrong" in fails(["keys", "show", str(out)], env={"TAMGA_KEY_PASSPHRASE": "no"}).stderr


@pytest.mark.parametrize("content", [None, b"not a key\n", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"])
def test_an_unreadable_key_file_is_one_line_and_exit_1(tmp_path: Path, content: bytes | None) -> None:
    """A missing or malformed --key stops a signing command before any request, with one line."""
    key = tmp_path / "key.pem"
    if content is not None:
        key.write_bytes(content)
    result = fails(["code", "introduce", UNIT, "--node", DEAD_NODE, "--key", str(key)])
    assert str(key) in result.stderr
    assert "cannot reach" not in result.stderr


def test_a_key_file_without_read_permission_is_one_line(tmp_path: Path) -> None:
    """A key the user may not read gives a one-line error naming the file."""
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    key = tmp_path / "key.pem"
    ledger.KeyPair.generate().save(key)
    key.chmod(0)
    assert "Permission denied" in fails(["keys", "show", str(key)]).stderr


def test_code_parse_reads_what_scanners_send() -> None:
    """GS separators, FNC1, ]d2, parentheses and Digital Links all give the same key."""
    for raw in (
        f"]d201{GTIN}21ABC123xyz{GS}93abcd",
        f"{GS}01{GTIN}21ABC123xyz{GS}91EE07{GS}92" + "A" * 44,
        f"(01){GTIN}(21)ABC123xyz",
        f"https://id.gs1.org/01/{GTIN}/21/ABC123xyz?93=abcd",
    ):
        info = as_json(ok(["code", "parse", raw, "--json"]))
        assert info["ok"] and info["key"] == UNIT and info["gtin"] == GTIN and info["serial"] == "ABC123xyz"
    human = ok(["code", "parse", f"(01){GTIN}(21)ABC123xyz"]).stdout
    assert "digital link:" in human and f"https://id.gs1.org/01/{GTIN}/21/ABC123xyz" in human


def test_code_parse_shows_attributes_and_the_pack_layout() -> None:
    """A cigarette block's price and a pack code's layout and price are shown apart from the key."""
    block = as_json(ok(["code", "parse", f"0104609999000105{'21'}Aemm1za{GS}8005230000{GS}93xlqV", "--json"]))
    assert block["key"] == "010460999900010521Aemm1za" and block["attributes"] == {"price": 230000}
    pack = as_json(ok(["code", "parse", "04609999000020G0tm>KXADvoF3Pf", "--json"]))
    assert pack["layout"] == "pack29" and pack["serial"] == "G0tm>KX" and pack["attributes"] == {"price": 23000}
    human = ok(["code", "parse", "04609999000020G0tm>KXADvoF3Pf"]).stdout
    assert "pack29" in human and "price:" in human


def test_code_parse_applies_a_product_groups_rules(tmp_path: Path) -> None:
    """With --group and a genesis, an AI the group does not use is refused by its name."""
    from testnet import product_groups
    from tests.ledger.world import make_genesis

    make_genesis(groups=product_groups()).save(tmp_path / "genesis.json")
    block = f"0104609999000105{'21'}Aemm1za{GS}8005230000{GS}93xlqV"
    genesis = ["--genesis", str(tmp_path / "genesis.json")]
    assert as_json(ok(["code", "parse", block, "--group", "tobacco", *genesis, "--json"]))["ok"]
    refused = as_json(run(["code", "parse", block, "--group", "dairy", *genesis, "--json"]))
    assert refused["reason"] == "unknown_ai" and "AI 8005 (PRICE PER UNIT)" in refused["message"]
    assert "no product group" in fails(["code", "parse", block, "--group", "caviar", *genesis], 2).stderr


def test_code_parse_from_stdin_keeps_gs_bytes() -> None:
    """'-' reads the code as scanned from standard input, GS bytes and CRLF included."""
    info = as_json(ok(["code", "parse", "-", "--json"], input=f"01{GTIN}21ABC123xyz{GS}93abcd\r\n".encode()))
    assert info["key"] == UNIT


def test_code_parse_says_why_it_refuses() -> None:
    """A scanner that drops GS gives missing_gs with a hint; a bad check digit names both digits."""
    result = fails(["code", "parse", f"01{GTIN}21ABC123xyz93abcd"])
    assert "missing_gs" in result.stderr and "GS" in result.stderr
    bad = as_json(run(["code", "parse", f"(01){GTIN[:-1]}9(21)X", "--json"]))
    assert bad["ok"] is False and bad["reason"] == "bad_check_digit"


@pytest.mark.parametrize("args", [
    ["code", "introduce", "--no-such-option"],
    ["code", "introduce", UNIT, "--node", DEAD_NODE],  # no --key
    ["code", "introduce", "--node", DEAD_NODE, "--key", "k.pem"],  # no codes
    ["code", "emit", "--gtin", GTIN, "--count", "0", "--to", "a" * 40, "--node", DEAD_NODE, "--key", "k"],
    ["code", "retire", "--reason", "stolen", UNIT, "--node", DEAD_NODE, "--key", "k"],
    ["participant", "register", "ab" * 32, "--role", "king", "--name", "x", "--node", DEAD_NODE, "--key", "k"],
    ["participant", "show", "not-an-id", "--node", DEAD_NODE],
    ["flows", "--from-state", "RU", "--to-state", "XX", "--node", DEAD_NODE],
    ["testnet", "kill", "ZZ", "--dir", "x"],
    ["testnet", "init", "--dir", "x", "--states", "RU,RU"],
    ["audit", "verify", "--genesis", "g.json"],  # neither --node nor --data-dir
    ["audit", "verify", "--genesis", "g.json", "--node", DEAD_NODE, "--data-dir", "d"],
    ["nonsense"],
])
def test_misuse_exits_2(args: list[str]) -> None:
    """Wrong options, missing arguments and bad values are usage errors: exit 2."""
    result = run(args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_more_codes_than_a_document_carries_is_misuse(tmp_path: Path) -> None:
    """30,001 codes in a file are refused before anything is signed (exit 2)."""
    key = tmp_path / "k.pem"
    ledger.KeyPair.generate().save(key)
    codes = tmp_path / "codes.txt"
    codes.write_text("".join(f"01{GTIN}21S{i:08d}\n" for i in range(30_001)))
    result = run(["code", "introduce", "--file", str(codes), "--node", DEAD_NODE, "--key", str(key)])
    assert result.exit_code == 2 and "30,000" in result.stderr


def test_a_bad_line_in_a_codes_file_is_named(tmp_path: Path) -> None:
    """An unreadable code in --file fails with its file and line number."""
    key = tmp_path / "k.pem"
    ledger.KeyPair.generate().save(key)
    codes = tmp_path / "codes.txt"
    codes.write_bytes(f"01{GTIN}21A{GS}93abcd\n\n01{GTIN}21B93abcd\n".encode())
    result = fails(["code", "introduce", "--file", str(codes), "--node", DEAD_NODE, "--key", str(key)])
    assert f"{codes} line 3" in result.stderr


@pytest.mark.parametrize("args", [
    ["code", "show", UNIT],
    ["code", "check", UNIT],
    ["doc", "show", "ab" * 32],
    ["participant", "holdings", "a" * 40],
    ["audit", "prove", UNIT, "--out", "p.bin"],
])
def test_an_unreachable_node_is_one_line_and_exit_1(args: list[str]) -> None:
    """Nothing listening at --node: exit 1 with one line that names the URL."""
    result = fails([*args, "--node", DEAD_NODE])
    assert DEAD_NODE in result.stderr and "connection refused" in result.stderr


def test_an_unreachable_node_from_the_environment(tmp_path: Path) -> None:
    """TAMGA_NODE and TAMGA_KEY stand in for --node and --key."""
    key = tmp_path / "k.pem"
    ledger.KeyPair.generate().save(key)
    result = fails(["code", "introduce", UNIT], env={"TAMGA_NODE": DEAD_NODE, "TAMGA_KEY": str(key)})
    assert DEAD_NODE in result.stderr


def test_debug_shows_the_traceback() -> None:
    """With --debug the failure propagates (CliRunner sees the exception) instead of one line."""
    result = run(["--debug", "code", "show", UNIT, "--node", DEAD_NODE])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "NodeUnreachable"


def test_random_serials_read_back_unambiguously() -> None:
    """Emitted serials never look like a GS-less crypto tail, so their keys parse back as themselves."""
    serials = documents.random_serials(GTIN, 2000)
    assert len(set(serials)) == 2000
    for s in serials:
        assert ledger.parse_code(f"01{GTIN}21{s}").key == f"01{GTIN}21{s}"


def test_codes_from_arguments_files_and_stdin_keep_their_order() -> None:
    """Lines are split on LF with CR dropped and blank lines skipped; each keeps its source."""
    lines = documents.split_lines(f"01{GTIN}21A{GS}93abcd\r\n\n  \n(01){GTIN}(21)B\n".encode(), "f")
    assert [line.source for line in lines] == ["f line 1", "f line 4"]
    assert documents.parse_codes(lines) == [f"01{GTIN}21A", f"01{GTIN}21B"]


def test_rejections_read_as_words() -> None:
    """Every ledger reason has words; the node's detail follows them."""
    assert set(documents.REASON_WORDS) == {r.value for r in ledger.Reason}
    assert documents.rejection("not_owner", "X belongs to someone else") == (
        "rejected (not the owner): X belongs to someone else"
    )


def test_sscc_helper_makes_valid_ssccs() -> None:
    """make_sscc gives an 18-digit SSCC key with a correct check digit."""
    key = documents.make_sscc("4600000")
    assert key.startswith("00") and ledger.is_valid_sscc(key[2:])


def test_gtin_check_accepts_short_forms_and_names_a_bad_digit() -> None:
    """A GTIN-13 is padded to 14 digits; a wrong check digit says which digit was expected."""
    assert documents.check_gtin(GTIN[1:]) == GTIN
    with pytest.raises(documents.InputError, match="expected 8"):
        documents.check_gtin(GTIN[:-1] + "9")


def test_testnet_init_writes_a_directory_and_status_reports_it_stopped(tmp_path: Path) -> None:
    """`testnet init` then `testnet status --json`: every state, url, no pid, data dir, regulator key."""
    directory = tmp_path / "tn"
    info = as_json(ok(["testnet", "init", "--dir", str(directory), "--states", "ru,kz,KG", "--json"]))
    assert [s["state"] for s in info["states"]] == ["RU", "KZ", "KG"]
    rows = as_json(ok(["testnet", "status", "--dir", str(directory), "--json"]))
    assert [r["state"] for r in rows] == ["RU", "KZ", "KG"]
    for row in rows:
        assert row["pid"] is None and row["role"] == "stopped"
        assert Path(row["regulator_key"]).exists() and Path(row["data_dir"]).is_dir()
        assert row["url"].startswith("https://127.0.0.1:")
    assert "already holds" in fails(["testnet", "init", "--dir", str(directory)]).stderr
    assert "holds no testnet" in fails(["testnet", "up", "--dir", str(tmp_path / "none")]).stderr


def test_node_run_with_a_bad_config_is_one_line(tmp_path: Path) -> None:
    """`tamga node run` with a missing config file: exit 1, one line."""
    assert "config" in fails(["node", "run", "--config", str(tmp_path / "missing.toml")]).stderr

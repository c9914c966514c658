"""Append evidence in `tamga evidence list|show` and the audit report, against a stand-in
node: named by its Raft slot and checked against genesis (issue 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import _cmd_evidence
from cli import audit as auditing
from ledger import AppendEquivocation, SignedAppend
from tests.ledger.world import CHAIN_ID, make_genesis, seeded_key

pytestmark = pytest.mark.unit

GENESIS = make_genesis()


def signed(data: bytes, key_of: str = "KZ") -> SignedAppend:
    return SignedAppend.make(seeded_key(f"node-{key_of}"), CHAIN_ID, "KZ", 7, 42, data)


GOOD = AppendEquivocation(signed(b"A"), signed(b"B"))
FORGED = AppendEquivocation(signed(b"A"), signed(b"C", key_of="RU"))


class _Node:
    """What a node answers for /v1/evidence and /v1/evidence/{id}."""

    def evidence(self) -> list[dict[str, Any]]:
        return [{**e.to_json(), "against": True} for e in (GOOD, FORGED)]

    def evidence_piece(self, evidence_id: str) -> dict[str, Any]:
        piece = GOOD if evidence_id == GOOD.id.hex() else FORGED
        return {**piece.to_json(), "against": True, "bytes": piece.encode().hex()}


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(_cmd_evidence, "make_client", lambda *a, **k: _Node())
    monkeypatch.setattr(_cmd_evidence, "load_genesis", lambda path: GENESIS)
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    return genesis


def test_evidence_list_and_show_name_the_raft_slot_and_check_the_signatures(node: Path) -> None:
    """list shows term/index for append evidence; show checks both signatures against
    genesis: yes for a real proof, a failure (exit 1) for a forged one."""
    runner = CliRunner()
    listed = runner.invoke(_cmd_evidence.evidence, ["list", "--node", "https://x"])
    assert listed.exit_code == 0, listed.output
    assert "t7/i42" in listed.output and GOOD.id.hex() in listed.output
    shown = runner.invoke(_cmd_evidence.evidence, ["show", GOOD.id.hex(), "--node", "https://x", "--genesis", str(node)])
    assert shown.exit_code == 0, shown.output
    assert "append_equivocation" in shown.output and "yes: both signatures verify" in shown.output
    assert "appended #2" in shown.output
    forged = runner.invoke(_cmd_evidence.evidence, ["show", FORGED.id.hex(), "--node", "https://x",
                                                    "--genesis", str(node)])
    assert forged.exit_code == 1 and "does not verify" in forged.output


def test_the_audit_report_checks_append_evidence_against_genesis() -> None:
    shown = auditing.checked_evidence(_Node(), GENESIS)  # type: ignore[arg-type]
    assert [(p["kind"], p["term"], p["index"], p["verified"]) for p in shown] == [
        ("append_equivocation", 7, 42, True), ("append_equivocation", 7, 42, False)]

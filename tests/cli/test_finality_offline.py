"""The CLI insists on final provenance: `audit prove` and `export epcis` ask again while
the node answers `not_final`, then say it is not final (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest

from cli import audit as auditing
from node.client import ClientError, NodeError

pytestmark = pytest.mark.unit


class _Client:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.asked = 0

    def provenance(self, code: str) -> bytes:
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bytes(answer)


NOT_FINAL = NodeError(409, "not_final", "the provenance of X is not final yet: block(s) 7 are not attested")


def test_prove_waits_while_the_bundle_is_not_final(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two not_final answers, then the bundle: it is fetched on the third ask."""
    monkeypatch.setattr(auditing, "FINAL_POLL_S", 0.0)
    client = _Client([NOT_FINAL, NOT_FINAL, b"\xc1"])
    with pytest.raises(ClientError, match="does not decode"):  # the bytes are junk: fetched all the same
        auditing.fetch_bundle(client, "X", final_wait_s=5.0)  # type: ignore[arg-type]
    assert client.asked == 3


def test_prove_says_not_final_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the deadline the command fails with a message that says it is not final."""
    monkeypatch.setattr(auditing, "FINAL_POLL_S", 0.0)
    client = _Client([NOT_FINAL, NOT_FINAL])
    with pytest.raises(ClientError, match="not final"):
        auditing.fetch_bundle(client, "X", final_wait_s=0.0)  # type: ignore[arg-type]
    other = _Client([NodeError(404, "unknown_code", "no such code")])
    with pytest.raises(NodeError):
        auditing.fetch_bundle(other, "X", final_wait_s=5.0)  # type: ignore[arg-type]


def test_the_audit_report_checks_each_piece_of_evidence_against_genesis() -> None:
    """Evidence a node lists is checked here: a real piece verifies, forged bytes do not."""
    import ledger
    from ledger._chain import attestation_message
    from ledger._identity import DOMAIN_ATTESTATION
    from tests.ledger.world import make_genesis, seeded_key

    genesis = make_genesis()
    key = seeded_key("node-KZ")

    def att(h: bytes) -> ledger.Attestation:
        return ledger.Attestation("KZ", 3, 0, h, key.sign(DOMAIN_ATTESTATION, genesis.chain_id,
                                                       attestation_message(3, 0, h)))

    good = ledger.Evidence.of(att(b"\x01" * 32), att(b"\x02" * 32))
    forged = ledger.Evidence.of(att(b"\x01" * 32), ledger.Attestation("KZ", 3, 0, b"\x03" * 32, b"\x00" * 64))

    class _Node:
        def evidence(self) -> list[dict[str, Any]]:
            return [{**e.to_json(), "against": True} for e in (good, forged)]

        def evidence_piece(self, evidence_id: str) -> dict[str, Any]:
            piece = good if evidence_id == good.id.hex() else forged
            return {**piece.to_json(), "bytes": piece.encode().hex()}

    shown = auditing.checked_evidence(_Node(), genesis)  # type: ignore[arg-type]
    assert [(p["state"], p["verified"]) for p in shown] == [("KZ", True), ("KZ", False)]

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

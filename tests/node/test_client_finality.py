"""The client library sees finality: `Submitted.settled` (applied or rejected) is not
`final` (a Byzantine quorum attests the block); wait="final" polls until final."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import KeyPair, make_document
from node.client import ClientError, Pause, Request, Submitted, submit_plan, submit_request
from node.client._plans import wait_mode

pytestmark = pytest.mark.unit


def _doc() -> Any:
    key = KeyPair.from_seed(b"\x01" * 32)
    return make_document("tamga-test", "revoke_participant", key.participant_id, 1, 10**13,
                         participant="00" * 20).sign(key)


def _run(plan: Any, answers: list[Any]) -> tuple[Any, list[Any]]:
    """Drive a plan with canned answers (pauses get None); its result and its steps."""
    steps: list[Any] = []
    step = next(plan)
    try:
        while True:
            steps.append(step)
            step = plan.send(None if isinstance(step, Pause) else answers.pop(0))
    except StopIteration as stop:
        return stop.value, steps


def test_settled_is_not_final() -> None:
    """Before issue 11 `final` meant applied-or-rejected; now it is what the node says."""
    applied = Submitted.from_json({"id": "ab", "status": "applied", "height": 3, "position": 0})
    assert applied.settled and not applied.final
    final = Submitted.from_json({"id": "ab", "status": "applied", "height": 3, "final": True})
    assert final.settled and final.final and final.to_json()["final"] is True
    assert not Submitted.from_json({"id": "ab", "status": "pending", "final": "yes"}).final


def test_wait_modes_and_the_query_they_send() -> None:
    """True keeps meaning commit; "final" asks the node for wait=final; anything else is refused."""
    assert (wait_mode(True), wait_mode(False), wait_mode("final")) == ("commit", "none", "final")
    with pytest.raises(ValueError):
        wait_mode("soon")
    assert "wait=final" in submit_request(b"x", "final", 1000).path_qs
    assert "wait=commit" in submit_request(b"x", True, 1000).path_qs
    assert "wait" not in submit_request(b"x", False, None).path_qs


def test_wait_final_polls_until_the_node_says_final() -> None:
    """An answer applied but not final is followed by polls of the document until final."""
    doc = _doc()
    applied = {"id": doc.id.hex(), "status": "applied", "height": 2, "final": False}
    result, steps = _run(submit_plan(doc, "final", 5.0), [applied, applied, {**applied, "final": True}])
    assert result.final and result.applied
    gets = [s for s in steps if isinstance(s, Request) and s.method == "GET"]
    assert len(gets) == 2
    # wait=commit takes the applied answer as it is.
    result, steps = _run(submit_plan(doc, "commit", 5.0), [applied])
    assert result.applied and not result.final and len(steps) == 1


def test_wait_final_says_not_final_at_its_deadline() -> None:
    """A block that never becomes final ends in a ClientError that says so."""
    doc = _doc()
    applied = {"id": doc.id.hex(), "status": "applied", "height": 2, "final": False}
    with pytest.raises(ClientError, match="not final"):
        _run(submit_plan(doc, "final", 0.0), [applied, applied])

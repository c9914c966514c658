"""The admission rule: one table of cases, each naming the first check that fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ledger import RECORDED_REFUSALS, ParticipantRecord, Reason, admission

from .world import CHAIN_ID, World

NOW_MS = 2_000_000_000_000
WINDOW_MS = 24 * 3600 * 1000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(Path(tmp_path_factory.mktemp("admission")))


def _signer(world: World, status: str = "active") -> ParticipantRecord:
    key = world.regulator("KZ")
    return ParticipantRecord(key.public_key, "KZ", ["regulator"], "Regulator", status, 0)


# (case, chain id, signer status or None, signature good, known, expires in ms, expected)
CASES = [
    ("admitted", CHAIN_ID, "active", True, False, 60_000, None),
    ("other chain", "other-chain", "active", True, False, 60_000, Reason.WRONG_CHAIN),
    ("unknown signer", CHAIN_ID, None, True, False, 60_000, Reason.NOT_REGISTERED),
    ("bad signature", CHAIN_ID, "active", False, False, 60_000, Reason.BAD_SIGNATURE),
    ("known id", CHAIN_ID, "active", True, True, 60_000, Reason.DUPLICATE),
    ("expired", CHAIN_ID, "active", True, False, -1, Reason.EXPIRED),
    ("revoked signer", CHAIN_ID, "revoked", True, False, 60_000, Reason.REVOKED),
    ("expires beyond the window", CHAIN_ID, "active", True, False, WINDOW_MS + 1, Reason.EXPIRY_TOO_FAR),
    ("expires at the window's end", CHAIN_ID, "active", True, False, WINDOW_MS, None),
    ("expires at the end of time", CHAIN_ID, "active", True, False, 2**64 - 1 - NOW_MS, Reason.EXPIRY_TOO_FAR),
    # The order of the checks is part of the rule: the first failing one is named.
    ("other chain beats the rest", "other-chain", None, False, True, -1, Reason.WRONG_CHAIN),
    ("unknown signer beats a bad signature", CHAIN_ID, None, False, True, -1, Reason.NOT_REGISTERED),
    ("a bad signature beats a known id", CHAIN_ID, "revoked", False, True, -1, Reason.BAD_SIGNATURE),
    ("a known id beats expiry", CHAIN_ID, "revoked", True, True, -1, Reason.DUPLICATE),
    ("expiry beats revocation", CHAIN_ID, "revoked", True, False, -1, Reason.EXPIRED),
    ("the window beats revocation", CHAIN_ID, "revoked", True, False, WINDOW_MS + 1, Reason.EXPIRY_TOO_FAR),
]


@pytest.mark.parametrize(("case", "chain_id", "status", "good", "known", "expires_ms", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_admission_table(world: World, case: str, chain_id: str, status: str | None, good: bool,
                         known: bool, expires_ms: int, expected: Reason | None) -> None:
    """Each case is refused for exactly the reason of its first failing check."""
    world.time_ms = NOW_MS
    signed = world.doc(world.regulator("KZ"), "register_participant", chain_id=chain_id, expires_ms=expires_ms,
                       public_key=world.regulator("AM").public_key, state="KZ", roles=["retailer"], name="Shop")
    signer = _signer(world, status) if status is not None else None
    result = admission(signed, chain_id=CHAIN_ID, time_ms=NOW_MS, expiry_window_ms=WINDOW_MS, signer=signer,
                       signature_ok=lambda _record: good, known=lambda: known)
    assert (result.reason if result is not None else None) == expected
    if result is not None:
        assert result.message


def test_costly_checks_run_only_when_reached(world: World) -> None:
    """The signature and the duplicate look-up are not paid for a document refused earlier."""
    world.time_ms = NOW_MS
    signed = world.doc(world.regulator("KZ"), "register_participant", chain_id="other-chain",
                       public_key=world.regulator("AM").public_key, state="KZ", roles=["retailer"], name="Shop")
    calls: list[str] = []

    def signature_ok(_record: ParticipantRecord) -> bool:
        calls.append("signature")
        return True

    def known() -> bool:
        calls.append("known")
        return False

    result = admission(signed, chain_id=CHAIN_ID, time_ms=NOW_MS, expiry_window_ms=WINDOW_MS, signer=_signer(world),
                       signature_ok=signature_ok, known=known)
    assert result is not None and result.reason is Reason.WRONG_CHAIN
    assert calls == []


def test_recorded_refusals_are_the_signed_but_untimely_ones(world: World) -> None:
    """Only refusals of correctly signed documents may claim the document's id."""
    assert {Reason.EXPIRED, Reason.REVOKED} == RECORDED_REFUSALS
    assert replace(_signer(world), status="revoked").active is False

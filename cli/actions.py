"""What each role does, as plain functions over a node client: the library under the CLI.

Every `tamga` command that changes the ledger is one call here, and so is every step
of the `make testnet` demonstration, so the demonstration walks the same code paths
as a person typing the commands. Nothing here prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ledger
from node.client import ClientError, NodeError, Submitted, SyncNodeClient

from .documents import SERIAL_CHARS, InputError, Signer, check_gtin, random_serials, rejection

DocType = ledger.DocType


@dataclass(frozen=True, slots=True)
class Outcome:
    """A submitted document and what the ledger made of it."""

    document: ledger.SignedDocument
    result: Submitted
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.document.id.hex()

    @property
    def applied(self) -> bool:
        return self.result.applied

    @property
    def rejected(self) -> bool:
        return self.result.rejected

    def words(self) -> str:
        """One line: applied, rejected with the reason in words, or pending."""
        r = self.result
        kind = self.document.document.type.value.replace("_", " ")
        if r.applied:
            finality = ", final" if r.final else ", not final yet"
            return f"applied: {kind} {self.id[:16]} in block {r.height}{finality}"
        if r.rejected:
            return rejection(r.reason, r.message)
        return f"submitted: {kind} {self.id[:16]} ({r.status})"

    def to_json(self) -> dict[str, Any]:
        out = {"type": self.document.document.type.value, **self.result.to_json(), "id": self.id}
        out.update(self.extra)
        return out


class Session:
    """A participant (by key) talking to one node; each method files one document."""

    def __init__(self, client: SyncNodeClient, key: ledger.KeyPair | None, *, wait: bool | str = True,
                 timeout_s: float = 60.0) -> None:
        self.client = client
        self.key = key
        self.wait = wait
        self.timeout_s = timeout_s
        self._signer: Signer | None = None

    @property
    def signer(self) -> Signer:
        if self.key is None:
            raise ClientError("this command signs a document: give --key FILE or set TAMGA_KEY")
        if self._signer is None:
            self._signer = Signer(self.key, self.client.chain_id())
        return self._signer

    @property
    def participant_id(self) -> str:
        return self.signer.key.participant_id

    def submit(
        self, doc_type: ledger.DocType, extra: dict[str, Any] | None = None, **fields: Any
    ) -> Outcome:
        signed = self.signer.make(doc_type, **fields)
        result = self.client.submit(signed, wait=self.wait, timeout_s=self.timeout_s)
        return Outcome(signed, result, extra or {})

    # The regulator.

    def own_state(self) -> str:
        record = self.client.participant(self.participant_id)
        return str(record["state"])

    def register(
        self, public_key: bytes, roles: Sequence[str], name: str, state: str | None = None,
        tax_id: str | None = None,
    ) -> Outcome:
        pid = ledger.participant_id(public_key)
        return self.submit(
            DocType.REGISTER_PARTICIPANT,
            {"participant": pid},
            public_key=public_key,
            state=state or self.own_state(),
            roles=sorted(set(roles)),
            name=name,
            # Left out when not given: a registration without one keeps the body of before.
            **({"tax_id": tax_id} if tax_id else {}),
        )

    def revoke(self, pid: str) -> Outcome:
        return self.submit(DocType.REVOKE_PARTICIPANT, {"participant": pid}, participant=pid)

    def grant_audit(self, pid: str) -> Outcome:
        """Let a registered auditor read what this regulator reads of its own state."""
        return self.submit(DocType.GRANT_AUDIT, {"participant": pid}, participant=pid)

    def revoke_audit(self, pid: str) -> Outcome:
        return self.submit(DocType.REVOKE_AUDIT, {"participant": pid}, participant=pid)

    def emit(self, gtin: str, count: int, owner: str) -> Outcome:
        gtin14 = check_gtin(gtin)
        serials = random_serials(gtin14, count, self.serial_chars(gtin14))
        codes = ["01" + gtin14 + "21" + s for s in serials]
        return self.submit(DocType.EMIT, {"codes": codes}, owner=owner, gtin=gtin14, serials=serials)

    def serial_chars(self, gtin14: str) -> int:
        """The serial length the product's group prints (its first layout's), or the
        default on a chain without a catalogue or for a GTIN it does not hold, where the
        ledger's answer to the emission says what is wrong."""
        try:
            layouts = self.client.product(gtin14).get("layouts") or []
        except NodeError:
            return SERIAL_CHARS
        chars = layouts[0].get("serial_chars") if layouts else None
        return chars if isinstance(chars, int) and 0 < chars <= 20 else SERIAL_CHARS

    def suspend(self, codes: list[str], note: str) -> Outcome:
        return self.submit(DocType.SUSPEND, codes=codes, note=note)

    def release(self, codes: list[str]) -> Outcome:
        return self.submit(DocType.RELEASE, codes=codes)

    # Businesses.

    def introduce(self, codes: list[str], attributes: list[list[str]] | None = None) -> Outcome:
        return self.submit(DocType.INTRODUCE, codes=codes, attributes=attributes or [])

    def aggregate(self, sscc: str, codes: list[str]) -> Outcome:
        return self.submit(DocType.AGGREGATE, {"sscc": sscc}, sscc=sscc, codes=codes)

    def disaggregate(self, sscc: str) -> Outcome:
        return self.submit(DocType.DISAGGREGATE, {"sscc": sscc}, sscc=sscc)

    def ship(self, receiver: str, codes: list[str], details: list[list[Any]] | None = None) -> Outcome:
        outcome = self.submit(DocType.SHIP, receiver=receiver, codes=codes, details=details or [])
        outcome.extra["shipment"] = outcome.id
        return outcome

    def cancel(self, shipment: str) -> Outcome:
        return self.submit(DocType.CANCEL_SHIPMENT, {"shipment": shipment}, shipment=_hash(shipment))

    def accept(
        self, shipment: str, codes: list[str] | None = None, details: list[list[Any]] | None = None
    ) -> Outcome:
        return self.submit(
            DocType.ACCEPT, {"shipment": shipment}, shipment=_hash(shipment), codes=list(codes or []),
            details=details or [],
        )

    def reject(self, shipment: str) -> Outcome:
        return self.submit(DocType.REJECT, {"shipment": shipment}, shipment=_hash(shipment))

    def retire(self, reason: str, codes: list[str], details: list[list[Any]] | None = None) -> Outcome:
        return self.submit(DocType.RETIRE, reason=reason, codes=codes, details=details or [])

    def return_(self, codes: list[str]) -> Outcome:
        return self.submit(DocType.RETURN, codes=codes)


def _hash(hex_id: str) -> bytes:
    """A shipment or document id as given on the command line (64 hex digits)."""
    text = hex_id.strip().lower()
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InputError(f"{hex_id!r} is not a shipment id (64 hex digits, as `tamga code ship` prints)")
    return value


def check_hash(hex_id: str) -> str:
    return _hash(hex_id).hex()

"""EPCIS 2.0 export of recall events (issue 13): schema-valid, with CBV's `recalled`
disposition kept by persistentDisposition, a batch as its class, listed codes as EPCs."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from cli.epcis import LedgerEvent, epcis_document, recall_epcis_document
from tests.ledger.world import GTIN

pytestmark = pytest.mark.unit

R = "d" * 40
K1 = "01" + GTIN + "21" + "ABCdef1234567"
RECALL_ID = "ab" * 32


def _event(n: int, kind: str, fields: dict[str, Any]) -> LedgerEvent:
    return LedgerEvent(f"{n:02x}" * 32, kind, n, 0, 1_790_000_000_000 + n * 1000, R, "RU", fields)


def _validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())


BATCH = {"gtin": GTIN, "batch": "LOT 42/A", "expiry_from": "", "expiry_to": "", "codes": [],
         "reason": "contamination"}


def test_a_batch_recall_and_its_release_validate(epcis_schema: dict[str, Any]) -> None:
    events = [_event(1, "recall", BATCH),
              _event(2, "release_recall", {**BATCH, "recall": RECALL_ID, "note": "lab cleared"})]
    document = recall_epcis_document(RECALL_ID, events, 1_790_000_100_000)
    _validate(document, epcis_schema)
    recall, release = document["epcisBody"]["eventList"]
    assert recall["bizStep"] == "holding" and recall["disposition"] == "recalled"
    assert recall["persistentDisposition"] == {"set": ["recalled"]}
    assert recall["quantityList"] == [{"epcClass": f"https://id.gs1.org/01/{GTIN}/10/LOT%2042%2FA"}]
    assert release["persistentDisposition"] == {"unset": ["recalled"]}
    assert recall["eventID"].startswith("ni:///sha-256;") and recall["eventID"] != release["eventID"]


def test_expiry_and_listed_recalls_validate(epcis_schema: dict[str, Any]) -> None:
    expiry = {**BATCH, "batch": "", "expiry_from": "270101", "expiry_to": "271231"}
    listed = {**BATCH, "batch": "", "codes": [K1]}
    document = recall_epcis_document(RECALL_ID, [_event(1, "recall", expiry), _event(2, "recall", listed)],
                                     1_790_000_100_000)
    _validate(document, epcis_schema)
    by_expiry, by_codes = document["epcisBody"]["eventList"]
    assert by_expiry["quantityList"] == [{"epcClass": f"https://id.gs1.org/01/{GTIN}"}]
    assert by_expiry["tamga:expiryFrom"] == "270101"
    assert by_codes["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/ABCdef1234567"]


def test_a_code_history_with_a_listed_recall_and_an_import_validates(epcis_schema: dict[str, Any]) -> None:
    events = [
        _event(1, "emit", {"owner": R, "gtin": GTIN, "serials": ["ABCdef1234567"]}),
        _event(2, "import", {"declaration": "10702020/300126/0001234", "country": "CN", "codes": [K1]}),
        _event(3, "recall", {**BATCH, "batch": "", "codes": [K1]}),
    ]
    document = epcis_document(K1, events, 1_790_000_100_000)
    _validate(document, epcis_schema)
    steps = [e["bizStep"] for e in document["epcisBody"]["eventList"]]
    assert steps == ["encoding", "commissioning", "holding"]

"""A code's provenance as a GS1 EPCIS 2.0 JSON-LD document.

Each ledger document in a code's history becomes one EPCIS event, following the
mapping in shared/DOMAIN.md:

| ledger document        | EPCIS event                                           |
|------------------------|-------------------------------------------------------|
| emit                   | ObjectEvent ADD, encoding, encoded (codes issued)     |
| introduce              | ObjectEvent ADD, commissioning, active                |
| aggregate              | AggregationEvent ADD, packing (parentID = the SSCC)   |
| disaggregate           | AggregationEvent DELETE, unpacking                    |
| ship                   | ObjectEvent OBSERVE, shipping, in_transit, source and |
|                        | destination owning parties                            |
| cancel_shipment        | ObjectEvent OBSERVE, void_shipping, active            |
| accept                 | ObjectEvent OBSERVE, receiving, in_progress           |
| reject                 | ObjectEvent OBSERVE, void_shipping, active (the goods |
|                        | stay with the shipper: the shipment is void)          |
| retire retail_sale     | ObjectEvent OBSERVE, retail_selling, retail_sold      |
| retire destroyed       | ObjectEvent OBSERVE, destroying, destroyed            |
| retire export / lost   | ObjectEvent DELETE, decommissioning, inactive         |
| retire expired         | ObjectEvent DELETE, decommissioning, expired          |
| return                 | ObjectEvent OBSERVE, receiving, returned              |
| suspend                | ObjectEvent OBSERVE, holding, non_sellable_other      |
| release                | ObjectEvent OBSERVE, inspecting, active               |
| apply (issue 13)       | ObjectEvent ADD, commissioning, encoded (printed on   |
|                        | goods; not yet in circulation)                        |
| write_off              | ObjectEvent DELETE, decommissioning (destroying for   |
|                        | "destroyed"), damaged / inactive / destroyed          |
| remark                 | two ObjectEvents, bizStep replacing: DELETE inactive  |
|                        | of the old code, ADD active of the new one, each      |
|                        | naming the other (tamga:replacedBy, tamga:replaces)   |
| accept keeping some    | the receiving event, then per listed pallet an        |
| children of a pallet   | AggregationEvent DELETE unpacking, returned, of the   |
|                        | children refused (back to the shipper)                |
| reaggregate            | AggregationEvent DELETE of the codes taken out, then  |
|                        | ADD of the codes put in, bizStep repackaging          |
| retire, other reasons  | see RETIRE_EVENTS: donation, own use, production use  |
|                        | decommissioning inactive; confiscation removing       |
|                        | unavailable; liquidation removing disposed; remote    |
|                        | sale retail_selling; samples sampling                 |
| import (customs)       | ObjectEvent ADD, commissioning, sellable_not_accessible|
| recall                 | ObjectEvent OBSERVE, holding, recalled; persistent    |
|                        | disposition set recalled; a batch as the class        |
|                        | .../01/GTIN/10/BATCH in quantityList (`recall_epcis_  |
|                        | document`), listed codes in epcList                   |
| release_recall         | ObjectEvent OBSERVE, inspecting, active; persistent   |
|                        | disposition unset recalled                            |

CBV 2.0 has no `recalling` business step: it names the state, not the step (disposition
`recalled`, which `persistentDisposition` keeps until it is unset). A recall is mapped to
the step `holding` (goods held for a reason), its release to `inspecting`, as suspend and
release are.

An event lists every code of its document (so the same document gives the same event
whatever code is exported), each as a GS1 Digital Link URI. Events of an aggregate the
code travelled in name the aggregate, as EPCIS does: its children are implied by the
last packing event. Ship, accept, reject and cancel carry the shipment id as a
`desadv` business transaction, so receiving links back to shipping. Participants are
`urn:tamga:participant:<id>`; every event also says which ledger document and block
it comes from (`tamga:document` as `urn:tamga:document:<id>`, `tamga:blockHeight`).

The events come from a code's provenance bundle (`ledger.ProvenanceBundle`): one
request to a node, and, given the genesis file, every document in it is checked
(signature, inclusion, and a Byzantine quorum of attestations) before it is exported.
Only final blocks are exported: a node serves a bundle only once all its blocks are
final (`tamga export epcis` waits while it answers `not_final`, then says so), and
with genesis a block that is not final fails the check with "not final".

Event time is the block time, in the time zone of the signer's member state. Each
eventID is the CBV 2.0 canonical event hash (``ni:///sha-256;...?ver=CBV2.0``),
computed by GS1's reference implementation, epcis-event-hash-generator, which reads
the EPCIS context from its own packaged copy and needs no network.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ledger

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
TAMGA_NAMESPACE = "urn:tamga:epcis:"
CONTEXT: list[Any] = [EPCIS_CONTEXT, {"tamga": TAMGA_NAMESPACE}]

# Standard time of each member state's capital (none of them keeps summer time);
# Russia spans eleven zones and its marking operator works in Moscow time.
STATE_UTC_OFFSET_MIN = {"AM": 240, "BY": 180, "KZ": 300, "KG": 360, "RU": 180}

RETIRE_EVENTS = {
    "retail_sale": ("OBSERVE", "retail_selling", "retail_sold"),
    "destroyed": ("OBSERVE", "destroying", "destroyed"),
    "export_outside_union": ("DELETE", "decommissioning", "inactive"),
    "lost": ("DELETE", "decommissioning", "inactive"),
    "expired": ("DELETE", "decommissioning", "expired"),
    # The withdrawal reasons of issue 13, in CBV 2.0's words.
    "donation": ("DELETE", "decommissioning", "inactive"),
    "confiscation": ("DELETE", "removing", "unavailable"),
    "own_use": ("DELETE", "decommissioning", "inactive"),
    "liquidation": ("DELETE", "removing", "disposed"),
    "remote_sale": ("OBSERVE", "retail_selling", "retail_sold"),
    "samples": ("DELETE", "sampling", "inactive"),
    "production_use": ("DELETE", "decommissioning", "inactive"),
}
WRITE_OFF_EVENTS = {
    "spoiled": ("DELETE", "decommissioning", "damaged"),
    "defective": ("DELETE", "decommissioning", "damaged"),
    "lost": ("DELETE", "decommissioning", "inactive"),
    "not_used": ("DELETE", "decommissioning", "inactive"),
    "destroyed": ("DELETE", "destroying", "destroyed"),
}
SIMPLE_EVENTS = {
    # type: (action, bizStep, disposition)
    "emit": ("ADD", "encoding", "encoded"),
    "introduce": ("ADD", "commissioning", "active"),
    "ship": ("OBSERVE", "shipping", "in_transit"),
    "cancel_shipment": ("OBSERVE", "void_shipping", "active"),
    "accept": ("OBSERVE", "receiving", "in_progress"),
    "reject": ("OBSERVE", "void_shipping", "active"),
    "return": ("OBSERVE", "receiving", "returned"),
    "suspend": ("OBSERVE", "holding", "non_sellable_other"),
    "release": ("OBSERVE", "inspecting", "active"),
    "apply": ("ADD", "commissioning", "encoded"),
    # Goods from outside the union, declared but not yet confirmed by the regulator.
    "import": ("ADD", "commissioning", "sellable_not_accessible"),
}
RECALL_EVENTS = {
    # type: (action, bizStep, disposition, persistentDisposition)
    "recall": ("OBSERVE", "holding", "recalled", {"set": ["recalled"]}),
    "release_recall": ("OBSERVE", "inspecting", "active", {"unset": ["recalled"]}),
}
GS1_RESOLVER = "https://id.gs1.org"


class EpcisError(Exception):
    """The history cannot be exported (an inconsistency, or the hash library failed)."""


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One applied ledger document in a code's history, with what the mapping needs."""

    document_id: str  # hex
    type: str
    height: int
    position: int
    time_ms: int
    signer: str
    signer_state: str | None
    fields: dict[str, Any]  # the document's payload fields, JSON form (hex for hashes)
    shipment: dict[str, Any] | None = None  # for ship, cancel, accept, reject
    children: Sequence[str] = field(default_factory=tuple)  # for disaggregate


def participant_uri(pid: str) -> str:
    return f"urn:tamga:participant:{pid}"


def shipment_uri(shipment_id: str) -> str:
    return f"urn:tamga:shipment:{shipment_id}"


def epc(key: str) -> str:
    """A code key as its GS1 Digital Link URI."""
    return ledger.parse_key(key).digital_link()


def event_time(time_ms: int, state: str | None) -> tuple[str, str]:
    """(eventTime, eventTimeZoneOffset) of a block time in a member state's zone."""
    offset_min = STATE_UTC_OFFSET_MIN.get(state or "", 0)
    zone = dt.timezone(dt.timedelta(minutes=offset_min))
    moment = dt.datetime.fromtimestamp(time_ms / 1000, tz=zone)
    sign = "+" if offset_min >= 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    return moment.isoformat(timespec="milliseconds"), f"{sign}{hours:02d}:{minutes:02d}"


def utc_time(time_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def document_codes(event: LedgerEvent) -> list[str]:
    if event.type == "emit":
        prefix = "01" + event.fields["gtin"] + "21"
        return [prefix + serial for serial in event.fields["serials"]]
    if event.type in ("accept", "reject", "cancel_shipment") and event.shipment is not None:
        if event.type == "accept" and event.shipment.get("accepted"):
            return list(event.shipment["accepted"])
        if event.type == "accept" and event.fields.get("codes"):
            return list(event.fields["codes"])
        return list(event.shipment.get("items", []))
    codes = event.fields.get("codes")
    if codes:
        return list(codes)
    return [event.fields["sscc"]] if "sscc" in event.fields else []


def _base(event: LedgerEvent, kind: str) -> dict[str, Any]:
    when, offset = event_time(event.time_ms, event.signer_state)
    return {"type": kind, "eventTime": when, "eventTimeZoneOffset": offset}


def _provenance_fields(event: LedgerEvent) -> dict[str, Any]:
    return {
        "recordTime": utc_time(event.time_ms),
        "tamga:document": f"urn:tamga:document:{event.document_id}",
        "tamga:blockHeight": event.height,
        "tamga:documentType": event.type,
    }


def to_epcis_event(event: LedgerEvent) -> dict[str, Any]:
    """One ledger document as one EPCIS event (without its eventID)."""
    if event.type in ("aggregate", "disaggregate"):
        return _aggregation_event(event)
    if event.type in RECALL_EVENTS:
        return _recall_event(event)
    if event.type == "retire":
        action, step, disposition = RETIRE_EVENTS[event.fields["reason"]]
    elif event.type == "write_off":
        action, step, disposition = WRITE_OFF_EVENTS[event.fields["reason"]]
    elif event.type in SIMPLE_EVENTS:
        action, step, disposition = SIMPLE_EVENTS[event.type]
    else:
        raise EpcisError(f"a {event.type} document does not concern goods")
    out = _base(event, "ObjectEvent")
    out["epcList"] = [epc(k) for k in document_codes(event)]
    out.update({"action": action, "bizStep": step, "disposition": disposition})
    if event.type == "emit":
        owner = participant_uri(event.fields["owner"])
        out["destinationList"] = [{"type": "owning_party", "destination": owner}]
    if event.shipment is not None:
        shipment_id = event.fields.get("shipment") or event.document_id
        out["bizTransactionList"] = [{"type": "desadv", "bizTransaction": shipment_uri(shipment_id)}]
        out["sourceList"] = [{"type": "owning_party", "source": participant_uri(event.shipment["shipper"])}]
        out["destinationList"] = [
            {"type": "owning_party", "destination": participant_uri(event.shipment["receiver"])}
        ]
    out.update(_provenance_fields(event))
    return out


def to_epcis_events(event: LedgerEvent) -> list[dict[str, Any]]:
    """One ledger document as its EPCIS events (two for a remark and for a reaggregate
    that both adds and removes, one for every other type), without eventIDs."""
    if event.type == "remark":
        old, new = event.fields["old"], event.fields["new"]
        out = []
        for key, action, disposition, link, other in (
            (old, "DELETE", "inactive", "tamga:replacedBy", new),
            (new, "ADD", "active", "tamga:replaces", old),
        ):
            item = _base(event, "ObjectEvent")
            item.update({"epcList": [epc(key)], "action": action, "bizStep": "replacing",
                         "disposition": disposition, link: epc(other)})
            item.update(_provenance_fields(event))
            out.append(item)
        return out
    if event.type == "reaggregate":
        out = []
        removed, added = event.fields.get("remove", []), event.fields.get("add", [])
        for children, action in ((removed, "DELETE"), (added, "ADD")):
            if children:
                item = _base(event, "AggregationEvent")
                item.update({"parentID": epc(event.fields["sscc"]), "childEPCs": [epc(k) for k in children],
                             "action": action, "bizStep": "repackaging"})
                item.update(_provenance_fields(event))
                out.append(item)
        return out
    if event.type == "accept" and event.children:
        # The children refused from a pallet: unpacked from it, back to the shipper.
        out = [to_epcis_event(event)]
        refused: dict[str, list[str]] = (event.shipment or {}).get("refused", {})
        for sscc, children in refused.items():
            item = _base(event, "AggregationEvent")
            item.update({"parentID": epc(sscc), "childEPCs": [epc(k) for k in children], "action": "DELETE",
                         "bizStep": "unpacking", "disposition": "returned"})
            item.update(_provenance_fields(event))
            out.append(item)
        return out
    return [to_epcis_event(event)]


def _aggregation_event(event: LedgerEvent) -> dict[str, Any]:
    out = _base(event, "AggregationEvent")
    out["parentID"] = epc(event.fields["sscc"])
    if event.type == "aggregate":
        children, action, step = event.fields["codes"], "ADD", "packing"
    else:
        children, action, step = event.children, "DELETE", "unpacking"
    if not children:
        raise EpcisError(f"no children known for the unpacking of {event.fields['sscc']}")
    out["childEPCs"] = [epc(k) for k in children]
    out.update({"action": action, "bizStep": step})
    out.update(_provenance_fields(event))
    return out


def _recall_event(event: LedgerEvent) -> dict[str, Any]:
    """A recall or its release. Its `fields` are the recall document's (gtin, batch,
    expiry_from, expiry_to, codes, reason); a release's event carries its recall's."""
    action, step, disposition, persistent = RECALL_EVENTS[event.type]
    fields = event.fields
    out = _base(event, "ObjectEvent")
    codes = list(fields.get("codes") or [])
    out["epcList"] = [epc(k) for k in codes]
    if not codes:
        # A batch, or every unit of the GTIN within an expiry range: the class, not the
        # instances (a recall is applied lazily and may match millions of codes).
        gtin = fields["gtin"]
        batch = fields.get("batch") or ""
        klass = f"{GS1_RESOLVER}/01/{gtin}" + (f"/10/{_uri_part(batch)}" if batch else "")
        out["quantityList"] = [{"epcClass": klass}]
    out.update({"action": action, "bizStep": step, "disposition": disposition,
                "persistentDisposition": persistent})
    if fields.get("expiry_from"):
        out["tamga:expiryFrom"] = fields["expiry_from"]
        out["tamga:expiryTo"] = fields["expiry_to"]
    if fields.get("reason"):
        out["tamga:recallReason"] = fields["reason"]
    if fields.get("recall"):
        out["tamga:recall"] = f"urn:tamga:document:{fields['recall']}"
    out.update(_provenance_fields(event))
    return out


def _uri_part(value: str) -> str:
    import urllib.parse

    return urllib.parse.quote(value, safe="")


def recall_epcis_document(recall_id: str, events: Sequence[LedgerEvent], created_ms: int) -> dict[str, Any]:
    """The EPCIS 2.0 document of a recall: its filing and, once released, its release."""
    mapped = [_recall_event(e) for e in events]
    document: dict[str, Any] = {
        "@context": CONTEXT, "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": utc_time(created_ms), "epcisBody": {"eventList": mapped},
    }
    for event, event_id in zip(mapped, event_hashes(document)):
        event["eventID"] = event_id
    document["epcisBody"]["eventList"] = [
        {"eventID": e["eventID"], **{k: v for k, v in e.items() if k != "eventID"}} for e in mapped
    ]
    document["id"] = f"urn:tamga:recall:{recall_id}"
    return {k: document[k] for k in ("@context", "id", "type", "schemaVersion", "creationDate", "epcisBody")}


def with_children(events: Iterable[LedgerEvent]) -> list[LedgerEvent]:
    """Fill in the children of each unpacking from the packing of the same SSCC before it."""
    packed: dict[str, list[str]] = {}
    out: list[LedgerEvent] = []
    for event in events:
        if event.type == "aggregate":
            packed[event.fields["sscc"]] = list(event.fields["codes"])
        if event.type == "reaggregate":
            gone = set(event.fields.get("remove", []))
            before = packed.get(event.fields["sscc"], [])
            added = list(event.fields.get("add", []))
            packed[event.fields["sscc"]] = [k for k in before if k not in gone] + added
        if event.type == "accept" and event.fields.get("codes"):
            # Per child (issue 13): a listed pallet keeps only its listed children; the
            # others are taken out, which the export shows as their unpacking.
            listed = set(event.fields["codes"])
            refused: dict[str, list[str]] = {}
            for sscc in event.fields["codes"]:
                inside = packed.get(sscc)
                if inside and any(c in listed for c in inside):
                    out_of = [c for c in inside if c not in listed]
                    if out_of:
                        refused[sscc] = out_of
                    packed[sscc] = [c for c in inside if c in listed]
            if refused:
                event = LedgerEvent(
                    event.document_id, event.type, event.height, event.position, event.time_ms,
                    event.signer, event.signer_state, event.fields,
                    {**(event.shipment or {}), "refused": refused},
                    tuple(c for children in refused.values() for c in children),
                )
        if event.type == "disaggregate" and not event.children:
            children = packed.get(event.fields["sscc"], [])
            event = LedgerEvent(
                event.document_id, event.type, event.height, event.position, event.time_ms,
                event.signer, event.signer_state, event.fields, event.shipment, tuple(children),
            )
        out.append(event)
    return out


def epcis_document(code_key: str, events: Sequence[LedgerEvent], created_ms: int) -> dict[str, Any]:
    """The EPCIS 2.0 document of a code's provenance, each event with its hash eventID."""
    mapped = [m for e in with_children(events) if e.type in _GOODS_TYPES for m in to_epcis_events(e)]
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": utc_time(created_ms),
        "epcisBody": {"eventList": mapped},
    }
    for event, event_id in zip(mapped, event_hashes(document)):
        event["eventID"] = event_id
    # The eventID leads each event, as in GS1's examples.
    document["epcisBody"]["eventList"] = [
        {"eventID": e["eventID"], **{k: v for k, v in e.items() if k != "eventID"}} for e in mapped
    ]
    document["id"] = f"urn:tamga:provenance:{code_key}"
    return {k: document[k] for k in ("@context", "id", "type", "schemaVersion", "creationDate", "epcisBody")}


_GOODS_TYPES = frozenset(SIMPLE_EVENTS) | {"aggregate", "disaggregate", "retire"}
_GOODS_TYPES |= {"write_off", "remark", "reaggregate"}  # issue 13
_GOODS_TYPES |= {"recall"}  # issue 13: a recall of the code


def event_hashes(document: dict[str, Any]) -> list[str]:
    """CBV 2.0 event hashes of the document's events, in order."""
    if not document["epcisBody"]["eventList"]:
        return []
    try:
        from epcis_event_hash_generator import json_to_py
        from epcis_event_hash_generator.hash_generator import epcis_hashes_from_events
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise EpcisError(f"the EPCIS event hash library is missing: {exc}") from exc
    # The library logs every event at INFO and swallows a failing event with an ERROR
    # log; we check the count ourselves and keep its logging quiet.
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # It reads its packaged context with a deprecated importlib call.
            warnings.simplefilter("ignore", DeprecationWarning)
            events = json_to_py.event_list_from_epcis_document_json(_copy(document))
            hashes: list[str] = epcis_hashes_from_events(events)
    except Exception as exc:
        raise EpcisError(f"cannot compute EPCIS event hashes: {exc!r}") from exc
    finally:
        logging.disable(previous)
    if len(hashes) != len(document["epcisBody"]["eventList"]):
        raise EpcisError("the EPCIS event hash library skipped an event")
    return hashes


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# From a provenance bundle to ledger events.


def bundle_events(
    bundle: ledger.ProvenanceBundle, genesis: ledger.Genesis | None = None
) -> list[LedgerEvent]:
    """The bundle's documents as ledger events; checked first when genesis is given.

    Without genesis the bundle is read as the node sent it (the export then trusts the
    node); `tamga audit check` or `--genesis` make it trust nothing but genesis.
    """
    if genesis is not None:
        proven = ledger.verify_provenance(bundle, genesis)
    else:
        proven = [_unverified_event(proof) for proof in bundle.entries]
    states = participant_states(bundle, genesis)
    ships: dict[str, dict[str, Any]] = {}
    out: list[LedgerEvent] = []
    for item in proven:
        doc = item.document.document
        fields = {k: v for k, v in doc.to_json().items() if k not in _HEADER_FIELDS}
        doc_id = item.document_id.hex()
        shipment = None
        if doc.type is ledger.DocType.SHIP:
            shipment = {"shipper": doc.signer, "receiver": fields["receiver"], "items": list(fields["codes"])}
            ships[doc_id] = shipment
        elif "shipment" in fields:
            known = ships.get(fields["shipment"])
            if known is None:
                raise EpcisError(f"the bundle lacks shipment {fields['shipment']} that a {doc.type} names")
            shipment = dict(known)
            if doc.type is ledger.DocType.ACCEPT:
                shipment["accepted"] = list(fields["codes"]) or list(known["items"])
        out.append(
            LedgerEvent(
                doc_id, doc.type.value, item.height, item.position, item.time_ms, doc.signer,
                states.get(doc.signer), fields, shipment,
            )
        )
    return out


_HEADER_FIELDS = frozenset({"chain_id", "type", "signer", "nonce", "expires_at_ms"})


def _unverified_event(proof: ledger.InclusionProof) -> ledger.ProvenanceEvent:
    try:
        signed = ledger.decode_signed(proof.document)
    except ledger.DecodeError as exc:
        raise EpcisError(f"a document in the bundle does not decode: {exc}") from exc
    doc = signed.document
    return ledger.ProvenanceEvent(
        proof.header.height, proof.position, proof.header.time_ms, doc.type.value, doc.signer,
        signed.id, signed,
    )


def participant_states(bundle: ledger.ProvenanceBundle, genesis: ledger.Genesis | None) -> dict[str, str]:
    """Member state of each signer, from the registrations in the bundle (a regulator
    registers only in its own state) and from genesis when given."""
    states: dict[str, str] = {}
    if genesis is not None:
        states.update({s.regulator_id: s.code for s in genesis.states})
    for proof in bundle.registrations:
        try:
            doc = ledger.decode_signed(proof.document).document
        except ledger.DecodeError:
            continue
        if doc.type is ledger.DocType.REGISTER_PARTICIPANT:
            public_key, state = doc.payload[0], doc.payload[1]
            states.setdefault(ledger.participant_id(public_key), state)
            states.setdefault(doc.signer, state)
    return states

"""Documents: the signed business actions, their canonical bytes and their JSON form.

A document's body is a canonical msgpack array:

    [FORMAT_VERSION, chain_id, type, signer, nonce, expires_at_ms, [payload fields...]]

Its id is SHA-256 of the body bytes, which is exactly what the signature covers (after
the domain tag and chain id, see `_identity.signing_bytes`). On the wire a signed
document is `[body_bytes, signature]`. Payload fields come in the fixed order of
`PAYLOADS`; the JSON form names them and refuses unknown ones.

Decoding checks structure only (types, sizes, counts). Whether codes exist, who owns
them and whether the signer may act is the state machine's business, so that every
node and every auditor reaches the same verdict from the same bytes.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._encoding import LEDGER_LIMITS, pack, unpack, unpack_unchecked
from ._errors import DecodeError
from ._governance import PROPOSAL_BYTES_MAX, check_cosignatures_shape
from ._identity import (
    DOMAIN_DOCUMENT,
    PARTICIPANT_ID_HEX,
    SIGNATURE_BYTES,
    KeyPair,
    ParticipantId,
    is_participant_id,
)

FORMAT_VERSION = 1

# Real marking systems cap one document at 30,000 codes (Chestny ZNAK); so do we.
CODES_PER_DOCUMENT_MAX = 30_000
# A name or free text is for people; a few hundred characters is plenty and bounds storage.
TEXT_CHARS_MAX = 500
# A code key is "01" + 14 digits + "21" + up to 20 serial characters.
CODE_KEY_CHARS_MAX = 40
CHAIN_ID_CHARS_MAX = 64
U64_MAX = (1 << 64) - 1
ROLES = ("producer", "importer", "wholesaler", "retailer", "auditor")
RETIRE_REASONS = ("retail_sale", "export_outside_union", "destroyed", "lost", "expired")
# The lifecycle of real goods (issue 13). Withdrawal reasons the national systems list
# beside the five above, added after them so that no old reason changes.
RETIRE_REASONS_MORE = (
    "donation", "confiscation", "own_use", "liquidation", "remote_sale", "samples", "production_use",
)
WITHDRAWAL_REASONS = RETIRE_REASONS + RETIRE_REASONS_MORE
# Why codes that never entered circulation are written off. A code replaced by `remark`
# is written off too, with the reason "remarked", which only `remark` gives.
WRITE_OFF_REASONS = ("spoiled", "lost", "destroyed", "defective", "not_used")


class DocType(enum.StrEnum):
    REGISTER_PARTICIPANT = "register_participant"
    REVOKE_PARTICIPANT = "revoke_participant"
    EMIT = "emit"
    INTRODUCE = "introduce"
    AGGREGATE = "aggregate"
    DISAGGREGATE = "disaggregate"
    SHIP = "ship"
    CANCEL_SHIPMENT = "cancel_shipment"
    ACCEPT = "accept"
    REJECT = "reject"
    RETIRE = "retire"
    RETURN = "return"
    SUSPEND = "suspend"
    RELEASE = "release"
    GOVERNANCE = "governance"
    # The product catalogue (issue 13).
    REGISTER_PRODUCT = "register_product"
    # A regulator lets an auditor read what it reads of its own state, and takes it back.
    GRANT_AUDIT = "grant_audit"
    REVOKE_AUDIT = "revoke_audit"
    # The lifecycle of real goods (issue 13, "The whole lifecycle").
    APPLY = "apply"  # the print report: emitted -> applied, with attributes
    WRITE_OFF = "write_off"  # emitted or applied codes that never entered circulation
    REMARK = "remark"  # a new code replaces a damaged one, which is written off
    REAGGREGATE = "reaggregate"  # add to or take out of an aggregate without unpacking it
    # Recall across the union and customs imports (issue 13, ledger/_recall.py).
    RECALL = "recall"
    RELEASE_RECALL = "release_recall"
    IMPORT = "import"
    CONFIRM_IMPORT = "confirm_import"


class Field(enum.Enum):
    """The kinds of payload field, each with its own structural check."""

    PUBLIC_KEY = "public_key"  # 32 bytes
    STATE = "state"  # two-letter member state code
    ROLES = "roles"  # non-empty sorted list of distinct role names
    TEXT = "text"  # up to TEXT_CHARS_MAX characters
    PARTICIPANT = "participant"  # participant id
    GTIN = "gtin"  # a string; validity is the state machine's verdict
    SERIALS = "serials"  # 1..CODES_PER_DOCUMENT_MAX strings
    CODE = "code"  # one code key
    CODES = "codes"  # 1..CODES_PER_DOCUMENT_MAX code keys
    CODES_OPT = "codes_opt"  # 0..CODES_PER_DOCUMENT_MAX code keys
    HASH = "hash"  # 32 bytes (a document id)
    REASON = "reason"  # one of RETIRE_REASONS
    PROPOSAL = "proposal"  # a governance proposal's canonical bytes, bounded
    COSIGNATURES = "cosignatures"  # 1..COSIGNATURES_MAX [regulator id, signature]
    # 0..ATTRIBUTES_MAX [AI, value] pairs sorted by AI; only ever a payload's last field,
    # which a document leaves out when empty (see OPTIONAL_LAST).
    ATTRIBUTES = "attributes"
    # The lifecycle of real goods (issue 13).
    WITHDRAWAL = "withdrawal"  # one of WITHDRAWAL_REASONS (retire, from issue 13 on)
    WRITE_OFF_REASON = "write_off_reason"  # one of WRITE_OFF_REASONS
    # 0..DETAILS_MAX [name, value] pairs sorted by name, names from DETAIL_NAMES: business
    # dates, the supporting document, commercial fields. Optional and trailing, like
    # ATTRIBUTES: left out when empty, so a document from before keeps its bytes and id.
    DETAILS = "details"
    # A participant's tax id (INN, BIN, UNP, TIN): digits, optional and trailing like
    # DETAILS, so a registration from before keeps its bytes; its shape per member state
    # is the state machine's verdict (ledger/_tax_ids.py).
    TAX_ID = "tax_id"


PAYLOADS: dict[DocType, tuple[tuple[str, Field], ...]] = {
    DocType.REGISTER_PARTICIPANT: (
        ("public_key", Field.PUBLIC_KEY),
        ("state", Field.STATE),
        ("roles", Field.ROLES),
        ("name", Field.TEXT),
    ),
    DocType.REVOKE_PARTICIPANT: (("participant", Field.PARTICIPANT),),
    DocType.EMIT: (("owner", Field.PARTICIPANT), ("gtin", Field.GTIN), ("serials", Field.SERIALS)),
    DocType.INTRODUCE: (("codes", Field.CODES), ("attributes", Field.ATTRIBUTES)),
    DocType.AGGREGATE: (("sscc", Field.CODE), ("codes", Field.CODES)),
    DocType.DISAGGREGATE: (("sscc", Field.CODE),),
    DocType.SHIP: (("receiver", Field.PARTICIPANT), ("codes", Field.CODES)),
    DocType.CANCEL_SHIPMENT: (("shipment", Field.HASH),),
    DocType.ACCEPT: (("shipment", Field.HASH), ("codes", Field.CODES_OPT)),
    DocType.REJECT: (("shipment", Field.HASH),),
    DocType.RETIRE: (("reason", Field.REASON), ("codes", Field.CODES)),
    DocType.RETURN: (("codes", Field.CODES),),
    DocType.SUSPEND: (("codes", Field.CODES), ("note", Field.TEXT)),
    DocType.RELEASE: (("codes", Field.CODES),),
    DocType.GOVERNANCE: (("proposal", Field.PROPOSAL), ("signatures", Field.COSIGNATURES)),
    DocType.REGISTER_PRODUCT: (
        ("gtin", Field.GTIN),
        ("group", Field.TEXT),
        ("name", Field.TEXT),
        ("tnved", Field.TEXT),
        ("producer", Field.PARTICIPANT),
    ),
    DocType.GRANT_AUDIT: (("participant", Field.PARTICIPANT),),
    DocType.REVOKE_AUDIT: (("participant", Field.PARTICIPANT),),
    # The lifecycle of real goods (issue 13).
    DocType.APPLY: (("codes", Field.CODES), ("attributes", Field.ATTRIBUTES), ("details", Field.DETAILS)),
    DocType.WRITE_OFF: (
        ("reason", Field.WRITE_OFF_REASON), ("codes", Field.CODES), ("details", Field.DETAILS),
    ),
    DocType.REMARK: (("old", Field.CODE), ("new", Field.CODE), ("details", Field.DETAILS)),
    DocType.REAGGREGATE: (
        ("sscc", Field.CODE), ("add", Field.CODES_OPT), ("remove", Field.CODES_OPT),
        ("details", Field.DETAILS),
    ),
    # One selector of three: a batch, an expiry range (YYMMDD, inclusive) or listed codes.
    DocType.RECALL: (
        ("gtin", Field.GTIN),
        ("batch", Field.TEXT),
        ("expiry_from", Field.TEXT),
        ("expiry_to", Field.TEXT),
        ("codes", Field.CODES_OPT),
        ("reason", Field.TEXT),
    ),
    DocType.RELEASE_RECALL: (("recall", Field.HASH), ("note", Field.TEXT)),
    # Goods from outside the union: the customs declaration number, the country of
    # origin (ISO 3166 alpha-2) and the codes emitted to the importer.
    DocType.IMPORT: (
        ("declaration", Field.TEXT),
        ("country", Field.STATE),
        ("codes", Field.CODES),
        ("attributes", Field.ATTRIBUTES),
    ),
    DocType.CONFIRM_IMPORT: (("import", Field.HASH),),
}

# Business dates and documents on the business documents of before (issue 13): each
# gets an optional trailing `details`, and `retire` takes every withdrawal reason. An
# old document has no details, so its body, its id and its verdict are unchanged.
for _kind in (
    DocType.INTRODUCE, DocType.AGGREGATE, DocType.DISAGGREGATE, DocType.SHIP, DocType.CANCEL_SHIPMENT,
    DocType.ACCEPT, DocType.REJECT, DocType.RETIRE, DocType.RETURN,
):
    PAYLOADS[_kind] = (*PAYLOADS[_kind], ("details", Field.DETAILS))
PAYLOADS[DocType.RETIRE] = (("reason", Field.WITHDRAWAL), *PAYLOADS[DocType.RETIRE][1:])
# Tax ids (issue 13: trade records name the exporter's and importer's): an optional
# trailing field of a registration.
PAYLOADS[DocType.REGISTER_PARTICIPANT] = (*PAYLOADS[DocType.REGISTER_PARTICIPANT], ("tax_id", Field.TAX_ID))

# Types whose last field is optional: left out of the body when empty, so a document
# from before the field existed keeps its bytes and its id, and present only when not
# empty, so each document has one body.
OPTIONAL_FIELDS = frozenset((Field.ATTRIBUTES, Field.DETAILS, Field.TAX_ID))
OPTIONAL_LAST = frozenset(kind for kind, spec in PAYLOADS.items() if spec and spec[-1][1] in OPTIONAL_FIELDS)


def _optional_count(spec: tuple[tuple[str, Field], ...]) -> int:
    """How many of a payload's last fields are optional (ATTRIBUTES, DETAILS)."""
    n = 0
    for _, kind in reversed(spec):
        if kind not in OPTIONAL_FIELDS:
            break
        n += 1
    return n


# Per type, how many trailing fields may be left out: the body drops the empty ones
# from the end, so every document has exactly one body.
OPTIONAL_TRAILING = {kind: _optional_count(spec) for kind, spec in PAYLOADS.items()}

HEADER_FIELDS = ("chain_id", "type", "signer", "nonce", "expires_at_ms")


def _check_str_list(value: Any, name: str, lo: int) -> list[str]:
    if not isinstance(value, list):
        raise DecodeError(f"{name} must be a list")
    if not lo <= len(value) <= CODES_PER_DOCUMENT_MAX:
        raise DecodeError(
            f"{name} must hold {lo} to {CODES_PER_DOCUMENT_MAX} entries, not {len(value)}"
        )
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= CODE_KEY_CHARS_MAX:
            raise DecodeError(f"every entry of {name} must be a code of 1 to 40 characters")
    return value


def _check_bytes32(name: str, value: Any) -> Any:
    if not isinstance(value, bytes) or len(value) != 32:
        raise DecodeError(f"{name} must be 32 bytes")
    return value


def _check_state(name: str, value: Any) -> Any:
    if not isinstance(value, str) or len(value) != 2 or not value.isascii() or not value.isupper():
        raise DecodeError(f"{name} must be a two-letter member state code such as RU")
    return value


def _check_roles(name: str, value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise DecodeError(f"{name} must be a non-empty list of roles")
    if any(r not in ROLES for r in value):
        raise DecodeError(f"{name} may only hold {', '.join(ROLES)}")
    if value != sorted(set(value)):
        raise DecodeError(f"{name} must be sorted and without repeats")
    return value


def _check_text(name: str, value: Any) -> Any:
    if not isinstance(value, str) or len(value) > TEXT_CHARS_MAX:
        raise DecodeError(f"{name} must be text of at most {TEXT_CHARS_MAX} characters")
    return value


def _check_participant(name: str, value: Any) -> Any:
    if not is_participant_id(value):
        raise DecodeError(f"{name} must be a participant id ({PARTICIPANT_ID_HEX} hex digits)")
    return value


def _check_code(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not 0 < len(value) <= CODE_KEY_CHARS_MAX:
        raise DecodeError(f"{name} must be a code of 1 to {CODE_KEY_CHARS_MAX} characters")
    return value


def _check_reason(name: str, value: Any) -> Any:
    if value not in RETIRE_REASONS:
        raise DecodeError(f"{name} must be one of {', '.join(RETIRE_REASONS)}")
    return value


def _check_proposal(name: str, value: Any) -> Any:
    # Structure only, as for every field: whether it decodes to a proposal and carries
    # a quorum is the state machine's verdict, recorded in the block like any other.
    if not isinstance(value, bytes) or not 0 < len(value) <= PROPOSAL_BYTES_MAX:
        raise DecodeError(f"{name} must be 1 to {PROPOSAL_BYTES_MAX} bytes")
    return value


# One of each attribute AI at most (ledger._codes.ATTRIBUTE_AIS has seven); values as
# GS1 bounds them (at most 90 characters).
ATTRIBUTES_MAX = 8
ATTRIBUTE_CHARS_MAX = 90


def _check_attributes(name: str, value: Any) -> Any:
    # Structure only; which AIs a product group uses and what their values mean is the
    # state machine's verdict.
    if not isinstance(value, list) or len(value) > ATTRIBUTES_MAX:
        raise DecodeError(f"{name} must be a list of at most {ATTRIBUTES_MAX} [AI, value] pairs")
    for pair in value:
        if (
            not isinstance(pair, list) or len(pair) != 2
            or not isinstance(pair[0], str) or not 2 <= len(pair[0]) <= 4 or not pair[0].isdigit()
            or not pair[0].isascii()
            or not isinstance(pair[1], str) or not 0 < len(pair[1]) <= ATTRIBUTE_CHARS_MAX
        ):
            raise DecodeError(f"every entry of {name} is [AI of 2 to 4 digits, value of 1 to 90 characters]")
    ais = [pair[0] for pair in value]
    if ais != sorted(set(ais)):
        raise DecodeError(f"{name} must be sorted by AI, each AI once")
    return value


def _check_among(values: tuple[str, ...]) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value not in values:
            raise DecodeError(f"{name} must be one of {', '.join(values)}")
        return value

    return check


# Business details (issue 13): each name once, sorted; dates are milliseconds since the
# epoch like every time of the ledger, amounts are in minor units (kopecks, tiyn) so
# that no float reaches the state machine. Which names a document type takes, and
# that dates are not after the block time, is the state machine's verdict.
DETAILS_MAX = 8
DETAIL_TEXT_CHARS_MAX = 64  # a document number or type: UPD numbers are far shorter
DETAIL_DATES = ("doc_date", "transfer_date")
DETAIL_TEXTS = ("doc_number", "doc_type")
DETAIL_AMOUNTS = ("price", "vat")
DETAIL_NAMES = tuple(sorted(DETAIL_DATES + DETAIL_TEXTS + DETAIL_AMOUNTS))


def _check_details(name: str, value: Any) -> Any:
    if not isinstance(value, list) or len(value) > DETAILS_MAX:
        raise DecodeError(f"{name} must be a list of at most {DETAILS_MAX} [name, value] pairs")
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] not in DETAIL_NAMES:
            raise DecodeError(f"each entry of {name} is [name, value], name among {', '.join(DETAIL_NAMES)}")
        key, item = pair
        if key in DETAIL_TEXTS:
            if not isinstance(item, str) or not 0 < len(item) <= DETAIL_TEXT_CHARS_MAX:
                raise DecodeError(f"{name}.{key} must be text of 1 to {DETAIL_TEXT_CHARS_MAX} characters")
        elif type(item) is not int or not 0 <= item <= U64_MAX:
            raise DecodeError(f"{name}.{key} must be an unsigned 64-bit integer")
    names = [pair[0] for pair in value]
    if names != sorted(set(names)):
        raise DecodeError(f"{name} must be sorted by name, each name once")
    return value


# The longest tax id of a member state is Kyrgyzstan's 14-digit INN, the shortest
# Armenia's 8-digit TIN (ledger/_tax_ids.py checks each state's shape).
TAX_ID_DIGITS_MIN = 8
TAX_ID_DIGITS_MAX = 14


def _check_tax_id(name: str, value: Any) -> Any:
    # [] is how an optional trailing field is left out (see OPTIONAL_TRAILING): no tax id.
    # An explicit "" is refused, so that a registration without one has one body.
    if isinstance(value, list) and not value:
        return ""
    if (not isinstance(value, str) or not TAX_ID_DIGITS_MIN <= len(value) <= TAX_ID_DIGITS_MAX
            or not value.isascii() or not value.isdigit()):
        raise DecodeError(f"{name} must be {TAX_ID_DIGITS_MIN} to {TAX_ID_DIGITS_MAX} digits")
    return value


_CHECKS: dict[Field, Callable[[str, Any], Any]] = {
    Field.PUBLIC_KEY: _check_bytes32,
    Field.HASH: _check_bytes32,
    Field.STATE: _check_state,
    Field.ROLES: _check_roles,
    Field.TEXT: _check_text,
    Field.PARTICIPANT: _check_participant,
    Field.GTIN: _check_code,
    Field.CODE: _check_code,
    Field.SERIALS: lambda name, value: _check_str_list(value, name, 1),
    Field.CODES: lambda name, value: _check_str_list(value, name, 1),
    Field.CODES_OPT: lambda name, value: _check_str_list(value, name, 0),
    Field.REASON: _check_reason,
    Field.PROPOSAL: _check_proposal,
    Field.COSIGNATURES: lambda name, value: check_cosignatures_shape(value),
    Field.ATTRIBUTES: _check_attributes,
    Field.WITHDRAWAL: _check_among(WITHDRAWAL_REASONS),
    Field.WRITE_OFF_REASON: _check_among(WRITE_OFF_REASONS),
    Field.DETAILS: _check_details,
    Field.TAX_ID: lambda name, value: _check_tax_id(name, value),
}


def check_field(kind: Field, name: str, value: Any) -> Any:
    """Check one payload field's structure; return the value to store."""
    return _CHECKS[kind](name, value)


# Each type's payload checks, in field order, looked up once per document.
_PAYLOAD_CHECKS = {
    kind: tuple((name, _CHECKS[field_kind]) for name, field_kind in spec) for kind, spec in PAYLOADS.items()
}


@dataclass(frozen=True, slots=True)
class Document:
    """An unsigned document: what a participant asks the ledger to do."""

    chain_id: str
    type: DocType
    signer: ParticipantId
    nonce: int
    expires_at_ms: int
    payload: tuple[Any, ...]

    def field(self, name: str) -> Any:
        for (field_name, _), value in zip(PAYLOADS[self.type], self.payload):
            if field_name == name:
                return value
        raise KeyError(name)

    def body_bytes(self) -> bytes:
        payload = list(self.payload)
        for _ in range(OPTIONAL_TRAILING[self.type]):
            if payload[-1]:
                break
            payload.pop()
        return pack(
            [
                FORMAT_VERSION,
                self.chain_id,
                self.type.value,
                self.signer,
                self.nonce,
                self.expires_at_ms,
                payload,
            ]
        )

    def sign(self, key: KeyPair) -> SignedDocument:
        if key.participant_id != self.signer:
            raise ValueError("the key does not belong to the document's signer")
        body = self.body_bytes()
        signature = key.sign(DOMAIN_DOCUMENT, self.chain_id, body)
        return SignedDocument(body, signature, self)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chain_id": self.chain_id,
            "type": self.type.value,
            "signer": self.signer,
            "nonce": self.nonce,
            "expires_at_ms": self.expires_at_ms,
        }
        for (name, kind), value in zip(PAYLOADS[self.type], self.payload):
            if kind in OPTIONAL_FIELDS and not value:
                continue  # left out when empty, as in the body
            out[name] = _field_json(kind, value)
        return out


_HEX_FIELDS = (Field.PUBLIC_KEY, Field.HASH, Field.PROPOSAL)


def _field_json(kind: Field, value: Any) -> Any:
    if kind in _HEX_FIELDS:
        return value.hex()
    if kind is Field.COSIGNATURES:
        return [[regulator, signature.hex()] for regulator, signature in value]
    return value


def _field_from_json(kind: Field, name: str, value: Any) -> Any:
    """Hex back to bytes where the JSON form has hex; anything else is left to the checks."""
    try:
        if kind in _HEX_FIELDS and isinstance(value, str):
            return bytes.fromhex(value)
        if kind is Field.COSIGNATURES and isinstance(value, list):
            return [
                [item[0], bytes.fromhex(item[1])] if isinstance(item, list) and len(item) == 2
                and isinstance(item[1], str) else item
                for item in value
            ]
    except ValueError as exc:
        raise DecodeError(f"{name} must be hex") from exc
    return value


def make_document(
    chain_id: str,
    doc_type: DocType | str,
    signer: str,
    nonce: int,
    expires_at_ms: int,
    **fields: Any,
) -> Document:
    """Build a document from named payload fields, with every structural check."""
    try:
        kind = DocType(doc_type)
    except ValueError as exc:
        raise DecodeError(f"unknown document type {doc_type!r}") from exc
    spec = PAYLOADS[kind]
    unknown = set(fields) - {name for name, _ in spec}
    if unknown:
        raise DecodeError(f"unknown field(s) for {kind.value}: {', '.join(sorted(unknown))}")
    for name, _ in spec[len(spec) - OPTIONAL_TRAILING[kind]:]:
        fields.setdefault(name, [])
    missing = [name for name, _ in spec if name not in fields]
    if missing:
        raise DecodeError(f"missing field(s) for {kind.value}: {', '.join(missing)}")
    payload = tuple(check_field(f, name, fields[name]) for name, f in spec)
    return _checked_document(chain_id, kind, signer, nonce, expires_at_ms, payload)


def _checked_document(
    chain_id: Any, kind: DocType, signer: Any, nonce: Any, expires: Any, payload: tuple[Any, ...]
) -> Document:
    if not isinstance(chain_id, str) or not 0 < len(chain_id) <= CHAIN_ID_CHARS_MAX:
        raise DecodeError(f"chain_id must be text of 1 to {CHAIN_ID_CHARS_MAX} characters")
    if not is_participant_id(signer):
        raise DecodeError("signer must be a participant id")
    if type(nonce) is not int or not 0 <= nonce <= U64_MAX:
        raise DecodeError("nonce must be an unsigned 64-bit integer")
    if type(expires) is not int or not 0 <= expires <= U64_MAX:
        raise DecodeError("expires_at_ms must be an unsigned 64-bit integer")
    return Document(chain_id, kind, ParticipantId(signer), nonce, expires, payload)


def document_from_json(obj: Any) -> Document:
    """The JSON form (names, hex for bytes) back to a document; unknown fields refused."""
    if not isinstance(obj, dict):
        raise DecodeError("a document is a JSON object")
    missing = [name for name in HEADER_FIELDS if name not in obj]
    if missing:
        raise DecodeError(f"missing field(s): {', '.join(missing)}")
    try:
        kind = DocType(obj["type"])
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"unknown document type {obj['type']!r}") from exc
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        if name in HEADER_FIELDS:
            continue
        fields[name] = value
    for name, field_kind in PAYLOADS[kind]:
        if name in fields:
            fields[name] = _field_from_json(field_kind, name, fields[name])
    return make_document(
        obj["chain_id"], kind, obj["signer"], obj["nonce"], obj["expires_at_ms"], **fields
    )


_TYPES = {t.value: t for t in DocType}


def decode_body(body: bytes) -> Document:
    """Canonical body bytes to a document, with every structural check."""
    value = unpack(body)
    if not isinstance(value, list) or len(value) != 7:
        raise DecodeError("a document body is an array of 7 fields")
    version, chain_id, type_name, signer, nonce, expires, payload = value
    # `type(...) is int`: msgpack's true decodes to Python's True, which == 1.
    if type(version) is not int or version != FORMAT_VERSION:
        raise DecodeError(f"unsupported document format version {version!r}")
    kind = _TYPES.get(type_name) if isinstance(type_name, str) else None
    if kind is None:
        raise DecodeError(f"unknown document type {type_name!r}")
    checks = _PAYLOAD_CHECKS[kind]
    optional = OPTIONAL_TRAILING[kind]
    if optional and isinstance(payload, list) and len(checks) - optional <= len(payload) <= len(checks):
        if len(payload) > len(checks) - optional and payload[-1] == []:
            raise DecodeError(f"an empty {checks[len(payload) - 1][0]} is left out of a {kind.value} payload")
        payload = [*payload, *([] for _ in range(len(checks) - len(payload)))]
    if not isinstance(payload, list) or len(payload) != len(checks):
        raise DecodeError(f"a {kind.value} payload has {len(checks)} fields")
    checked = tuple([check(name, v) for (name, check), v in zip(checks, payload)])
    return _checked_document(chain_id, kind, signer, nonce, expires, checked)


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A document with its signature, as submitted and as stored in blocks."""

    body: bytes
    signature: bytes
    document: Document
    id: bytes = field(init=False, compare=False)  # SHA-256 of the body, computed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", hashlib.sha256(self.body).digest())

    @property
    def verified_key(self) -> bytes:
        """What a checked signature is remembered by: the id and the signature."""
        return self.id + self.signature

    def wire(self) -> bytes:
        return pack([self.body, self.signature])

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document.to_json(), "signature": self.signature.hex()}


def document_id(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def decode_signed(wire: bytes) -> SignedDocument:
    """Wire bytes `[body, signature]` to a signed document (signature not yet verified)."""
    split = _split_canonical_wire(wire)
    if split is not None:
        return SignedDocument(split[0], split[1], decode_body(split[0]))
    return _decode_signed_general(wire)


def _decode_signed_general(wire: bytes) -> SignedDocument:
    """`decode_signed` for any bytes: what the canonical split does not take is decoded
    as msgpack here, and refused with its reason."""
    value = unpack_unchecked(wire)
    if not isinstance(value, list) or len(value) != 2:
        raise DecodeError("a signed document is an array [body, signature]")
    body, signature = value
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise DecodeError("body and signature must be bytes")
    if len(signature) != SIGNATURE_BYTES:
        raise DecodeError(f"a signature has {SIGNATURE_BYTES} bytes")
    # Canonical form of [bin, bin] is fully fixed by the two lengths: checking the total
    # is the re-encoding check without re-encoding.
    if len(wire) != 1 + _bin_bytes(len(body)) + _bin_bytes(SIGNATURE_BYTES):
        raise DecodeError("encoding is not canonical")
    return SignedDocument(body, signature, decode_body(body))


def _split_canonical_wire(wire: bytes) -> tuple[bytes, bytes] | None:
    """The body and signature of a wire in its one canonical form: a 2-array (0x92), the
    body as a bin of the shortest header for its length, the signature as a bin 8 of 64
    bytes, nothing after. None for anything else, which the general decoder then decodes
    or refuses with its reason. What this accepts is exactly what the general path
    accepts as canonical, read without building and walking a msgpack value."""
    if type(wire) is not bytes or not _WIRE_BYTES_MIN <= len(wire) <= LEDGER_LIMITS.bytes_max:
        return None
    if wire[0] != 0x92:
        return None
    tag = wire[1]
    if tag == 0xC4:
        start, n = 3, wire[2]
    elif tag == 0xC5:
        start, n = 4, int.from_bytes(wire[2:4], "big")
    elif tag == 0xC6:
        start, n = 6, int.from_bytes(wire[2:6], "big")
    else:
        return None
    end = start + n
    # The shortest header for n (canonical), the signature's header, nothing after it.
    if _bin_bytes(n) != end - 1 or len(wire) != end + 2 + SIGNATURE_BYTES:
        return None
    if wire[end:end + 2] != _SIGNATURE_HEADER:
        return None
    return wire[start:end], wire[end + 2:]


_SIGNATURE_HEADER = bytes([0xC4, SIGNATURE_BYTES])
_WIRE_BYTES_MIN = 1 + 2 + 2 + SIGNATURE_BYTES  # an empty body (refused later, by decode_body)


def _bin_bytes(n: int) -> int:
    """Bytes of a canonical msgpack bin of n bytes: header (2, 3 or 5) plus data."""
    return n + (2 if n < 1 << 8 else 3 if n < 1 << 16 else 5)


def signed_from_json(obj: Any) -> SignedDocument:
    """`{"document": {...}, "signature": hex}` to a signed document (not yet verified)."""
    if not isinstance(obj, dict) or set(obj) != {"document", "signature"}:
        raise DecodeError('a signed document is {"document": {...}, "signature": "hex"}')
    try:
        signature = bytes.fromhex(obj["signature"])
    except (ValueError, TypeError) as exc:
        raise DecodeError("signature must be hex") from exc
    if len(signature) != SIGNATURE_BYTES:
        raise DecodeError(f"a signature has {SIGNATURE_BYTES} bytes")
    document = document_from_json(obj["document"])
    return SignedDocument(document.body_bytes(), signature, document)


"""The client API's route table: every route under /v1 (and /metrics), declared once.

`add_routes(app)` registers these with aiohttp together with the middleware that checks
signed reads and parses parameters, and builds the OpenAPI document served at
/v1/openapi.json from the same declarations; docs/API.md's route list is generated
from them too (a test keeps it in step).
"""

from __future__ import annotations

from aiohttp import web

from ledger import (
    MEMBER_STATES,
    BlockRead,
    CodeRead,
    DocumentRead,
    FlowRead,
    HistoryRead,
    HoldingsRead,
    ImportRead,
    ParticipantRead,
    RecallRead,
    ShipmentRead,
    TradeRead,
)

from . import _api as h
from . import _chain_api as chain
from . import _feed_api as feed
from . import _recall_api as rc
from ._errors import Refusal
from ._feed import EVENT_STREAM, EVENTS_PAGE_MAX, LONG_POLL_WAIT_MS_DEFAULT, LONG_POLL_WAIT_MS_MAX
from ._http import (
    COMMON_REASONS,
    HTTP_STATUS,
    JSON,
    MSGPACK,
    SIGNED_REASONS,
    Choice,
    Integer,
    Ok,
    Param,
    Route,
    Text,
)
from ._http import add_routes as _register
from ._openapi import openapi

# Heights are LevelDB keys of 8 bytes; a larger number names no block.
HEIGHT_MAX = 2**63 - 1
# Positions within a block are keys of 4 bytes.
POSITION_MAX = 2**32 - 1
PAGE_LIMIT_MAX = 1000


def _position(raw: str) -> tuple[int, int]:
    height, position = (int(x) for x in raw.split("."))
    if height > HEIGHT_MAX or position > POSITION_MAX:
        raise Refusal("malformed", f"after must be HEIGHT.POSITION with HEIGHT <= {HEIGHT_MAX} "
                                   f"and POSITION <= {POSITION_MAX}")
    return height, position


HEIGHT = Integer(0, HEIGHT_MAX)
FIRST_HEIGHT = Integer(1, HEIGHT_MAX)
HEX_ID = Text("[0-9a-fA-F]{64}", 64, "64 hex digits", bytes.fromhex)
PARTICIPANT_ID = Text("[0-9a-f]{40}", 40, "a participant id (40 lowercase hex digits)")
# A code in any form ledger.parse_code reads (key, element string, HRI, Digital Link),
# percent-encoded in the path: printable ASCII and GS, starting as a code can start.
# "." or ".." could never be a code, and clients would resolve them as path segments.
CODE = Text("[0-9A-Za-z(\\]\\x1d][\\x1d\\x20-\\x7e]*", 2048, "a marking code", h.code_key, "invalid_code")
# The canonical key of a code: "01" GTIN "21" serial (GS1 character set 82), or "00" SSCC.
CODE_KEY = Text('(?:01[0-9]{14}21[!"%-?A-Z_a-z]{1,20}|00[0-9]{18})', 40, "a code key")
HISTORY_CURSOR = Text("[0-9]{1,19}\\.[0-9]{1,10}", 30, "HEIGHT.POSITION, e.g. 12.0", _position)
STATE = Choice(tuple(sorted(MEMBER_STATES)))
GTIN = Text("[0-9]{14}", 14, "a GTIN-14 (14 digits)")
GROUP = Text("[a-z][a-z0-9_]{0,31}", 32, "a product group name")

LIMIT = Param("limit", Integer(1, PAGE_LIMIT_MAX), "page size", default=100)


def path(name: str, kind: Text | Integer, doc: str) -> Param:
    return Param(name, kind, doc, where="path")


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/documents", h.post_documents, "Submit one signed document or a batch",
          answers=(Ok(202, "admitted; pending (one document, or a batch without wait=commit/final), or "
                           "with wait=final applied but not final within the timeout (`final`: false)",
                      {"oneOf": [{"$ref": "#/components/schemas/Pending"},
                                 {"$ref": "#/components/schemas/BatchResults"}]}),
                   Ok(200, "with wait=commit: the outcome (applied or rejected with a reason), or a "
                           "batch's outcomes; with wait=final: the same once the block is final",
                      {"oneOf": [{"$ref": "#/components/schemas/Outcome"},
                                 {"$ref": "#/components/schemas/BatchResults"}]})),
          params=(Param("wait", Choice(("none", "commit", "final")),
                        "`commit`: answer once the document's block is applied (durable on a majority); "
                        "`final`: once that block is also attested by a Byzantine quorum of member states "
                        "(4 of 5) and can never be replaced",
                        default="none"),
                  Param("timeout_ms", Integer(1, h.WAIT_TIMEOUT_MS_MAX),
                        "how long wait=commit/final waits; then 202", default=h.WAIT_TIMEOUT_MS_DEFAULT)),
          reasons=("too_large", "unsupported_media_type", "wrong_chain", "duplicate", "expired",
                   "expiry_too_far", "not_registered", "revoked", "bad_signature", "mempool_full", "stopping",
                   "diverged", "too_slow", "too_many_refusals"),
          body={"application/json": {"schema": {"oneOf": [
              {"$ref": "#/components/schemas/SignedDocument"},
              # A batch is admitted document by document: an item that is not a signed
              # document is refused in place (`{"status": "refused", ...}` in the
              # results), the others go on. So the batch accepts any item.
              {"type": "array", "minItems": 1, "maxItems": h.BATCH_DOCUMENTS_MAX,
               "description": "signed documents; an item that is not one is refused in place"},
          ]}}, "application/msgpack": {"schema": {"type": "string", "format": "binary"}}}),
    Route("GET", "/v1/documents/{id}", h.get_document, "A document's status, result and content",
          answers=(Ok(200, "the document's status", "DocumentStatus"),),
          params=(path("id", HEX_ID, "document id"),), signed=True,
          reads=lambda a: DocumentRead(a["id"])),
    Route("GET", "/v1/codes/{code}", h.get_code, "A marking code's state",
          answers=(Ok(200, "the code's state", "Code"),),
          params=(path("code", CODE, "a code key or any form a scanner reads"),), signed=True,
          reasons=("unknown_code",), reads=lambda a: CodeRead(a["code"])),
    Route("GET", "/v1/codes/{code}/history", h.get_code_history, "Every document that touched a code",
          answers=(Ok(200, "a page of the code's history", "History"),),
          params=(path("code", CODE, "a code key or any form a scanner reads"),
                  Param("after", HISTORY_CURSOR, "page after this cursor (the `next` of the previous page)"),
                  LIMIT),
          signed=True, reasons=("unknown_code",), reads=lambda a: HistoryRead(a["code"])),
    Route("GET", "/v1/check/{code}", h.get_check, "Public check: product and status only",
          answers=(Ok(200, "what a pack's scan may show", "Check"),),
          params=(path("code", CODE, "a code key or any form a scanner reads"),), reasons=("unknown_code",)),
    Route("GET", "/v1/participants/{id}", h.get_participant, "A registered participant",
          answers=(Ok(200, "the participant", "Participant"),),
          params=(path("id", PARTICIPANT_ID, "participant id"),), signed=True,
          reasons=("unknown_participant",), reads=lambda a: ParticipantRead(a["id"])),
    Route("GET", "/v1/participants/{id}/holdings", h.get_holdings, "Codes a participant holds",
          answers=(Ok(200, "a page of codes in key order", "Holdings"),),
          params=(path("id", PARTICIPANT_ID, "participant id"),
                  Param("after", CODE_KEY, "page after this code key (the `next` of the previous page)"),
                  LIMIT),
          signed=True, reasons=("unknown_participant",), reads=lambda a: HoldingsRead(a["id"])),
    Route("GET", "/v1/shipments/{id}", h.get_shipment, "A shipment",
          answers=(Ok(200, "the shipment", "Shipment"),),
          params=(path("id", HEX_ID, "shipment id (the id of the ship document)"),), signed=True,
          reasons=("unknown_shipment",), reads=lambda a: ShipmentRead(a["id"])),
    Route("GET", "/v1/flows", h.get_flows, "Cross-border shipments between two member states",
          answers=(Ok(200, "shipments in chain order", "Flows"),),
          params=(Param("from_state", STATE, "member state the goods left", required=True),
                  Param("to_state", STATE, "member state the goods entered", required=True),
                  Param("since", HEIGHT, "first block height", default=0),
                  Param("until", HEIGHT, "last block height (default: the head)"),
                  LIMIT),
          signed=True, reads=lambda a: FlowRead(a["from_state"], a["to_state"])),
    # Recalls, customs imports and the union's trade records (issue 13, node/_recall_api.py).
    Route("GET", "/v1/trade", rc.get_trade, "A member state's export or import records",
          answers=(Ok(200, "records in chain order: accepted cross-border shipments and customs imports",
                      {"type": "object", "required": ["state", "direction", "records"]}),),
          params=(Param("state", STATE, "the member state whose records are listed", required=True),
                  Param("direction", Choice(("export", "import")), "exports from or imports into it",
                        required=True),
                  Param("since", HEIGHT, "first block height", default=0),
                  Param("until", HEIGHT, "last block height (default: the head)"),
                  LIMIT),
          signed=True, reads=lambda a: TradeRead(a["state"])),
    Route("GET", "/v1/recalls", rc.get_recalls, "Recalls, by id",
          answers=(Ok(200, "a page of recalls", {"type": "object", "required": ["recalls", "next"]}),),
          params=(Param("status", Choice(("active", "released", "all")), "which recalls", default="all"),
                  Param("after", HEX_ID, "page after this recall id (the `next` of the previous page)"),
                  LIMIT),
          signed=True),
    Route("GET", "/v1/recalls/{id}", rc.get_recall, "A recall and the holders of what it matches, per state",
          answers=(Ok(200, "the recall; holders of the states the reader oversees",
                      {"type": "object", "required": ["id", "gtin", "status", "codes", "states"]}),),
          params=(path("id", HEX_ID, "recall id (the id of the recall document)"),), signed=True,
          reasons=("unknown_recall",), reads=lambda a: RecallRead(a["id"])),
    Route("GET", "/v1/imports/{id}", rc.get_import, "A customs import and its confirmation",
          answers=(Ok(200, "the import", {"type": "object", "required": ["id", "importer", "status"]}),),
          params=(path("id", HEX_ID, "import id (the id of the import document)"),), signed=True,
          reasons=("unknown_import",), reads=lambda a: ImportRead(a["id"])),
    Route("GET", "/v1/blocks", chain.get_blocks, "Block headers (JSON) or whole blocks streamed (msgpack)",
          answers=(Ok(200, "JSON: at most 1,000 headers; msgpack: a stream of [block, [attestations]]",
                      {"type": "array", "items": {"$ref": "#/components/schemas/BlockHeader"}},
                      msgpack_binary=True),),
          params=(Param("from", FIRST_HEIGHT, "first block height", default=1),
                  Param("to", FIRST_HEIGHT, "last block height (default: the head)")),
          # Headers (JSON) for every signed reader; whole blocks (msgpack) for regulators
          # and auditors only: the handler asks the rule.
          signed=True, reasons=("not_entitled",)),
    Route("GET", "/v1/blocks/{height}", chain.get_block,
          "One block with its documents, results and attestations",
          answers=(Ok(200, "the block", "Block"),),
          params=(path("height", HEIGHT, "block height"),), signed=True, reasons=("unknown_block",),
          reads=lambda a: BlockRead()),
    Route("GET", "/v1/attestations/{height}", chain.get_attestations,
          "Member states' signatures of a block hash",
          answers=(Ok(200, "the block's attestations",
                      {"type": "array", "items": {"$ref": "#/components/schemas/Attestation"}}),),
          params=(path("height", HEIGHT, "block height"),), reasons=("unknown_block",)),
    Route("GET", "/v1/proofs/documents/{id}", chain.get_document_proof, "Inclusion proof of a document",
          answers=(Ok(200, "ledger.InclusionProof.to_json()", "InclusionProof"),),
          params=(path("id", HEX_ID, "document id"),), signed=True, reasons=("unknown_document",),
          reads=lambda a: DocumentRead(a["id"])),
    Route("GET", "/v1/proofs/codes/{code}", chain.get_code_proof, "Provenance bundle of a code",
          answers=(Ok(200, "ledger.ProvenanceBundle: to_json(), or encode() bytes in msgpack",
                      "ProvenanceBundle", msgpack_binary=True),),
          params=(path("code", CODE, "a code key or any form a scanner reads"),), signed=True,
          reasons=("unknown_code", "not_final"), reads=lambda a: HistoryRead(a["code"])),
    Route("GET", "/v1/inbox", feed.get_inbox, "What is addressed to the signed-in participant",
          answers=(Ok(200, "a page of inbox items, oldest first", "Inbox"),),
          params=(Param("status", Choice(("pending", "all")),
                        "`pending`: incoming shipments awaiting acceptance; `all`: everything addressed "
                        "to the reader", default="pending"),
                  Param("after", HISTORY_CURSOR, "page after this cursor (the `next` of the previous page)"),
                  LIMIT),
          signed=True),
    Route("GET", "/v1/events", feed.get_events,
          "The documents the reader may see, in chain order, from a cursor: a long-poll page, or "
          "server-sent events with `Accept: text/event-stream`",
          answers=(Ok(200, "a page of events (waits up to wait_ms for a first one) or, with Accept: "
                           "text/event-stream, a stream of them", "Events", (JSON, MSGPACK, EVENT_STREAM)),),
          params=(Param("after", HISTORY_CURSOR, "events after this cursor (an event's `cursor`, or a "
                                                 "page's `next`); 0.0 or none: from the start"),
                  Param("limit", Integer(1, EVENTS_PAGE_MAX), "events per page", default=100),
                  Param("wait_ms", Integer(0, LONG_POLL_WAIT_MS_MAX),
                        "how long a page with no event waits for one", default=LONG_POLL_WAIT_MS_DEFAULT)),
          signed=True, reasons=("cursor_ahead", "cursor_expired", "feed_busy")),
    # The product catalogue (issue 13): public, as a product's card is in the national systems.
    Route("GET", "/v1/products/{gtin}", h.get_product, "A registered product and its group's rules",
          answers=(Ok(200, "the product, with its group's layouts and required attributes",
                      {"type": "object"}),),
          params=(path("gtin", GTIN, "GTIN-14"),), reasons=("unknown_product",)),
    Route("GET", "/v1/products", h.get_products, "Registered products in GTIN order",
          answers=(Ok(200, "a page of products; `next` is the cursor of the following page",
                      {"type": "object"}),),
          params=(Param("group", GROUP, "only products of this group"),
                  Param("after", GTIN, "page after this GTIN (the `next` of the previous page)"),
                  LIMIT)),
    Route("GET", "/v1/product-groups", h.get_product_groups,
          "The product-group table in force: genesis's, as governance documents last set it",
          answers=(Ok(200, "every group with its layouts, attributes, withdrawal reasons, the reasons "
                      "needing a supporting document, documents and status (active or retired)",
                      {"type": "object", "required": ["groups"]}),)),
    Route("GET", "/v1/evidence", h.get_evidence_list,
          "Equivocation evidence this node holds: two attestations by one state for different blocks "
          "at one height", answers=(Ok(200, "every piece, by state and height", "EvidenceList"),)),
    Route("GET", "/v1/evidence/{id}", h.get_evidence, "One piece of equivocation evidence",
          answers=(Ok(200, "the evidence; `bytes` (hex) is what ledger.Evidence.decode reads", "Evidence"),),
          params=(path("id", HEX_ID, "evidence id"),), reasons=("unknown_evidence",)),
    Route("GET", "/v1/status", h.get_status, "The node's view: role, term, height, head, peers",
          answers=(Ok(200, "the node's status", "Status"),)),
    Route("GET", "/v1/openapi.json", h.get_openapi, "This description",
          answers=(Ok(200, "OpenAPI 3.1", {"type": "object"}, (JSON,)),)),
    Route("GET", "/metrics", h.get_metrics, "Prometheus metrics",
          answers=(Ok(200, "Prometheus text exposition", None, ("text/plain",)),)),
)

def add_routes(app: web.Application) -> None:
    """The client API's routes, their checks, and their description."""
    app[h.OPENAPI] = openapi(ROUTES)
    _register(app, ROUTES)


def route_list_markdown() -> str:
    """The route list of docs/API.md, generated from the table."""
    lines = ["| method, path | query | signed | answers | refusals beyond 400 `malformed`, `unknown_field` |",
             "|---|---|---|---|---|"]
    for route in ROUTES:
        query = ", ".join(f"`{p.name}`" for p in route.params if p.where == "query")
        answers = "; ".join(f"{ok.status}: {ok.description}" for ok in route.answers)
        hidden = COMMON_REASONS + (SIGNED_REASONS if route.signed else ())
        refusals = ", ".join(f"{HTTP_STATUS[r]} `{r}`" for r in route.all_reasons() if r not in hidden)
        signed = "yes" if route.signed else ""
        lines.append(f"| `{route.method} {route.path}` | {query} | {signed} | {route.summary}. {answers} "
                     f"| {refusals} |")
    return "\n".join(lines) + "\n"

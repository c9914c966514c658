"""The HTTP edge: route declarations, typed parameters, error mapping; signed reads are
checked by node/_signed_reads.py, for the routes declared signed.

A `Route` is declared once (method, path, handler, parameters, signed or not, answers);
`add_routes` registers it with aiohttp, and the table middleware then runs, for exactly
the declared routes, the signed-read check (for `signed` routes) and the parsing and
bounds checking of every parameter, before the handler, which receives the parsed
values. `_openapi.py` renders the same declarations as OpenAPI 3.

Inside the node an error is a `Refusal` with a stable reason; here, and only here, the
reason becomes an HTTP status through `HTTP_STATUS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
from aiohttp import hdrs, web

from ledger import (
    END,
    HistoryRead,
    Reader,
    Thing,
    check_read,
    history_window,
    reader_of,
)

from ._errors import Refusal, shown
from ._keys import CONFIG, NODE
from ._signed_reads import REPLAY, ReplayCache, check_signed

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
JSON = "application/json"

# -- reasons to statuses ---------------------------------------------------------------

# The one table from a refusal's reason to its HTTP status. Reasons of the ledger's
# admission rule (`ledger.Reason`) appear here under the same names.
HTTP_STATUS: dict[str, int] = {
    # The request itself is malformed.
    "malformed": 400,
    "unknown_field": 400,
    "invalid_code": 400,
    "bad_request": 400,
    # Who is asking.
    "unsigned": 401,
    "bad_request_signature": 401,
    "stale_request": 401,
    "wrong_node": 401,
    "replayed_request": 401,
    "not_registered": 403,
    "revoked": 403,
    "not_a_peer": 403,
    # The access rule (ledger/_access.py, docs/ACCESS.md) does not let this reader read it.
    "not_entitled": 403,
    # What is asked for.
    "not_found": 404,
    "unknown_code": 404,
    "unknown_document": 404,
    "unknown_participant": 404,
    "unknown_shipment": 404,
    "unknown_block": 404,
    # The event feed's cursor (node/_feed.py): past this node's head (it may be behind:
    # retry or ask another), or older than it keeps.
    "cursor_ahead": 400,
    "cursor_expired": 400,
    "feed_busy": 429,
    "unknown_product": 404,
    "unknown_evidence": 404,
    "unknown_recall": 404,
    "unknown_import": 404,
    "method_not_allowed": 405,
    "duplicate": 409,
    # A provenance bundle whose blocks are not final yet: ask again shortly.
    "not_final": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "too_slow": 408,
    "too_many_refusals": 429,
    # Too many signed reads at once: the replay cache is full (see ReplayCache).
    "signed_reads_busy": 429,
    # The document cannot enter.
    "wrong_chain": 422,
    "expired": 422,
    "expiry_too_far": 422,
    "bad_signature": 422,
    # The node cannot serve now; try again or elsewhere.
    "mempool_full": 503,
    "stopping": 503,
    "diverged": 503,
}

# The errors aiohttp raises by itself, before or instead of a handler, by status.
HTTP_REASONS: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}

# Every route may answer these: an unknown query parameter, a malformed value, a request
# line that is not ASCII.
COMMON_REASONS = ("malformed", "unknown_field")
SIGNED_REASONS = ("unsigned", "bad_request_signature", "stale_request", "wrong_node", "replayed_request",
                  "signed_reads_busy", "not_registered", "revoked")


def http_status(reason: str) -> int:
    """The HTTP status of a refusal; 500 for a reason the table lacks (a node bug)."""
    return HTTP_STATUS.get(reason, 500)


def _error(status: int, reason: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error leaves the node as `{"error": reason, "message": text}` JSON."""
    try:
        return await handler(request)
    except Refusal as exc:
        status = http_status(exc.reason)
        if status == 500:
            log.error("refusal %r has no HTTP status: %s", exc.reason, exc.message)
        return _error(status, exc.reason, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error(500, "internal", "the node failed to handle this request; see its log")


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    reason = HTTP_REASONS.get(exc.status, "http_error")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 413:
        limit = request.app[CONFIG].api.body_bytes_max
        message = f"the body is larger than the {limit} bytes this node accepts"
    elif exc.status == 405:
        message = f"{request.method} is not allowed here; allowed: {exc.headers.get(hdrs.ALLOW, '')}"
    # A 405 must say what is allowed (RFC 9110); keep that when the body becomes JSON.
    headers = {"Allow": exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else None
    return _error(exc.status, reason, message or exc.reason, headers)


# -- answering -------------------------------------------------------------------------


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return MSGPACK in accept or "application/x-msgpack" in accept


def respond(request: web.Request, value: Any, status: int = 200) -> web.Response:
    if wants_msgpack(request):
        return web.Response(body=msgpack.packb(value, use_bin_type=True), status=status, content_type=MSGPACK)
    return web.Response(text=json.dumps(value, separators=(",", ":")), status=status, content_type=JSON)


# -- typed parameters ------------------------------------------------------------------

# Decimal integers only: int() would also read "+1", " 1", "1_0" and other scripts' digits.
_INTEGER = re.compile(r"-?[0-9]+")
# More digits than any bound here needs; refused before int() does quadratic work.
_INTEGER_DIGITS_MAX = 20


@dataclass(frozen=True, slots=True)
class Integer:
    """A decimal integer within [lo, hi]."""

    lo: int
    hi: int

    def parse(self, name: str, raw: str) -> int:
        if not _INTEGER.fullmatch(raw):
            raise Refusal("malformed", f"{name} must be a decimal integer, not {shown(raw)}")
        if len(raw.lstrip("-")) > _INTEGER_DIGITS_MAX or not self.lo <= int(raw) <= self.hi:
            raise Refusal("malformed", f"{name} must be between {self.lo} and {self.hi}")
        return int(raw)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}

    @property
    def reasons(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Text:
    """A string matching `pattern` (the whole of it), then converted by `convert`, which
    refuses with a Refusal what the pattern cannot express."""

    pattern: str
    max_length: int
    what: str
    convert: Callable[[str], Any] = str
    reason: str = "malformed"
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))

    def parse(self, name: str, raw: str) -> Any:
        # fullmatch: the pattern is anchored in the description, and Python's `$` would
        # also accept a trailing newline.
        if len(raw) > self.max_length or not self.regex.fullmatch(raw):
            raise Refusal(self.reason, f"{name} must be {self.what}, not {shown(raw)}")
        return self.convert(raw)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{self.pattern}$", "maxLength": self.max_length}

    @property
    def reasons(self) -> tuple[str, ...]:
        return (self.reason,)


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few words."""

    values: tuple[str, ...]

    def parse(self, name: str, raw: str) -> str:
        if raw not in self.values:
            raise Refusal("malformed", f"{name} must be one of {', '.join(self.values)}, not {shown(raw)}")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}

    @property
    def reasons(self) -> tuple[str, ...]:
        return ()


Kind = Integer | Text | Choice


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter; an absent query parameter takes `default`."""

    name: str
    kind: Kind
    doc: str
    where: Literal["path", "query"] = "query"
    default: Any = None
    required: bool = False

    @property
    def is_required(self) -> bool:
        return self.where == "path" or self.required


Args = Mapping[str, Any]
Handler = Callable[[web.Request, Args], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Ok:
    """A success answer: its status, what it means, and the schema of its JSON body
    (a name under components/schemas, or an inline schema)."""

    status: int
    description: str
    schema: str | dict[str, Any] | None = None
    media: tuple[str, ...] = (JSON, MSGPACK)
    # The msgpack answer is an encoding of its own (a stream, a bundle's bytes), not
    # the JSON structure in msgpack.
    msgpack_binary: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of an API, declared once for aiohttp, OpenAPI and the checks."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    summary: str
    answers: tuple[Ok, ...]
    params: tuple[Param, ...] = ()
    signed: bool = False
    # Refusals the handler (or the node it calls) may answer beyond those of the
    # parameters and the signed-read check.
    reasons: tuple[str, ...] = ()
    body: dict[str, Any] | None = None
    # What a signed route reads, from its parsed parameters: the middleware asks the
    # access rule (ledger.check_read) before the handler runs. None: the handler asks
    # itself (what it reads depends on more than the parameters) or anyone may read it.
    reads: Callable[[Args], Thing] | None = None

    def all_reasons(self) -> tuple[str, ...]:
        """Every reason this route may answer, in a stable order."""
        out = [*COMMON_REASONS]
        for p in self.params:
            out += p.kind.reasons
        if self.signed:
            out += SIGNED_REASONS
        if self.reads is not None:
            out.append("not_entitled")
        out += self.reasons
        return tuple(dict.fromkeys(out))


# -- the table middleware --------------------------------------------------------------

READER = web.RequestKey("reader", str)
# The reader as the access rule sees it: its record and audit grants at the head.
ENTITLED = web.RequestKey("entitled", Reader)
# The last place of a code's history the reader may see (ledger.history_window).
WINDOW = web.RequestKey("window", tuple[int, int])
ARGS = web.RequestKey("args", Mapping[str, Any])
_ROUTE_OF = web.AppKey("route_of", dict)


def parse_args(route: Route, request: web.Request) -> dict[str, Any]:
    """The route's parameters, parsed and checked; unknown query parameters refused."""
    known = {p.name for p in route.params if p.where == "query"}
    unknown = sorted(set(request.query) - known)
    if unknown:
        names = ", ".join(shown(u) for u in unknown[:5])
        raise Refusal("unknown_field", f"unknown query parameter(s): {names}")
    args: dict[str, Any] = {}
    for p in route.params:
        if p.where == "path":
            args[p.name] = p.kind.parse(p.name, request.match_info[p.name])
            continue
        values = request.query.getall(p.name, [])
        if len(values) > 1:
            raise Refusal("malformed", f"{p.name} is given more than once")
        if not values and p.required:
            raise Refusal("malformed", f"{p.name} is required")
        args[p.name] = p.kind.parse(p.name, values[0]) if values else p.default
    return args


@web.middleware
async def table_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """For a declared route: the signed-read check if it is signed, then its parameters."""
    route = request.app[_ROUTE_OF].get(request.match_info.route.handler)
    if route is None:  # not found, method not allowed, OPTIONS, websockets
        return await handler(request)
    # The signature covers the request line as sent; one that is not ASCII cannot have
    # been signed as we read it, and no parameter needs anything but ASCII on the wire.
    if not request.raw_path.isascii():
        raise Refusal("malformed", "percent-encode the request path and query (they must be ASCII)")
    if route.signed:
        request[READER] = check_signed(request)
    request[ARGS] = parse_args(route, request)
    if route.reads is not None:
        entitle(request, route.reads(request[ARGS]))
    return await handler(request)


def reader(request: web.Request) -> Reader:
    """Who asks, as the access rule sees it (looked up once per request)."""
    if ENTITLED not in request:
        node = request.app[NODE]
        request[ENTITLED] = reader_of(node.store, request.get(READER))
    return request[ENTITLED]


def access_rule_on(request: web.Request) -> bool:
    return bool(request.app[CONFIG].api.access_rule)


def history_window_of(request: web.Request) -> tuple[int, int]:
    """The part of the code's history this reader may see, as the route's check found
    it (END: all of it, also when the rule is off)."""
    window: tuple[int, int] = request.get(WINDOW, END)
    return window


def entitle(request: web.Request, thing: Thing) -> None:
    """Refuse (403 not_entitled) unless the access rule lets this request's reader read
    `thing`. A node configured with the rule off (a benchmark's baseline) lets all
    signed readers read everything."""
    if not access_rule_on(request):
        return
    store = request.app[NODE].store
    if isinstance(thing, HistoryRead):
        # A history's answer is a window, which the handler cuts the page to: asked once.
        window = history_window(store, reader(request), thing.key)
        refused = window is None
        if window is not None:
            request[WINDOW] = window
    else:
        refused = check_read(store, reader(request), thing) is not None
    if refused:
        raise Refusal("not_entitled", f"participant {request.get(READER)} may not read this "
                                      f"({type(thing).__name__}); docs/ACCESS.md lists who may read what")


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        # ARGS is there only when the table middleware ran: no handler runs unchecked.
        return await route.handler(request, request[ARGS])

    return endpoint


def _options(allow: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def options(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={hdrs.ALLOW: allow})

    return options


def add_routes(app: web.Application, routes: Sequence[Route]) -> None:
    """Register each route (GET also answers HEAD; every path answers OPTIONS) and the
    middleware that checks them."""
    route_of: dict[Any, Route] = {}
    methods: dict[str, list[str]] = {}
    for route in routes:
        endpoint = _endpoint(route)
        route_of[endpoint] = route
        app.router.add_route(route.method, route.path, endpoint)
        methods.setdefault(route.path, []).append(route.method)
        if route.method == "GET":
            app.router.add_route("HEAD", route.path, endpoint)
            methods[route.path].append("HEAD")
    for path, names in methods.items():
        app.router.add_route("OPTIONS", path, _options(", ".join([*names, "OPTIONS"])))
    app[_ROUTE_OF] = route_of
    app[REPLAY] = ReplayCache()
    app.middlewares.append(table_middleware)

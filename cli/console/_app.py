"""The console's web application: static pages and a read-only JSON proxy, on loopback only.

Who may talk to it: only a browser on this machine that opened the link `tamga console`
printed. The guard middleware, before any handler, refuses

- any method but GET and HEAD (the proxy reads; nothing in the console signs a
  document, so a page of another site cannot make it submit one);
- a Host header that is not this console's own address (a DNS-rebinding page reaches
  127.0.0.1 under its own host name);
- an Origin, or a Sec-Fetch-Site of "cross-site", from anywhere else (CSRF);
- a request without the per-start token: the printed link carries it once in the
  query; the console answers with an HttpOnly, SameSite=Strict cookie and sends the
  browser on to the same page without it.

Answers from the node, good or refused, reach the page as 200 with `{"ok": ...}`: a
refusal is data the page shows (a reader without the right sees "not entitled"), not
a failed load; only the guard's own refusals use error statuses.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from node.client import ClientError

from . import _anomalies
from ._data import ConsoleSource, error_json

log = logging.getLogger("tamga.console")

STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
VENDOR_CHART = "vendor/chart.umd.js"
# Nothing the page loads comes from elsewhere, no script is inline, and no other site
# may frame the console (clickjacking).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SAFE_METHODS = ("GET", "HEAD")
# A code in a query: a scanner's whole element string or a Digital Link fits easily.
CODE_CHARS_MAX = 2048


@dataclass(frozen=True)
class ConsoleConfig:
    port: int
    token: str

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{h}" for h in self.hosts)

    @property
    def cookie(self) -> str:
        # Cookies are kept per host, not per port: two consoles on one machine must not
        # overwrite each other's.
        return f"tamga_console_{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


CONFIG = web.AppKey("console_config", ConsoleConfig)
SOURCE = web.AppKey("console_source", ConsoleSource)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static_dir() -> Path:
    return Path(str(resources.files("cli.console") / "static"))


def charts_installed() -> bool:
    return (static_dir() / VENDOR_CHART).is_file()


# -- the guard -------------------------------------------------------------------------


def _refuse(request: web.Request, status: int, code: str, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"ok": False, "error": {"status": status, "code": code, "message": message}},
                                 status=status)
    text = f"<!doctype html><title>Tamga console</title><p>{message}</p>"
    return web.Response(text=text, status=status, content_type="text/html")


def guard_refusal(request: web.Request, config: ConsoleConfig) -> web.Response | None:
    """Why this request may not reach the console (a response), or None if it may."""
    if request.method not in SAFE_METHODS:
        return _refuse(request, 405, "read_only", "the console only reads: GET and HEAD")
    if request.headers.get("Host", "") not in config.hosts:
        return _refuse(request, 403, "wrong_host", "the console answers only at its own address")
    origin = request.headers.get("Origin")
    if origin is not None and origin not in config.origins:
        return _refuse(request, 403, "wrong_origin", "requests from other sites are refused")
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return _refuse(request, 403, "wrong_origin", "requests from other sites are refused")
    cookie = request.cookies.get(config.cookie, "")
    if not hmac.compare_digest(cookie.encode(), config.token.encode()):
        return _refuse(request, 403, "no_token",
                       "open the link that `tamga console` printed (it carries this start's token)")
    return None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[CONFIG]
    token = request.query.get("token")
    # The printed link: trade the token for a cookie, and drop it from the address bar.
    if (request.path == "/" and token is not None and request.method in SAFE_METHODS
            and request.headers.get("Host", "") in config.hosts
            and hmac.compare_digest(token.encode(), config.token.encode())):
        redirect = web.Response(status=303, headers={"Location": "/"})
        redirect.set_cookie(config.cookie, config.token, httponly=True, samesite="Strict", path="/")
        _secure(redirect)
        return redirect
    refusal = guard_refusal(request, config)
    response = refusal if refusal is not None else await handler(request)
    _secure(response)
    return response


def _secure(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


# -- handlers --------------------------------------------------------------------------


def _answer(data: Any) -> web.Response:
    return web.json_response({"ok": True, "data": data}, dumps=_dumps)


def _failed(error: dict[str, Any]) -> web.Response:
    return web.json_response({"ok": False, "error": error}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _envelope(read: Awaitable[Any]) -> web.Response:
    try:
        return _answer(await read)
    except ClientError as exc:
        return _failed(error_json(exc))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A node answer of a shape the console does not know (a newer or a broken node):
        # the page says so instead of failing to load.
        log.warning("unexpected answer from the node: %r", exc)
        message = f"the node answered in a form the console does not read ({type(exc).__name__})"
        return _failed({"status": None, "code": "unexpected_answer", "message": message})


async def index(request: web.Request) -> web.Response:
    page = (static_dir() / "index.html").read_text(encoding="utf-8")
    charts = charts_installed()
    tag = f'<script src="/static/{VENDOR_CHART}"></script>' if charts else ""
    page = page.replace("<!--chart-library-->", tag).replace("{{charts}}", "on" if charts else "off")
    return web.Response(text=page, content_type="text/html")


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == VENDOR_CHART and charts_installed():
        return web.FileResponse(static_dir() / VENDOR_CHART, headers={"Content-Type": "text/javascript"})
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(static_dir() / name, headers={"Content-Type": STATIC_FILES[name]})


def _code_param(request: web.Request) -> str | None:
    code = request.query.get("code", "").strip()
    return code if 0 < len(code) <= CODE_CHARS_MAX else None


def _bad_code() -> web.Response:
    message = f"give a code of 1 to {CODE_CHARS_MAX} characters"
    return _failed({"status": None, "code": "invalid_code", "message": message})


async def api_session(request: web.Request) -> web.Response:
    return await _envelope(request.app[SOURCE].session_info())


async def api_network(request: web.Request) -> web.Response:
    return await _envelope(request.app[SOURCE].network())


async def api_flows(request: web.Request) -> web.Response:
    return await _envelope(request.app[SOURCE].flows())


async def api_chain(request: web.Request) -> web.Response:
    return await _envelope(request.app[SOURCE].chain())


async def api_code(request: web.Request) -> web.Response:
    code = _code_param(request)
    return _bad_code() if code is None else await _envelope(request.app[SOURCE].code(code))


async def api_participant(request: web.Request) -> web.Response:
    return await _envelope(request.app[SOURCE].participant(request.match_info["pid"]))


async def api_sql_anomalies(request: web.Request) -> web.Response:
    # DuckDB blocks: the reports run on a worker thread, so the console keeps answering.
    return _answer(await asyncio.to_thread(_anomalies.sql_reports, request.app[SOURCE].data))


async def api_node(request: web.Request) -> web.Response:
    """The read proxy: GET /api/node/v1/... is GET /v1/... on the node, signed as a read."""
    path_qs = request.raw_path[len("/api/node"):]
    return await _envelope(request.app[SOURCE].proxy(path_qs))


async def download(request: web.Request) -> web.Response:
    """The provenance bundle or its EPCIS form of a code, as a file to save."""
    kind, code = request.match_info["kind"], _code_param(request)
    if code is None:
        return _bad_code()
    source = request.app[SOURCE]
    try:
        data = await (source.provenance(code) if kind == "provenance" else source.epcis(code))
    except ClientError as exc:
        return _failed(error_json(exc))
    name = "".join(c if c.isalnum() else "_" for c in code)[:60]
    return web.Response(text=_dumps(data), content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{kind}-{name}.json"'})


async def _source_ctx(app: web.Application) -> Any:
    await app[SOURCE].start()
    yield
    await app[SOURCE].close()


def create_app(config: ConsoleConfig, source: ConsoleSource) -> web.Application:
    """The console: `config` says where it listens and its token, `source` reads the node."""
    app = web.Application(middlewares=[guard])
    app[CONFIG] = config
    app[SOURCE] = source
    app.cleanup_ctx.append(_source_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name:.+}", static)
    app.router.add_get("/api/session", api_session)
    app.router.add_get("/api/network", api_network)
    app.router.add_get("/api/flows", api_flows)
    app.router.add_get("/api/chain", api_chain)
    app.router.add_get("/api/code", api_code)
    app.router.add_get("/api/participant/{pid:[0-9a-f]{40}}", api_participant)
    app.router.add_get("/api/anomalies/sql", api_sql_anomalies)
    app.router.add_get("/api/node/{tail:.*}", api_node)
    app.router.add_get("/download/{kind:provenance|epcis}", download)
    return app

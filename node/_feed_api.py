"""Handlers of the inbox and the event feed (node/_feed.py): parse, call, respond."""

from __future__ import annotations

from aiohttp import web

from ._feed import EVENT_STREAM, long_poll, stream
from ._http import READER, Args, respond
from ._keys import NODE


async def get_inbox(request: web.Request, a: Args) -> web.Response:
    feed = request.app[NODE].feed
    return respond(request, feed.inbox(request[READER], a["status"] == "pending", a["after"], a["limit"]))


async def get_events(request: web.Request, a: Args) -> web.StreamResponse:
    feed = request.app[NODE].feed
    # Checked before anything waits or streams: a bad cursor answers 400 at once.
    after = feed.check_cursor(a["after"])
    if EVENT_STREAM in request.headers.get("Accept", ""):
        return await stream(request, feed, request[READER], after, a["limit"])
    return respond(request, await long_poll(feed, request[READER], after, a["limit"], a["wait_ms"]))

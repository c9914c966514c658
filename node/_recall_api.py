"""Handlers of the recall, customs-import and trade routes (issue 13): parse, call, respond.

The routes are declared in node/_routes.py with their parameters and the access rule's
things (ledger.TradeRead, RecallRead, ImportRead); a recall's holders are cut to what the
reader oversees (ledger.recall_view_for) when the access rule is on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ledger import LedgerStore, recall_view_for

from ._errors import Refusal
from ._http import Args, access_rule_on, reader, respond
from ._keys import NODE


def _store(request: web.Request) -> LedgerStore:
    store: LedgerStore = request.app[NODE].store
    return store


async def get_trade(request: web.Request, a: Args) -> web.Response:
    records = _store(request).trade(a["state"], a["direction"], a["since"], a["until"], a["limit"])
    return respond(request, {"state": a["state"], "direction": a["direction"], "records": records})


async def get_recalls(request: web.Request, a: Args) -> web.Response:
    status = "" if a["status"] == "all" else a["status"]
    found = _store(request).recalls(a["after"] or b"", a["limit"], status)
    nxt = found[-1]["id"] if len(found) == a["limit"] else None
    return respond(request, {"recalls": found, "next": nxt})


def _recall_view(store: LedgerStore, recall_id: bytes) -> dict[str, Any] | None:
    record = store.recall(recall_id)
    if record is None:
        return None

    def state_of(pid: str) -> str:
        participant = store.participant_record(pid)
        return participant.state if participant is not None else ""

    # The holders come from the holdings index (ledger/_holdings.py): one range, as many
    # keys as holders; a recall of listed codes reads their records (at most 30,000).
    holders = store.recall_holders(recall_id, record, state_of)
    return {"id": recall_id.hex(), **record.to_json(), **holders}


async def get_recall(request: web.Request, a: Args) -> web.Response:
    store = _store(request)
    # Listed codes read up to 30,000 records: off the event loop.
    view = await asyncio.get_running_loop().run_in_executor(None, _recall_view, store, a["id"])
    if view is None:
        raise Refusal("unknown_recall", f"no recall {a['id'].hex()}")
    if access_rule_on(request):
        who = reader(request)
        own = sum(h["codes"] for per in view["states"].values() for h in per["holders"]
                  if h["participant"] == who.id)
        view = recall_view_for(who, view, own)
    return respond(request, view)


async def get_import(request: web.Request, a: Args) -> web.Response:
    record = _store(request).import_record(a["id"])
    if record is None:
        raise Refusal("unknown_import", f"no import {a['id'].hex()}")
    return respond(request, {"id": a["id"].hex(), **record.to_json()})

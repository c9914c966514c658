"""The console's reads: the node's API through `node.client`, composed into what each view shows.

`ConsoleSource` holds the user's key and the genesis pins; every read it makes is a GET
(signed for the one node `--node` names, as the CLI signs), so the browser never holds
the key and can never make the console sign anything but a read. A read the node refuses
raises `ClientError` (a `NodeError` carries the node's status and stable code); the app
turns it into an answer the page shows. Fields the node does not have yet (a
`final_height`, evidence, an event feed) come back as None, never as an error, so the
console works with nodes from before and after those changes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import aiohttp

import ledger
from node.client import MSGPACK, ClientError, NodeClient, NodeError, Request, quote_code

from ..epcis import bundle_events, epcis_document
from ._index import ChainIndex

# The node answers at most 1,000 items a page (node/_routes.py PAGE_LIMIT_MAX).
PAGE_LIMIT = 1000
# A code with a longer history is shown in part: 20 pages are 20,000 documents, more
# than any pack's journey; the page says when it stops short.
HISTORY_PAGES_MAX = 20
# Each timeline entry costs a document read; a longer timeline shows the rest without
# the documents' contents so that one page view stays a bounded number of requests.
TIMELINE_DOCUMENTS_MAX = 200
# Flows: per state pair the first page of shipments in chain order (the view is an
# overview and says "1000+" when a pair has more; `tamga flows --since` pages further).
FLOW_SHIPMENTS_MAX = 1000
# Requests in flight at once for one timeline: enough to hide loopback latency, few
# enough not to crowd the node's other readers.
TIMELINE_CONCURRENCY = 8
# Participant names kept for labels; past this many the cache starts afresh.
NAMES_MAX = 10_000
# Block headers fetched for the times of shipments and timeline entries, in requests of
# at most 1,000 headers (the node's JSON page), at most this many requests per view.
HEADER_REQUESTS_MAX = 20
HEADERS_PER_REQUEST = 1000
# The chain index reads at most this many blocks per refresh, so that one page view of
# a long chain answers in bounded time; the next refresh goes on from there.
INDEX_BLOCKS_PER_REFRESH = 5000
# A node that does not answer its status within this is shown as unreachable, so that
# one dead node never holds up the Network view.
STATUS_TIMEOUT_S = 2.0
# Paths the read proxy passes on: the client API under /v1, printable ASCII, no dot
# segments (they would be resolved away and sign a different path).
PROXY_PATH = re.compile(r"/v1/[\x21-\x7e]{0,2000}")


def _bytes_plan(path: str) -> Generator[Request, Any, bytes]:
    data: bytes = yield Request("GET", path, accept=MSGPACK, answer="bytes")
    return data


class ConsoleSource:
    """The reads of one console: one node for signed reads, every genesis node for status."""

    def __init__(self, node_url: str, key: ledger.KeyPair | None, genesis: ledger.Genesis | None,
                 data: Path | None = None) -> None:
        self.node_url = node_url
        self.data = data  # a `tamga export parquet` directory: the SQL anomaly reports
        self.key = key
        self.genesis = genesis
        self._session: aiohttp.ClientSession | None = None
        self._client: NodeClient | None = None
        self._index = ChainIndex()
        self._index_lock = asyncio.Lock()
        self._names: dict[str, dict[str, Any] | None] = {}
        # Checked now, before anything listens: a URL the client cannot talk to (an
        # https node without the genesis that pins it, another scheme) is a usage error.
        NodeClient(node_url, key, genesis=genesis)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._client = NodeClient(self.node_url, self.key, session=self._session, genesis=self.genesis)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def client(self) -> NodeClient:
        if self._client is None:
            raise RuntimeError("ConsoleSource.start() first")
        return self._client

    async def get(self, path_qs: str) -> Any:
        """A GET of the node's client API, signed when the console holds a key."""
        return await self.client.get(path_qs)

    async def proxy(self, path_qs: str) -> Any:
        """The read proxy: a GET of any /v1 path the page asks for, refused otherwise."""
        path = path_qs.split("?", 1)[0]
        if not PROXY_PATH.fullmatch(path_qs) or any(seg in (".", "..") for seg in path.split("/")):
            raise ClientError("the console passes on only GET /v1/... paths in printable ASCII")
        return await self.get(path_qs)

    # -- who, where -------------------------------------------------------------------

    async def session_info(self) -> dict[str, Any]:
        status = await self.client.status()
        me = self.key.participant_id if self.key is not None else None
        record = await self._participant_or_none(me) if me else None
        return {
            "node": self.client.url,
            "node_state": status.get("state"),
            "chain_id": status.get("chain_id"),
            "states": self.states(status),
            "participant": me,
            "record": record,
            "genesis": self.genesis is not None,
        }

    def states(self, status: dict[str, Any] | None = None) -> list[str]:
        """The chain's member states: from genesis, else what the node names."""
        if self.genesis is not None:
            return [s.code for s in self.genesis.states]
        named = {str((status or {}).get("state") or "")} | set(((status or {}).get("peers") or {}).keys())
        return sorted(s for s in named if s in ledger.MEMBER_STATES)

    # -- Network ----------------------------------------------------------------------

    async def network(self) -> dict[str, Any]:
        """Every member state's node status (unsigned reads, each pinned by genesis)."""
        if self.genesis is None:
            status = await self.client.status()
            return {"nodes": [_node_row(status.get("state"), self.client.url, status, None)],
                    "quorum": None, "time_ms": _now_ms()}
        rows = await asyncio.gather(*(self._node_row(s) for s in self.genesis.states))
        return {"nodes": list(rows), "quorum": ledger.byzantine_quorum(len(self.genesis.states)),
                "time_ms": _now_ms()}

    async def _node_row(self, member: ledger.MemberState) -> dict[str, Any]:
        client = NodeClient(member.api_url, None, session=self._session, genesis=self.genesis,
                            timeout_s=STATUS_TIMEOUT_S)
        try:
            status = await client.status()
        except ClientError as exc:
            return _node_row(member.code, member.api_url, None, str(exc))
        row = _node_row(member.code, member.api_url, status, None)
        height = int(status.get("height") or 0)
        if height:
            try:
                attestations = await client.get(f"/v1/attestations/{height}", signed=False)
                row["head_attested_by"] = sorted({str(a.get("state")) for a in attestations})
            except ClientError:
                row["head_attested_by"] = None
        return row

    # -- Flows ------------------------------------------------------------------------

    async def flows(self) -> dict[str, Any]:
        status = await self.client.status()
        states = self.states(status)
        pairs = [(a, b) for a in states for b in states if a != b]
        answers = await asyncio.gather(*(self._pair(a, b) for a, b in pairs))
        shipments = [s for pair in answers for s in pair.get("shipments", [])]
        headers = await self._headers({int(s["height"]) for s in shipments})
        for s in shipments:
            s["time_ms"] = (headers.get(int(s["height"])) or {}).get("time_ms")
        return {"states": states, "pairs": list(answers), "time_ms": _now_ms(),
                "head_time_ms": status.get("time_ms")}

    async def _pair(self, a: str, b: str) -> dict[str, Any]:
        query = f"from_state={a}&to_state={b}&limit={FLOW_SHIPMENTS_MAX}"
        try:
            answer = await self.get(f"/v1/flows?{query}")
        except NodeError as exc:
            return {"from_state": a, "to_state": b, "error": _error_json(exc)}
        shipments = list(answer.get("shipments") or [])
        return {"from_state": a, "to_state": b, "shipments": shipments,
                "more": len(shipments) >= FLOW_SHIPMENTS_MAX}

    async def _headers(self, heights: set[int]) -> dict[int, dict[str, Any]]:
        """Block headers at `heights`, fetched in ranges; those not readable are left out."""
        out: dict[int, dict[str, Any]] = {}
        starts = sorted({h - (h - 1) % HEADERS_PER_REQUEST for h in heights if h > 0})
        for start in starts[:HEADER_REQUESTS_MAX]:
            wanted = sorted(h for h in heights if start <= h < start + HEADERS_PER_REQUEST)
            try:
                found = await self.get(f"/v1/blocks?from={wanted[0]}&to={wanted[-1]}")
            except NodeError:
                continue
            out.update({int(h["height"]): h for h in found if int(h["height"]) in heights})
        return out

    # -- Code -------------------------------------------------------------------------

    async def check(self, code: str) -> dict[str, Any]:
        """The public check: anyone may make it, so it is never signed."""
        answer: dict[str, Any] = await self.client.get(f"/v1/check/{quote_code(code)}", signed=False)
        return answer

    async def code(self, code: str) -> dict[str, Any]:
        """A code's provenance timeline, as far as the reader may read it."""
        out: dict[str, Any] = {"check": None, "code": None, "timeline": None, "errors": {}}
        try:
            out["check"] = await self.check(code)
        except NodeError as exc:
            out["errors"]["check"] = _error_json(exc)
            return out
        key = out["check"]["code"]
        try:
            out["code"] = await self.get(f"/v1/codes/{quote_code(key)}")
            entries, complete = await self._history(key)
        except NodeError as exc:
            out["errors"]["code"] = _error_json(exc)
            return out
        timeline = await self._timeline(entries)
        final_height = (await self.client.status()).get("final_height")
        if isinstance(final_height, int):
            # The node's own finality, once it reports it, is the word on each block.
            for row in timeline:
                row["final"] = int(row["height"]) <= final_height
        out.update(timeline=timeline, complete=complete, final_height=final_height)
        return out

    async def _history(self, key: str) -> tuple[list[dict[str, Any]], bool]:
        entries: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(HISTORY_PAGES_MAX):
            query = f"limit={PAGE_LIMIT}" + (f"&after={after}" if after else "")
            page = await self.get(f"/v1/codes/{quote_code(key)}/history?{query}")
            entries.extend(page.get("entries") or [])
            after = page.get("next")
            if not after:
                return entries, True
        return entries, False

    async def _timeline(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        headers = await self._headers({int(e["height"]) for e in entries})
        quorum = ledger.byzantine_quorum(len(self.genesis.states)) if self.genesis is not None else None
        gate = asyncio.Semaphore(TIMELINE_CONCURRENCY)

        async def facts(number: int, entry: dict[str, Any]) -> tuple[list[str] | None, dict[str, Any] | None]:
            header = headers.get(int(entry["height"]))
            async with gate:
                attested = await self._attested_by(header) if header else None
                wanted = number < TIMELINE_DOCUMENTS_MAX
                return attested, await self._document(entry["document_id"]) if wanted else None

        found = await asyncio.gather(*(facts(n, e) for n, e in enumerate(entries)))
        holder: str | None = None
        out = []
        for entry, (attested, document) in zip(entries, found):
            header = headers.get(int(entry["height"]))
            row = dict(entry, time_ms=header.get("time_ms") if header else None, attested_by=attested,
                       document=document)
            row["final"] = len(attested) >= quorum if quorum and attested is not None else None
            if document is not None:
                holder = _holder_after(document, holder)
                row["signer"] = await self._named(document.get("signer"))
            row["holder"] = await self._named(holder) if holder else None
            out.append(row)
        return out

    async def _attested_by(self, header: dict[str, Any]) -> list[str] | None:
        try:
            found = await self.client.get(f"/v1/attestations/{int(header['height'])}", signed=False)
        except ClientError:
            return None
        return sorted({str(a.get("state")) for a in found
                       if a.get("block_hash") == header.get("hash")
                       and a.get("round") == header.get("raft_term")})

    async def _document(self, doc_id: str) -> dict[str, Any] | None:
        try:
            answer = await self.get(f"/v1/documents/{doc_id}")
        except NodeError:
            return None
        document = answer.get("document") or {}
        inner = document.get("document", document)
        return inner if isinstance(inner, dict) else None

    async def _named(self, pid: Any) -> dict[str, Any]:
        """A participant id with its name and state when the reader may read them."""
        if not isinstance(pid, str):
            return {"id": None, "name": None, "state": None}
        if pid not in self._names:
            if len(self._names) >= NAMES_MAX:
                self._names.clear()
            self._names[pid] = await self._participant_or_none(pid)
        record = self._names[pid] or {}
        return {"id": pid, "name": record.get("name"), "state": record.get("state")}

    async def _participant_or_none(self, pid: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = await self.get(f"/v1/participants/{pid}")
        except NodeError:
            return None
        return answer

    async def provenance(self, code: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.get(f"/v1/proofs/codes/{quote_code(code)}")
        return answer

    async def epcis(self, code: str) -> dict[str, Any]:
        """The code's provenance as EPCIS 2.0, checked against genesis when the console has it."""
        key = (await self.check(code))["code"]
        data = await self.client.run(_bytes_plan(f"/v1/proofs/codes/{quote_code(key)}"))
        try:
            bundle = ledger.ProvenanceBundle.decode(data)
        except ledger.DecodeError as exc:
            raise ClientError(f"the node sent a provenance bundle that does not decode: {exc}") from None
        return epcis_document(key, bundle_events(bundle, self.genesis), _now_ms())

    # -- Participants -----------------------------------------------------------------

    async def participant(self, pid: str) -> dict[str, Any]:
        record = await self.get(f"/v1/participants/{pid}")
        page = await self.get(f"/v1/participants/{pid}/holdings?limit={PAGE_LIMIT}")
        codes = list(page.get("codes") or [])
        return {"participant": record, "holdings": codes, "more": bool(page.get("next"))}

    # -- Chain index (participants, suspensions, recalls, rejections) -----------------

    async def chain(self) -> dict[str, Any]:
        """The chain index brought up to the node's head (at most a bounded step a call)."""
        async with self._index_lock:
            index = self._index
            status = await self.client.status()
            head = int(status.get("height") or 0)
            last = min(head, index.height + INDEX_BLOCKS_PER_REFRESH)
            if last > index.height:
                async for block_bytes, _ in self.client.stream_blocks(index.height + 1, last):
                    try:
                        block = ledger.Block.decode(block_bytes)
                    except ledger.DecodeError as exc:
                        raise ClientError(f"the node streamed a block that does not decode: {exc}") from None
                    index.add_block(block)
            out = index.to_json()
        out["head"] = head
        out["time_ms"] = _now_ms()
        # Regulators come with genesis, not with a registration document.
        members = self.genesis.states if self.genesis is not None else ()
        out["regulators"] = [await self._named(m.regulator_id) for m in members]
        return out


def _holder_after(document: dict[str, Any], holder: str | None) -> str | None:
    """Who holds the code after `document` (emit gives it, accept takes it)."""
    kind = document.get("type")
    if kind == "emit":
        return str(document.get("owner"))
    if kind == "accept":
        return str(document.get("signer"))
    return holder


def _node_row(state: Any, url: str, status: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    status = status or {}
    peers = status.get("peers") or {}
    return {
        "state": state,
        "url": url,
        "reachable": error is None,
        "error": error or status.get("error"),
        "role": status.get("role"),
        "height": status.get("height"),
        # Not every node reports these yet; None shows as a dash.
        "final_height": status.get("final_height"),
        "evidence": status.get("evidence"),
        "leader_state": status.get("leader_state"),
        "term": status.get("term"),
        "head_hash": status.get("head_hash"),
        "time_ms": status.get("time_ms"),
        "alarms": status.get("alarms") or {},
        "peers": {p: {"height": v.get("height"), "seen_ms_ago": v.get("seen_ms_ago"),
                      "connected": v.get("connected")} for p, v in sorted(peers.items())},
        "head_attested_by": None,
    }


def _error_json(exc: ClientError) -> dict[str, Any]:
    if isinstance(exc, NodeError):
        return {"status": exc.status, "code": exc.code, "message": exc.message}
    return {"status": None, "code": "unreachable", "message": str(exc)}


def error_json(exc: ClientError) -> dict[str, Any]:
    """How a failed read reaches the page: the node's status and stable code, or unreachable."""
    return _error_json(exc)


def _now_ms() -> int:
    return int(time.time() * 1000)

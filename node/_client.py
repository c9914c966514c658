"""A small asyncio client of the node's client API (for tools, tests and benchmarks).

It speaks msgpack for submissions (no JSON conversion on either side) and JSON for
reads, signs read requests when given a key, and turns every error answer into a
`NodeError` carrying the node's status, error code and message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import msgpack
from yarl import URL

from ledger import KeyPair, SignedDocument, request_headers

MSGPACK = "application/msgpack"


class NodeError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class NodeClient:
    """`async with NodeClient(url) as c: await c.submit(doc)`."""

    def __init__(
        self,
        base_url: str,
        *,
        key: KeyPair | None = None,
        chain_id: str = "",
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.chain_id = chain_id
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> NodeClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use NodeClient in `async with`")
        return self._session

    async def submit(
        self, docs: SignedDocument | Sequence[SignedDocument], *, wait: bool = True,
        timeout_ms: int | None = None,
    ) -> Any:
        """Submit one document (its outcome) or several (`{"results": [...]}`)."""
        if isinstance(docs, SignedDocument):
            return await self.submit_wires(docs.wire(), wait=wait, timeout_ms=timeout_ms)
        return await self.submit_wires([d.wire() for d in docs], wait=wait, timeout_ms=timeout_ms)

    async def submit_wires(
        self, wires: bytes | Sequence[bytes], *, wait: bool = True, timeout_ms: int | None = None
    ) -> Any:
        body = wires if isinstance(wires, bytes) else msgpack.packb(list(wires), use_bin_type=True)
        params = {}
        if wait:
            params["wait"] = "commit"
        if timeout_ms is not None:
            params["timeout_ms"] = str(timeout_ms)
        async with self.session.post(
            f"{self.base_url}/v1/documents", params=params, data=body,
            headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
        ) as response:
            return await self._decode(response)

    async def get(
        self, path: str, *, signed: bool | None = None, params: dict[str, str] | None = None
    ) -> Any:
        """GET a JSON resource; signed with the client's key when it has one."""
        url = URL(f"{self.base_url}{path}", encoded=True)
        if params:
            url = url.update_query(params)
        headers = {"Accept": "application/json"}
        if signed or (signed is None and self.key is not None):
            if self.key is None:
                raise RuntimeError("a signed read needs a key")
            headers.update(
                request_headers(self.key, self.chain_id, "GET", url.raw_path_qs, int(time.time() * 1000))
            )
        async with self.session.get(url, headers=headers) as response:
            return await self._decode(response)

    async def status(self) -> Any:
        return await self.get("/v1/status", signed=False)

    @staticmethod
    async def _decode(response: aiohttp.ClientResponse) -> Any:
        raw = await response.read()
        if response.content_type == MSGPACK:
            value = msgpack.unpackb(raw, raw=False)
        else:
            import json

            try:
                value = json.loads(raw) if raw else None
            except ValueError:
                value = {"error": "not_json", "message": raw[:200].decode(errors="replace")}
        if response.status >= 400:
            if isinstance(value, dict):
                raise NodeError(response.status, str(value.get("error")), str(value.get("message")))
            raise NodeError(response.status, "http_error", str(value))
        return value

"""The asynchronous aiohttp face, for benchmarks, tests and tools with many requests in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from yarl import URL

import ledger

from ._events import SseParser, events_plan, events_request, inbox_plan
from ._plans import _one, document_plan, signing_plan, status_plan, submit_request
from ._sync import _Face
from ._wire import (
    COMMIT_TIMEOUT_S,
    STREAM_CHUNK_BYTES,
    BlockFrames,
    CertificateMismatch,
    ClientError,
    NodeUnreachable,
    Pause,
    Plan,
    Request,
    T,
    _mismatch,
    _why,
    blocks_request,
    decode_answer,
    error_from_body,
    with_query,
)


class NodeClient(_Face):
    """The client API of one node over aiohttp: `async with NodeClient(url) as c: ...`.

    Submissions answer as the node does (one outcome, or `{"results": [...]}` for a
    batch); give `session` to share one connection pool between clients of many nodes.
    """

    def __init__(
        self,
        url: str,
        key: ledger.KeyPair | None = None,
        chain_id: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = COMMIT_TIMEOUT_S,
        genesis: ledger.Genesis | None = None,
    ) -> None:
        super().__init__(url, key, chain_id, timeout_s, genesis)
        self._own_session = session is None
        self._session = session

    def _set_url(self, url: str) -> None:
        super()._set_url(url)
        # aiohttp checks a Fingerprint right after the handshake, before the request.
        pin = self.identity.cert_sha256
        self._ssl: aiohttp.Fingerprint | bool = aiohttp.Fingerprint(bytes.fromhex(pin)) if pin else True

    def _pin_refused(self, exc: aiohttp.ServerFingerprintMismatch) -> CertificateMismatch:
        return _mismatch(self.url, self.identity, exc.got.hex())

    async def __aenter__(self) -> NodeClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
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
            raise RuntimeError("use NodeClient in `async with`, or give it a session")
        return self._session

    # Running plans.

    async def run(self, plan: Plan[T]) -> T:
        """Send what `plan` asks for, one request at a time; its result."""
        try:
            step = next(plan)
            while True:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    step = plan.send(None)
                else:
                    step = plan.send(await self._send(step))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _send(self, request: Request) -> Any:
        if self._needs_signing_facts(request):
            self._learnt(await self.run(signing_plan(self.url)))
        try:
            async with self.session.request(
                request.method, URL(self.url + request.path_qs, encoded=True), data=request.body,
                headers=self._headers(request), timeout=aiohttp.ClientTimeout(total=self._timeout_s(request)),
                ssl=self._ssl,
            ) as response:
                body = await response.read()
        except aiohttp.ServerFingerprintMismatch as exc:
            raise self._pin_refused(exc) from None
        except TimeoutError:
            raise NodeUnreachable(f"node at {self.url} did not answer in time") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_why(exc)}") from None
        if request.answer == "bytes" and response.status < 400:
            return body
        return decode_answer(self.url, response.status, response.content_type, body, response.reason or "")

    # The API: the calls the tools use; anything else is `await client.run(some_plan)`.

    async def submit(
        self, docs: ledger.SignedDocument | Sequence[ledger.SignedDocument], *, wait: bool | str = True,
        timeout_ms: int | None = None,
    ) -> Any:
        """Submit one document (its outcome) or several (`{"results": [...]}`)."""
        if isinstance(docs, ledger.SignedDocument):
            return await self.submit_wires(docs.wire(), wait=wait, timeout_ms=timeout_ms)
        return await self.submit_wires([d.wire() for d in docs], wait=wait, timeout_ms=timeout_ms)

    async def submit_wires(
        self, wires: bytes | Sequence[bytes], *, wait: bool | str = True, timeout_ms: int | None = None
    ) -> Any:
        return await self.run(_one(submit_request(wires, wait, timeout_ms)))

    async def get(
        self, path: str, *, signed: bool | None = None, params: dict[str, str] | None = None
    ) -> Any:
        """GET a resource; signed when the client holds a key (or `signed` says so)."""
        if signed and self.key is None:
            raise ClientError("a signed read needs a key")
        return await self.run(_one(Request("GET", with_query(path, params), signed=signed is not False)))

    async def status(self) -> dict[str, Any]:
        return await self.run(status_plan())

    async def document(self, doc_id: str) -> dict[str, Any]:
        return await self.run(document_plan(doc_id))

    async def inbox_page(self, pending: bool = True, after: str | None = None,
                         limit: int = 100) -> dict[str, Any]:
        """A page of what is addressed to the signed-in participant, oldest first."""
        return await self.run(inbox_plan(pending, after, limit))

    async def events_page(
        self, after: str | None = None, limit: int = 100, wait_ms: int = 0
    ) -> dict[str, Any]:
        """A page of the event feed after a cursor; waits up to `wait_ms` when there is none yet."""
        return await self.run(events_plan(after, limit, wait_ms))

    async def stream_events(
        self, after: str | None = None, limit: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """The event feed after a cursor as server-sent events, until the node closes the
        stream (the reader fell behind, or lost its entitlement: an `error` event says so)."""
        request = events_request(after, limit, 0, stream=True)
        if self._needs_signing_facts(request):
            self._learnt(await self.run(signing_plan(self.url)))
        parser = SseParser()
        # No total timeout: a stream lasts as long as the reader reads.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s)
        try:
            async with self.session.get(
                URL(self.url + request.path_qs, encoded=True), headers=self._headers(request),
                timeout=timeout, ssl=self._ssl,
            ) as response:
                if response.status >= 400:
                    raise error_from_body(response.status, await response.read(), response.reason or "")
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        yield event
        except aiohttp.ServerFingerprintMismatch as exc:
            raise self._pin_refused(exc) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise NodeUnreachable(f"the event stream from {self.url} broke: {_why(exc)}") from None

    async def stream_blocks(
        self, first: int, last: int | None = None
    ) -> AsyncIterator[tuple[bytes, list[Any]]]:
        """Blocks `first..last` as `(block bytes, [attestation lists])`, in height order."""
        request = blocks_request(first, last)
        if self._needs_signing_facts(request):
            self._learnt(await self.run(signing_plan(self.url)))
        frames = BlockFrames(self.url)
        timeout = aiohttp.ClientTimeout(total=self._timeout_s(request))
        try:
            async with self.session.get(
                URL(self.url + request.path_qs, encoded=True), headers=self._headers(request),
                timeout=timeout, ssl=self._ssl,
            ) as response:
                if response.status >= 400:
                    raise error_from_body(response.status, await response.read(), response.reason or "")
                async for chunk in response.content.iter_chunked(STREAM_CHUNK_BYTES):
                    for frame in frames.feed(chunk):
                        yield frame
        except aiohttp.ServerFingerprintMismatch as exc:
            raise self._pin_refused(exc) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise NodeUnreachable(f"the block stream from {self.url} broke: {_why(exc)}") from None

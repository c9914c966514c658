"""Clients waiting for their documents' outcomes, by document id."""

from __future__ import annotations

import asyncio
from typing import Any


class Waiters:
    """Futures of clients that asked to wait for a document's block."""

    def __init__(self) -> None:
        self._by_id: dict[bytes, list[asyncio.Future[dict[str, Any]]]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, doc_id: bytes) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._by_id.setdefault(doc_id, []).append(future)
        return future

    def discard(self, doc_id: bytes, future: asyncio.Future[dict[str, Any]]) -> None:
        futures = self._by_id.get(doc_id)
        if futures is not None and future in futures:
            futures.remove(future)
            if not futures:
                del self._by_id[doc_id]

    def waiting(self, doc_id: bytes) -> bool:
        """Whether a client waits for this document (only the node it submitted to)."""
        return doc_id in self._by_id

    def resolve(self, doc_id: bytes, outcome: dict[str, Any]) -> None:
        for future in self._by_id.pop(doc_id, ()):
            if not future.done():
                future.set_result(outcome)

    def fail_all(self, exc: BaseException) -> None:
        for futures in self._by_id.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        self._by_id.clear()

    async def wait(self, doc_id: bytes, future: asyncio.Future[dict[str, Any]],
                   timeout_s: float) -> dict[str, Any] | None:
        """The outcome, or None when it does not come within the timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            self.discard(doc_id, future)
            return None

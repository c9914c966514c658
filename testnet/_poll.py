"""Waiting for a condition: poll it with a deadline, never a blind sleep.

One helper for the testnet tooling, the demonstration, the benchmark and the tests,
in two faces: `poll_until` blocks the calling thread, `poll_until_async` yields to the
event loop between polls (and awaits the condition's answer if it is awaitable).
Both return the condition's first truthy value and raise `PollTimeout` past the
deadline, naming what they waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from ._init import TestnetError

T = TypeVar("T")
# Short enough that a waiter notices a change within a tick of a test network's Raft
# (20 ms ticks in the fast test configuration), long enough not to busy a core.
POLL_INTERVAL_S = 0.05


class PollTimeout(TestnetError):
    """A condition did not hold before its deadline."""

    def __init__(self, what: str, timeout_s: float) -> None:
        super().__init__(f"timed out after {timeout_s:g} s waiting for {what}")
        self.what = what
        self.timeout_s = timeout_s


def poll_until(
    cond: Callable[[], T | None], timeout_s: float, what: str, *, interval_s: float = POLL_INTERVAL_S
) -> T:
    """Call `cond` until it returns something truthy (that value), up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise PollTimeout(what, timeout_s)
        time.sleep(interval_s)


@overload
async def poll_until_async(
    cond: Callable[[], Awaitable[T | None]], timeout_s: float, what: str, *, interval_s: float = ...
) -> T: ...


@overload
async def poll_until_async(
    cond: Callable[[], T | None], timeout_s: float, what: str, *, interval_s: float = ...
) -> T: ...


async def poll_until_async(
    cond: Callable[[], Any], timeout_s: float, what: str, *, interval_s: float = POLL_INTERVAL_S
) -> Any:
    """`poll_until` for a coroutine: sleeps with asyncio; `cond` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise PollTimeout(what, timeout_s)
        await asyncio.sleep(interval_s)

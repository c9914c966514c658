"""Running the console: bind loopback, print the link, serve until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import webbrowser
from collections.abc import Callable

from aiohttp import web

from ._app import ConsoleConfig, create_app
from ._data import ConsoleSource

# Only this machine may reach the console: it reads with the user's key.
HOST = "127.0.0.1"
# 32 random bytes: the token is the only thing between another local user's browser
# (or a page in this one) and reads made with this user's key.
TOKEN_BYTES = 32


class Console:
    """One running console: `await start()`, `url`, `await stop()`."""

    def __init__(self, source: ConsoleSource, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((HOST, port))
        except OSError:
            self._sock.close()
            raise
        self.config = ConsoleConfig(self._sock.getsockname()[1], secrets.token_urlsafe(TOKEN_BYTES))
        self._runner = web.AppRunner(create_app(self.config, source), access_log=None, handle_signals=False)

    @property
    def url(self) -> str:
        """The link to open: it carries this start's token."""
        return self.config.url

    async def start(self) -> None:
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
        self._sock.close()


async def _serve(source: ConsoleSource, port: int, open_browser: bool, say: Callable[[str], None]) -> None:
    console = Console(source, port)
    await console.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    say(console.url)
    if open_browser:
        await loop.run_in_executor(None, webbrowser.open, console.url)
    try:
        await stop.wait()
    finally:
        await console.stop()


def serve(source: ConsoleSource, port: int, open_browser: bool, say: Callable[[str], None]) -> None:
    """Serve the console on 127.0.0.1:`port` (0: any free port) until SIGINT or SIGTERM."""
    asyncio.run(_serve(source, port, open_browser, say))

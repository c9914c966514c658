"""`tamga console`: a regulator's and auditor's console in the browser, served on loopback.

A local aiohttp application (`create_app`) serves plain HTML, JavaScript and CSS from
this package's static/ folder and a read-only JSON proxy (`ConsoleSource`) that calls
the node's client API through `node.client`, signing reads with the user's key and
pinning the node's certificate from genesis, exactly as the CLI does. The key stays in
this process. Views: Network, Flows, Code, Participants and holdings, Recalls and
suspensions, Anomalies. `serve` runs it until interrupted; `python -m
cli.console.screenshots` draws each view into docs/console/.
"""

from __future__ import annotations

from ._app import ConsoleConfig, charts_installed, create_app, guard_refusal, static_dir
from ._data import ConsoleSource
from ._index import ChainIndex
from ._serve import Console, serve

__all__ = [
    "ChainIndex",
    "Console",
    "ConsoleConfig",
    "ConsoleSource",
    "charts_installed",
    "create_app",
    "guard_refusal",
    "serve",
    "static_dir",
]

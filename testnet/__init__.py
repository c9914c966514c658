"""Tamga testnet: a local network of member-state nodes on one machine.

`init_testnet` writes the directory (genesis, keys, certificates, configs, free ports);
`up`, `down`, `status`, `start`, `stop` and `kill` control the node processes. The CLI
wraps these as `tamga testnet ...`; `python -m testnet.demo` tells a cross-border story.
`poll_until` / `poll_until_async` wait for a condition with a deadline (tools and tests);
`DocFactory` signs documents for driving a network (tests and the benchmark).
"""

from ._docs import GTIN, DocFactory, code_key, demo_tax_id
from ._groups import DEMO_GROUP, DEMO_TNVED, product_groups
from ._init import (
    DEFAULT_STATES,
    NodeLayout,
    Testnet,
    TestnetError,
    free_ports,
    init_testnet,
    load_testnet,
)
from ._poll import POLL_INTERVAL_S, PollTimeout, poll_until, poll_until_async
from ._procs import down, fetch_status, kill, leader_agreed, node_pid, start, status, stop, up

__all__ = [
    "DEMO_GROUP",
    "DEMO_TNVED",
    "product_groups",
    "DEFAULT_STATES",
    "GTIN",
    "DocFactory",
    "NodeLayout",
    "POLL_INTERVAL_S",
    "PollTimeout",
    "Testnet",
    "TestnetError",
    "code_key",
    "demo_tax_id",
    "down",
    "fetch_status",
    "free_ports",
    "init_testnet",
    "kill",
    "leader_agreed",
    "load_testnet",
    "node_pid",
    "poll_until",
    "poll_until_async",
    "start",
    "status",
    "stop",
    "up",
]

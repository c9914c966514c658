"""Tamga testnet: a local network of member-state nodes on one machine.

`init_testnet` writes the directory (genesis, keys, certificates, configs, free ports);
`up`, `down`, `status`, `start`, `stop` and `kill` control the node processes. The CLI
wraps these as `tamga testnet ...`; `python -m testnet.demo` tells a cross-border story.
"""

from ._init import (
    DEFAULT_STATES,
    NodeLayout,
    Testnet,
    TestnetError,
    free_ports,
    init_testnet,
    load_testnet,
)
from ._procs import down, fetch_status, kill, leader_agreed, node_pid, start, status, stop, up, wait_until

__all__ = [
    "DEFAULT_STATES",
    "NodeLayout",
    "Testnet",
    "TestnetError",
    "down",
    "fetch_status",
    "free_ports",
    "init_testnet",
    "kill",
    "leader_agreed",
    "load_testnet",
    "node_pid",
    "start",
    "status",
    "stop",
    "up",
    "wait_until",
]

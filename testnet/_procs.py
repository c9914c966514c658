"""Process control of a local testnet: start, stop (SIGTERM), kill (SIGKILL), status.

Each node runs as `python -m node --config STATE/node.toml` in a session of its own,
logging to STATE/node.log; its pid is in STATE/node.pid. A pid counts as our node only
while /proc says that process runs with that config file, so a stale pid file (after a
reboot, or a pid reused) is never mistaken for a node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ledger import LedgerError
from node.client import ClientError

from ._init import NodeLayout, Testnet, TestnetError, load_testnet
from ._poll import poll_until

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


# -- pids ------------------------------------------------------------------------------


def _read_pid(node: NodeLayout) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit of a node that this process started, so it is not a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_our_node(pid: int, node: NodeLayout) -> bool:
    _reap(pid)
    # Right after exec the kernel may show an empty command line for a moment.
    for _ in range(50):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return False
        if cmdline:
            return str(node.config).encode() in cmdline.split(b"\0")
        time.sleep(0.01)
    return False


def node_pid(node: NodeLayout) -> int | None:
    """The pid of the running node, or None."""
    pid = _read_pid(node)
    if pid is not None and _is_our_node(pid, node):
        return pid
    return None


# -- HTTP ------------------------------------------------------------------------------


def fetch_status(node: NodeLayout, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """The node's status, over HTTPS checked against the pin in genesis; None if it does
    not answer (or answers with a certificate genesis does not pin)."""
    try:
        return node.client(timeout_s=timeout_s).status()
    except (ClientError, LedgerError, OSError, ValueError):
        return None


# -- control ---------------------------------------------------------------------------


def _spawn(node: NodeLayout) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(node.log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "--config", str(node.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=node.dir, env=env, start_new_session=True,
        )
    node.pid_file.write_text(f"{process.pid}\n")
    return process.pid


def _start_nodes(net: Testnet, states: list[str], timeout_s: float) -> None:
    started = []
    for state in states:
        node = net.node(state)
        if node_pid(node) is None:
            _spawn(node)
            started.append(node)

    def all_answer() -> bool:
        for node in started:
            if node_pid(node) is None:
                tail = _log_tail(node)
                raise TestnetError(f"the {node.state} node exited at start; its log ends: {tail}")
        return all(fetch_status(n) is not None for n in started)

    poll_until(all_answer, timeout_s, "the nodes to answer")


def _log_tail(node: NodeLayout, lines: int = 3) -> str:
    try:
        text = node.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])


def _signal_and_wait(node: NodeLayout, sig: int, timeout_s: float) -> bool:
    pid = node_pid(node)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    try:
        poll_until(lambda: not _is_our_node(pid, node), timeout_s, f"the {node.state} node to exit")
    except TestnetError:
        if sig == signal.SIGKILL:
            raise
        os.kill(pid, signal.SIGKILL)
        poll_until(lambda: not _is_our_node(pid, node), timeout_s, f"the {node.state} node to die")
    node.pid_file.unlink(missing_ok=True)
    return True


def leader_agreed(net: Testnet, states: list[str] | None = None) -> str | None:
    """The state whose node every running node (of `states`) names as leader, or None."""
    leaders = set()
    for state in states or list(net.nodes):
        status = fetch_status(net.node(state))
        if status is None:
            return None
        leaders.add(status.get("leader_state"))
    if len(leaders) == 1:
        leader = leaders.pop()
        return leader if isinstance(leader, str) else None
    return None


def up(directory: Path | str, timeout_s: float = START_TIMEOUT_S) -> list[dict[str, Any]]:
    """Start every node that is not running; return once they agree on a leader."""
    net = load_testnet(directory)
    _start_nodes(net, list(net.nodes), timeout_s)
    poll_until(lambda: leader_agreed(net) is not None, timeout_s, "the nodes to elect a leader")
    return status(directory)


def down(directory: Path | str, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM every running node and wait for it (SIGKILL past the timeout)."""
    net = load_testnet(directory)
    pids = {state: node_pid(node) for state, node in net.nodes.items()}
    for pid in pids.values():
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    stopped = []
    for state, pid in pids.items():
        if pid is not None:
            _signal_and_wait(net.node(state), signal.SIGTERM, timeout_s)
            stopped.append(state)
    return stopped


def start(directory: Path | str, state: str, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    net = load_testnet(directory)
    _start_nodes(net, [state], timeout_s)
    return _state_status(net, state)


def stop(directory: Path | str, state: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM one node and wait until it exited; False if it was not running."""
    return _signal_and_wait(load_testnet(directory).node(state), signal.SIGTERM, timeout_s)


def kill(directory: Path | str, state: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGKILL one node (a crash) and wait until it is gone; False if it was not running."""
    return _signal_and_wait(load_testnet(directory).node(state), signal.SIGKILL, timeout_s)


def _state_status(net: Testnet, state: str) -> dict[str, Any]:
    node = net.node(state)
    pid = node_pid(node)
    live = fetch_status(node) if pid is not None else None
    return {
        "state": state,
        "url": node.api_url,
        "peer_address": node.peer_address,
        "pid": pid,
        "running": pid is not None,
        "role": live.get("role") if live else ("unreachable" if pid else "stopped"),
        "term": live.get("term") if live else None,
        "leader": live.get("leader_state") if live else None,
        "height": live.get("height") if live else None,
        "head_hash": live.get("head_hash") if live else None,
        "data_dir": str(node.data_dir),
        "regulator_key": str(node.regulator_key),
        "config": str(node.config),
        "log": str(node.log),
    }


def status(directory: Path | str) -> list[dict[str, Any]]:
    """Per state: state, url, pid, role, term, height, head hash, data dir, regulator key."""
    net = load_testnet(directory)
    return [_state_status(net, state) for state in net.nodes]

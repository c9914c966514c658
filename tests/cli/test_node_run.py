"""`tamga node run`: one node process started through the CLI, serving until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import testnet
from testnet import poll_until


def status(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{url}/v1/status", timeout=1) as response:
            value: dict[str, object] = json.loads(response.read())
            return value
    except OSError:
        return None


def test_node_run_serves_until_sigterm(tmp_path: Path) -> None:
    """A one-state network's node, run as `tamga node run --config`, leads, serves, and exits 0 on SIGTERM."""
    net = testnet.init_testnet(tmp_path / "tn", ("KZ",), config={"log": {"level": "WARNING"}})
    node = net.node("KZ")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "node", "run", "--config", str(node.config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        live = poll_until(lambda: (s := status(node.api_url)) and s.get("role") == "leader" and s, 30, "the node to lead")
        assert live["state"] == "KZ" and live["chain_id"] == net.chain_id
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()

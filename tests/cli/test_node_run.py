"""`tamga node run`: one node process started through the CLI, serving until SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import testnet
from testnet import fetch_status, poll_until


def test_node_run_serves_until_sigterm(tmp_path: Path) -> None:
    """A one-state network's node, run as `tamga node run --config`, leads, serves HTTPS
    with the certificate genesis pins, and exits 0 on SIGTERM."""
    net = testnet.init_testnet(tmp_path / "tn", ("KZ",), config={"log": {"level": "WARNING"}})
    node = net.node("KZ")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "node", "run", "--config", str(node.config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        live = poll_until(lambda: (s := fetch_status(node)) and s.get("role") == "leader" and s, 30, "the node to lead")
        assert live["state"] == "KZ" and live["chain_id"] == net.chain_id and node.api_url.startswith("https://")
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

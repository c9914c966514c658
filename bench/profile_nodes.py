"""Where each node's CPU goes under the node benchmark's load: py-spy on every node.

    .venv/bin/python -m bench.profile_nodes [--kind single|shipment] [--clients 64]
        [--batch 1] [--duration 25] [--out DIR]

Starts a fresh 3-state testnet, runs `bench.tamga_bench` against it, and while the
measured window runs records each node process with py-spy (`--nonblocking --rate 200
--format raw`, from two seconds into the window to six before its end). Prints the
benchmark's figures and, per node, the busy samples split into the jobs below (a sample
counts for the first job whose functions are on its stack, in the order listed; idle
waits of the event loop and the worker pool are left out). The raw profiles stay in
DIR for a closer look (each line: a stack, then its sample count).

py-spy slows the nodes a little (the figures it prints are lower than a plain run's);
the shares are what it is for.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.tamga_bench import run_bench
from testnet import down, init_testnet, leader_agreed, node_pid, up

# (job, functions that mark it), checked in this order.
JOBS: list[tuple[str, tuple[str, ...]]] = [
    ("Ed25519 verification", ("Verifier.verify", "Attestation.verify_key", "verify_attestation",
                              "Attestations._check")),
    ("signing", ("KeyPair.sign", "Attestations._sign")),
    ("ledger apply", ("LedgerStore.apply_block",)),
    # Before the HTTP path: a peer's gossip and Raft sockets are websockets that aiohttp
    # serves through the same request handler.
    ("peer links", ("Link._send_loop", "Link._run", "gossip_socket", "raft_socket", "WebSocket")),
    ("HTTP request path", ("RequestHandler", "web_protocol", "post_documents")),
    ("Raft", ("Driver.", "RawNode", "_core.py")),
    ("attestations and finality", ("Attestations", "Finality")),
]
# Leaf frames that are waits, not work (the loop's poll, the pool's queue).
IDLE_LEAVES = ("Runner.run (runners.py)", "_worker (thread.py)")


def _frame(raw: str) -> str:
    return re.sub(r"\(.*/", "(", re.sub(r":\d+\)", ")", raw))


def shares(profile: Path) -> dict[str, float]:
    """Busy samples per job, as fractions, from one py-spy raw profile."""
    counts: collections.Counter[str] = collections.Counter()
    for line in profile.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        if _frame(stack.split(";")[-1]) in IDLE_LEAVES:
            continue
        job = next((name for name, marks in JOBS if any(m in stack for m in marks)), "the rest")
        counts[job] += int(n)
    busy = sum(counts.values()) or 1
    return {job: round(count / busy, 3) for job, count in counts.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("single", "shipment"), default="single")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--duration", type=float, default=25.0)
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profiles here")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[profile]'")
    out = args.out or Path(tempfile.mkdtemp(prefix="tamga-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    record_s = max(1, int(args.duration - 8))
    with tempfile.TemporaryDirectory(prefix="tamga-profile-net-") as tmp:
        net = init_testnet(Path(tmp) / "net", ("BY", "KZ", "RU"), config={"log": {"level": "WARNING"}})
        up(net.dir)
        spies: list[subprocess.Popen[bytes]] = []
        try:
            pids = {state: node_pid(layout) for state, layout in net.nodes.items()}

            def progress(seconds: float) -> None:
                if spies or seconds < 2:
                    return
                for state, pid in pids.items():
                    if pid is not None:
                        spies.append(subprocess.Popen(
                            [spy, "record", "--pid", str(pid), "--duration", str(record_s), "--rate", "200",
                             "--nonblocking", "--format", "raw", "-o", str(out / f"{state}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

            result = run_bench(net.dir, args.kind, args.duration, args.clients, args.batch, progress)
            leader = leader_agreed(net)
        finally:
            for process in spies:
                try:
                    process.wait(timeout=record_s + 30)
                except subprocess.TimeoutExpired:
                    process.kill()
            down(net.dir)
    report = {
        "bench": {k: result[k] for k in ("docs_per_s", "codes_per_s", "p50_ms", "p99_ms",
                                         "cpu_percent_per_node")},
        "leader": leader,
        "shares_of_busy_samples": {s: shares(out / f"{s}.txt") for s in pids if (out / f"{s}.txt").exists()},
        "profiles": str(out),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""The comparison point: a 3-member etcd cluster on loopback, 200-byte puts over HTTP/JSON.

    apt-get install -y etcd-server      # Debian's etcd (3.4 in bookworm)
    .venv/bin/python -m bench.etcd_bench [--duration 10] [--clients 64] [--tls] [--json]
    .venv/bin/python -m bench.etcd_bench --with-tamga [--duration 10] [--clients 64] [--tls]

Starts three etcd members in a temporary directory (free loopback ports), lets N
concurrent clients PUT 200-byte values through etcd's gRPC gateway (POST /v3/kv/put,
JSON with base64 fields) for the duration, and reports puts/s and latency p50/p95/p99;
the members are stopped at the end whatever happens. With --tls the members serve their
clients over HTTPS and each other over TLS (etcd's --auto-tls and --peer-auto-tls:
certificates it generates itself, not checked), as Tamga's nodes do with checked,
pinned certificates: the same encryption work on both sides of the comparison, which
plain HTTP leaves to Tamga alone. With --with-tamga it also runs
bench.tamga_bench (single-code documents, same clients and duration) on a fresh
3-state testnet right after, and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.tamga_bench import run_fresh
from testnet import PollTimeout, free_ports, poll_until_async

VALUE_BYTES = 200
# One put waits at most this long (a member stuck for longer counts as an error).
REQUEST_TIMEOUT_S = 30.0


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def start_cluster(root: Path, tls: bool = False) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise SystemExit("etcd is not installed: apt-get install -y etcd-server")
    ports = free_ports(6)
    names = ["e1", "e2", "e3"]
    scheme = "https" if tls else "http"
    peers = ",".join(f"{n}={scheme}://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
    procs, urls = [], []
    for i, name in enumerate(names):
        client, peer = ports[2 * i], ports[2 * i + 1]
        command = [
            etcd, "--name", name, "--data-dir", str(root / name),
            "--listen-client-urls", f"{scheme}://127.0.0.1:{client}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{client}",
            "--listen-peer-urls", f"{scheme}://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"{scheme}://127.0.0.1:{peer}",
            "--initial-cluster", peers, "--initial-cluster-state", "new",
            "--initial-cluster-token", "tamga-bench", "--log-level", "error",
            *(["--auto-tls", "--peer-auto-tls"] if tls else []),
        ]
        with open(root / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        urls.append(f"{scheme}://127.0.0.1:{client}")
    return procs, urls


def stop_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def wait_healthy(session: aiohttp.ClientSession, urls: list[str], timeout_s: float = 30) -> None:
    async def all_healthy() -> bool:
        try:
            ok = 0
            for url in urls:
                async with session.get(f"{url}/health") as r:
                    ok += r.status == 200 and json.loads(await r.text()).get("health") == "true"
            return ok == len(urls)
        except aiohttp.ClientError:
            return False

    try:
        await poll_until_async(all_healthy, timeout_s, "the etcd cluster to become healthy", interval_s=0.1)
    except PollTimeout as exc:
        raise SystemExit(str(exc)) from None


async def drive(urls: list[str], duration_s: float, clients: int) -> dict[str, Any]:
    value = base64.b64encode(os.urandom(VALUE_BYTES)).decode()
    latencies: list[float] = []
    errors = 0
    # etcd's self-made certificates are not checked (nothing to check them against); the
    # handshake and the encryption, what this measures, are the same.
    connector = aiohttp.TCPConnector(limit=clients * 2 + 8, ssl=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await wait_healthy(session, urls)
        started = time.perf_counter()
        deadline = started + duration_s
        counter = iter(range(10**12))

        async def client(i: int) -> None:
            nonlocal errors
            url = f"{urls[i % len(urls)]}/v3/kv/put"
            while time.perf_counter() < deadline:
                key = base64.b64encode(f"bench/{next(counter)}".encode()).decode()
                t0 = time.perf_counter()
                try:
                    async with session.post(url, json={"key": key, "value": value}) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "system": "etcd " + subprocess.run(["etcd", "--version"], capture_output=True, text=True)
        .stdout.split("\n")[0].split()[-1],
        "members": len(urls),
        "tls": urls[0].startswith("https"),
        "clients": clients,
        "value_bytes": VALUE_BYTES,
        "duration_s": round(elapsed, 2),
        "puts": len(latencies),
        "errors": errors,
        "puts_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def run_etcd_bench(duration_s: float = 10.0, clients: int = 64, tls: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="etcd-bench-") as tmp:
        procs, urls = start_cluster(Path(tmp), tls)
        try:
            return asyncio.run(drive(urls, duration_s, clients))
        finally:
            stop_cluster(procs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--with-tamga", action="store_true", help="also run the Tamga benchmark and compare")
    parser.add_argument("--tls", action="store_true",
                        help="etcd serves clients over HTTPS and peers over TLS, as Tamga does")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"etcd": run_etcd_bench(args.duration, args.clients, args.tls)}
    if args.with_tamga:
        tamga = run_fresh("single", args.duration, args.clients, 1)
        result["tamga"] = tamga
        result["ratio_tamga_docs_to_etcd_puts"] = round(tamga["docs_per_s"] / result["etcd"]["puts_per_s"], 3)
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()

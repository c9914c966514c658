"""Schemathesis fuzzes every operation of a live node from its own /v1/openapi.json, with
signed reads, and finds no failure: no 5xx, and every answer's status, content type and
body as the description says.

FUZZ_EXAMPLES=N (default 6) sets the examples per operation; FUZZ_SEED=S replays a run
(a failing run prints its seed); FUZZ_HAR=path keeps every request and answer. A larger
run, e.g. FUZZ_EXAMPLES=300, takes minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests
from aiohttp import web

from ledger import KeyPair
from node import create_app, load_config
from node._keys import NODE
from testnet import GTIN, DocFactory, code_key, init_testnet, poll_until

from .helpers import FAST

ROOT = Path(__file__).resolve().parents[2]
# Six examples per operation and mode keep the run near 30 s on two shared cores; the
# coverage phase's boundary cases run whatever the number.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
CHECKS = ",".join((
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
))
# Each request is one fast read or a rejected write; a slow answer means a hung handler.
REQUEST_TIMEOUT_S = 10
T = TypeVar("T")


@dataclass
class Live:
    base_url: str
    chain_id: str
    reader_key: Path
    # Ids of things on the ledger, so that generated requests also find something.
    known: dict[str, str]


class _Loop:
    """An event loop in a thread of its own: the node runs there, the fuzzer in a process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-node", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _post(base_url: str, doc: Any) -> dict[str, Any]:
    response = requests.post(f"{base_url}/v1/documents?wait=commit", json=doc.to_json(), timeout=30)
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and body["status"] == "applied", body
    return body


def _seed_ledger(base_url: str, docs: DocFactory, regulator: KeyPair) -> dict[str, str]:
    producer, buyer = KeyPair.generate(), KeyPair.generate()
    _post(base_url, docs.register(regulator, producer, "RU", ["producer"], "Producer"))
    _post(base_url, docs.register(regulator, buyer, "RU", ["wholesaler"], "Buyer"))
    _post(base_url, docs.register_product(regulator, producer))
    serials = docs.serials(3)
    _post(base_url, docs.emit(regulator, producer, serials))
    codes = [code_key(GTIN, s) for s in serials]
    _post(base_url, docs.introduce(producer, codes))
    shipped = _post(base_url, docs.ship(producer, buyer, codes[:1]))
    return {"code": codes[0], "participant": producer.participant_id, "document": shipped["id"],
            "shipment": shipped["id"], "height": 1}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A one-state node on 127.0.0.1 with a free port, served from a thread, with some data."""
    net = init_testnet(tmp_path / "net", ("RU",), config=FAST)
    loop = _Loop()
    runner: web.AppRunner | None = None
    try:
        async def start() -> web.AppRunner:
            app = create_app(load_config(net.node("RU").config))
            started = web.AppRunner(app, access_log=None, handle_signals=False)
            await started.setup()
            await web.TCPSite(started, "127.0.0.1", 0).start()
            return started

        runner = loop.run(start())
        base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        poll_until(runner.app[NODE].proposer.can_propose, 30, "the node to lead")
        known = _seed_ledger(base_url, DocFactory(net.chain_id), net.regulator("RU"))
        yield Live(base_url, net.chain_id, net.node("RU").regulator_key, known)
    finally:
        if runner is not None:
            loop.run(runner.cleanup())
        loop.close()


def _with_known_examples(spec: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """The served description plus examples naming real things (test-only: ids differ per
    chain), so that the examples phase reaches the success answers too."""
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["in"] != "path":
                    continue
                if p["name"] == "id":
                    kind = "participant" if "participants" in path else "shipment" if "shipments" in path \
                        else "document"
                    p["example"] = known[kind]
                elif p["name"] in known:
                    p["example"] = known[p["name"]]
    return spec


def test_fuzz_the_client_api(live: Live, tmp_path: Path) -> None:
    """No generated request, valid or not, signed or not, gets a 5xx or an answer the
    description does not allow."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    spec = requests.get(f"{live.base_url}/v1/openapi.json", timeout=10).json()
    spec_path = tmp_path / "openapi.json"
    spec_path.write_text(json.dumps(_with_known_examples(spec, live.known)))
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.node._fuzz_hooks",
           "TAMGA_FUZZ_READER_KEY": str(live.reader_key), "TAMGA_FUZZ_CHAIN_ID": live.chain_id, "TAMGA_FUZZ_NODE": "RU"}
    command = [cli, "run", str(spec_path), "--url", live.base_url, "--checks", CHECKS,
               "--phases", "examples,coverage,fuzzing", "--max-examples", str(EXAMPLES),
               "--seed", str(seed), "--workers", "1", "--request-timeout", str(REQUEST_TIMEOUT_S),
               "--suppress-health-check", "all", "--no-color", "--report", "har",
               "--report-har-path", str(tmp_path / "requests.har")]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    if os.environ.get("FUZZ_HAR"):  # every request and answer, to look at afterwards
        shutil.copy(tmp_path / "requests.har", os.environ["FUZZ_HAR"])
    assert done.returncode == 0, f"schemathesis failed with FUZZ_SEED={seed}:\n{done.stdout}\n{done.stderr}"
    # A run whose signatures were all wrong would pass too (401 is a declared answer):
    # the signed reads must have been read.
    signed_paths = {p for p, ops in spec["paths"].items() for op in ops.values() if "security" in op}
    answered = _answered(tmp_path / "requests.har", signed_paths)
    assert {"/v1/codes/{code}", "/v1/participants/{id}", "/v1/blocks/{height}"} <= answered, answered


def _answered(har: Path, templates: set[str]) -> set[str]:
    """The path templates among `templates` that answered some request with a 2xx."""
    patterns = {t: re.compile("^" + re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(t)) + "$") for t in templates}
    out: set[str] = set()
    for entry in json.loads(har.read_text())["log"]["entries"]:
        if 200 <= entry["response"]["status"] < 300:
            path = urlsplit(entry["request"]["url"]).path
            out |= {t for t, p in patterns.items() if p.match(path)}
    return out

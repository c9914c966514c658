"""A 3-state testnet whose third state is in the hands of the hostile-peer harness, and the
invariants every attack must leave intact.

After each attack: every honest node's process is alive and answers /v1/status without a
fatal error; the honest nodes commit new documents submitted through each of them; they
hold the same head; every document acknowledged (wait=commit) before or after the attack
is applied on each of them; each one's resident memory is below `RSS_BYTES_MAX`.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import KeyPair, SignedDocument
from node import NodeError, SyncNodeClient
from testnet import (
    DocFactory,
    Testnet,
    down,
    fetch_status,
    init_testnet,
    node_pid,
    poll_until,
    start,
    stop,
    up,
)

from .harness import HostilePeer

STATES = ("BY", "KZ", "RU")
HOSTILE = "KZ"
# Raft ticks of 50 ms: an election after a hostile term change settles within a second.
CONFIG = {"raft": {"tick_ms": 50}}
# A node of a small testnet runs at about 100 MB; finding 7 took one to 990 MB. Four
# times the idle size leaves room for the work an attack legitimately causes (a block of
# 10,000 documents) while catching an allocation driven by the attacker's bytes.
RSS_BYTES_MAX = 400 << 20
COMMIT_TIMEOUT_S = 30.0
AGREE_TIMEOUT_S = 20.0
# TAMGA_HOSTILE_LONG=1: floods ten times larger, repeated attacks, header trickling longer.
LONG = os.environ.get("TAMGA_HOSTILE_LONG", "") not in ("", "0")
SCALE = 10 if LONG else 1


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)
    body: bytes
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


class RssPeak:
    """The highest resident memory of some processes, sampled on a thread."""

    INTERVAL_S = 0.05

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak: dict[int, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                with contextlib.suppress(OSError, ValueError):
                    self.peak[pid] = max(self.peak[pid], rss_bytes(pid))
            self._stop.wait(self.INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        worst = max(self.peak.values(), default=0)
        assert worst < RSS_BYTES_MAX, \
            f"an honest node reached {worst >> 20} MiB during the attack (bound {RSS_BYTES_MAX >> 20} MiB)"


@dataclass
class World:
    root: Path
    net: Testnet
    h: HostilePeer
    docs: DocFactory
    acked: list[str] = field(default_factory=list)
    attacks_run: int = 0

    @property
    def honest(self) -> list[str]:
        return [s for s in STATES if s != HOSTILE]

    def url(self, state: str) -> str:
        return self.net.node(state).api_url

    def status(self, state: str) -> dict[str, Any]:
        value = fetch_status(self.net.node(state), timeout_s=5.0)
        assert value is not None, f"{state} does not answer /v1/status"
        return value

    def leader(self) -> str:
        found: list[str] = []

        def agreed() -> bool:
            views = [fetch_status(self.net.node(s)) for s in self.honest]
            leaders = {v.get("leader_state") for v in views if v}
            if len(leaders) == 1 and all(views):
                leader = leaders.pop()
                if leader in self.honest:
                    found.append(leader)
                    return True
            return False

        poll_until(agreed, AGREE_TIMEOUT_S, "an honest leader both honest nodes name")
        return found[-1]

    def follower(self) -> str:
        leader = self.leader()
        return next(s for s in self.honest if s != leader)

    # -- raw HTTP (the client API as an attacker sees it) -----------------------------

    def http(self, state: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None, timeout_s: float = 30.0) -> Answer:
        url = self.url(state) + path
        ctx = None
        if url.startswith("https:"):
            # The attacker does not care whom it talks to.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=ctx) as response:
                return Answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            return Answer(0, b"", repr(exc))

    def metric(self, state: str, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels`."""
        text = self.http(state, "GET", "/metrics").body.decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    # -- honest documents ---------------------------------------------------------------

    def honest_doc(self) -> SignedDocument:
        """A registration by an honest regulator: valid, applies, never conflicts."""
        state = self.honest[0]
        return self.docs.register(self.net.regulator(state), KeyPair.generate(), state, ["wholesaler"],
                                  "Honest business")

    def submit_acked(self, state: str) -> str:
        doc = self.honest_doc()
        # The signer's key: a wait that outlasts the request goes on with signed reads.
        client = SyncNodeClient(self.url(state), key=self.net.regulator(self.honest[0]), genesis=self.net.genesis,
                                chain_id=self.net.chain_id)
        result = client.submit(doc, wait=True, timeout_s=COMMIT_TIMEOUT_S)
        assert result.status == "applied", f"an honest document through {state}: {result}"
        self.acked.append(result.id)
        return result.id

    def document_status(self, state: str, doc_id: str) -> str:
        client = SyncNodeClient(self.url(state), key=self.net.regulator(self.honest[0]), genesis=self.net.genesis)
        try:
            return str(client.document(doc_id)["status"])
        except NodeError as exc:
            return f"error {exc}"

    # -- the invariants ------------------------------------------------------------------

    def sample_rss(self) -> RssPeak:
        """Start sampling the honest nodes' memory (the peak during an attack counts, not
        only what is left after it)."""
        pids = [p for p in (node_pid(self.net.node(s)) for s in self.honest) if p is not None]
        return RssPeak(pids)

    def check_alive(self) -> None:
        for state in self.honest:
            pid = node_pid(self.net.node(state))
            assert pid is not None, f"the honest {state} node exited: {self.log_tail(state)}"
            status = self.status(state)
            assert not status.get("error"), f"{state} stopped serving: {status['error']}"
            rss = rss_bytes(pid)
            assert rss < RSS_BYTES_MAX, f"{state} holds {rss >> 20} MiB (bound {RSS_BYTES_MAX >> 20} MiB)"

    def check_agree(self) -> None:
        seen: dict[str, Any] = {}

        def same() -> bool:
            views = {s: fetch_status(self.net.node(s)) for s in self.honest}
            seen.update(views)
            if any(v is None for v in views.values()):
                return False
            return len({(v["height"], v["head_hash"]) for v in views.values() if v}) == 1

        try:
            poll_until(same, AGREE_TIMEOUT_S, "the honest nodes to hold the same head")
        except AssertionError:
            raise
        except Exception as exc:
            heads = {s: (v or {}).get("height") for s, v in seen.items()}
            raise AssertionError(f"the honest nodes disagree: heights {heads}") from exc

    def check_invariants(self, before: list[str]) -> None:
        self.check_alive()
        after = [self.submit_acked(s) for s in self.honest]
        self.check_agree()
        for state in self.honest:
            for doc_id in before + after:
                assert self.document_status(state, doc_id) == "applied", \
                    f"acknowledged document {doc_id[:12]} is not applied on {state}"
        self.check_alive()

    def healthy(self) -> bool:
        """Whether the network can serve the next row: alive, led, committing, agreeing
        (a row that failed may have left it broken for good, e.g. a block time brick)."""
        try:
            self.check_alive()
            self.leader()
            doc = self.honest_doc()
            client = SyncNodeClient(self.url(self.honest[0]), key=self.net.regulator(self.honest[0]), genesis=self.net.genesis,
                                    chain_id=self.net.chain_id)
            result = client.submit(doc, wait=True, timeout_s=10)
            if result.status != "applied":
                return False
            self.check_agree()
            return True
        except Exception:
            return False

    def log_tail(self, state: str, lines: int = 5) -> str:
        try:
            text = self.net.node(state).log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def close(self) -> None:
        self.h.close()
        down(self.net.dir)


def build_world(root: Path) -> World:
    """A fresh testnet: all nodes up, then the hostile state's node stopped and its identity
    handed to the harness."""
    net = init_testnet(root, STATES, config=CONFIG)
    up(net.dir)
    stop(net.dir, HOSTILE)
    h = HostilePeer(net, HOSTILE)
    try:
        h.start()
    except Exception:
        down(net.dir)
        raise
    world = World(root, net, h, DocFactory(net.chain_id))
    world.leader()
    return world


def restart_honest(world: World) -> None:
    for state in world.honest:
        if node_pid(world.net.node(state)) is None:
            start(world.net.dir, state)
    time.sleep(0)

"""Prometheus metrics of one node, in a registry of its own (several nodes may share a
process in tests, and a global registry would mix them up), and its alarms."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)

# Latency buckets in seconds: from one fsync on a fast disk to a stalled election.
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, state: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = {"state": state}
        self.height = Gauge(
            "tamga_height", "Height of the last applied block", ["state"], registry=r
        ).labels(**labels)
        self.term = Gauge("tamga_raft_term", "Current Raft term", ["state"], registry=r).labels(**labels)
        self.role = Gauge(
            "tamga_raft_role", "Raft role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader",
            ["state"], registry=r,
        ).labels(**labels)
        self.commit_latency = Histogram(
            "tamga_commit_latency_seconds", "From proposal to applied on the leader",
            ["state"], buckets=_LATENCY_BUCKETS_S, registry=r,
        ).labels(**labels)
        self.apply_latency = Histogram(
            "tamga_apply_latency_seconds", "Time to execute and store one block",
            ["state"], buckets=_LATENCY_BUCKETS_S, registry=r,
        ).labels(**labels)
        self.documents_applied = Counter(
            "tamga_documents_applied_total", "Documents applied in blocks", ["state"], registry=r
        ).labels(**labels)
        self._rejected = Counter(
            "tamga_documents_rejected_total", "Documents recorded as rejected, by reason",
            ["state", "reason"], registry=r,
        )
        self._refused = Counter(
            "tamga_documents_refused_total", "Documents refused at admission, by error",
            ["state", "error"], registry=r,
        )
        self._peer_refused = Counter(
            "tamga_peer_documents_refused_total", "Documents from peers refused at admission, by reason",
            ["state", "reason"], registry=r,
        )
        self.mempool_documents = Gauge(
            "tamga_mempool_documents", "Documents waiting for a block", ["state"], registry=r
        ).labels(**labels)
        self.mempool_bytes = Gauge(
            "tamga_mempool_bytes", "Bytes of documents waiting for a block", ["state"], registry=r
        ).labels(**labels)
        self._peer_lag = Gauge(
            "tamga_peer_lag_blocks", "Our height minus the height a peer last reported",
            ["state", "peer"], registry=r,
        )
        self._peer_connected = Gauge(
            "tamga_peer_connected", "1 while the outgoing links to a peer are up",
            ["state", "peer"], registry=r,
        )
        self.frames_dropped = Counter(
            "tamga_peer_frames_dropped_total", "Malformed or unexpected peer frames dropped",
            ["state"], registry=r,
        ).labels(**labels)
        self._alarms = Counter(
            "tamga_alarms_total", "Things this node saw that an honest network never does, by kind",
            ["state", "kind"], registry=r,
        )
        self._drops = Counter(
            "tamga_peer_drops_total", "Peer frames and items dropped, by reason (each also counts in "
            "tamga_peer_frames_dropped_total)", ["state", "reason"], registry=r,
        )
        self._connections_refused = Counter(
            "tamga_connections_refused_total", "Connections closed at once: the server's connection cap "
            "or its per-address cap was reached", ["state", "server"], registry=r,
        )
        self._header_timeouts = Counter(
            "tamga_header_timeouts_total", "Connections closed because the request line and headers did "
            "not arrive in time", ["state", "server"], registry=r,
        )
        self._refusal_budget_spent = Counter(
            "tamga_refusal_budget_spent_total", "Documents answered 429 because their client or signer "
            "spent its budget of refused signatures", ["state"], registry=r,
        )
        self._evidence = Gauge(
            "tamga_evidence", "Pieces of equivocation evidence held (two attestations by one state for "
            "different blocks at one height)", ["state"], registry=r,
        )
        self._state = state
        self.alarms = Alarms(self)

    def evidence_gauge(self) -> Gauge:
        """Pieces of equivocation evidence this node holds (node/_evidence.py)."""
        return self._evidence.labels(state=self._state)

    def alarm(self, kind: str) -> Counter:
        return self._alarms.labels(state=self._state, kind=kind)

    def dropped(self, reason: str) -> None:
        """Count one dropped peer frame or item, under its reason."""
        self.frames_dropped.inc()
        self._drops.labels(state=self._state, reason=reason).inc()

    def drops(self, reason: str) -> float:
        value: float = self._drops.labels(state=self._state, reason=reason)._value.get()
        return value

    def connections_refused(self, server: str) -> Counter:
        return self._connections_refused.labels(state=self._state, server=server)

    def header_timeouts(self, server: str) -> Counter:
        return self._header_timeouts.labels(state=self._state, server=server)

    def refusal_budget_spent(self) -> Counter:
        return self._refusal_budget_spent.labels(state=self._state)

    def rejected(self, reason: str) -> Counter:
        return self._rejected.labels(state=self._state, reason=reason)

    def refused(self, error: str) -> Counter:
        return self._refused.labels(state=self._state, error=error)

    def peer_refused(self, reason: str) -> Counter:
        return self._peer_refused.labels(state=self._state, reason=reason)

    def peer_lag(self, peer: str) -> Gauge:
        return self._peer_lag.labels(state=self._state, peer=peer)

    def peer_connected(self, peer: str) -> Gauge:
        return self._peer_connected.labels(state=self._state, peer=peer)


# The kinds of alarm a node raises; a fixed set, so the table below stays bounded.
ALARM_KINDS = (
    # A block's proposed time was more than one genesis step ahead of the previous block
    # and the ledger clamped it.
    "block_time_clamped",
    # A block's proposed time was ahead of this node's clock by more than the skew bound.
    "block_time_ahead",
    # The head ran further above the final height than the bound (node/_finality.py).
    "finality_gap",
    # A member state signed two attestations for different blocks at one height: evidence.
    "equivocation",
    # This node rolled back blocks that were not final and rewound Raft (node/_healing.py).
    "healed",
)


@dataclass(slots=True)
class _Alarm:
    count: int = 0
    height: int = 0
    message: str = ""
    at_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "height": self.height, "message": self.message, "at_ms": self.at_ms}


class Alarms:
    """Alarms: an ERROR log line, a counter by kind, and the last one of each kind in the
    node's status, so that an operator sees them whichever way they look."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._last: dict[str, _Alarm] = {}

    def raise_alarm(self, kind: str, height: int, message: str) -> None:
        if kind not in ALARM_KINDS:
            raise ValueError(f"unknown alarm kind {kind!r}")
        log.error("ALARM %s at block %d: %s", kind, height, message)
        self._metrics.alarm(kind).inc()
        alarm = self._last.setdefault(kind, _Alarm())
        alarm.count += 1
        alarm.height, alarm.message, alarm.at_ms = height, message, int(time.time() * 1000)

    def count(self, kind: str) -> int:
        alarm = self._last.get(kind)
        return alarm.count if alarm is not None else 0

    def to_json(self) -> dict[str, Any]:
        return {kind: alarm.to_json() for kind, alarm in sorted(self._last.items())}

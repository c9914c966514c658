"""The Grafana dashboard covers every metric a node exports, and `tamga bench --png`
draws a real PNG with matplotlib."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from bench.chart import DPI, FIGURE_INCHES, write_chart
from node._censorship import CensorshipWatch
from node._metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
# The series a family exposes that a dashboard queries: counters as _total, histograms
# by their buckets (quantiles), gauges by name.
SERIES = {"counter": "{}_total", "histogram": "{}_bucket", "gauge": "{}"}


def exported_series() -> set[str]:
    """What /metrics serves: the node's registry as node/_node.py composes it."""
    metrics = Metrics("RU")
    CensorshipWatch(metrics.registry, "RU", campaign=lambda: None)
    return {SERIES[family.type].format(family.name) for family in metrics.registry.collect()}


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def test_every_metric_the_node_exports_has_a_panel() -> None:
    """Each metric family of a node's registry is queried by some panel of the dashboard."""
    used = {name for expr in dashboard_expressions() for name in re.findall(r"\btamga_[a-z_]+", expr)}
    missing = sorted(exported_series() - used)
    assert not missing, f"metrics with no panel in {DASHBOARD.name}: {missing}"
    assert len(exported_series()) >= 18


def test_the_dashboard_imports_as_is() -> None:
    """Valid JSON with unique panel ids, a Prometheus data source variable every query
    uses (so import asks for nothing), and a grid position for every panel."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    assert "__inputs" not in board


def test_bench_png_is_drawn_by_matplotlib(tmp_path: Path) -> None:
    """write_chart gives a PNG of the figure's size, also for an empty run."""
    for name, docs, p99 in (("run.png", [100.0, 250.5, 240.0], [12.0, 30.0, 18.5]), ("empty.png", [], [])):
        path = tmp_path / name
        write_chart(path, docs, p99)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (int(FIGURE_INCHES[0] * DPI), int(FIGURE_INCHES[1] * DPI))

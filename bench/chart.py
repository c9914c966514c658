"""The throughput-and-latency chart of `tamga bench --png`, drawn with matplotlib.

Two panels over the run, one point per second: committed documents per second (blue)
and p99 latency in milliseconds (red), sharing the time axis, each with its own scale
and labelled axes.
"""

from __future__ import annotations

from pathlib import Path

# 1280x720 pixels: readable in a README and in a pull request's preview.
FIGURE_INCHES = (12.8, 7.2)
DPI = 100


def write_chart(path: Path, docs_per_s: list[float], p99_ms: list[float]) -> None:
    # Imported here: matplotlib takes a while to load, and only this command draws.
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and the same output on every machine
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=FIGURE_INCHES, dpi=DPI)
    try:
        seconds = list(range(1, max(len(docs_per_s), len(p99_ms)) + 1))
        top.bar(seconds[: len(docs_per_s)], docs_per_s, width=1.0, color="#3465a4")
        top.set_ylabel("committed documents / s")
        top.set_title("tamga bench: throughput and p99 latency, per second")
        bottom.plot(seconds[: len(p99_ms)], p99_ms, color="#cc0000", marker=".", linewidth=1)
        bottom.set_ylabel("p99 latency (ms)")
        bottom.set_xlabel("seconds into the run")
        for axis in (top, bottom):
            axis.grid(True, alpha=0.3)
            axis.set_ylim(bottom=0)
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)

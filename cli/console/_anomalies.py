"""The SQL anomaly reports (`tamga sql` over the Parquet export) for the Anomalies view.

The Anomalies view shows two kinds of report. What the node's API allows comes from the
chain index (rejections by reason and by participant, suspensions, shipments pending
across a border by age). The SQL views over the Parquet export (attempts to move or
sell a code twice, codes named but never introduced, codes in circulation past a limit,
cross-border shipments unaccepted for days, participants whose refusals spike) come
from here, when the console is started with `--data DIR` (a `tamga export parquet`
directory): each report view of cli/analytics.sql is run with its default parameters
and becomes `{"title", "description", "columns", "rows"}`, which the page draws as a
table. Without an export, `sql_reports()` says how to get one.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

HOW = ("SQL anomaly reports come from the Parquet export: `tamga export parquet --out DIR`, then "
       "start the console with `--data DIR` (or run `tamga sql --report NAME --data DIR`).")
# A report's rows on the page: the first ones are the worst (each report orders them),
# and a page of thousands of rows helps nobody; `tamga sql` gives them all.
ROWS_SHOWN_MAX = 200


def _descriptions() -> dict[str, str]:
    """Each report's description: the comment lines above its CREATE VIEW."""
    text = resources.files("cli").joinpath("analytics.sql").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    comment: list[str] = []
    for line in text.splitlines():
        if line.startswith("--"):
            comment.append(line[2:].strip())
            continue
        match = re.match(r"CREATE OR REPLACE VIEW report_(\w+)", line)
        if match:
            out[match.group(1)] = " ".join(comment)
        comment = []
    return out


def sql_reports(data: Path | None = None) -> dict[str, Any]:
    """The SQL anomaly reports over the export in `data`, or why there are none. Blocking
    (DuckDB): the console calls it off its event loop."""
    if data is None:
        return {"available": False, "reports": [], "how": HOW}
    try:
        from .. import sql
    except ImportError:  # the analytics extra is not installed
        how = "DuckDB is not installed: pip install 'tamga[analytics]'"
        return {"available": False, "reports": [], "how": how}
    try:
        con = sql.connect(data)
    except sql.SqlError as exc:
        return {"available": False, "reports": [], "how": f"{exc}. {HOW}"}
    descriptions = _descriptions()
    reports: list[dict[str, Any]] = []
    try:
        for name in sql.reports(con):
            try:
                columns, rows = sql.run(con, sql.report_query(con, name))
            except sql.SqlError as exc:
                reports.append({"title": name, "description": f"could not run: {exc}",
                                "columns": [], "rows": []})
                continue
            shown = [[sql.json_value(v) for v in row] for row in rows[:ROWS_SHOWN_MAX]]
            description = descriptions.get(name, "")
            if len(rows) > ROWS_SHOWN_MAX:
                description += (f" (first {ROWS_SHOWN_MAX} of {len(rows)} rows; "
                                f"`tamga sql --report {name}` gives all)")
            reports.append({"title": name.replace("_", " "), "description": description,
                            "columns": list(columns), "rows": shown})
    finally:
        con.close()
    return {"available": True, "reports": reports, "how": HOW}

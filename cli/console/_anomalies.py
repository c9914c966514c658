"""The slot for the SQL anomaly reports (`tamga sql` over the Parquet export).

The Anomalies view shows two kinds of report. What the node's API allows today comes
from the chain index (rejections by reason and by participant, suspensions, shipments
pending across a border by age). The SQL views over the Parquet export (attempts to
move or sell a code twice, codes checked but never introduced, codes in circulation
past a group's limit, participants whose refusals spike) come from here: a report is
`{"title": str, "description": str, "columns": [str], "rows": [[value]]}`, and the page
draws any list of them as tables. Until the export and the views exist on this
machine, `sql_reports()` says so and the page shows how to get them.
"""

from __future__ import annotations

from typing import Any

HOW = ("SQL anomaly reports come from the Parquet export: `tamga export parquet --out DIR`, then "
       "`tamga sql` with the views the project ships.")


def sql_reports() -> dict[str, Any]:
    """The SQL anomaly reports to show, or why there are none."""
    return {"available": False, "reports": [], "how": HOW}

"""`tamga sql`: DuckDB over an export's Parquet files, with the views and reports of
analytics.sql (docs/ANALYTICS.md)."""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from .analytics import MANIFEST, TABLES

REPORT_PREFIX = "report_"
# A parameter is a DuckDB variable: a plain name, so that it can be set without quoting.
_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class SqlError(Exception):
    """The query or the data directory cannot be used; the message says why."""


def views_sql() -> str:
    return resources.files("cli").joinpath("analytics.sql").read_text(encoding="utf-8")


def connect(data: Path, params: Sequence[tuple[str, str]] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per table of the export in `data`."""
    if not (data / MANIFEST).exists():
        raise SqlError(f"{data} holds no export ({MANIFEST} is missing): run `tamga export parquet` first")
    con = duckdb.connect(":memory:")
    try:
        for table in TABLES:
            files = data / table
            if not any(files.glob("*.parquet")):
                raise SqlError(f"{data} has no Parquet files for table {table}")
            pattern = str(files / "*.parquet").replace("'", "''")
            # By name: a column added in a later version is NULL in older parts.
            con.execute(f"CREATE VIEW {table}_files AS SELECT * FROM read_parquet('{pattern}', "
                        "union_by_name = true)")
        con.execute(views_sql())
        for name, value in params:
            set_param(con, name, value)
    except duckdb.Error as exc:
        con.close()
        raise SqlError(_one_line(str(exc))) from None
    return con


def set_param(con: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
    if not _PARAM_NAME.fullmatch(name):
        raise SqlError(f"parameter {name!r} is not a plain lower-case name")
    number = _number(value)
    con.execute(f"SET VARIABLE {name} = ?", [number if number is not None else value])


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def reports(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE view_name LIKE 'report\\_%' ESCAPE '\\' ORDER BY 1"
    ).fetchall()
    return [str(r[0])[len(REPORT_PREFIX):] for r in rows]


def report_query(con: duckdb.DuckDBPyConnection, name: str) -> str:
    known = reports(con)
    if name not in known:
        raise SqlError(f"no report {name!r}; the reports are: {', '.join(known)}")
    return f"SELECT * FROM {REPORT_PREFIX}{name}"


def run(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of a query."""
    try:
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description or []]
        return names, cursor.fetchall()
    except duckdb.Error as exc:
        raise SqlError(_one_line(str(exc))) from None


def json_value(value: Any) -> Any:
    """A DuckDB value as JSON: times in ISO 8601, decimals as numbers, lists as lists."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def text_table(names: Sequence[str], rows: Sequence[tuple[Any, ...]], width_max: int = 60) -> list[str]:
    """Rows as aligned text columns, each cell cut at `width_max` characters."""
    cells = [[_cell(v, width_max) for v in row] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return lines


def _cell(value: Any, width_max: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, datetime.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = str(json_value(value)) if isinstance(value, list | dict | decimal.Decimal) else str(value)
    return text if len(text) <= width_max else text[: width_max - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())

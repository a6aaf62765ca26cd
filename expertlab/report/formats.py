"""Rows -> text: CSV, markdown, terminal tables and JSON, a table pivoted wide, and a query's markdown page.

Output is deterministic: the same rows give byte-identical text (CSV floats are written with 10
significant digits, so summation order cannot show).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from expertlab.report.execute import Table
from expertlab.report.queries import Query, Wide


def cell(value: Any) -> Any:
    """A value as written to text: floats with 10 significant digits, lists as JSON, null as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".10g")
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4f") -> str:
    """A GitHub table; numeric columns right-aligned, floats with `floatfmt`."""
    from tabulate import tabulate

    def shown(value: Any) -> Any:
        return format(value, floatfmt) if isinstance(value, float) else cell(value)

    numeric = [
        all(_is_number(row[i]) or row[i] is None for row in rows) and any(row[i] is not None for row in rows)
        for i in range(len(columns))
    ]
    cells = [[shown(v) for v in row] for row in rows]
    align = ["right" if flag else "left" for flag in numeric]
    return tabulate(cells, headers=list(columns), tablefmt="github", disable_numparse=True, colalign=align) + "\n"


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Rows as `table` (aligned, for terminals), `csv` or `json` (a list of objects)."""
    if fmt == "csv":
        return to_csv(columns, rows)
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=1) + "\n"
    if fmt == "table":
        from tabulate import tabulate

        return (
            tabulate(
                [[cell(v) for v in row] for row in rows], headers=list(columns), tablefmt="psql", disable_numparse=True
            )
            + "\n"
        )
    raise ValueError(f"unknown format {fmt!r}; allowed: table, csv, json")


def wide_table(table: Table, wide: Wide) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """The table pivoted as `wide` says: header, and rows of (text, bold) cells; '' where a row lacks a value."""
    index = {column: i for i, column in enumerate(table.columns)}
    across: list[Any] = []
    cells: dict[tuple[Any, ...], dict[Any, tuple[str, bool]]] = {}
    for row in table.rows:
        key, column = tuple(row[index[c]] for c in wide.rows), row[index[wide.across]]
        if column not in across:
            across.append(column)
        mean = row[index[wide.mean]]
        sd = row[index[wide.sd]] if wide.sd else None
        text = "" if mean is None else (f"{mean:.3f}" if isinstance(mean, float) else str(mean))
        if sd is not None:
            text += f" ± {sd:.3f}"
        cells.setdefault(key, {})[column] = (text, bool(wide.best and row[index[wide.best]]))
    header = [*wide.rows, *(str(cell(c)) for c in across)]
    body = [
        [(str(cell(v)) if v is not None else "", False) for v in key] + [values.get(c, ("", False)) for c in across]
        for key, values in cells.items()
    ]
    return header, body


def markdown_document(query: Query, table: Table) -> str:
    """A report page: title, description, the column glossary and the table (and its wide form, if declared)."""
    glossary = "\n".join(f"- `{name}`: {text}" for name, text in query.columns.items())
    page = f"# {query.table}\n\n{query.description}\n\n{glossary}\n\n{to_markdown(table.columns, table.rows)}"
    if query.wide is None or not table.rows:
        return page
    from tabulate import tabulate

    header, body = wide_table(table, query.wide)
    shown = [[f"**{text}**" if bold and text else text for text, bold in row] for row in body]
    wide = tabulate(shown, headers=header, tablefmt="github", disable_numparse=True)
    return f"{page}\n## Wide: one column per {query.wide.across} (mean ± sd over seeds; bold: better)\n\n{wide}\n"

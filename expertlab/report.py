"""The store (read-only) + queries/*.sql -> one markdown and one CSV table per query, plus altair charts.

Each query file begins with its contract: `-- table: <name>` (the file's stem) and one
`-- column: <name>: <description>` line per output column, in order; the report refuses a query whose
output differs from it. Output is deterministic: the same store gives byte-identical .md and .csv files
(floats are written with 10 significant digits, so summation order cannot show).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.registry import Registry

_TABLE_LINE = re.compile(r"^--\s*table:\s*(\w+)\s*$")
_COLUMN_LINE = re.compile(r"^--\s*column:\s*(\w+)\s*:\s*(\S.*?)\s*$")
_WIDE_LINE = re.compile(r"^--\s*wide:\s*(.+?)\s*\|\s*(\w+)\s*\|\s*(.+?)\s*$")


@dataclass(frozen=True)
class Wide:
    """A long table shown wide, as the paper prints it: one row per `rows` key, one column per value of
    `across`, each cell `mean ± sd` (bold where `best` is true).

    Declared in a query's header: `-- wide: <row columns> | <across column> | <mean>[, <sd>[, <best>]]`."""

    rows: tuple[str, ...]
    across: str
    mean: str
    sd: str | None = None
    best: str | None = None

    def columns(self) -> tuple[str, ...]:
        return (*self.rows, self.across, self.mean, *(c for c in (self.sd, self.best) if c))


@dataclass(frozen=True)
class Query:
    """One queries/<table>.sql file and its documented output."""

    table: str
    path: Path
    sql: str
    description: str
    columns: dict[str, str]  # column -> description, in output order
    wide: Wide | None = None  # how the report also shows the table wide


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def read_query(path: str | Path) -> Query:
    """Parse a query file's header comment; errors name the file."""
    path = Path(path)
    sql = path.read_text()
    table, description, columns, wide = None, [], {}, None
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        if match := _TABLE_LINE.match(line):
            table = match.group(1)
        elif match := _WIDE_LINE.match(line):
            values = [name.strip() for name in match.group(3).split(",")]
            if not 1 <= len(values) <= 3:
                raise ValueError(f"{path}: '-- wide:' takes <mean>[, <sd>[, <best>]] after the second '|'")
            wide = Wide(tuple(name.strip() for name in match.group(1).split(",")), match.group(2), *values)
        elif match := _COLUMN_LINE.match(line):
            if match.group(1) in columns:
                raise ValueError(f"{path}: column {match.group(1)!r} documented twice")
            columns[match.group(1)] = match.group(2)
        else:
            description.append(line.lstrip("-").strip())
    if table != path.stem:
        raise ValueError(f"{path}: header must start with '-- table: {path.stem}' (found {table!r})")
    if not columns:
        raise ValueError(f"{path}: header documents no '-- column: <name>: <description>' lines")
    if wide is not None and (unknown := [c for c in wide.columns() if c not in columns]):
        raise ValueError(f"{path}: '-- wide:' names undocumented column(s) {', '.join(unknown)}")
    return Query(table, path, sql, " ".join(d for d in description if d), columns, wide)


def read_queries(queries_dir: str | Path) -> list[Query]:
    queries_dir = Path(queries_dir)
    if not queries_dir.is_dir():
        raise FileNotFoundError(f"no such queries directory: {queries_dir}")
    queries = [read_query(path) for path in sorted(queries_dir.glob("*.sql"))]
    if not queries:
        raise FileNotFoundError(f"{queries_dir}: no .sql files")
    return queries


# A connection to the store may read the store and nothing else, whatever statement it is given: no
# other file read or written (COPY, EXPORT, read_csv, glob, ATTACH), no extension installed or
# autoloaded, hence no network; lock_configuration makes every later SET/RESET fail, so no statement
# can turn the rest back on.
SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


def connect_read_only(store: str | Path):  # noqa: ANN201 (duckdb is imported lazily)
    """The store opened read-only and sandboxed (SANDBOX); a missing file is an error, never a new empty store."""
    import duckdb

    store = Path(store)
    if not store.is_file():
        raise FileNotFoundError(f"no store at {store}; build it with `expertlab ingest`")
    try:
        return duckdb.connect(str(store), read_only=True, config=SANDBOX)
    except duckdb.Error as err:
        raise ValueError(f"{store}: cannot open the store read-only ({err})") from None


def _execute(con, sql: str, where: str) -> tuple[list[str], list[tuple[Any, ...]]]:  # noqa: ANN001
    import duckdb

    try:
        cursor = con.execute(sql)
        columns = [column[0] for column in cursor.description] if cursor.description else []
        return columns, cursor.fetchall() if columns else []
    except duckdb.Error as err:
        message = str(err)
        first_line = message.splitlines()[0] if message else type(err).__name__
        if isinstance(err, duckdb.PermissionException) or "the configuration has been locked" in message:
            refused = "the store is opened read-only and sandboxed: a statement may read the store and nothing else"
            raise ValueError(f"{where}: {refused} ({first_line})") from None
        if "read-only" in message:
            refused = "the store is opened read-only, so statements that write are refused"
            raise ValueError(f"{where}: {refused} ({first_line})") from None
        raise ValueError(f"{where}: {message}") from None


def query_store(store: str | Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one ad-hoc query against the store, opened read-only."""
    con = connect_read_only(store)
    try:
        return _execute(con, sql, "query failed")
    finally:
        con.close()


def run_query(con, query: Query) -> Table:  # noqa: ANN001
    """Execute a query file; its output columns must be exactly the documented ones, in order."""
    columns, rows = _execute(con, query.sql, str(query.path))
    if columns != list(query.columns):
        raise ValueError(f"{query.path}: the query returns {columns}, its header documents {list(query.columns)}")
    return Table(query.table, columns, rows)


# --- formatting ---------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
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
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4f") -> str:
    """A GitHub table; numeric columns right-aligned, floats with `floatfmt`."""
    from tabulate import tabulate

    def cell(value: Any) -> Any:
        return format(value, floatfmt) if isinstance(value, float) else _cell(value)

    numeric = [
        all(_is_number(row[i]) or row[i] is None for row in rows) and any(row[i] is not None for row in rows)
        for i in range(len(columns))
    ]
    cells = [[cell(v) for v in row] for row in rows]
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
                [[_cell(v) for v in row] for row in rows], headers=list(columns), tablefmt="psql", disable_numparse=True
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
    header = [*wide.rows, *(str(_cell(c)) for c in across)]
    body = [
        [(str(_cell(v)) if v is not None else "", False) for v in key] + [values.get(c, ("", False)) for c in across]
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


# --- charts ---------------------------------------------------------------------------------------------

# table name -> function drawing that table (an altair chart); saved as <table>.png, .svg and .html.
Chart = Callable[[Table], Any]
CHARTS: Registry[Chart] = Registry("chart")


def _ratio_lines(
    records: list[dict[str, Any]],
    *,
    title: str,
    y_title: str,
    column: str,
    baseline: float | str | None = None,
    percent: bool = False,
    shared_y: bool = True,
) -> Any:
    """A value vs pruning ratio, one line per criterion with a band from `low` to `high`, one chart per
    (`panel`, `column`) pair that has data: a row per panel, its columns side by side (a sparse grid is
    drawn as concatenated charts, not a facet, which would place panels by position); `baseline` is a
    constant or a field (the source model's value), drawn dashed."""
    import altair as alt

    # rows arrive in the queries' order (criteria as registered): keep it
    criteria = list(dict.fromkeys(r["criterion"] for r in records))
    panels = list(dict.fromkeys(r["panel"] for r in records))
    x = alt.X("ratio:Q", title="pruning ratio", axis=alt.Axis(format="%"))
    y_axis = alt.Axis(format="%") if percent else alt.Axis()
    color = alt.Color("criterion:N", sort=criteria, title="criterion")
    band = alt.Chart().mark_area(opacity=0.2).encode(x=x, y="low:Q", y2="high:Q", color=color)
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=y_title, axis=y_axis),
            color=color,
            tooltip=["criterion:N", "ratio:Q", alt.Tooltip("value:Q", format=".3f"), "n:Q"],
        )
    )
    layers = [band, line]
    if isinstance(baseline, str):
        layers.append(
            alt.Chart()
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(y=f"mean({baseline}):Q")
            .transform_filter(f"datum.{baseline} != null")
        )
    elif baseline is not None:
        layers.append(alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(y=alt.datum(baseline)))
    rows = []
    for panel in panels:
        in_panel = [r for r in records if r["panel"] == panel]
        cells = []
        for value in dict.fromkeys(r[column] for r in in_panel):
            data = [r for r in in_panel if r[column] == value]
            cells.append(
                alt.layer(*layers, data=alt.Data(values=data)).properties(
                    width=220, height=160, title=alt.TitleParams(f"{panel}: {value}", fontSize=11)
                )
            )
        rows.append(alt.hconcat(*cells).resolve_scale(y="shared" if shared_y else "independent"))
    chart = alt.vconcat(*rows).properties(title=title)
    chart = chart.resolve_scale(y="shared" if shared_y else "independent", color="shared")
    return chart.configure_legend(symbolOpacity=1)  # the legend shares the bands' symbols: draw them opaque


def _band(mean: float, sd: float | None) -> dict[str, float]:
    return {"value": mean, "low": mean - (sd or 0.0), "high": mean + (sd or 0.0)}


@CHARTS.register("utility_retention")
def utility_retention_chart(table: Table) -> Any:
    """Figure 2: retention vs pruning ratio, one line per criterion, sd band, columns = domains, rows = model x kind."""
    records = [
        {
            "panel": f"{row['model']} / {row['calibration']} / {row['kind']}",
            "domain": row["domain"],
            "criterion": row["criterion"],
            "ratio": row["ratio"],
            "n": row["n_seeds"],
            **_band(row["retention_mean"], row["retention_sd"]),
        }
        for row in table.records()
    ]
    return _ratio_lines(
        records,
        title="Utility retention vs pruning ratio (mean ± sd over seeds)",
        y_title="utility retention (source = 100%)",
        column="domain",
        baseline=1,
        percent=True,
    )


@CHARTS.register("reliability_scores")
def reliability_scores_chart(table: Table) -> Any:
    """Figures 4 and 7: each reliability metric vs pruning ratio, sd band, the source model dashed."""
    records = [
        {
            "panel": f"{row['model']} / {row['calibration']} / {row['task']}",
            "metric": row["metric"],
            "criterion": row["criterion"],
            "ratio": row["ratio"],
            "n": row["n_seeds"],
            "source_value": row["source_value"],
            **_band(row["value_mean"], row["value_sd"]),
        }
        for row in table.records()
    ]
    return _ratio_lines(
        records,
        title="Reliability metrics vs pruning ratio (mean ± sd over seeds; dashed: the source model)",
        y_title="value",
        column="metric",
        baseline="source_value",
        shared_y=False,
    )


@CHARTS.register("judge_rates")
def judge_rates_chart(table: Table) -> Any:
    """Figures 3 and 6: judged rate vs pruning ratio, one line per criterion (mean over judges, band: their
    range), dashed: the source model's absolute rate, or 0.5 (no preference) for the relative questions;
    columns = questions, rows = model x calibration x task."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in table.records():
        if row["rate"] is not None:
            key = (row["model"], row["calibration"], row["task"], row["question"], row["criterion"], row["ratio"])
            cells.setdefault(key, []).append(row)
    records = []
    for (model, calibration, task, question, criterion, ratio), rows in cells.items():
        rates = [r["rate"] for r in rows]
        sources = [r["source_rate"] for r in rows if r["source_rate"] is not None]
        records.append(
            {
                "panel": f"{model} / {calibration or 'imported'} / {task}",
                "question": question,
                "criterion": criterion,
                "ratio": ratio,
                "n": len(rows),
                "value": sum(rates) / len(rates),
                "low": min(rates),
                "high": max(rates),
                # dashed: the source model's rate (absolute), the no-preference line (relative)
                "baseline": (sum(sources) / len(sources) if sources else None) if question == "hallucinated" else 0.5,
            }
        )
    return _ratio_lines(
        records,
        title="Judged rates vs pruning ratio (mean over judges, band: their range; dashed: source model / 0.5)",
        y_title="share of items",
        column="question",
        baseline="baseline",
        percent=True,
    )


@CHARTS.register("expert_overlap")
def expert_overlap_chart(table: Table) -> Any:
    """Which criteria keep the same experts: overlap per criterion pair, one heatmap per model x calibration x ratio."""
    import altair as alt

    records = [{**row, "panel": f"{row['model']} / {row['calibration']} / {row['ratio']:g}"} for row in table.records()]
    criteria = list(dict.fromkeys([r["criterion_a"] for r in records] + [r["criterion_b"] for r in records]))
    base = alt.Chart().encode(
        x=alt.X("criterion_a:N", sort=criteria, title=None),
        y=alt.Y("criterion_b:N", sort=criteria, title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("overlap:Q", scale=alt.Scale(domain=[0, 1], scheme="blues")),
        tooltip=["criterion_a:N", "criterion_b:N", alt.Tooltip("overlap:Q", format=".3f"), "n_seed_pairs:Q"],
    )
    labels = base.mark_text(fontSize=10).encode(text=alt.Text("overlap:Q", format=".2f"))
    return (
        alt.layer(cells, labels, data=alt.Data(values=records))
        .properties(width=180, height=180)
        .facet(facet=alt.Facet("panel:N", title=None), columns=3)
        .properties(title="Expert-selection overlap between criteria (mean over layers and seed pairs)")
    )


CHART_FORMATS = ("png", "svg", "html")


def save_chart(chart: Any, out_dir: Path, name: str) -> list[str]:
    """<name>.png, .svg and a self-contained (offline) .html page, all rendered by vl-convert; the file names."""
    import vl_convert as vlc

    spec = chart.to_json()
    (out_dir / f"{name}.png").write_bytes(vlc.vegalite_to_png(spec, scale=2))
    (out_dir / f"{name}.svg").write_text(vlc.vegalite_to_svg(spec))
    (out_dir / f"{name}.html").write_text(vlc.vegalite_to_html(spec, bundle=True))
    return [f"{name}.{suffix}" for suffix in CHART_FORMATS]


def _html_table(table: Table) -> str:
    def cell(value: Any) -> str:
        shown = _cell(value)
        if isinstance(shown, float):
            shown = f"{shown:.4f}"
        return html.escape("" if shown is None else str(shown))

    head = "".join(f"<th>{html.escape(column)}</th>" for column in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(value)}</td>" for value in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_wide(header: list[str], body: list[list[tuple[str, bool]]]) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in header)
    rows = "".join(
        "<tr>" + "".join(
            f"<td><b>{html.escape(text)}</b></td>" if bold else f"<td>{html.escape(text)}</td>"
            for text, bold in row
        )
        + "</tr>"
        for row in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def index_page(results: Sequence[tuple[Query, Table]], charts: dict[str, str]) -> str:
    """One self-contained HTML page: every table with its description and columns, its chart inlined as SVG."""
    sections = []
    contents = []
    for query, table in results:
        name = html.escape(table.name)
        contents.append(f'<li><a href="#{name}">{name}</a> ({len(table.rows)} rows)</li>')
        glossary = "".join(
            f"<li><code>{html.escape(column)}</code>: {html.escape(text)}</li>"
            for column, text in query.columns.items()
        )
        chart = f"<figure>{charts[table.name]}</figure>" if table.name in charts else ""
        rows = _html_table(table) if table.rows else "<p><em>no rows in this store</em></p>"
        if query.wide is not None and table.rows:
            rows = _html_wide(*wide_table(table, query.wide)) + f"<details><summary>long form</summary>{rows}</details>"
        sections.append(
            f'<section id="{name}"><h2>{name}</h2><p>{html.escape(query.description)}</p>{chart}'
            f"<details><summary>columns</summary><ul>{glossary}</ul></details>{rows}</section>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}"
        "section{margin-bottom:3em;overflow-x:auto}figure{margin:1em 0}"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>expertlab report</title>'
        f"<style>{style}</style></head><body><h1>expertlab report</h1><ul>{''.join(contents)}</ul>"
        f"{''.join(sections)}</body></html>\n"
    )


# --- the report -----------------------------------------------------------------------------------------


def set_variables(con, variables: Mapping[str, float | int | str]) -> None:  # noqa: ANN001
    """DuckDB variables the queries read with getvariable(name) (each query has its own default)."""
    for name, value in variables.items():
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"query variable {name!r}: use lowercase letters, digits and '_'")
        con.execute(f"set variable {name} = ?", [value])


def run_queries(
    store: str | Path, queries_dir: str | Path = "queries", variables: Mapping[str, float | int | str] | None = None
) -> list[tuple[Query, Table]]:
    queries = read_queries(queries_dir)
    con = connect_read_only(store)
    try:
        set_variables(con, variables or {})
        return [(query, run_query(con, query)) for query in queries]
    finally:
        con.close()


def write_report(
    store: str | Path,
    queries_dir: str | Path = "queries",
    out_dir: str | Path = "report",
    variables: Mapping[str, float | int | str] | None = None,
) -> list[Path]:
    """Every query as OUT/<table>.md and .csv, every registered chart of a non-empty table as .png, .svg and
    .html, and OUT/index.html holding all of them; OUT is replaced whole."""
    from expertlab.io import atomic_dir

    results = run_queries(store, queries_dir, variables)
    names: list[str] = []
    charts: dict[str, str] = {}
    with atomic_dir(out_dir, owner="report", inputs=[store, queries_dir]) as tmp:
        for query, table in results:
            (tmp / f"{table.name}.md").write_text(markdown_document(query, table))
            (tmp / f"{table.name}.csv").write_text(to_csv(table.columns, table.rows))
            names += [f"{table.name}.md", f"{table.name}.csv"]
            if table.name in CHARTS and table.rows:
                names += save_chart(CHARTS[table.name](table), tmp, table.name)
                charts[table.name] = (tmp / f"{table.name}.svg").read_text()
        (tmp / "index.html").write_text(index_page(results, charts))
        names.append("index.html")
    return [Path(out_dir) / name for name in names]


def query_path(queries_dir: str | Path, name: str) -> Path:
    """queries/<name>.sql: the file producing table `name`; an error naming the tables there when it is absent."""
    path = Path(queries_dir) / f"{name}.sql"
    if not path.is_file():
        there = sorted(p.stem for p in Path(queries_dir).glob("*.sql"))
        raise FileNotFoundError(f"no query {name!r}: {path} does not exist (tables: {', '.join(there) or 'none'})")
    return path


def print_table(store: str | Path, name: str, queries_dir: str | Path = "queries") -> None:
    """Run queries/<name>.sql on the store and print it as markdown (e.g. the headline after a run)."""
    query = read_query(query_path(queries_dir, name))
    con = connect_read_only(store)
    try:
        table = run_query(con, query)
    finally:
        con.close()
    print(f"{name}: {query.description}\n")
    print(to_markdown(table.columns, table.rows), end="")

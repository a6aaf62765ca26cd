"""The store (read-only) + queries/*.sql + their variables -> OUT/<table>.md and .csv per query, the charts
and OUT/index.html; or one table printed.

queries.py parses the query files, execute.py runs them on the sandboxed store, formats.py writes text,
charts.py draws, html.py builds the one page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from expertlab.report.charts import CHART_FORMATS, CHARTS, ChartFormat, save_chart
from expertlab.report.execute import Variable, connect_read_only, run_queries, run_query
from expertlab.report.formats import markdown_document, to_csv, to_markdown
from expertlab.report.html import index_page
from expertlab.report.queries import query_path, read_query


def write_report(
    store: str | Path,
    queries_dir: str | Path = "queries",
    out_dir: str | Path = "report",
    variables: Mapping[str, Variable] | None = None,
    chart_formats: Sequence[ChartFormat] = CHART_FORMATS,
) -> list[Path]:
    """Every query as OUT/<table>.md and .csv, every registered chart of a non-empty table as a file of each
    of `chart_formats`, and OUT/index.html holding all of them; OUT is replaced whole."""
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
                charts[table.name], saved = save_chart(CHARTS[table.name](table), tmp, table.name, chart_formats)
                names += saved
        (tmp / "index.html").write_text(index_page(results, charts))
        names.append("index.html")
    return [Path(out_dir) / name for name in names]


def print_table(
    store: str | Path, name: str, queries_dir: str | Path = "queries", variables: Mapping[str, Variable] | None = None
) -> None:
    """Run queries/<name>.sql on the store and print it as markdown (e.g. the headline after a run)."""
    query = read_query(query_path(queries_dir, name))
    con = connect_read_only(store)
    try:
        table = run_query(con, query, variables)
    finally:
        con.close()
    print(f"{name}: {query.description}\n")
    print(to_markdown(table.columns, table.rows), end="")

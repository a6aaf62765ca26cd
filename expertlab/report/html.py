"""Every query with its table and chart -> index.html, one self-contained offline page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from expertlab.report.execute import Table
from expertlab.report.formats import cell, wide_table
from expertlab.report.queries import Query


def _html_table(table: Table) -> str:
    def text(value: Any) -> str:
        shown = cell(value)
        if isinstance(shown, float):
            shown = f"{shown:.4f}"
        return html.escape("" if shown is None else str(shown))

    head = "".join(f"<th>{html.escape(column)}</th>" for column in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{text(value)}</td>" for value in row) + "</tr>" for row in table.rows)
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

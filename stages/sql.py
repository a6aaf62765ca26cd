"""A SQL query + the store (read-only and sandboxed) -> its result as a table, CSV or JSON on stdout."""

from __future__ import annotations

import argparse

from expertlab import layout

HELP = "run a SQL query against the store, read-only and sandboxed (tables: see schema/expertlab.sql)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", metavar="QUERY", help='e.g. "select * from task_scores limit 5"')
    parser.add_argument("--store", default=str(layout.STORE), metavar="FILE", help="store built by `expertlab ingest`")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")


def run(args: argparse.Namespace) -> int:
    import sys

    from expertlab.report.execute import query_store
    from expertlab.report.formats import format_rows

    columns, rows = query_store(args.store, args.query)
    sys.stdout.write(format_rows(columns, rows, args.format))
    return 0

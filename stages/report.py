"""The store + queries/*.sql -> OUT/<table>.md and OUT/<table>.csv per query, plus the charts."""

from __future__ import annotations

import argparse

from expertlab import layout

from stages.common import add_params_argument, load_optional_params

HELP = "run every queries/*.sql on the store (read-only); write markdown, CSV and charts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=str(layout.STORE), metavar="FILE", help="store built by `expertlab ingest`")
    parser.add_argument("--queries", default="queries", metavar="DIR", help="directory of <table>.sql files")
    parser.add_argument("--out", default="report", metavar="DIR", help="output directory (replaced as a whole)")
    parser.add_argument("--print", dest="print_table", metavar="TABLE", help="also print this table (e.g. headline)")
    add_params_argument(parser)  # report: the queries' variables (its defaults without --params)


def run(args: argparse.Namespace) -> int:
    from expertlab.params import Report
    from expertlab.report import write_report

    params = load_optional_params(args)
    report = params.report if params else Report()
    variables = report.variables()
    written = write_report(args.store, args.queries, args.out, variables, report.chart_formats)
    print(f"report: {len(written)} files -> {args.out}")
    if args.print_table:
        from expertlab.report import print_table

        print_table(args.store, args.print_table, args.queries, variables)
    return 0

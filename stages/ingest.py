"""Artifact directories (observations, masks, generations, scores) -> the DuckDB store, incrementally."""

from __future__ import annotations

import argparse

from expertlab import layout

HELP = "load artifacts into the DuckDB store (unchanged ones skipped, vanished ones removed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="artifact directories (holding meta.json) or parents of them; the store ends up holding exactly these",
    )
    parser.add_argument(
        "--optional", action="append", default=[], metavar="DIR",
        help="also the artifacts under DIR, which may hold none (e.g. imported/); repeatable",
    )
    parser.add_argument("--store", default=str(layout.STORE), metavar="FILE", help="DuckDB store to update")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every added, replaced and removed artifact")


def run(args: argparse.Namespace) -> int:
    from expertlab.store import ingest

    report = ingest(args.store, args.dirs, args.optional)
    if args.verbose:
        for action, refs in (("added", report.added), ("replaced", report.replaced), ("removed", report.removed)):
            for ref in refs:
                print(f"  {action:<8} {ref.kind:<12} {ref.identity}  ({ref.path})")
    print(report.summary())
    return 0

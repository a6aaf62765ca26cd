"""Externally produced verdict files (the study's released JSON, human annotation CSVs) -> judgments artifacts
under imported/, ingested into the `judgments` table."""

from __future__ import annotations

import argparse

HELP = "import externally produced verdicts (the study's released ones, human annotation CSVs) as judgments artifacts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="the study's released absolute or relative verdict files (evaluation_samples_*.json), human "
        "annotation CSVs (README, Human annotations), or directories holding them (every .json and .csv below)",
    )
    parser.add_argument("--out", default="imported", metavar="DIR",
                        help="where the artifacts go, under DIR/judgments/ (default imported/)")


def run(args: argparse.Namespace) -> int:
    from expertlab.imports.judgments import find_judgment_files, read_judgments, write_judgments
    from expertlab.imports.study import check_criteria, check_tasks

    check_criteria()
    check_tasks()
    # every file is read and checked before anything is written: a bad file leaves imported/ as it was
    imported = [read_judgments(path) for path in find_judgment_files(args.paths)]
    written = write_judgments(imported, args.out)
    for judgments, target in zip(imported, written):
        print(f"import-judgments: {judgments.summary()} -> {target}/")
    print(f"next: dvc repro ingest (or expertlab ingest ... --optional {args.out}) to load them into the store")
    return 0

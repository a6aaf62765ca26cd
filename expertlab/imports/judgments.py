"""Verdict files (the study's released JSON, human annotation CSVs) -> ExternalJudgments -> judgments artifacts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from expertlab.imports import find_files
from expertlab.imports.human import read_human_judgments
from expertlab.imports.study_judgments import read_study_judgments
from expertlab.imports.verdicts import JUDGMENT_KEY, ExternalJudgments
from expertlab.io import atomic_dir, write_json

JUDGMENTS_FILE = "judgments.parquet"


def find_judgment_files(paths: Iterable[str | Path]) -> list[Path]:
    """Verdict files: given directly, or every *.json (the study's) and *.csv (human annotations) below a directory."""

    def below(directory: Path) -> list[Path]:
        return sorted(path for path in directory.rglob("*") if path.is_file() and path.suffix.lower() in (".json", ".csv"))

    return find_files(paths, below, "no .json or .csv file in it or below it")


def read_judgments(path: str | Path) -> ExternalJudgments:
    """A verdict file by its suffix: .csv human annotations, otherwise the study's released JSON."""
    path = Path(path)
    return read_human_judgments(path) if path.suffix.lower() == ".csv" else read_study_judgments(path)


def write_judgments(imported: Sequence[ExternalJudgments], out_dir: str | Path) -> list[Path]:
    """One judgments artifact per file under out_dir/judgments/<name>/ (meta.json + judgments.parquet)."""
    from expertlab.records import JUDGMENTS, JudgmentsMeta

    names = [judgments.name for judgments in imported]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        sources = [j.source for j in imported if j.name in twice]
        raise ValueError(f"two files would both be imported as {', '.join(twice)}: {', '.join(sources)}")
    # one verdict per store key, across files too (one annotator in two files would otherwise fail ingest)
    given: dict[tuple, str] = {}
    for judgments in imported:
        for row in judgments.rows:
            key = tuple(row[column] for column in JUDGMENT_KEY)
            if key in given:
                raise ValueError(f"{judgments.source}: the verdict ({', '.join(map(str, key))}) is also given by "
                                 f"{given[key]}: one per ({', '.join(JUDGMENT_KEY)})")
            given[key] = judgments.source
    written = []
    for judgments in imported:
        target = Path(out_dir) / "judgments" / judgments.name
        with atomic_dir(target, owner="import-judgments", inputs=[judgments.source]) as tmp:
            JUDGMENTS.write(tmp / JUDGMENTS_FILE, judgments.rows)
            record = JudgmentsMeta(
                name=judgments.name, format=judgments.format, source=judgments.source, items=judgments.items,
                judges=judgments.judges, variants=judgments.variant_records(),
            )  # fmt: skip
            write_json(tmp / "meta.json", record.dump())
        written.append(target)
    return written

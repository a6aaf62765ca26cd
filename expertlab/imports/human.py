"""A human annotations CSV (README, "Human annotations") -> ExternalJudgments `human-<file stem>`, judge_kind human.

One row per (annotator, judged item, question). An empty label is `missing`; anything else the
file cannot say unambiguously (an unknown label, protocol, question, output or criterion, a ratio
outside (0, 1), a missing column, a duplicate row) fails naming the file and line, so no
annotation is ever guessed.

The judged items are spelt as in the study's released verdicts they are compared with, and become the
store's names as those do (expertlab.imports.study): pruned_model the variant it names (model,
criterion and ratio must agree with it), dataset its task; document_id is kept as the sample id.
generator_model (optional: the release's family label of the source model) is no store column; it stays in
`raw`, the row as given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from expertlab.criteria import CRITERIA
from expertlab.imports.study import STUDY_CRITERIA, study_task, study_variant
from expertlab.imports.verdicts import JUDGMENT_KEY, ExternalJudgments, distinct_variants, raw_json
from expertlab.judgments import LABELS, QUESTIONS
from expertlab.variants import Variant

_HUMAN_REQUIRED = ("annotator", "protocol", "question", "dataset", "document_id", "model", "pruned_model",
                   "criterion", "ratio", "label")
_HUMAN_OPTIONAL = ("output", "generator_model")
_HUMAN_OUTPUTS = {"absolute": ("pruned", "source"), "relative": ("pair",)}  # the first is the default
# a row's item as the file spells it, for messages: the annotator, then the store's key
_HUMAN_KEY = ("annotator", "protocol", "question", "dataset", "document_id", "pruned_model", "output")


def _one_of(where: str, column: str, value: str, allowed: Iterable[str], context: str = "") -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{where}: {column} {value!r} is not one of {', '.join(allowed)}{context}")
    return value


def _human_row(where: str, given: dict[str, str]) -> tuple[Variant, dict[str, object]]:
    """One CSV row (cells stripped) as the judged variant and a store row; raises naming `where`
    (file: line N) on anything unknown."""
    for column in ("annotator", "dataset", "document_id", "model", "pruned_model"):
        if not given[column]:
            raise ValueError(f"{where}: {column} is empty")
    protocol = _one_of(where, "protocol", given["protocol"], QUESTIONS)
    for_protocol = f" (protocol {protocol})"
    # absolute asks one question, so it may be left empty
    question = given["question"] or ("hallucinated" if protocol == "absolute" else "")
    question = _one_of(where, "question", question, QUESTIONS[protocol], for_protocol)
    output = _one_of(where, "output", given.get("output") or _HUMAN_OUTPUTS[protocol][0], _HUMAN_OUTPUTS[protocol],
                     for_protocol)
    criteria = {**{name: name for name in CRITERIA.names()}, **STUDY_CRITERIA}
    criterion = _one_of(where, "criterion", given["criterion"], criteria)
    try:
        ratio = float(given["ratio"])
    except ValueError:
        raise ValueError(f"{where}: ratio {given['ratio']!r} is not a number in (0, 1)") from None
    if not 0 < ratio < 1:
        raise ValueError(f"{where}: ratio {given['ratio']!r} is outside (0, 1)")
    label = given["label"] or None
    if label is not None:
        _one_of(where, "label", label, LABELS[protocol], f" (protocol {protocol}; empty: a missing verdict)")
    try:
        task = study_task(given["dataset"])
        variant = study_variant(given["pruned_model"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    stated = {"model": given["model"], "criterion": criteria[criterion], "ratio": ratio}
    for column, value in stated.items():
        if getattr(variant, column) != value:
            raise ValueError(f"{where}: {column} {given[column]!r} disagrees with pruned_model "
                             f"{given['pruned_model']!r}, whose {column} is {getattr(variant, column)!r}")
    return variant, {
        "judge": given["annotator"],
        "judge_kind": "human",
        "protocol": protocol,
        "question": question,
        "task": task,
        "sample_id": given["document_id"],
        "variant_id": variant.id,
        "output": output,
        "label": label,
        "status": "ok" if label is not None else "missing",
    }


def read_human_judgments(path: str | Path) -> ExternalJudgments:
    """One human annotations CSV (README, "Human annotations") as store rows: judge_kind human, an empty
    label missing, raw the row as given; every other defect fails naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: line 1: empty file, expected a header naming {', '.join(_HUMAN_REQUIRED)}") from None
    except csv.Error as err:
        raise ValueError(f"{path}: line 1: not CSV ({err})") from None
    missing = [column for column in _HUMAN_REQUIRED if column not in header]
    unknown = [column for column in header if column not in _HUMAN_REQUIRED + _HUMAN_OPTIONAL]
    twice = sorted({column for column in header if header.count(column) > 1})
    if missing or unknown or twice:
        problems = [f"{label} {', '.join(columns)}" for label, columns in
                    (("missing column(s)", missing), ("unknown column(s)", unknown), ("repeated column(s)", twice))
                    if columns]
        raise ValueError(f"{path}: line 1: {'; '.join(problems)} (required: {', '.join(_HUMAN_REQUIRED)}; "
                         f"optional: {', '.join(_HUMAN_OPTIONAL)})")
    rows: list[dict[str, object]] = []
    variants: list[Variant] = []
    seen: dict[tuple, int] = {}
    line = reader.line_num
    while True:
        start = line + 1  # the record's first line (a quoted cell may span several)
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise ValueError(f"{path}: line {start}: not CSV ({err})") from None
        line = reader.line_num
        if not cells:
            continue  # a blank line
        where = f"{path}: line {start}"
        if len(cells) != len(header):
            raise ValueError(f"{where}: {len(cells)} cells, the header names {len(header)} columns")
        given = {column: cell.strip() for column, cell in zip(header, cells)}
        variant, row = _human_row(where, given)
        key = tuple(row[column] for column in JUDGMENT_KEY)
        if key in seen:
            spelt = {**given, "question": row["question"], "output": row["output"]}
            raise ValueError(f"{where}: repeats line {seen[key]}: one row per ({', '.join(_HUMAN_KEY)}), "
                             f"here {', '.join(str(spelt[column]) for column in _HUMAN_KEY)}")
        seen[key] = start
        variants.append(variant)
        rows.append({**row, "raw": raw_json(dict(zip(header, cells)))})
    if not rows:
        raise ValueError(f"{path}: line 1: a header and no annotation rows below it")
    items = len({(row["task"], row["sample_id"], row["variant_id"]) for row in rows})
    judges = sorted({str(row["judge"]) for row in rows})
    return ExternalJudgments(f"human-{path.stem}", "human-csv", str(path), items, judges, rows,
                             distinct_variants(variants))

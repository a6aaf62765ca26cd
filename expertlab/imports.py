"""Externally produced masks and verdicts -> selection and judgments artifacts, ingested beside expertlab's own.

The first format is the study's release (shared/reference/moe-pruning-reliability, its README):
`<model>-<calibration>-<criterion>-<seed>[-<ratio>]/expert_mask.json`, a JSON list holding the
KEPT expert indices of each MoE layer; no ratio suffix means 0.5. The study's criterion names
map onto the registry (gating -> gate, easyep -> easy_ep).

What the files cannot say is recorded as unknown, never guessed: top-k is null, and layers are
numbered by their position among the MoE layers. The expert count comes from `num_experts` or
is inferred per model from the masks whose kept count must follow the ratio (every criterion but
random: the study's random selector ignored the ratio, so its masks keep N/2 at every ratio;
they are imported as they are, and `variants.kept_per_layer` shows it).

Judgments: the study's released verdicts (evaluation/manual_eval/data/{absolute,relative}/*.json, a
JSON list of items) become one judgments artifact per file, one row per (judge, question, judged
output). A null or absent judge entry or answer is `missing`, a verdict that is not one of the known
answers is `invalid`; neither gets a label.

Human annotations: a CSV file (README, "Human annotations"), one row per (annotator, judged item,
question), becomes one judgments artifact `human-<file stem>` with rater_kind human. An empty label is
`missing`; anything else the file cannot say unambiguously (an unknown label, protocol, question,
output or criterion, a ratio outside (0, 1), a missing column, a duplicate row) fails naming the file
and line, so no annotation is ever guessed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from expertlab.criteria import CRITERIA, kept_count
from expertlab.io import atomic_dir, write_json
from expertlab.judgments import LABELS, QUESTIONS

MASK_FILE = "expert_mask.json"
STUDY_CRITERIA = {"random": "random", "frequency": "frequency", "gating": "gate", "ean": "ean", "easyep": "easy_ep", "reap": "reap"}
_STUDY_NAME = re.compile(
    r"^(?P<model>.+)-(?P<calibration>[A-Za-z0-9_]+)-(?P<criterion>" + "|".join(STUDY_CRITERIA) + r")"
    r"-(?P<seed>\d+)(?:-(?P<ratio>\d*\.\d+))?$"
)
IMPORTED = "imported"  # variants.origin of imported masks


@dataclass(frozen=True)
class ExternalMask:
    model: str
    calibration: str
    seed: int
    criterion: str  # a CRITERIA name
    ratio: float
    kept: list[list[int]]
    source: str  # the file it came from

    @property
    def kept_per_layer(self) -> int:
        return len(self.kept[0])


def find_mask_files(paths: Iterable[str | Path]) -> list[Path]:
    """`expert_mask.json` files: given directly, in a given directory, or one level below it."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append(given)
        elif (given / MASK_FILE).is_file():
            found.append(given / MASK_FILE)
        elif given.is_dir():
            below = sorted(given.glob(f"*/{MASK_FILE}"))
            if not below:
                raise FileNotFoundError(f"{given}: no {MASK_FILE} in it or in its subdirectories")
            found += below
        else:
            raise FileNotFoundError(f"no such file or directory: {given}")
    return sorted(set(found))


def read_study_mask(path: Path) -> ExternalMask:
    """One released mask; its identity comes from its directory's name."""
    match = _STUDY_NAME.match(path.parent.name)
    if not match:
        raise ValueError(
            f"{path}: directory name {path.parent.name!r} is not <model>-<calibration>-<criterion>-<seed>[-<ratio>] "
            f"with a criterion among {', '.join(STUDY_CRITERIA)}"
        )
    try:
        kept = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(kept, list) or not kept or not all(isinstance(layer, list) and layer for layer in kept):
        raise ValueError(f"{path}: expected a non-empty list of kept-expert lists, one per MoE layer")
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for layer in kept for e in layer):
        raise ValueError(f"{path}: expert indices must be non-negative integers")
    if len({len(layer) for layer in kept}) != 1 or any(len(set(layer)) != len(layer) for layer in kept):
        raise ValueError(f"{path}: every layer must keep the same number of distinct experts")
    ratio = float(match["ratio"]) if match["ratio"] else 0.5
    if not 0 < ratio < 1:
        raise ValueError(f"{path}: ratio {ratio} is outside (0, 1)")
    return ExternalMask(
        model=match["model"],
        calibration=match["calibration"],
        seed=int(match["seed"]),
        criterion=STUDY_CRITERIA[match["criterion"]],
        ratio=ratio,
        kept=[sorted(layer) for layer in kept],
        source=str(path),
    )


def infer_num_experts(masks: Sequence[ExternalMask], given: Mapping[str, int] = {}) -> dict[str, int]:
    """Experts per layer of each model: given, or the one count every ratio-following mask agrees on."""
    counts: dict[str, int] = {}
    for model in sorted({mask.model for mask in masks}):
        mine = [mask for mask in masks if mask.model == model]
        largest = max(max(layer) for mask in mine for layer in mask.kept)
        if model in given:
            count = given[model]
        else:
            following = [mask for mask in mine if mask.criterion != "random"]
            # kept = round((1 - p) N) bounds N by (kept + 1) / (1 - p)
            bound = max((math.ceil((m.kept_per_layer + 1) / (1 - m.ratio)) for m in following), default=0)
            agreed = [
                n for n in range(largest + 1, bound + 1)
                if all(kept_count(n, m.ratio) == m.kept_per_layer for m in following)
            ]
            if len(agreed) != 1:
                found = f" (could be {', '.join(map(str, agreed))})" if agreed else ""
                raise ValueError(
                    f"cannot infer the expert count of {model!r} from its masks{found}; pass --num-experts {model}=N"
                )
            count = agreed[0]
        if largest >= count:
            raise ValueError(f"{model}: a mask keeps expert {largest}, beyond the expert count {count}")
        counts[model] = count
    return counts


def write_selections(masks: Sequence[ExternalMask], num_experts: Mapping[str, int], out_dir: str | Path) -> list[Path]:
    """One selection artifact per (model, calibration, seed) under out_dir/<model>/<calibration>/<seed>/."""
    import pandas as pd

    from expertlab.store.artifacts import SELECTION_COLUMNS

    groups: dict[tuple[str, str, int], list[ExternalMask]] = defaultdict(list)
    for mask in masks:
        groups[(mask.model, mask.calibration, mask.seed)].append(mask)
    written = []
    for (model, calibration, seed), members in sorted(groups.items()):
        layers = {len(mask.kept) for mask in members}
        if len(layers) != 1:
            raise ValueError(f"{model}: masks disagree on the number of MoE layers ({sorted(layers)})")
        entries, seen = [], set()
        for mask in sorted(members, key=lambda m: (m.criterion, m.ratio)):
            if (mask.criterion, mask.ratio) in seen:
                raise ValueError(f"two masks for {model} {calibration} seed {seed} {mask.criterion} {mask.ratio}")
            seen.add((mask.criterion, mask.ratio))
            entries.append(
                {
                    "criterion": mask.criterion,
                    "ratio": mask.ratio,
                    "file": f"{mask.criterion}-{mask.ratio}.json",
                    "kept_per_layer": mask.kept_per_layer,
                    "expected_kept_per_layer": kept_count(num_experts[model], mask.ratio),
                    "top_k": None,
                    "source": mask.source,
                }
            )
        target = Path(out_dir) / model / calibration / str(seed)
        with atomic_dir(target, owner="import-masks", inputs=[m.source for m in members]) as tmp:
            for mask, entry in zip(sorted(members, key=lambda m: (m.criterion, m.ratio)), entries):
                write_json(tmp / entry["file"], mask.kept)
            empty = pd.DataFrame({name: pd.Series(dtype="int32" if kind == "integer" else "float64" if kind == "double" else "object")
                                  for name, kind in SELECTION_COLUMNS.items()})
            empty.to_parquet(tmp / "scores.parquet", index=False)
            write_json(
                tmp / "meta.json",
                {
                    "kind": "selection",
                    "origin": IMPORTED,
                    "model": model,
                    "calibration": calibration,
                    "seed": seed,
                    "num_experts": num_experts[model],
                    "top_k": None,
                    "moe_layers": list(range(layers.pop())),  # positions among the MoE layers
                    "masks": entries,
                },
            )
        written.append(target)
    return written


def check_criteria() -> None:
    """The study's criterion names must map onto registered criteria."""
    unknown = sorted(set(STUDY_CRITERIA.values()) - set(CRITERIA.names()))
    if unknown:
        raise ValueError(f"study criteria without a registered criterion: {unknown}")


# --- judgments -----------------------------------------------------------------------------------

JUDGMENTS_FILE = "judgments.parquet"
_STUDY_ITEM_KEYS = {
    "dataset": str, "document_id": str, "generator_model": str, "pruning_method": str,
    "pruning_ratio": (int, float), "source_model_name": str, "pruned_model_name": str,
}
_ABSOLUTE_OUTPUTS = {"pruned": "pruned_model_absolute_judgement", "source": "source_model_absolute_judgement"}
# DeepEval 3.x: score 1.0 = hallucinated (success false), 0.0 = faithful (success true)
_ABSOLUTE_SCORES = {1.0: ("hallucinated", False), 0.0: ("faithful", True)}
_RELATIVE_ANSWERS = {"pruned": "pruned", "vanilla": "source"}  # the study calls the source model "vanilla"
# the primary key of the store's judgments table
JUDGMENT_KEY = ("rater", "protocol", "question", "dataset", "document_id", "pruned_model", "output")


@dataclass(frozen=True)
class ExternalJudgments:
    name: str  # the artifact's name: study-absolute-, study-relative- or human-<file stem>
    format: str  # study-absolute, study-relative or human-csv
    source: str  # the file it came from
    items: int  # judged items: (dataset, document, pruned model)
    raters: list[str]
    rows: list[dict[str, object]]  # the columns of store.artifacts.JUDGMENT_COLUMNS


def find_judgment_files(paths: Iterable[str | Path]) -> list[Path]:
    """Verdict files: given directly, or every *.json (the study's) and *.csv (human annotations) below a directory."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append(given)
        elif given.is_dir():
            below = sorted(path for path in given.rglob("*")
                           if path.is_file() and path.suffix.lower() in (".json", ".csv"))
            if not below:
                raise FileNotFoundError(f"{given}: no .json or .csv file in it or below it")
            found += below
        else:
            raise FileNotFoundError(f"no such file or directory: {given}")
    return sorted(set(found))


def _study_format(path: Path, data: object) -> str:
    """study-absolute or study-relative, recognised by the keys every item carries."""
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        if all("pruned_model_absolute_judgement" in item for item in data):
            return "study-absolute"
        if all("judge_model_answers" in item for item in data):
            return "study-relative"
    raise ValueError(
        f"{path}: not the study's released absolute or relative judgments (expected a non-empty JSON list of "
        "items, each with pruned_model_absolute_judgement or each with judge_model_answers)"
    )


def _study_item(path: Path, number: int, item: dict) -> dict[str, object]:
    """The judged item's identity columns, checked."""
    where = f"{path}: item {number}"
    for key, types in _STUDY_ITEM_KEYS.items():
        value = item.get(key)
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"{where}: {key!r} is {value!r}, expected {getattr(types, '__name__', 'a number')}")
    if item["pruning_method"] not in STUDY_CRITERIA:
        known = ", ".join(STUDY_CRITERIA)
        raise ValueError(f"{where}: pruning_method {item['pruning_method']!r} is not one of {known}")
    if not 0 < item["pruning_ratio"] < 1:
        raise ValueError(f"{where}: pruning_ratio {item['pruning_ratio']} is outside (0, 1)")
    return {
        "dataset": item["dataset"],
        "document_id": item["document_id"],
        "model": item["source_model_name"],
        "pruned_model": item["pruned_model_name"],
        "generator_model": item["generator_model"],
        "criterion": STUDY_CRITERIA[item["pruning_method"]],
        "ratio": float(item["pruning_ratio"]),
    }


def _judge_entries(path: Path, number: int, item: dict, key: str) -> dict:
    entries = item[key]
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: item {number}: {key!r} must be an object of judge entries or null")
    return entries


def _raw(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _absolute_verdict(verdict: object) -> tuple[str | None, str]:
    """(label, status) of one {score, success, reason} entry; a score other than 0 or 1, or a success
    that contradicts it, is invalid rather than rounded."""
    if verdict is None:
        return None, "missing"
    if not isinstance(verdict, dict):
        return None, "invalid"
    score, success = verdict.get("score"), verdict.get("success")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or float(score) not in _ABSOLUTE_SCORES:
        return None, "invalid"
    label, expected_success = _ABSOLUTE_SCORES[float(score)]
    if success is not None and success is not expected_success:
        return None, "invalid"
    return label, "ok"


def _relative_verdicts(entry: object) -> dict[str, tuple[str | None, str]]:
    """(label, status) per question from the judge's `resolved_answers`.

    `mapping` ({"A": ..., "B": ...}) is not used: in the release it agrees with raw_answers ->
    resolved_answers for only 120 of the 360 answers, so it cannot be what resolved them; the
    resolved answers are the study's verdicts (and reproduce its Table 1).
    """
    questions = QUESTIONS["relative"]
    if entry is None:
        return {question: (None, "missing") for question in questions}
    resolved = entry.get("resolved_answers") if isinstance(entry, dict) else None
    if not isinstance(resolved, dict):
        return {question: (None, "missing" if isinstance(entry, dict) and resolved is None else "invalid")
                for question in questions}
    verdicts = {}
    for question in questions:
        answer = resolved.get(question)
        if answer is None:
            verdicts[question] = (None, "missing")
        elif answer in _RELATIVE_ANSWERS:
            verdicts[question] = (_RELATIVE_ANSWERS[answer], "ok")
        else:
            verdicts[question] = (None, "invalid")
    return verdicts


def read_study_judgments(path: str | Path) -> ExternalJudgments:
    """One released judgments file (absolute or relative, recognised by its items' keys) as store rows.

    Every judge named anywhere in the file gets a row for every item; an item without its entry has
    it missing.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    fmt = _study_format(path, data)
    keys = list(_ABSOLUTE_OUTPUTS.values()) if fmt == "study-absolute" else ["judge_model_answers"]
    raters = sorted({rater for number, item in enumerate(data) for key in keys
                     for rater in _judge_entries(path, number, item, key)})
    if not raters:
        raise ValueError(f"{path}: no judge gives a verdict on any item")
    rows: list[dict[str, object]] = []
    for number, item in enumerate(data):
        identity = _study_item(path, number, item)
        for rater in raters:
            common = {"rater": rater, "rater_kind": "llm"}  # the release holds the three LLM judges only
            if fmt == "study-absolute":
                for output, key in _ABSOLUTE_OUTPUTS.items():
                    verdict = _judge_entries(path, number, item, key).get(rater)
                    label, status = _absolute_verdict(verdict)
                    rows.append({**common, "protocol": "absolute", "question": "hallucinated", **identity,
                                 "output": output, "label": label, "status": status, "raw": _raw(verdict)})
            else:
                entry = _judge_entries(path, number, item, "judge_model_answers").get(rater)
                for question, (label, status) in _relative_verdicts(entry).items():
                    rows.append({**common, "protocol": "relative", "question": question, **identity,
                                 "output": "pair", "label": label, "status": status, "raw": _raw(entry)})
    return ExternalJudgments(f"{fmt}-{path.stem}", fmt, str(path), len(data), raters, rows)


_HUMAN_REQUIRED = ("annotator", "protocol", "question", "dataset", "document_id", "model", "pruned_model",
                   "criterion", "ratio", "label")
_HUMAN_OPTIONAL = ("output", "generator_model")
_HUMAN_OUTPUTS = {"absolute": ("pruned", "source"), "relative": ("pair",)}  # the first is the default


def _one_of(where: str, column: str, value: str, allowed: Iterable[str], context: str = "") -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{where}: {column} {value!r} is not one of {', '.join(allowed)}{context}")
    return value


def _human_row(where: str, given: dict[str, str]) -> dict[str, object]:
    """One CSV row (cells stripped) as a store row; raises naming `where` (file: line N) on anything unknown."""
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
    return {
        "rater": given["annotator"],
        "rater_kind": "human",
        "protocol": protocol,
        "question": question,
        "dataset": given["dataset"],
        "document_id": given["document_id"],
        "model": given["model"],
        "pruned_model": given["pruned_model"],
        "generator_model": given.get("generator_model") or "",
        "criterion": criteria[criterion],
        "ratio": ratio,
        "output": output,
        "label": label,
        "status": "ok" if label is not None else "missing",
    }


def read_human_judgments(path: str | Path) -> ExternalJudgments:
    """One human annotations CSV (README, "Human annotations") as store rows: rater_kind human, an empty
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
        row = _human_row(where, {column: cell.strip() for column, cell in zip(header, cells)})
        key = tuple(row[column] for column in JUDGMENT_KEY)
        if key in seen:
            raise ValueError(f"{where}: repeats line {seen[key]}: one row per (annotator, "
                             f"{', '.join(JUDGMENT_KEY[1:])}), here {', '.join(map(str, key))}")
        seen[key] = start
        rows.append({**row, "raw": _raw(dict(zip(header, cells)))})
    if not rows:
        raise ValueError(f"{path}: line 1: a header and no annotation rows below it")
    items = len({(row["dataset"], row["document_id"], row["pruned_model"]) for row in rows})
    raters = sorted({str(row["rater"]) for row in rows})
    return ExternalJudgments(f"human-{path.stem}", "human-csv", str(path), items, raters, rows)


def read_judgments(path: str | Path) -> ExternalJudgments:
    """A verdict file by its suffix: .csv human annotations, otherwise the study's released JSON."""
    path = Path(path)
    return read_human_judgments(path) if path.suffix.lower() == ".csv" else read_study_judgments(path)


def write_judgments(imported: Sequence[ExternalJudgments], out_dir: str | Path) -> list[Path]:
    """One judgments artifact per file under out_dir/judgments/<name>/ (meta.json + judgments.parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from expertlab.store.artifacts import JUDGMENT_COLUMNS

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
    types = {"double": pa.float64()}
    schema = pa.schema([(name, types.get(sql_type, pa.string())) for name, sql_type in JUDGMENT_COLUMNS.items()])
    written = []
    for judgments in imported:
        target = Path(out_dir) / "judgments" / judgments.name
        with atomic_dir(target, owner="import-judgments", inputs=[judgments.source]) as tmp:
            pq.write_table(pa.Table.from_pylist(judgments.rows, schema=schema), tmp / JUDGMENTS_FILE)
            write_json(
                tmp / "meta.json",
                {
                    "kind": "judgments",
                    "name": judgments.name,
                    "format": judgments.format,
                    "source": judgments.source,
                    "items": judgments.items,
                    "raters": judgments.raters,
                },
            )
        written.append(target)
    return written

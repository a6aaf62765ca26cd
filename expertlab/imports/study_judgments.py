"""The study's released verdicts (evaluation/manual_eval/data/{absolute,relative}/*.json) -> ExternalJudgments.

Each file, a JSON list of items, becomes one judgments artifact, one row per (judge, question,
judged output). A null or absent judge entry or answer is `missing`, a verdict that is not one of
the known answers is `invalid`; neither gets a label.

An item's names become the store's (expertlab.imports.study): its pruned model the variant it names
(whose model, criterion and ratio must be the item's source_model_name, pruning_method and
pruning_ratio), its dataset the task that mirrors it; its document_id is kept as the sample id. Its
generator_model, the family label the release gives each source model (Qwen3.6 is labelled Qwen3.5),
is not stored: it is no part of the variant and no query reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from expertlab.imports.study import STUDY_CRITERIA, study_task, study_variant
from expertlab.imports.verdicts import ExternalJudgments, distinct_variants, raw_json
from expertlab.judgments import QUESTIONS
from expertlab.variants import Variant

_STUDY_ITEM_KEYS = {
    "dataset": str, "document_id": str, "generator_model": str, "pruning_method": str,
    "pruning_ratio": (int, float), "source_model_name": str, "pruned_model_name": str,
}
_ABSOLUTE_OUTPUTS = {"pruned": "pruned_model_absolute_judgement", "source": "source_model_absolute_judgement"}
# DeepEval 3.x: score 1.0 = hallucinated (success false), 0.0 = faithful (success true)
_ABSOLUTE_SCORES = {1.0: ("hallucinated", False), 0.0: ("faithful", True)}
_RELATIVE_ANSWERS = {"pruned": "pruned", "vanilla": "source"}  # the study calls the source model "vanilla"


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


def _study_item(path: Path, number: int, item: dict) -> tuple[Variant, dict[str, object]]:
    """The judged variant and the item's identity columns, checked."""
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
    try:
        task = study_task(item["dataset"])
        variant = study_variant(item["pruned_model_name"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    # the item states the variant's fields again: they must be the ones its pruned model's name gives
    stated = {"source_model_name": ("model", item["source_model_name"]),
              "pruning_method": ("criterion", STUDY_CRITERIA[item["pruning_method"]]),
              "pruning_ratio": ("ratio", float(item["pruning_ratio"]))}
    for key, (field, value) in stated.items():
        if getattr(variant, field) != value:
            raise ValueError(f"{where}: {key} {item[key]!r} disagrees with pruned_model_name "
                             f"{item['pruned_model_name']!r}, whose {field} is {getattr(variant, field)!r}")
    return variant, {"task": task, "sample_id": item["document_id"], "variant_id": variant.id}


def _judge_entries(path: Path, number: int, item: dict, key: str) -> dict:
    entries = item[key]
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: item {number}: {key!r} must be an object of judge entries or null")
    return entries



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
    judges = sorted({judge for number, item in enumerate(data) for key in keys
                     for judge in _judge_entries(path, number, item, key)})
    if not judges:
        raise ValueError(f"{path}: no judge gives a verdict on any item")
    rows: list[dict[str, object]] = []
    variants: list[Variant] = []
    for number, item in enumerate(data):
        variant, identity = _study_item(path, number, item)
        variants.append(variant)
        for judge in judges:
            common = {"judge": judge, "judge_kind": "llm"}  # the release holds the three LLM judges only
            if fmt == "study-absolute":
                for output, key in _ABSOLUTE_OUTPUTS.items():
                    verdict = _judge_entries(path, number, item, key).get(judge)
                    label, status = _absolute_verdict(verdict)
                    rows.append({**common, "protocol": "absolute", "question": "hallucinated", **identity,
                                 "output": output, "label": label, "status": status, "raw": raw_json(verdict)})
            else:
                entry = _judge_entries(path, number, item, "judge_model_answers").get(judge)
                for question, (label, status) in _relative_verdicts(entry).items():
                    rows.append({**common, "protocol": "relative", "question": question, **identity,
                                 "output": "pair", "label": label, "status": status, "raw": raw_json(entry)})
    return ExternalJudgments(f"{fmt}-{path.stem}", fmt, str(path), len(data), judges, rows, distinct_variants(variants))

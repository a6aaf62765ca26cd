"""lm-eval's per-sample results in generation rows (IFEval, GSM8K, HumanEval, MMLU, MMLU-Pro) -> the studies' metrics.

Rows of tasks run by lm-eval carry `scores` and `details` keyed "<lm-eval metric>,<filter>", as lm-eval
names them in its results (expertlab.lmeval). Per-sample metrics read a score; corpus metrics aggregate
where lm-eval's aggregate is not the mean of per-sample values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from expertlab.errors import UnknownName
from expertlab.metrics import Row, corpus_metric, metric


def lm_eval_value(row: Row, key: str, field: str = "scores") -> Any:
    """row[field][key], or a KeyError saying which values the row has (e.g. a row of the generate runner)."""
    values = row.get(field) or {}
    if key not in values:
        have = ", ".join(sorted(values)) or "none"
        sample = row.get("sample_id")
        raise UnknownName(f"sample {sample!r}: no lm-eval {field[:-1]} {key!r} (has: {have}); was it run by lm-eval?")
    return values[key]


def _score(key: str):  # noqa: ANN202
    def read(output: str, row: Row) -> float:
        return float(lm_eval_value(row, key))

    return read


metric("ifeval_prompt_strict")(_score("prompt_level_strict_acc,none"))
metric("ifeval_prompt_loose")(_score("prompt_level_loose_acc,none"))
metric("gsm8k_strict_match")(_score("exact_match,strict-match"))
metric("gsm8k_flexible_extract")(_score("exact_match,flexible-extract"))
metric("pass_at_1")(_score("pass_at_1,create_test"))
metric("accuracy_lm_eval")(_score("acc,none"))
metric("accuracy_norm_lm_eval")(_score("acc_norm,none"))
# MMLU-Pro: exact match of the letter lm-eval's custom-extract filter takes from "answer is (X)" ("[invalid]" when none).
metric("mmlu_pro_accuracy")(_score("exact_match,custom-extract"))


def _instruction_accuracy(key: str):  # noqa: ANN202
    def score(outputs: Sequence[str], rows: Sequence[Row], options: Mapping[str, Any]) -> float:
        """Share of followed instructions over all instructions of all prompts (lm-eval's agg_inst_level_acc)."""
        followed = [bool(value) for row in rows for value in lm_eval_value(row, key, "details")]
        if not followed:
            raise ValueError("instruction-level accuracy of no instructions")
        return sum(followed) / len(followed)

    return score


corpus_metric("ifeval_instruction_strict")(_instruction_accuracy("inst_level_strict_acc,none"))
corpus_metric("ifeval_instruction_loose")(_instruction_accuracy("inst_level_loose_acc,none"))


@corpus_metric("mmlu_macro_accuracy")
def mmlu_macro_accuracy(outputs: Sequence[str], rows: Sequence[Row], options: Mapping[str, Any]) -> float:
    """Mean over subjects of each subject's accuracy (the study's eval_mmlu.py reports this macro average)."""
    by_subject: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_subject[row["doc"]["subject"]].append(float(lm_eval_value(row, "acc,none")))
    if not by_subject:
        raise ValueError("macro accuracy of no samples")
    return sum(sum(values) / len(values) for values in by_subject.values()) / len(by_subject)

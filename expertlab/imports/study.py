"""The study's release (shared/reference/moe-pruning-reliability) names things its own way: its names -> the store's.

Criteria (gating -> gate, easyep -> easy_ep), datasets (RCT -> rct_summary) and pruned models
(`<model>-<calibration>-<criterion>-<seed>[-<ratio>]`, no ratio suffix meaning 0.5) are translated here
only, so that imported masks and imported verdicts name the same variants.
"""

from __future__ import annotations

import re

from expertlab.criteria import CRITERIA
from expertlab.variants import Variant

STUDY_CRITERIA = {"random": "random", "frequency": "frequency", "gating": "gate", "ean": "ean", "easyep": "easy_ep", "reap": "reap"}
# the release's datasets -> the tasks that mirror them (expertlab/tasks/summaries.py)
STUDY_TASKS = {"RCT": "rct_summary", "Multi-X-Science": "multixscience_summary"}
STUDY_DEFAULT_RATIO = 0.5  # a pruned model name without a ratio suffix
PRUNED_MODEL_NAME = "<model>-<calibration>-<criterion>-<seed>[-<ratio>]"
_PRUNED_MODEL = re.compile(
    r"^(?P<model>.+)-(?P<calibration>[A-Za-z0-9_]+)-(?P<criterion>" + "|".join(STUDY_CRITERIA) + r")"
    r"-(?P<seed>\d+)(?:-(?P<ratio>\d*\.\d+))?$"
)


def study_variant(name: str) -> Variant:
    """The variant a released pruned model name names; a name that names none raises ValueError quoting it."""
    match = _PRUNED_MODEL.match(name)
    if not match:
        raise ValueError(f"{name!r} is not {PRUNED_MODEL_NAME} with a criterion among {', '.join(STUDY_CRITERIA)}")
    ratio = float(match["ratio"]) if match["ratio"] else STUDY_DEFAULT_RATIO
    if not 0 < ratio < 1:
        raise ValueError(f"{name!r}: ratio {ratio} is outside (0, 1)")
    return Variant(
        model=match["model"],
        calibration=match["calibration"],
        seed=int(match["seed"]),
        criterion=STUDY_CRITERIA[match["criterion"]],
        ratio=ratio,
    )


def study_task(dataset: str) -> str:
    """The task that mirrors a released dataset; another name raises ValueError listing the known ones."""
    if dataset not in STUDY_TASKS:
        raise ValueError(f"dataset {dataset!r} is not one of {', '.join(STUDY_TASKS)}")
    return STUDY_TASKS[dataset]


def check_criteria() -> None:
    """The study's criterion names must map onto registered criteria."""
    unknown = sorted(set(STUDY_CRITERIA.values()) - set(CRITERIA.names()))
    if unknown:
        raise ValueError(f"study criteria without a registered criterion: {unknown}")


def check_tasks() -> None:
    """The study's datasets must map onto registered tasks."""
    from expertlab.tasks import TASKS

    unknown = sorted(set(STUDY_TASKS.values()) - set(TASKS.names()))
    if unknown:
        raise ValueError(f"study datasets without a registered task: {unknown}")

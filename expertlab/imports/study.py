"""The study's release (shared/reference/moe-pruning-reliability) names criteria its own way: study name -> registered criterion."""

from __future__ import annotations

from expertlab.criteria import CRITERIA

STUDY_CRITERIA = {"random": "random", "frequency": "frequency", "gating": "gate", "ean": "ean", "easyep": "easy_ep", "reap": "reap"}


def check_criteria() -> None:
    """The study's criterion names must map onto registered criteria."""
    unknown = sorted(set(STUDY_CRITERIA.values()) - set(CRITERIA.names()))
    if unknown:
        raise ValueError(f"study criteria without a registered criterion: {unknown}")

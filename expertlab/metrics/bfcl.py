"""BFCL generations -> BFCL's own per-entry verdict (expertlab.tasks.bfcl.evaluate), one value per output."""

from __future__ import annotations

from typing import Any

from expertlab.metrics import metric
from expertlab.tasks.bfcl import evaluate


@metric("bfcl_accuracy")
def bfcl_accuracy(output: str, item: dict[str, Any]) -> float:
    """1.0 when BFCL's evaluator of the item's category counts the output correct, else 0.0: for the AST categories
    the output decodes to function calls that pass ast_checker against the possible answers; for irrelevance and
    live_irrelevance no call decodes; for live_relevance a non-empty call does. Its mean over a task is BFCL's accuracy."""
    return float(bool(evaluate(output, item["doc"])["valid"]))

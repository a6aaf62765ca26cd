"""One imported verdict file as store rows (ExternalJudgments), and the key a verdict is unique on."""

from __future__ import annotations

import json
from dataclasses import dataclass

# the primary key of the store's judgments table
JUDGMENT_KEY = ("rater", "protocol", "question", "dataset", "document_id", "pruned_model", "output")


@dataclass(frozen=True)
class ExternalJudgments:
    name: str  # the artifact's name: study-absolute-, study-relative- or human-<file stem>
    format: str  # study-absolute, study-relative or human-csv
    source: str  # the file it came from
    items: int  # judged items: (dataset, document, pruned model)
    raters: list[str]
    rows: list[dict[str, object]]  # the columns of records.JUDGMENTS


def raw_json(value: object) -> str:
    """A verdict as the file gave it (a JSON entry, a CSV row), for the `raw` column."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)

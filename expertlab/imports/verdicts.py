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
    rows: list[dict[str, object]]  # the columns of store.artifacts.JUDGMENT_COLUMNS

    def summary(self) -> str:
        """What the file held, in one line: its format and protocols, items, raters, verdicts missing and invalid."""
        statuses = {status: sum(row["status"] == status for row in self.rows) for status in ("missing", "invalid")}
        kinds = sorted({str(row["rater_kind"]) for row in self.rows})
        protocols = sorted({str(row["protocol"]) for row in self.rows})
        return (
            f"{self.source}: {self.format} ({', '.join(protocols)}), {self.items} items, "
            f"{len(self.raters)} {'/'.join(kinds)} raters, {len(self.rows)} verdicts "
            f"({statuses['missing']} missing, {statuses['invalid']} invalid)"
        )


def raw_json(value: object) -> str:
    """A verdict as the file gave it (a JSON entry, a CSV row), for the `raw` column."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)

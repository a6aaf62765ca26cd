"""One imported verdict file as store rows (ExternalJudgments), and the key a verdict is unique on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from expertlab.imports import IMPORTED
from expertlab.records import SelectedVariant
from expertlab.variants import Variant

# the primary key of the store's judgments table
JUDGMENT_KEY = ("judge", "protocol", "question", "task", "sample_id", "variant_id", "output")


@dataclass(frozen=True)
class ExternalJudgments:
    name: str  # the artifact's name: study-absolute-, study-relative- or human-<file stem>
    format: str  # study-absolute, study-relative or human-csv
    source: str  # the file it came from
    items: int  # judged items: (task, sample, variant)
    judges: list[str]
    rows: list[dict[str, object]]  # the columns of records.JUDGMENTS
    variants: list[Variant]  # the judged variants, one each, by id: every row's variant_id is one of theirs

    def variant_records(self) -> list[SelectedVariant]:
        """The judged variants as the artifact's meta.json lists them: imported, expert counts unknown."""
        return [SelectedVariant(**variant.record(None, None), origin=IMPORTED) for variant in self.variants]

    def summary(self) -> str:
        """What the file held, in one line: its format and protocols, items, judges, verdicts missing and invalid."""
        statuses = {status: sum(row["status"] == status for row in self.rows) for status in ("missing", "invalid")}
        kinds = sorted({str(row["judge_kind"]) for row in self.rows})
        protocols = sorted({str(row["protocol"]) for row in self.rows})
        return (
            f"{self.source}: {self.format} ({', '.join(protocols)}), {self.items} items, "
            f"{len(self.judges)} {'/'.join(kinds)} judges, {len(self.rows)} verdicts "
            f"({statuses['missing']} missing, {statuses['invalid']} invalid)"
        )


def distinct_variants(variants: list[Variant]) -> list[Variant]:
    """Each variant once, ordered by id."""
    return sorted({variant.id: variant for variant in variants}.values(), key=lambda variant: variant.id)


def raw_json(value: object) -> str:
    """A verdict as the file gave it (a JSON entry, a CSV row), for the `raw` column."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)

"""schema/expertlab.sql + the registries -> rendered DDL, its fingerprint, and new stores created from it.

Migration policy: the store is derived, so a store whose fingerprint differs from the current one
(schema, ingest code or task registry changed) is rebuilt from scratch by the next ingest rather than
altered in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, get_args

import duckdb

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema" / "expertlab.sql"
# Source files whose behaviour shapes the stored rows: editing one rebuilds the store at next ingest.
_INGEST_SOURCES = ("store/artifacts.py", "store/ingest.py", "store/schema.py", "records.py")
# {{ name }}: a vocabulary as a quoted list; {{ columns: name }}: a column map's columns (expertlab.records)
_PLACEHOLDER = re.compile(r"\{\{\s*(?:(columns):\s*)?(\w+)\s*\}\}")


def vocabularies() -> dict[str, list[str]]:
    """The closed vocabularies the schema's ENUM types take, each read from its registry."""
    from expertlab import judgments
    from expertlab.criteria import CRITERIA
    from expertlab.metrics import MetricLevel
    from expertlab.store.artifacts import KINDS
    from expertlab.tasks import Aspect, Domain, Kind

    return {
        "criterion": CRITERIA.names(),
        "domain": list(get_args(Domain)),
        "aspect": list(get_args(Aspect)),
        "task_kind": list(get_args(Kind)),
        "artifact_kind": KINDS.names(),
        "metric_level": list(get_args(MetricLevel)),
        "protocol": list(get_args(judgments.Protocol)),
        "judge_kind": list(get_args(judgments.JudgeKind)),
        "judgment_question": judgments.question_names(),
        "judged_output": list(get_args(judgments.JudgedOutput)),
        "judgment_label": judgments.label_names(),
        "judgment_status": list(get_args(judgments.VerdictStatus)),
    }


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_ddl(text: str | None = None, values: dict[str, list[str]] | None = None) -> str:
    """The schema file with every `{{ name }}` replaced by its vocabulary as a quoted SQL list."""
    text = SCHEMA_FILE.read_text() if text is None else text
    values = vocabularies() if values is None else values

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if match.group(1):
            from expertlab.records import COLUMNS

            if name not in COLUMNS:
                raise ValueError(f"{SCHEMA_FILE}: {COLUMNS.unknown_message(name)}")
            return COLUMNS[name].ddl()
        if name not in values:
            raise ValueError(f"{SCHEMA_FILE}: unknown placeholder {{{{ {name} }}}}; known: {', '.join(values)}")
        if not values[name]:
            raise ValueError(f"{SCHEMA_FILE}: vocabulary {name!r} is empty")
        return ", ".join(_quote(v) for v in values[name])

    return _PLACEHOLDER.sub(fill, text)


def task_rows() -> list[dict[str, Any]]:
    """The `tasks` table: one row per registered task, in registry order."""
    from expertlab.tasks import TASKS

    return [
        {
            "task": name,
            "domain": task.domain,
            "aspect": task.aspect,
            "kind": task.kind,
            "metrics": list(task.metrics),
            "primary_metric": task.primary_metric,
            "max_new_tokens": task.max_new_tokens,
            "max_model_len": task.max_model_len,
            "description": task.description,
            "source": task.source,
        }
        for name, task in TASKS.items()
    ]


def fingerprint(ddl: str) -> str:
    """sha256 of everything a store's rows depend on besides the artifacts themselves."""
    digest = hashlib.sha256(ddl.encode())
    here = Path(__file__).resolve().parents[1]
    for name in _INGEST_SOURCES:
        digest.update(b"\0" + name.encode() + b"\0" + (here / name).read_bytes())
    digest.update(b"\0tasks\0" + json.dumps(task_rows(), sort_keys=True).encode())
    return digest.hexdigest()


def create_store(path: str | Path, ddl: str, store_fingerprint: str) -> None:
    """A new store file at `path` holding the empty schema and its fingerprint (the file must not exist)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"store already exists: {path}")
    con = duckdb.connect(str(path))
    try:
        con.begin()
        con.execute(ddl)
        con.execute("insert into store_schema values (?, ?)", [store_fingerprint, ddl])
        con.commit()
    finally:
        con.close()


def stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    """The fingerprint a store was built with; None for a file that is not an expertlab store."""
    try:
        row = con.execute("select fingerprint from store_schema").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None

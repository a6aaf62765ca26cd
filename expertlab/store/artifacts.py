"""Artifact directories (meta.json + data files) -> checked, hashed `Artifact`s; per-kind load and unload.

One registry entry per artifact kind (the `kind` of meta.json): its record type, its identity, the files
it reads, how its rows are loaded, how they are deleted again and which variants it names. Adding an
artifact kind is one entry here, its record and column maps in expertlab/records.py and its tables in
schema/expertlab.sql. Rows are inserted by column name, with the types of the column maps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from expertlab import records
from expertlab.records import (
    ActivationsMeta,
    EvaluationMeta,
    ExpertSamplesMeta,
    ExpertSelectionsMeta,
    ExplanationsMeta,
    PredictionsMeta,
    GenerationsMeta,
    JudgmentsMeta,
    ObservationMeta,
    Record,
    ScoresMeta,
    SelectionMeta,
    VariantRecord,
    parse_meta,
)
from expertlab.registry import Registry

Meta = dict[str, Any]
Connection = duckdb.DuckDBPyConnection

@dataclass(frozen=True)
class Artifact:
    """One artifact directory, read and hashed but not loaded."""

    kind: str
    identity: str
    path: Path
    meta: Meta  # the meta.json as written
    record: Any  # the same, checked: its kind's record type
    files: tuple[str, ...]  # names relative to `path` that the loader reads, sorted
    content_hash: str


@dataclass(frozen=True)
class ArtifactKind:
    record: type[Record]  # the meta.json's type
    identity: Callable[[Any], str]  # the artifact's identity, from its record
    files: Callable[[Any], list[str]]  # data files read besides meta.json
    load: Callable[[Connection, Artifact], None]
    unload: Callable[[Connection, str, Any], None]  # delete what `load` inserted, given identity and record
    variants: Callable[[Any], list[VariantRecord]]  # variant records the artifact names (with their origin, if known)


KINDS: Registry[ArtifactKind] = Registry("artifact kind")


# --- reading and checking -------------------------------------------------------------------------


def insert_row(con: Connection, table: str, row: dict[str, Any]) -> None:
    """One row into `table`, its values matched to columns by name."""
    columns = ", ".join(row)
    con.execute(f"insert into {table} ({columns}) values ({', '.join('?' * len(row))})", list(row.values()))


def content_hash(directory: Path, names: list[str]) -> str:
    """sha256 over each file's name, size and bytes, in the given order."""
    digest = hashlib.sha256()
    for name in names:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"missing file: {path}")
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_artifact(directory: str | Path) -> Artifact:
    """Read and check an artifact directory's meta.json, list and hash the files its kind reads."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"missing file: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object")
    kind_name = meta.get("kind")
    if kind_name not in KINDS:
        raise ValueError(f"{meta_path}: {KINDS.unknown_message(str(kind_name))}")
    kind = KINDS[kind_name]
    record = parse_meta(meta, kind.record, meta_path)
    files = sorted({"meta.json", *kind.files(record)})
    return Artifact(
        kind_name, kind.identity(record), directory, meta, record, tuple(files), content_hash(directory, files)
    )


def stored_record(kind: str, meta: Meta) -> Record:
    """The record of a meta.json the store's manifest holds (written by this code: a schema change rebuilds)."""
    return KINDS[kind].record.model_validate(meta)


# --- observation: observations/<model>/<calibration>/<seed>/ ---------------------------------------


def _run(record: ObservationMeta | SelectionMeta) -> dict[str, Any]:
    return {"model": record.model, "calibration": record.calibration, "seed": record.seed}


def _load_observation(con: Connection, artifact: Artifact) -> None:
    record, stats = artifact.record, artifact.path / "expert_stats.parquet"
    records.EXPERT_STATS.check_parquet(con, stats)
    insert_row(con, "observations", record.model_dump(include=set(records.OBSERVATIONS.names())))
    run = _run(record)
    con.execute(
        f"insert into expert_stats by name select ?::varchar as model, ?::varchar as calibration, ?::integer as seed, "
        f"{records.EXPERT_STATS.casts()} from read_parquet(?)",
        [*run.values(), str(stats)],
    )


def _unload_run(tables: tuple[str, ...]) -> Callable[[Connection, str, Any], None]:
    def unload(con: Connection, identity: str, record: ObservationMeta | SelectionMeta) -> None:
        for table in tables:
            con.execute(
                f"delete from {table} where model = ? and calibration = ? and seed = ?", list(_run(record).values())
            )

    return unload


def _run_identity(record: ObservationMeta | SelectionMeta) -> str:
    return f"{record.model}:{record.calibration}:{record.seed}"


KINDS.add(
    "observation",
    ArtifactKind(
        record=ObservationMeta,
        identity=_run_identity,
        files=lambda record: ["expert_stats.parquet"],
        load=_load_observation,
        unload=_unload_run(("observations", "expert_stats")),
        variants=lambda record: [],
    ),
)


# --- selection: masks/<model>/<calibration>/<seed>/ ----------------------------------------------


def _mask_rows(path: Path, kept: Any, layers: list[int], num_experts: int, kept_per_layer: int) -> list[list[Any]]:
    """Columns (layer, expert, kept) of one mask file, checked against the selection's meta."""
    if not isinstance(kept, list) or len(kept) != len(layers):
        raise ValueError(f"{path}: expected a list of {len(layers)} kept-expert lists (one per MoE layer)")
    columns: list[list[Any]] = [[], [], []]
    for layer, experts in zip(layers, kept):
        if not isinstance(experts, list) or len(set(experts)) != kept_per_layer:
            raise ValueError(f"{path}: layer {layer} does not keep {kept_per_layer} distinct experts")
        if not all(isinstance(e, int) and 0 <= e < num_experts for e in experts):
            raise ValueError(f"{path}: layer {layer} names an expert outside 0..{num_experts - 1}")
        chosen = set(experts)
        columns[0] += [layer] * num_experts
        columns[1] += list(range(num_experts))
        columns[2] += [e in chosen for e in range(num_experts)]
    return columns


def _load_selection(con: Connection, artifact: Artifact) -> None:
    import pyarrow as pa

    record, scores = artifact.record, artifact.path / "scores.parquet"
    records.EXPERT_SCORES.check_parquet(con, scores)
    con.execute(
        f"""
        insert into expert_scores by name
        select
            ?::varchar as model, ?::varchar as calibration, ?::integer as seed,
            {records.EXPERT_SCORES.casts()},
            row_number() over (partition by criterion, layer order by score desc, expert) as rank
        from read_parquet(?)
        """,
        [*_run(record).values(), str(scores)],
    )
    if record.parts:
        parts = artifact.path / "part_scores.parquet"
        records.PART_SCORES.check_parquet(con, parts)
        con.execute(
            f"insert into part_scores by name select ?::varchar as model, ?::varchar as calibration, ?::integer as seed, "
            f"{records.PART_SCORES.casts()} from read_parquet(?)",
            [*_run(record).values(), str(parts)],
        )
        found = {row[0] for row in con.execute("select distinct part from read_parquet(?)", [str(parts)]).fetchall()}
        if found != set(record.parts):
            raise ValueError(f"{parts}: parts {sorted(found)}, meta.json names {sorted(record.parts)}")
    variant_ids, layers, experts, kept = [], [], [], []
    for mask, variant in zip(record.masks, record.variant_records()):
        path = artifact.path / mask.file
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        rows = _mask_rows(path, value, record.moe_layers, record.num_experts, mask.kept_per_layer)
        variant_ids += [variant.variant_id] * len(rows[0])
        layers += rows[0]
        experts += rows[1]
        kept += rows[2]
    masks = pa.table(
        {
            "variant_id": pa.array(variant_ids, pa.string()),
            "layer": pa.array(layers, pa.int32()),
            "expert": pa.array(experts, pa.int32()),
            "kept": pa.array(kept, pa.bool_()),
        }
    )
    con.register("_masks", masks)
    try:
        con.execute("insert into expert_masks by name select * from _masks")
    finally:
        con.unregister("_masks")


def _unload_selection(con: Connection, identity: str, record: SelectionMeta) -> None:
    _unload_run(("expert_scores", "part_scores"))(con, identity, record)
    ids = [variant.variant_id for variant in record.variant_records()]
    if ids:
        con.execute("delete from expert_masks where list_contains(?, variant_id)", [ids])


KINDS.add(
    "selection",
    ArtifactKind(
        record=SelectionMeta,
        identity=_run_identity,
        files=lambda record: [
            "scores.parquet", *(["part_scores.parquet"] if record.parts else []), *(mask.file for mask in record.masks)
        ],
        load=_load_selection,
        unload=_unload_selection,
        variants=lambda record: record.variant_records(),
    ),
)


# --- scores: scores/<variant path>/ ---------------------------------------------------------------


def _load_scores(con: Connection, artifact: Artifact) -> None:
    record = artifact.record
    vid = record.variant.variant_id
    samples = artifact.path / "sample_scores.parquet"
    corpus = artifact.path / "corpus_scores.parquet"
    records.SAMPLE_SCORES.check_parquet(con, samples)
    records.CORPUS_SCORES.check_parquet(con, corpus)
    tasks = record.covered_tasks
    outside = con.execute(
        "select distinct task from read_parquet(?) union select distinct task from read_parquet(?)",
        [str(samples), str(corpus)],
    ).fetchall()
    if tasks is not None and any(task not in tasks for (task,) in outside):
        raise ValueError(f"{artifact.path}: scores for tasks outside the artifact's tasks {tasks}")
    con.execute(
        f"insert into sample_scores by name select ?::varchar as variant_id, {records.SAMPLE_SCORES.casts()} "
        f"from read_parquet(?)",
        [vid, str(samples)],
    )
    # task_scores of these tasks are recomputed in the same transaction as their sample_scores.
    con.execute(
        """
        insert into task_scores by name
        select variant_id, task, metric, avg(value) as value, count(*) as n, 'sample' as level
        from sample_scores
        where variant_id = ? and task in (select distinct task from read_parquet(?))
        group by variant_id, task, metric
        """,
        [vid, str(samples)],
    )
    con.execute(
        f"insert into task_scores by name select ?::varchar as variant_id, {records.CORPUS_SCORES.casts()}, "
        f"'corpus' as level from read_parquet(?)",
        [vid, str(corpus)],
    )


def _unload_evaluation(tables: tuple[str, ...]) -> Callable[[Connection, str, Any], None]:
    """Remove an evaluation artifact's rows: its variant's rows of its tasks (all of them without a group)."""

    def unload(con: Connection, identity: str, record: EvaluationMeta) -> None:
        vid = record.variant.variant_id
        tasks = record.covered_tasks
        for table in tables:
            if tasks is None:
                con.execute(f"delete from {table} where variant_id = ?", [vid])
            else:
                con.execute(f"delete from {table} where variant_id = ? and list_contains(?, task)", [vid, tasks])

    return unload


KINDS.add(
    "scores",
    ArtifactKind(
        record=ScoresMeta,
        identity=lambda record: record.identity,
        files=lambda record: ["corpus_scores.parquet", "sample_scores.parquet"],
        load=_load_scores,
        unload=_unload_evaluation(("task_scores", "sample_scores")),
        variants=lambda record: [record.variant],
    ),
)


# --- generations: generations/<variant path>/ -----------------------------------------------------


def _load_generations(con: Connection, artifact: Artifact) -> None:
    import pyarrow as pa

    path = artifact.path / "generations.jsonl"
    columns = records.GENERATIONS
    texts = [name for name in columns.names() if name not in columns.nullable]
    rows: list[dict[str, Any]] = []
    with path.open() as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err})") from None
            if isinstance(row, dict) and isinstance(row.get("prompt"), list):  # a chat: stored as its JSON
                row["prompt"] = json.dumps(row["prompt"], ensure_ascii=False)
            if not isinstance(row, dict) or not all(isinstance(row.get(key), (str, int)) for key in texts):
                raise ValueError(f"{path}:{number}: expected an object with the keys {texts}")
            choices = row.get("choices")
            if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
                raise ValueError(f"{path}:{number}: choices must be a list of strings or null")
            rows.append({**{key: str(row[key]) for key in texts}, "choices": choices})
    table = columns.table(rows).append_column(
        "variant_id", pa.array([artifact.record.variant.variant_id] * len(rows), pa.string())
    )
    con.register("_generations", table)
    try:
        con.execute("insert into generations by name select * from _generations")
    finally:
        con.unregister("_generations")


KINDS.add(
    "generations",
    ArtifactKind(
        record=GenerationsMeta,
        identity=lambda record: record.identity,
        files=lambda record: ["generations.jsonl"],
        load=_load_generations,
        unload=_unload_evaluation(("generations",)),
        variants=lambda record: [record.variant],
    ),
)


# --- judgments: judgments/<variant path>/<group>/ (the judge stage), imported/judgments/<name>/ -----------


def _load_judgments(con: Connection, artifact: Artifact) -> None:
    path = artifact.path / "judgments.parquet"
    records.JUDGMENTS.check_parquet(con, path)
    con.execute(
        f"insert into judgments by name select ?::varchar as judgment_set, {records.JUDGMENTS.casts()} "
        f"from read_parquet(?)",
        [artifact.identity, str(path)],
    )
    # a label without status ok (or the reverse) would let a missing verdict count as one
    (inconsistent,) = con.execute(
        "select count(*) from judgments where judgment_set = ? and (label is null) = (status = 'ok')",
        [artifact.identity],
    ).fetchone()
    if inconsistent:
        raise ValueError(f"{path}: {inconsistent} rows carry a label without status ok, or status ok without a label")
    # every verdict's variant is in `variants`, so that a query joining them loses none
    listed = [variant.variant_id for variant in artifact.record.variants]
    unlisted = con.execute(
        "select distinct variant_id from judgments where judgment_set = ? and not list_contains(?, variant_id) "
        "order by variant_id",
        [artifact.identity, listed],
    ).fetchall()
    if unlisted:
        names = ", ".join(repr(vid) for (vid,) in unlisted[:5])
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        raise ValueError(f"{path}: rows judge variants that meta.json's variants do not list: {names}{more}")


def _unload_judgments(con: Connection, identity: str, record: JudgmentsMeta) -> None:
    con.execute("delete from judgments where judgment_set = ?", [identity])


KINDS.add(
    "judgments",
    ArtifactKind(
        record=JudgmentsMeta,
        identity=lambda record: record.name,
        files=lambda record: ["judgments.parquet"],
        load=_load_judgments,
        unload=_unload_judgments,
        variants=lambda record: record.variants,  # the judged variants (imported ones with origin imported)
    ),
)


# --- the second study: monosemanticity/<model>/top_k/<native|K>/{activations,samples,explanations,predictions}/ ---


def _load_table(con: Connection, table: str, columns: records.Columns, path: Path, **leading: str | int) -> None:
    """A data file into `table`, after the leading identity columns (values from meta.json: names and top-k)."""
    columns.check_parquet(con, path)
    given = "".join(f"?::{'integer' if isinstance(value, int) else 'varchar'} as {name}, " for name, value in leading.items())
    con.execute(
        f"insert into {table} by name select {given}{columns.casts()} from read_parquet(?)", [*leading.values(), str(path)]
    )


def _model_kind(
    record: type[Record],
    data: dict[str, tuple[str, records.Columns]],
    leading: tuple[str, ...],
    meta_table: tuple[str, records.Columns] | None = None,
) -> ArtifactKind:
    """A kind of the second study's, one artifact per model: each data file (name -> its table and columns) loaded
    after the identity columns `leading`, taken from meta.json (together the artifact's identity, such as
    `toy top_k=2 explainer=offline`); with `meta_table`, meta.json's own row too."""
    tables = ((meta_table[0],) if meta_table else ()) + tuple(table for table, _ in data.values())

    def load(con: Connection, artifact: Artifact) -> None:
        meta = artifact.record
        if meta_table is not None:
            insert_row(con, meta_table[0], meta.model_dump(include=set(meta_table[1].names())))
        for name, (table, columns) in data.items():
            _load_table(con, table, columns, artifact.path / name, **{key: getattr(meta, key) for key in leading})

    def unload(con: Connection, identity: str, meta: Any) -> None:
        where = " and ".join(f"{key} = ?" for key in leading)
        for table in tables:
            con.execute(f"delete from {table} where {where}", [getattr(meta, key) for key in leading])

    return ArtifactKind(
        record=record,
        identity=lambda meta: " ".join(f"{key}={getattr(meta, key)}" if key != "model" else meta.model for key in leading),
        files=lambda meta: list(data),
        load=load,
        unload=unload,
        variants=lambda meta: [],
    )


KINDS.add(
    "activations",
    _model_kind(
        ActivationsMeta,
        {"windows.parquet": ("activation_windows", records.ACTIVATION_WINDOWS),
         "activations.parquet": ("activations", records.ACTIVATIONS)},
        ("model", "top_k"),
        meta_table=("activation_runs", records.ACTIVATION_RUNS),
    ),
)  # fmt: skip
KINDS.add(
    "expert_samples",
    _model_kind(
        ExpertSamplesMeta,
        {"samples.parquet": ("expert_samples", records.EXPERT_SAMPLES),
         "counts.parquet": ("sample_counts", records.SAMPLE_COUNTS)},
        ("model", "top_k"),
    ),
)  # fmt: skip
KINDS.add(
    "explanations",
    _model_kind(ExplanationsMeta, {"explanations.parquet": ("explanations", records.EXPLANATIONS)}, ("model", "top_k", "explainer")),
)
KINDS.add(
    "predictions",
    _model_kind(
        PredictionsMeta,
        {"predictions.parquet": ("predictions", records.PREDICTIONS)},
        ("model", "top_k", "explainer", "predictor"),
    ),
)
KINDS.add(
    "expert_selections",
    _model_kind(
        ExpertSelectionsMeta,
        {"selections.parquet": ("expert_selections", records.EXPERT_SELECTIONS)},
        ("model",),
        meta_table=("expert_selection_runs", records.EXPERT_SELECTION_RUNS),
    ),
)

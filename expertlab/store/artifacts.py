"""Artifact directories (meta.json + data files) -> checked, hashed `Artifact`s; per-kind load and unload.

One registry entry per artifact kind (the `kind` of meta.json): its identity, the files it reads, how its
rows are loaded, how they are deleted again and which variants it names. Adding an artifact kind is one
entry here plus its tables in schema/expertlab.sql.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from expertlab.registry import Registry
from expertlab.variants import Variant

Meta = dict[str, Any]
Connection = duckdb.DuckDBPyConnection

OBSERVATION_COLUMNS = {
    "layer": "integer",
    "expert": "integer",
    "tokens": "bigint",
    "routed_count": "bigint",
    "gate_sum": "double",
    "ean_sum": "double",
    "weighted_norm_sum": "double",
    "easy_ep_sum": "double",
}
SELECTION_COLUMNS = {"criterion": "varchar", "layer": "integer", "expert": "integer", "score": "double"}
SAMPLE_SCORE_COLUMNS = {"task": "varchar", "sample_id": "varchar", "metric": "varchar", "value": "double"}
CORPUS_SCORE_COLUMNS = {"task": "varchar", "metric": "varchar", "value": "double", "n": "bigint"}
GENERATION_KEYS = ("task", "sample_id", "prompt", "output", "target")
# judgments.parquet: every column of the judgments table but judgment_set (the artifact's name)
JUDGMENT_COLUMNS = {
    "judge": "varchar",
    "judge_kind": "judge_kind",
    "protocol": "protocol",
    "question": "judgment_question",
    "task": "varchar",
    "sample_id": "varchar",
    "variant_id": "varchar",
    "output": "judged_output",
    "label": "judgment_label",
    "status": "judgment_status",
    "raw": "json",
}
ORIGINS = ("expertlab", "imported")  # who selected a variant's experts (selection meta.json `origin`)
VARIANT_KEYS = ("variant_id", "model", "calibration", "seed", "criterion", "ratio", "kept_per_layer", "top_k")
OPTIONAL_VARIANT_KEYS = ("quantization",)  # absent in records of unquantized variants


@dataclass(frozen=True)
class Artifact:
    """One artifact directory, read and hashed but not loaded."""

    kind: str
    identity: str
    path: Path
    meta: Meta
    files: tuple[str, ...]  # names relative to `path` that the loader reads, sorted
    content_hash: str


@dataclass(frozen=True)
class ArtifactKind:
    identity: Callable[[Meta, Path], str]  # checks meta.json, returns the artifact's identity
    files: Callable[[Meta], list[str]]  # data files read besides meta.json
    load: Callable[[Connection, Artifact], None]
    unload: Callable[[Connection, str, Meta], None]  # delete what `load` inserted, given identity and meta
    variants: Callable[[Meta], list[Meta]]  # variant records the artifact names


KINDS: Registry[ArtifactKind] = Registry("artifact kind")


# --- reading and checking -------------------------------------------------------------------------


def _require(meta: Meta, where: object, key: str, types: type | tuple[type, ...]) -> Any:
    """meta[key], failing with the file (or entry) named unless it has one of `types` (a bool is no int)."""
    if key not in meta:
        raise ValueError(f"{where}: missing key {key!r}")
    value = meta[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise ValueError(f"{where}: {key!r} is {value!r}, expected {names}")
    return value


def _run_identity(meta: Meta, where: Path) -> str:
    model = _require(meta, where, "model", str)
    calibration = _require(meta, where, "calibration", str)
    seed = _require(meta, where, "seed", int)
    return f"{model}:{calibration}:{seed}"


def _checked_variant(meta: Meta, where: Path) -> Meta:
    variant = _require(meta, where, "variant", dict)
    missing = [key for key in VARIANT_KEYS if key not in variant]
    if missing:
        raise ValueError(f"{where}: variant lacks {missing}")
    if "quantization" in variant:
        _require(variant, where, "quantization", (str, type(None)))
    Variant.from_record(variant, where)
    return variant


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
    identity = kind.identity(meta, meta_path)
    files = sorted({"meta.json", *kind.files(meta)})
    return Artifact(kind_name, identity, directory, meta, tuple(files), content_hash(directory, files))


def _parquet_columns(con: Connection, path: Path, expected: dict[str, str]) -> None:
    """Fail naming the file unless its columns are exactly `expected`."""
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        found = [row[0] for row in con.execute("describe select * from read_parquet(?)", [str(path)]).fetchall()]
    except duckdb.Error as err:
        raise ValueError(f"{path}: not a readable parquet file ({err})") from None
    if sorted(found) != sorted(expected):
        raise ValueError(f"{path}: expected columns {sorted(expected)}, found {sorted(found)}")


def _select_columns(expected: dict[str, str]) -> str:
    return ", ".join(f"cast({name} as {sql_type}) as {name}" for name, sql_type in expected.items())


# --- observation: observations/<model>/<calibration>/<seed>/ ---------------------------------------


def _observation_identity(meta: Meta, where: Path) -> str:
    for key in ("num_experts", "top_k", "samples", "tokens"):
        _require(meta, where, key, int)
    _require(meta, where, "model_type", str)
    layers = _require(meta, where, "moe_layers", list)
    if not all(isinstance(layer, int) for layer in layers):
        raise ValueError(f"{where}: moe_layers must be a list of integers")
    return _run_identity(meta, where)


def _load_observation(con: Connection, artifact: Artifact) -> None:
    meta, stats = artifact.meta, artifact.path / "expert_stats.parquet"
    _parquet_columns(con, stats, OBSERVATION_COLUMNS)
    run = [meta["model"], meta["calibration"], meta["seed"]]
    con.execute(
        "insert into observations values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [*run, meta["model_type"], meta["num_experts"], meta["top_k"], meta.get("n_group", 1),
         meta["moe_layers"], meta["samples"], meta["tokens"]],
    )
    con.execute(
        f"insert into expert_stats select ?, ?, ?, {_select_columns(OBSERVATION_COLUMNS)} from read_parquet(?)",
        [*run, str(stats)],
    )


def _unload_run(tables: tuple[str, ...]) -> Callable[[Connection, str, Meta], None]:
    def unload(con: Connection, identity: str, meta: Meta) -> None:
        for table in tables:
            con.execute(
                f"delete from {table} where model = ? and calibration = ? and seed = ?",
                [meta["model"], meta["calibration"], meta["seed"]],
            )

    return unload


KINDS.add(
    "observation",
    ArtifactKind(
        identity=_observation_identity,
        files=lambda meta: ["expert_stats.parquet"],
        load=_load_observation,
        unload=_unload_run(("observations", "expert_stats")),
        variants=lambda meta: [],
    ),
)


# --- selection: masks/<model>/<calibration>/<seed>/ ----------------------------------------------


def _selection_identity(meta: Meta, where: Path) -> str:
    identity = _run_identity(meta, where)
    _require(meta, where, "num_experts", int)
    _require(meta, where, "top_k", (int, type(None)))  # None: imported masks do not know the model's top-k
    _require(meta, where, "moe_layers", list)
    if meta.get("origin", ORIGINS[0]) not in ORIGINS:
        raise ValueError(f"{where}: origin {meta['origin']!r} is not one of {', '.join(ORIGINS)}")
    for number, mask in enumerate(_require(meta, where, "masks", list)):
        entry = f"{where}: masks[{number}]"
        if not isinstance(mask, dict):
            raise ValueError(f"{entry}: expected an object")
        _require(mask, entry, "criterion", str)
        _require(mask, entry, "ratio", (int, float))
        _require(mask, entry, "file", str)
        _require(mask, entry, "kept_per_layer", int)
        _require(mask, entry, "top_k", (int, type(None)))
    return identity


def _selection_variants(meta: Meta) -> list[Meta]:
    return [
        {
            **Variant(
                model=meta["model"], calibration=meta["calibration"], seed=meta["seed"],
                criterion=mask["criterion"], ratio=mask["ratio"],
            ).record(mask["kept_per_layer"], mask["top_k"]),
            "origin": meta.get("origin", ORIGINS[0]),
        }
        for mask in meta["masks"]
    ]


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

    meta, scores = artifact.meta, artifact.path / "scores.parquet"
    _parquet_columns(con, scores, SELECTION_COLUMNS)
    con.execute(
        """
        insert into expert_scores
        select
            ?, ?, ?,
            cast(criterion as criterion),
            cast(layer as integer),
            cast(expert as integer),
            cast(score as double),
            row_number() over (partition by criterion, layer order by score desc, expert)
        from read_parquet(?)
        """,
        [meta["model"], meta["calibration"], meta["seed"], str(scores)],
    )
    variant_ids, layers, experts, kept = [], [], [], []
    for mask, variant in zip(meta["masks"], _selection_variants(meta)):
        path = artifact.path / mask["file"]
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        rows = _mask_rows(path, value, meta["moe_layers"], meta["num_experts"], mask["kept_per_layer"])
        variant_ids += [variant["variant_id"]] * len(rows[0])
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
        con.execute("insert into expert_masks select * from _masks")
    finally:
        con.unregister("_masks")


def _unload_selection(con: Connection, identity: str, meta: Meta) -> None:
    _unload_run(("expert_scores",))(con, identity, meta)
    ids = [variant["variant_id"] for variant in _selection_variants(meta)]
    if ids:
        con.execute("delete from expert_masks where list_contains(?, variant_id)", [ids])


KINDS.add(
    "selection",
    ArtifactKind(
        identity=_selection_identity,
        files=lambda meta: ["scores.parquet", *(mask["file"] for mask in meta["masks"])],
        load=_load_selection,
        unload=_unload_selection,
        variants=_selection_variants,
    ),
)


# --- scores: scores/<variant path>/ ---------------------------------------------------------------


def _evaluation_identity(meta: Meta, where: Path) -> str:
    """variant_id, or variant_id/group for the artifact of one task group."""
    vid = _checked_variant(meta, where)["variant_id"]
    group = meta.get("group") or ""
    if not isinstance(group, str):
        raise ValueError(f"{where}: group must be a string")
    if group and not isinstance(meta.get("tasks"), list):
        raise ValueError(f"{where}: an artifact of task group {group!r} must list its tasks")
    return f"{vid}/{group}" if group else vid


def _artifact_tasks(meta: Meta) -> list[str] | None:
    """The tasks an evaluation artifact covers; None: every task of its variant."""
    return list(meta["tasks"]) if meta.get("group") else None


def _load_scores(con: Connection, artifact: Artifact) -> None:
    meta = artifact.meta
    vid = meta["variant"]["variant_id"]
    samples = artifact.path / "sample_scores.parquet"
    corpus = artifact.path / "corpus_scores.parquet"
    _parquet_columns(con, samples, SAMPLE_SCORE_COLUMNS)
    _parquet_columns(con, corpus, CORPUS_SCORE_COLUMNS)
    tasks = _artifact_tasks(meta)
    outside = con.execute(
        "select distinct task from read_parquet(?) union select distinct task from read_parquet(?)",
        [str(samples), str(corpus)],
    ).fetchall()
    if tasks is not None and any(task not in tasks for (task,) in outside):
        raise ValueError(f"{artifact.path}: scores for tasks outside the artifact's tasks {tasks}")
    con.execute(
        f"insert into sample_scores select ?, {_select_columns(SAMPLE_SCORE_COLUMNS)} from read_parquet(?)",
        [vid, str(samples)],
    )
    # task_scores of these tasks are recomputed in the same transaction as their sample_scores.
    con.execute(
        """
        insert into task_scores
        select variant_id, task, metric, avg(value), count(*), 'sample'
        from sample_scores
        where variant_id = ? and task in (select distinct task from read_parquet(?))
        group by variant_id, task, metric
        """,
        [vid, str(samples)],
    )
    con.execute(
        f"insert into task_scores select ?, task, metric, value, n, 'corpus' from ("
        f"select {_select_columns(CORPUS_SCORE_COLUMNS)} from read_parquet(?))",
        [vid, str(corpus)],
    )


def _unload_evaluation(tables: tuple[str, ...]) -> Callable[[Connection, str, Meta], None]:
    """Remove an evaluation artifact's rows: its variant's rows of its tasks (all of them without a group)."""

    def unload(con: Connection, identity: str, meta: Meta) -> None:
        vid = meta["variant"]["variant_id"]
        tasks = _artifact_tasks(meta)
        for table in tables:
            if tasks is None:
                con.execute(f"delete from {table} where variant_id = ?", [vid])
            else:
                con.execute(f"delete from {table} where variant_id = ? and list_contains(?, task)", [vid, tasks])

    return unload


KINDS.add(
    "scores",
    ArtifactKind(
        identity=_evaluation_identity,
        files=lambda meta: ["corpus_scores.parquet", "sample_scores.parquet"],
        load=_load_scores,
        unload=_unload_evaluation(("task_scores", "sample_scores")),
        variants=lambda meta: [meta["variant"]],
    ),
)


# --- generations: generations/<variant path>/ -----------------------------------------------------


def _load_generations(con: Connection, artifact: Artifact) -> None:
    import pyarrow as pa

    path = artifact.path / "generations.jsonl"
    columns: dict[str, list[Any]] = {key: [] for key in (*GENERATION_KEYS, "choices")}
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
            if not isinstance(row, dict) or not all(isinstance(row.get(key), (str, int)) for key in GENERATION_KEYS):
                raise ValueError(f"{path}:{number}: expected an object with the keys {list(GENERATION_KEYS)}")
            for key in GENERATION_KEYS:
                columns[key].append(str(row[key]))
            choices = row.get("choices")
            if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
                raise ValueError(f"{path}:{number}: choices must be a list of strings or null")
            columns["choices"].append(choices)
    table = pa.table(
        {
            "variant_id": pa.array([artifact.meta["variant"]["variant_id"]] * len(columns["task"]), pa.string()),
            **{key: pa.array(columns[key], pa.string()) for key in GENERATION_KEYS},
            "choices": pa.array(columns["choices"], pa.list_(pa.string())),
        }
    )
    con.register("_generations", table)
    try:
        con.execute("insert into generations select * from _generations")
    finally:
        con.unregister("_generations")


KINDS.add(
    "generations",
    ArtifactKind(
        identity=_evaluation_identity,
        files=lambda meta: ["generations.jsonl"],
        load=_load_generations,
        unload=_unload_evaluation(("generations",)),
        variants=lambda meta: [meta["variant"]],
    ),
)


# --- judgments: judgments/<variant path>/<group>/ (the judge stage), imported/judgments/<name>/ -----------


def _judgments_identity(meta: Meta, where: Path) -> str:
    name = _require(meta, where, "name", str)
    if not name:
        raise ValueError(f"{where}: name must not be empty")
    for number, record in enumerate(_require(meta, where, "variants", list)):
        entry = f"{where}: variants[{number}]"
        if not isinstance(record, dict):
            raise ValueError(f"{entry}: expected a variant record")
        missing = [key for key in VARIANT_KEYS if key not in record]
        if missing:
            raise ValueError(f"{entry}: lacks {missing}")
        if record.get("origin", ORIGINS[0]) not in ORIGINS:
            raise ValueError(f"{entry}: origin {record['origin']!r} is not one of {', '.join(ORIGINS)}")
        Variant.from_record(record, entry)
    return name


def _load_judgments(con: Connection, artifact: Artifact) -> None:
    path = artifact.path / "judgments.parquet"
    _parquet_columns(con, path, JUDGMENT_COLUMNS)
    con.execute(
        f"insert into judgments select ?, {_select_columns(JUDGMENT_COLUMNS)} from read_parquet(?)",
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
    listed = [record["variant_id"] for record in artifact.meta["variants"]]
    unlisted = con.execute(
        "select distinct variant_id from judgments where judgment_set = ? and not list_contains(?, variant_id) "
        "order by variant_id",
        [artifact.identity, listed],
    ).fetchall()
    if unlisted:
        names = ", ".join(repr(vid) for (vid,) in unlisted[:5])
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        raise ValueError(f"{path}: rows judge variants that meta.json's variants do not list: {names}{more}")


def _unload_judgments(con: Connection, identity: str, meta: Meta) -> None:
    con.execute("delete from judgments where judgment_set = ?", [identity])


KINDS.add(
    "judgments",
    ArtifactKind(
        identity=_judgments_identity,
        files=lambda meta: ["judgments.parquet"],
        load=_load_judgments,
        unload=_unload_judgments,
        variants=lambda meta: meta["variants"],  # the judged variants (imported ones with origin imported)
    ),
)

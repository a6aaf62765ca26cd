"""The DuckDB store: schema contract, incremental idempotent ingest, crash safety, and `expertlab sql`."""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expertlab import records
from expertlab.records import GenerationsMeta, JudgmentsMeta, MaskEntry, ObservationMeta, ScoresMeta, SelectionMeta
from expertlab.store import ingest
from expertlab.store.artifacts import KINDS
from expertlab.store.schema import render_ddl, vocabularies
from expertlab.variants import Variant

REPO = Path(__file__).resolve().parents[1]

# --- artifact writers: the pipeline's formats, built through the records the stages write ------------


def _meta(directory: Path, meta: records.Record | dict[str, Any]) -> None:
    """meta.json from its record (a dict: a deliberately malformed one, written as given)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = meta.dump() if isinstance(meta, records.Record) else meta
    (directory / "meta.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def variant(model: str, calibration: str | None = None, seed: int | None = None, criterion: str | None = None,
            ratio: float | None = None, kept_per_layer: int | None = None, top_k: int = 2,
            quantization: str | None = None) -> dict[str, Any]:
    identity = Variant(model=model, calibration=calibration, seed=seed, criterion=criterion, ratio=ratio,
                       quantization=quantization)  # fmt: skip
    return identity.record(kept_per_layer, top_k)


def variant_path(record: dict[str, Any]) -> Path:
    fields = ("model", "calibration", "seed", "criterion", "ratio", "quantization", "finetune", "finetune_seed")
    return Path(Variant.model_construct(**{key: record.get(key) for key in fields}).path)  # bad records too


def _evaluation_meta(model: type[records.EvaluationMeta], record: dict[str, Any], **fields: Any) -> Any:
    """The evaluation meta.json of a variant record; a record the type refuses is written as given."""
    try:
        return model(variant=records.VariantRecord(**record), **fields)
    except ValueError:
        return {"kind": model.model_fields["kind"].default, "variant": record, **fields}


def write_observation(root: Path, model: str, calibration: str, seed: int, layers: tuple[int, ...] = (1, 3),
                      num_experts: int = 4) -> Path:
    directory = root / "observations" / model / calibration / str(seed)
    rows = [
        {"layer": layer, "expert": e, "tokens": 100, "routed_count": 10 * (e + 1) + seed, "gate_sum": 1.5 * e,
         "ean_sum": 2.0 * e + layer, "weighted_norm_sum": 0.5 * e, "easy_ep_sum": 0.25 * e}
        for layer in layers for e in range(num_experts)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    records.EXPERT_STATS.write(directory / "expert_stats.parquet", rows)
    _meta(directory, ObservationMeta(model=model, calibration=calibration, seed=seed, model_type="qwen3_moe",
                                     num_experts=num_experts, top_k=2, n_group=1, moe_layers=list(layers),
                                     samples=8, tokens=100))
    return directory


def write_selection(root: Path, model: str, calibration: str, seed: int, criteria: tuple[str, ...],
                    ratios: tuple[float, ...], layers: tuple[int, ...] = (1, 3), num_experts: int = 4) -> Path:
    """Scores favour higher expert ids (random: lower), so a mask keeps the top ids by rank."""
    directory = root / "masks" / model / calibration / str(seed)
    directory.mkdir(parents=True, exist_ok=True)
    rows, masks = [], []
    for criterion in criteria:
        for layer in layers:
            for e in range(num_experts):
                score = float(num_experts - e) if criterion == "random" else float(e + seed)
                rows.append({"criterion": criterion, "layer": layer, "expert": e, "score": score})
        for ratio in ratios:
            kept = round((1 - ratio) * num_experts)
            ranked = sorted(range(num_experts), key=lambda e: (-(num_experts - e if criterion == "random" else e), e))
            name = f"{criterion}-{float(ratio)}.json"
            (directory / name).write_text(json.dumps([sorted(ranked[:kept]) for _ in layers]))
            masks.append(MaskEntry(criterion=criterion, ratio=float(ratio), file=name, kept_per_layer=kept, top_k=2))
    records.EXPERT_SCORES.write(directory / "scores.parquet", rows)
    _meta(directory, SelectionMeta(model=model, calibration=calibration, seed=seed, random_seed=seed,
                                   moe_layers=list(layers), num_experts=num_experts, top_k=2, masks=masks))
    return directory


def write_scores(root: Path, record: dict[str, Any], values: dict[tuple[str, str], list[float]]) -> Path:
    """values: (task, metric) -> one value per sample (sample ids s0, s1, ...)."""
    directory = root / "scores" / variant_path(record)
    rows = [
        {"task": task, "sample_id": f"s{i}", "metric": metric, "value": value}
        for (task, metric), samples in values.items()
        for i, value in enumerate(samples)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    records.SAMPLE_SCORES.write(directory / "sample_scores.parquet", rows)
    records.CORPUS_SCORES.write(directory / "corpus_scores.parquet", [])
    _meta(directory, _evaluation_meta(ScoresMeta, record))
    return directory


def write_generations(root: Path, record: dict[str, Any], tasks: dict[str, int]) -> Path:
    directory = root / "generations" / variant_path(record)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "generations.jsonl").open("w") as fh:
        for task, count in tasks.items():
            for i in range(count):
                choices = ["yes", "no"] if task.endswith("mcq") else None
                fh.write(json.dumps({"task": task, "sample_id": f"s{i}", "prompt": f"{task} question {i}",
                                     "output": "yes", "target": "yes", "choices": choices}) + "\n")
    _meta(directory, _evaluation_meta(GenerationsMeta, record, tasks=list(tasks)))
    return directory


# Utility tasks of the study's suite and the score of one variant: source 0.8 on every primary metric.
UTILITY = {"bio_qa": "token_f1", "bio_mcq": "accuracy", "general_arith": "exact_match", "general_mcq": "accuracy"}


def write_judgments(root: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """A judgments artifact (what `expertlab import-judgments` writes) under root/judgments/<name>/.

    Each row needs judge, protocol, question, sample_id, ratio and label (None: missing); the rest
    defaults to an LLM judging the pruned output of a variant known only from its verdicts (model toy,
    calibration external, seed 0, criterion reap); a row may name its variant's fields instead.
    """
    directory = root / "judgments" / name
    directory.mkdir(parents=True, exist_ok=True)
    defaults = {"judge_kind": "llm", "task": "toy", "model": "toy", "calibration": "external", "seed": 0,
                "criterion": "reap", "quantization": None}
    full, judged = [], {}
    for row in rows:
        row = defaults | row
        fields = {key: row.pop(key) for key in ("model", "calibration", "seed", "criterion", "ratio", "quantization")}
        judged_variant = Variant(**fields)
        judged[judged_variant.id] = judged_variant.record(None, None)
        output = row.pop("output", "pair" if row["protocol"] == "relative" else "pruned")
        status = "ok" if row["label"] is not None else "missing"
        full.append({"variant_id": judged_variant.id, "output": output, "status": status,
                     "raw": json.dumps(row["label"])} | row)
    records.JUDGMENTS.write(directory / "judgments.parquet", full)
    _meta(directory, JudgmentsMeta(name=name, variants=[records.VariantRecord(**judged[vid]) for vid in sorted(judged)]))
    return directory


def seed_study(root: Path, criteria: tuple[str, ...] = ("random", "reap"), ratios: tuple[float, ...] = (0.25, 0.5),
               seeds: tuple[int, ...] = (0, 1)) -> list[Path]:
    """A small complete study: observations, selections, source and pruned scores and generations.

    Pruned primary scores are 0.8 * (1 - ratio) * factor, factor 1.0 for reap and 0.5 for random, plus
    0.02 * seed; general tasks lose another 0.1 (absolute) so general retention is lower.
    """
    source = variant("toy")
    write_scores(root, source, {(task, metric): [0.7, 0.9] for task, metric in UTILITY.items()}
                 | {("trial_summary", "rouge_l"): [0.5, 0.5]})
    write_generations(root, source, {"bio_qa": 2, "bio_mcq": 2})
    for seed in seeds:
        write_observation(root, "toy", "biomed", seed)
        write_selection(root, "toy", "biomed", seed, criteria, ratios)
        for criterion in criteria:
            for ratio in ratios:
                record = variant("toy", "biomed", seed, criterion, ratio, kept_per_layer=round((1 - ratio) * 4))
                factor = 0.5 if criterion == "random" else 1.0
                values = {}
                for task, metric in UTILITY.items():
                    score = 0.8 * (1 - ratio) * factor + 0.02 * seed - (0.1 if task.startswith("general") else 0.0)
                    values[(task, metric)] = [score - 0.05, score + 0.05]
                values[("trial_summary", "rouge_l")] = [0.4, 0.4]
                write_scores(root, record, values)
                write_generations(root, record, {"bio_qa": 2, "bio_mcq": 2})
    return [root / "observations", root / "masks", root / "scores", root / "generations"]


TABLES = ("artifacts", "tasks", "observations", "expert_stats", "expert_scores", "part_scores", "variants",
          "expert_masks", "sample_scores", "task_scores", "generations", "judgments")


def snapshot(store: Path) -> dict[str, list[tuple]]:
    """Every table's rows in a canonical order (ingest times left out)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        result = {}
        for table in TABLES:
            columns = "* exclude (ingested_at)" if table == "artifacts" else "*"
            result[table] = con.execute(f"select {columns} from {table} order by all").fetchall()
        return result
    finally:
        con.close()


# --- schema contract ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("schema") / "empty.duckdb"
    from expertlab.store.schema import create_store, fingerprint

    ddl = render_ddl()
    create_store(path, ddl, fingerprint(ddl))
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


# The exact tables, columns, types and keys (sqlite-utils style): a schema edit must update this on purpose.
EXPECTED_COLUMNS = {
    "store_schema": "fingerprint VARCHAR, ddl VARCHAR",
    "artifacts": "kind artifact_kind, identity VARCHAR, path VARCHAR, content_hash VARCHAR, files VARCHAR[], "
                 "meta JSON, ingested_at TIMESTAMP",
    "tasks": "task VARCHAR, domain domain, aspect aspect, kind task_kind, metrics VARCHAR[], primary_metric VARCHAR, "
             "max_new_tokens INTEGER, max_model_len INTEGER, description VARCHAR, source VARCHAR",
    "observations": "model VARCHAR, calibration VARCHAR, seed INTEGER, model_type VARCHAR, num_experts INTEGER, "
                    "top_k INTEGER, n_group INTEGER, moe_layers INTEGER[], samples INTEGER, tokens BIGINT",
    "expert_stats": "model VARCHAR, calibration VARCHAR, seed INTEGER, layer INTEGER, expert INTEGER, tokens BIGINT, "
                    "routed_count BIGINT, gate_sum DOUBLE, ean_sum DOUBLE, weighted_norm_sum DOUBLE, "
                    "easy_ep_sum DOUBLE",
    "expert_scores": "model VARCHAR, calibration VARCHAR, seed INTEGER, criterion criterion, layer INTEGER, "
                     "expert INTEGER, score DOUBLE, rank INTEGER",
    "part_scores": "model VARCHAR, calibration VARCHAR, seed INTEGER, part VARCHAR, criterion criterion, layer INTEGER, "
                   "expert INTEGER, score DOUBLE",
    "variants": "variant_id VARCHAR, is_source BOOLEAN, model VARCHAR, calibration VARCHAR, seed INTEGER, "
                "criterion criterion, ratio DOUBLE, kept_per_layer INTEGER, top_k INTEGER, origin VARCHAR, "
                "quantization VARCHAR, finetune VARCHAR, finetune_seed INTEGER",
    "expert_masks": "variant_id VARCHAR, layer INTEGER, expert INTEGER, kept BOOLEAN",
    "sample_scores": "variant_id VARCHAR, task VARCHAR, sample_id VARCHAR, metric VARCHAR, value DOUBLE",
    "task_scores": "variant_id VARCHAR, task VARCHAR, metric VARCHAR, value DOUBLE, n BIGINT, level metric_level",
    "generations": "variant_id VARCHAR, task VARCHAR, sample_id VARCHAR, prompt VARCHAR, output VARCHAR, "
                   "target VARCHAR, choices VARCHAR[]",
    "judgments": "judgment_set VARCHAR, judge VARCHAR, judge_kind judge_kind, protocol protocol, "
                 "question judgment_question, task VARCHAR, sample_id VARCHAR, variant_id VARCHAR, "
                 "output judged_output, label judgment_label, status judgment_status, raw JSON",
    "domain_retention": "variant_id VARCHAR, model VARCHAR, calibration VARCHAR, seed INTEGER, criterion criterion, "
                        "ratio DOUBLE, quantization VARCHAR, domain domain, retention DOUBLE, n_tasks BIGINT",
    "verdicts": "judgment_set VARCHAR, judge VARCHAR, judge_kind judge_kind, protocol protocol, "
                "question judgment_question, task VARCHAR, sample_id VARCHAR, variant_id VARCHAR, "
                "output judged_output, label judgment_label, status judgment_status, raw JSON, "
                "model VARCHAR, calibration VARCHAR, seed INTEGER, criterion criterion, ratio DOUBLE, "
                "quantization VARCHAR, counted BOOLEAN",
    "primary_scores": "variant_id VARCHAR, model VARCHAR, calibration VARCHAR, seed INTEGER, criterion criterion, "
                      "ratio DOUBLE, quantization VARCHAR, finetune VARCHAR, finetune_seed INTEGER, task VARCHAR, domain domain, aspect aspect, kind task_kind, "
                      "metric VARCHAR, score DOUBLE, source_score DOUBLE, retention DOUBLE",
    "variant_measures": "variant_id VARCHAR, model VARCHAR, calibration VARCHAR, seed INTEGER, criterion criterion, "
                        "ratio DOUBLE, quantization VARCHAR, measure VARCHAR, value DOUBLE, higher_is_better BOOLEAN",
    "activation_runs": "model VARCHAR, top_k INTEGER, native_top_k INTEGER, seed INTEGER, window_tokens INTEGER, "
                       "model_type VARCHAR, num_experts INTEGER, moe_layers INTEGER[], documents INTEGER, windows BIGINT",
    "activation_windows": "model VARCHAR, top_k INTEGER, window_id BIGINT, domain VARCHAR, document INTEGER, start INTEGER, "
                          "tokens INTEGER, token_texts VARCHAR[]",
    "activations": "model VARCHAR, top_k INTEGER, layer INTEGER, expert INTEGER, window_id BIGINT, routed_tokens INTEGER, "
                   "max_weight DOUBLE, positions INTEGER[]",
    "expert_samples": "model VARCHAR, top_k INTEGER, scope VARCHAR, layer INTEGER, expert INTEGER, role VARCHAR, window_id BIGINT, "
                      "routed BOOLEAN, activation DOUBLE, rank INTEGER",
    "sample_counts": "model VARCHAR, top_k INTEGER, scope VARCHAR, layer INTEGER, expert INTEGER, routed_windows BIGINT, "
                     "unrouted_windows BIGINT, explain INTEGER, test_positives INTEGER, test_negatives INTEGER, "
                     "shortfall VARCHAR",
    "explanations": "model VARCHAR, top_k INTEGER, explainer VARCHAR, scope VARCHAR, layer INTEGER, expert INTEGER, "
                    "explanation VARCHAR, status VARCHAR, raw VARCHAR",
    "predictions": "model VARCHAR, top_k INTEGER, explainer VARCHAR, predictor VARCHAR, scope VARCHAR, layer INTEGER, expert INTEGER, "
                   "window_id BIGINT, part INTEGER, predicted BOOLEAN, status VARCHAR",
    "expert_selection_runs": "model VARCHAR, explainer VARCHAR, predictor VARCHAR, domain VARCHAR, layers VARCHAR, "
                             "experts_per_layer INTEGER, chosen_layers INTEGER[], short INTEGER",
    "expert_selections": "model VARCHAR, strategy VARCHAR, layer INTEGER, rank INTEGER, expert INTEGER, score DOUBLE",
    "monosemanticity_scores": "model VARCHAR, top_k INTEGER, reobserved BOOLEAN, explainer VARCHAR, predictor VARCHAR, layer INTEGER, expert INTEGER, "
                              "domain VARCHAR, ems DOUBLE, edms DOUBLE, af DOUBLE, edmrs DOUBLE, n_ems BIGINT, n_edms BIGINT",
}
EXPECTED_COLUMNS["finetune_utility"] = (
    "model VARCHAR, strategy VARCHAR, finetune_seed INTEGER, task VARCHAR, domain VARCHAR, in_domain BOOLEAN, score DOUBLE"
)
EXPECTED_COLUMNS["source_task_scores"] = "model VARCHAR, task VARCHAR, metric VARCHAR, value DOUBLE"
# the pruning grid: each relation without its quantized and fine-tuned variants, and so without their columns
EXPECTED_COLUMNS |= {
    f"grid_{name}": EXPECTED_COLUMNS[name].replace(", finetune VARCHAR, finetune_seed INTEGER", "").replace(", quantization VARCHAR", "")
    for name in ("variants", "primary_scores", "domain_retention", "verdicts", "variant_measures")
}
EXPECTED_KEYS = {
    "store_schema": ["fingerprint"],
    "artifacts": ["kind", "identity"],
    "tasks": ["task"],
    "observations": ["model", "calibration", "seed"],
    "expert_stats": ["model", "calibration", "seed", "layer", "expert"],
    "expert_scores": ["model", "calibration", "seed", "criterion", "layer", "expert"],
    "part_scores": ["model", "calibration", "seed", "part", "criterion", "layer", "expert"],
    "variants": ["variant_id"],
    "expert_masks": ["variant_id", "layer", "expert"],
    "sample_scores": ["variant_id", "task", "sample_id", "metric"],
    "task_scores": ["variant_id", "task", "metric"],
    "generations": ["variant_id", "task", "sample_id"],
    "judgments": ["judge", "protocol", "question", "task", "sample_id", "variant_id", "output"],
    "activation_runs": ["model", "top_k"],
    "activation_windows": ["model", "top_k", "window_id"],
    "activations": ["model", "top_k", "layer", "expert", "window_id"],
    "expert_samples": ["model", "top_k", "scope", "layer", "expert", "role", "window_id"],
    "sample_counts": ["model", "top_k", "scope", "layer", "expert"],
    "explanations": ["model", "top_k", "explainer", "scope", "layer", "expert"],
    "predictions": ["model", "top_k", "explainer", "predictor", "scope", "layer", "expert", "window_id"],
    "expert_selection_runs": ["model"],
    "expert_selections": ["model", "strategy", "layer", "rank"],
}


def test_schema_has_exactly_the_expected_tables_columns_and_types(empty_store: duckdb.DuckDBPyConnection) -> None:
    rows = empty_store.execute(
        "select table_name, column_name, data_type from duckdb_columns() where not internal "
        "order by table_name, column_index"
    ).fetchall()
    enums = empty_store.execute(
        "select type_name, labels from duckdb_types() where logical_type = 'ENUM' and not internal"
    ).fetchall()
    enum_names = {"ENUM(" + ", ".join(f"'{label}'" for label in labels) + ")": name for name, labels in enums}
    found: dict[str, list[str]] = {}
    for table, column, data_type in rows:
        found.setdefault(table, []).append(f"{column} {enum_names.get(data_type, data_type)}")
    assert {table: ", ".join(columns) for table, columns in found.items()} == EXPECTED_COLUMNS


def test_schema_primary_keys(empty_store: duckdb.DuckDBPyConnection) -> None:
    rows = empty_store.execute(
        "select table_name, constraint_column_names from duckdb_constraints() where constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    assert dict(rows) == EXPECTED_KEYS


def test_every_table_view_and_column_has_a_comment(empty_store: duckdb.DuckDBPyConnection) -> None:
    relations = empty_store.execute(
        "select table_name, comment from duckdb_tables() where not internal "
        "union all select view_name, comment from duckdb_views() where not internal"
    ).fetchall()
    assert {name for name, _ in relations} == set(EXPECTED_COLUMNS)
    assert [name for name, comment in relations if not (comment or "").strip()] == []
    columns = empty_store.execute(
        "select table_name, column_name, comment from duckdb_columns() where not internal"
    ).fetchall()
    assert [f"{t}.{c}" for t, c, comment in columns if not (comment or "").strip()] == []


def test_enum_types_come_from_the_registries(empty_store: duckdb.DuckDBPyConnection) -> None:
    from expertlab.criteria import CRITERIA
    from expertlab.tasks import Aspect, Domain, Kind

    labels = dict(empty_store.execute(
        "select type_name, labels from duckdb_types() where logical_type = 'ENUM' and not internal"
    ).fetchall())
    assert labels == {
        "criterion": CRITERIA.names(),
        "domain": list(get_args(Domain)),
        "aspect": list(get_args(Aspect)),
        "task_kind": list(get_args(Kind)),
        "artifact_kind": KINDS.names(),
        "metric_level": ["sample", "corpus"],
        "protocol": ["absolute", "relative"],
        "judge_kind": ["llm", "human"],
        "judgment_question": ["hallucinated", "q1_hallucinations_more", "q2_omission_more", "q3_repetition_more",
                              "q4_alignment_more"],
        "judged_output": ["pruned", "source", "pair"],
        "judgment_label": ["hallucinated", "faithful", "pruned", "source"],
        "judgment_status": ["ok", "missing", "invalid"],
    }
    assert vocabularies()["criterion"] == CRITERIA.names()


def test_render_ddl_rejects_unknown_placeholders() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        render_ddl("create type x as enum ({{ nope }});", {"criterion": ["a"]})
    assert render_ddl("({{ criterion }})", {"criterion": ["a", "o'b"]}) == "('a', 'o''b')"


# --- ingest ---------------------------------------------------------------------------------------


def test_every_column_map_is_its_tables_columns_with_their_store_types(empty_store: duckdb.DuckDBPyConnection) -> None:
    """A data file's columns are typed once: the table that holds them has them, in order, with the map's types."""
    prefixes = {"observations": 0, "expert_stats": 3, "expert_scores": 3, "part_scores": 3, "sample_scores": 1,
                "generations": 1, "judgments": 1, "activation_runs": 0, "activation_windows": 2, "activations": 2,
                "expert_samples": 2, "sample_counts": 2, "explanations": 3, "predictions": 4, "expert_selection_runs": 0,
                "expert_selections": 1}  # leading identity columns ingest adds from meta.json  # fmt: skip
    for name, columns in records.COLUMNS.items():
        table = name if name != "corpus_scores" else None
        if table is None:  # corpus_scores.parquet lands in task_scores beside the sample means
            found = empty_store.execute("describe task_scores").fetchall()
            assert {row[0]: row[1] for row in found}.items() >= {"task": "VARCHAR", "metric": "VARCHAR",
                                                                 "value": "DOUBLE", "n": "BIGINT"}.items()
            continue
        found = empty_store.execute(f"describe {table}").fetchall()[prefixes[table]:][: len(columns.columns)]
        enums = vocabularies()
        expected = [
            (column, f"enum({', '.join(repr(v) for v in enums[kind])})" if kind in enums else kind,
             "YES" if column in columns.nullable else "NO")
            for column, kind in columns.columns.items()
        ]  # fmt: skip
        assert [(row[0], row[1].lower(), row[2]) for row in found] == [(c, k.lower(), n) for c, k, n in expected], table


def test_a_column_map_writes_parquet_that_ingest_reads_back_and_refuses_other_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    records.GENERATIONS.write(path, [{"task": "bio_mcq", "sample_id": "s0", "prompt": "p", "output": "o",
                                      "target": "t", "choices": ["a", "b"]}])  # fmt: skip
    schema = pq.read_schema(path)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("task", "string"), ("sample_id", "string"), ("prompt", "string"), ("output", "string"), ("target", "string"),
        ("choices", "list<element: string>"),
    ]  # fmt: skip
    assert str(records.JUDGMENTS.arrow_schema().field("protocol").type) == "string"  # an enum travels as text
    assert str(records.EXPERT_STATS.arrow_schema().field("tokens").type) == "int64"
    records.GENERATIONS.check_parquet(duckdb.connect(), path)
    with pytest.raises(ValueError, match=r"row 0: columns \['task'\], expected"):
        records.SAMPLE_SCORES.write(tmp_path / "y.parquet", [{"task": "a"}])
    with pytest.raises(ValueError, match=r"x.parquet: expected columns \['metric', 'sample_id', 'task', 'value'\]"):
        records.SAMPLE_SCORES.check_parquet(duckdb.connect(), path)


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"kind": "observation"}, "model: missing key; calibration: missing key"),
        ({**ObservationMeta(model="m", calibration="c", seed=0, model_type="t", num_experts=4, top_k=2,
                            moe_layers=[0], samples=1, tokens=2).dump(), "tokenz": 2}, "tokenz: unknown key"),
        ({**ObservationMeta(model="m", calibration="c", seed=0, model_type="t", num_experts=4, top_k=2,
                            moe_layers=[0], samples=1, tokens=2).dump(), "seed": True}, "seed: Input should be a valid integer"),
        ({**ObservationMeta(model="m", calibration="c", seed=0, model_type="t", num_experts=4, top_k=2,
                            moe_layers=[0], samples=1, tokens=2).dump(), "top_k": "2"}, r"top_k: .* \(found \"2\"\)"),
        ({"kind": "judgments", "name": ""}, "name: must not be empty"),
        ({"kind": "scores", "variant": variant("toy"), "group": "g"}, "an artifact of task group 'g' must list its tasks"),
    ],
)  # fmt: skip
def test_a_malformed_meta_json_fails_at_ingest_naming_file_and_key(tmp_path: Path, meta: dict, message: str) -> None:
    directory = tmp_path / "a"
    _meta(directory, meta)
    with pytest.raises(ValueError, match=message) as err:
        ingest(tmp_path / "s.duckdb", [directory])
    assert str(directory / "meta.json") in str(err.value)
    assert not (tmp_path / "s.duckdb").exists()


def test_ingest_loads_every_table(tmp_path: Path) -> None:
    dirs = seed_study(tmp_path / "run")
    store = tmp_path / "results.duckdb"
    report = ingest(store, dirs)
    assert report.rebuilt and not report.skipped and not report.removed
    # 2 observations + 2 selections + (1 + 8) scores + (1 + 8) generations
    assert len(report.added) == 22
    con = duckdb.connect(str(store), read_only=True)
    count = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    assert count("select count(*) from expert_stats") == 2 * 2 * 4
    assert count("select count(*) from expert_scores") == 2 * 2 * 2 * 4
    assert count("select count(*) from expert_masks") == 8 * 2 * 4
    assert count("select count(*) from variants") == 9
    assert count("select count(*) from variants where is_source") == 1
    assert count("select count(*) from tasks") >= 10
    assert count("select count(*) from generations where choices is not null") == 9 * 2
    # a mask keeps exactly the experts ranked 1..M by its criterion (ties: lower index first)
    assert count(
        """
        select count(*)
        from expert_masks as m
        join variants as v using (variant_id)
        join expert_scores as s
            on s.model = v.model and s.calibration = v.calibration and s.seed = v.seed
            and s.criterion = v.criterion and s.layer = m.layer and s.expert = m.expert
        where m.kept != (s.rank <= v.kept_per_layer)
        """
    ) == 0
    assert con.execute(
        "select kept_per_layer, top_k from variants where variant_id = 'toy:biomed:1:reap:0.25'"
    ).fetchone() == (3, 2)
    # task_scores is the mean of sample_scores
    assert con.execute(
        "select value, n from task_scores where variant_id = 'toy:source' and task = 'bio_qa'"
    ).fetchone() == (pytest.approx(0.8), 2)
    con.close()


def test_ingest_twice_is_a_no_op(tmp_path: Path) -> None:
    dirs = seed_study(tmp_path / "run")
    store = tmp_path / "results.duckdb"
    ingest(store, dirs)
    before, bytes_before = snapshot(store), store.read_bytes()
    report = ingest(store, dirs)
    assert not report.changed
    assert len(report.skipped) == 22
    assert snapshot(store) == before
    assert store.read_bytes() == bytes_before  # nothing was written
    assert not list(tmp_path.glob(".results.duckdb*"))


def test_changed_artifact_is_replaced_and_task_scores_recomputed(tmp_path: Path) -> None:
    root = tmp_path / "run"
    dirs = seed_study(root)
    store = tmp_path / "results.duckdb"
    ingest(store, dirs)
    record = variant("toy", "biomed", 0, "reap", 0.5, kept_per_layer=2)
    write_scores(root, record, {("bio_qa", "token_f1"): [0.1, 0.3]})
    report = ingest(store, dirs)
    assert [ref.identity for ref in report.replaced] == ["toy:biomed:0:reap:0.5"]
    assert not report.added and not report.removed and len(report.skipped) == 21
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute(
        "select task, metric, value, n from task_scores where variant_id = 'toy:biomed:0:reap:0.5'"
    ).fetchall() == [("bio_qa", "token_f1", pytest.approx(0.2), 2)]
    assert con.execute(
        "select count(*) from sample_scores where variant_id = 'toy:biomed:0:reap:0.5'"
    ).fetchone() == (2,)
    con.close()
    fresh = tmp_path / "fresh.duckdb"
    ingest(fresh, dirs)
    assert snapshot(fresh) == snapshot(store)


def test_vanished_artifacts_are_removed(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "run"
    dirs = seed_study(root)
    store = tmp_path / "results.duckdb"
    ingest(store, dirs)
    shutil.rmtree(root / "masks" / "toy" / "biomed" / "1")
    shutil.rmtree(root / "scores" / "toy" / "biomed" / "1")
    shutil.rmtree(root / "generations" / "toy" / "biomed" / "1")
    report = ingest(store, dirs)
    assert len(report.removed) == 1 + 4 + 4
    con = duckdb.connect(str(store), read_only=True)
    for table in ("expert_scores", "sample_scores", "task_scores", "generations", "expert_masks"):
        column = "seed" if table == "expert_scores" else "variant_id"
        value = 1 if table == "expert_scores" else None
        where = f"seed = {value}" if value is not None else "variant_id like 'toy:biomed:1:%'"
        assert con.execute(f"select count(*) from {table} where {where}").fetchone() == (0,), (table, column)
    # seed 1's variants are gone: no artifact names them any more
    assert con.execute("select count(*) from variants where seed = 1").fetchone() == (0,)
    assert con.execute("select count(*) from observations").fetchone() == (2,)
    con.close()
    fresh = tmp_path / "fresh.duckdb"
    ingest(fresh, dirs)
    assert snapshot(fresh) == snapshot(store)


def test_task_group_artifacts_of_one_variant_load_and_leave_independently(tmp_path: Path) -> None:
    """generate/score write one artifact per (variant, task group): same variant, disjoint tasks."""
    import shutil

    root = tmp_path / "run"
    record = variant("toy")
    groups = {"bio": {"bio_qa": 2, "bio_mcq": 1}, "general": {"general_arith": 3}}
    dirs = []
    for group, tasks in groups.items():
        for kind in ("scores", "generations"):
            if kind == "scores":
                directory = write_scores(root / group, record, {(task, "exact_match"): [1.0] * n for task, n in tasks.items()})
            else:
                directory = write_generations(root / group, record, tasks)
            meta = json.loads((directory / "meta.json").read_text())
            _meta(directory, {**meta, "group": group, "tasks": list(tasks)})
            dirs.append(directory)
    corpus = pa.schema([("task", pa.string()), ("metric", pa.string()), ("value", pa.float64()), ("n", pa.int64())])
    bio_scores = root / "bio" / "scores" / "toy" / "source"
    rows = [{"task": "bio_mcq", "metric": "label_f1", "value": 0.25, "n": 1}]
    pq.write_table(pa.Table.from_pylist(rows, schema=corpus), bio_scores / "corpus_scores.parquet")
    store = tmp_path / "results.duckdb"
    ingest(store, dirs)
    con = duckdb.connect(str(store), read_only=True)
    identities = sorted(row[0] for row in con.execute("select identity from artifacts where kind = 'scores'").fetchall())
    assert identities == ["toy:source/bio", "toy:source/general"]
    assert con.execute("select count(*) from generations where variant_id = 'toy:source'").fetchone() == (6,)
    assert con.execute(
        "select task, metric, value, n, level::varchar from task_scores order by task, metric"
    ).fetchall() == [
        ("bio_mcq", "exact_match", 1.0, 1, "sample"),
        ("bio_mcq", "label_f1", 0.25, 1, "corpus"),
        ("bio_qa", "exact_match", 1.0, 2, "sample"),
        ("general_arith", "exact_match", 1.0, 3, "sample"),
    ]
    con.close()
    # dropping one group's artifacts removes its tasks' rows and nothing of the other group
    shutil.rmtree(root / "general")
    ingest(store, [d for d in dirs if "general" not in d.parts])
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute("select distinct task from generations order by task").fetchall() == [("bio_mcq",), ("bio_qa",)]
    assert con.execute("select count(*) from task_scores where task = 'general_arith'").fetchone() == (0,)
    assert con.execute("select count(*) from task_scores").fetchone() == (3,)
    con.close()


def test_a_group_artifact_with_scores_outside_its_tasks_is_rejected(tmp_path: Path) -> None:
    directory = write_scores(tmp_path / "run", variant("toy"), {("bio_qa", "exact_match"): [1.0]})
    _meta(directory, ScoresMeta(variant=records.VariantRecord(**variant("toy")), group="g", tasks=["bio_mcq"]))
    with pytest.raises(ValueError, match="scores for tasks outside the artifact's tasks"):
        ingest(tmp_path / "results.duckdb", [directory])


def test_parent_directories_and_single_artifacts_are_accepted(tmp_path: Path) -> None:
    root = tmp_path / "run"
    seed_study(root, criteria=("reap",), ratios=(0.5,), seeds=(0,))
    store = tmp_path / "results.duckdb"
    report = ingest(store, [root / "scores" / "toy" / "source", root])
    assert len(report.added) == 1 + 1 + 2 + 2  # the source scores counted once


def test_schema_change_rebuilds_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = seed_study(tmp_path / "run", criteria=("reap",), ratios=(0.5,), seeds=(0,))
    store = tmp_path / "results.duckdb"
    ingest(store, dirs)
    before = snapshot(store)
    from expertlab.store import schema

    monkeypatch.setattr(schema, "fingerprint", lambda ddl: "changed")
    report = ingest(store, dirs)
    assert report.rebuilt and len(report.added) == 6 and not report.skipped
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "meta.json").unlink(), "no artifact"),
        (lambda d: (d / "meta.json").write_text("{"), "meta.json: not valid JSON"),
        (lambda d: (d / "meta.json").write_text('{"kind": "scorez"}'), "did you mean 'scores'"),
        (lambda d: (d / "sample_scores.parquet").unlink(), "sample_scores.parquet"),
        (lambda d: pq.write_table(pa.table({"task": ["a"], "value": [1.0]}), d / "sample_scores.parquet"),
         r"sample_scores.parquet: expected columns \['metric', 'sample_id', 'task', 'value'\]"),
        (lambda d: pq.write_table(pa.table({"task": ["a", "a"], "sample_id": ["1", "1"], "metric": ["m", "m"],
                                            "value": [1.0, 2.0]}), d / "sample_scores.parquet"),
         "scores/toy/source: cannot load scores artifact"),
    ],
)
def test_malformed_artifact_fails_naming_the_file_and_leaves_the_store(tmp_path: Path, damage, message: str) -> None:
    root = tmp_path / "run"
    write_observation(root, "toy", "biomed", 0)
    source_dir = write_scores(root, variant("toy"), {("bio_qa", "token_f1"): [0.5]})
    store = tmp_path / "results.duckdb"
    ingest(store, [root / "observations", root / "scores"])
    before, bytes_before = snapshot(store), store.read_bytes()
    damage(source_dir)
    write_observation(root, "toy", "biomed", 1)  # a valid change in the same run is not published either
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ingest(store, [root / "observations", root / "scores" / "toy" / "source"])
    assert store.read_bytes() == bytes_before and snapshot(store) == before
    assert not list(tmp_path.glob(".results.duckdb*"))


def test_mask_not_matching_its_meta_is_rejected(tmp_path: Path) -> None:
    directory = write_selection(tmp_path, "toy", "biomed", 0, ("reap",), (0.5,))
    (directory / "reap-0.5.json").write_text("[[0, 1, 2], [0, 1]]")
    with pytest.raises(ValueError, match=r"reap-0.5.json: layer 1 does not keep 2 distinct experts"):
        ingest(tmp_path / "s.duckdb", [directory])


def test_conflicting_variant_records_are_rejected(tmp_path: Path) -> None:
    write_selection(tmp_path, "toy", "biomed", 0, ("reap",), (0.5,))
    write_scores(tmp_path, variant("toy", "biomed", 0, "reap", 0.5, kept_per_layer=3), {("bio_qa", "token_f1"): [1.0]})
    with pytest.raises(ValueError, match=r"variant 'toy:biomed:0:reap:0.5': kept_per_layer is 2"):
        ingest(tmp_path / "s.duckdb", [tmp_path / "masks", tmp_path / "scores"])


def test_variant_id_must_match_its_fields(tmp_path: Path) -> None:
    record = variant("toy", "biomed", 0, "reap", 0.5) | {"variant_id": "toy:biomed:0:reap:0.50"}
    write_scores(tmp_path, record, {("bio_qa", "token_f1"): [1.0]})
    with pytest.raises(ValueError, match="does not match its fields"):
        ingest(tmp_path / "s.duckdb", [tmp_path / "scores"])


def test_a_quantized_variant_is_its_own_variant_named_by_its_scheme(tmp_path: Path) -> None:
    pruned = variant("toy", "biomed", 0, "reap", 0.5, kept_per_layer=2)
    quantized = variant("toy", "biomed", 0, "reap", 0.5, kept_per_layer=2, quantization="w4")
    for record in (pruned, quantized):
        write_scores(tmp_path, record, {("bio_qa", "token_f1"): [1.0]})
    ingest(tmp_path / "s.duckdb", [tmp_path / "scores"])
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    rows = con.execute("select variant_id, quantization from variants order by variant_id").fetchall()
    con.close()
    assert rows == [("toy:biomed:0:reap:0.5", None), ("toy:biomed:0:reap:0.5:w4", "w4")]
    # the id must carry the scheme, and the scheme must be a name
    for bad, message in (
        (quantized | {"variant_id": "toy:biomed:0:reap:0.5"}, "does not match its fields"),
        (quantized | {"quantization": 4}, r"meta.json: variant.quantization: Input should be a valid string \(found 4\)"),
    ):
        other = tmp_path / "bad"
        shutil.rmtree(other, ignore_errors=True)
        write_scores(other, bad, {("bio_qa", "token_f1"): [1.0]})
        with pytest.raises(ValueError, match=message):
            ingest(other / "s.duckdb", [other / "scores"])


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from expertlab.store import artifacts, ingest

loader = artifacts.KINDS["scores"].load
count = 0

def slow_load(con, artifact):
    global count
    loader(con, artifact)
    count += 1
    if count == 3:  # mid-ingest: some artifacts committed to the working copy, this one mid-transaction
        Path(sys.argv[2]).write_text("paused")
        time.sleep(60)

object.__setattr__(artifacts.KINDS["scores"], "load", slow_load)
ingest(sys.argv[1], sys.argv[3:])
"""


def test_killed_ingest_leaves_the_store_intact(tmp_path: Path) -> None:
    root = tmp_path / "run"
    dirs = seed_study(root)
    store = tmp_path / "results.duckdb"
    # first state: everything but seed 1's scores
    ingest(store, [root / "observations", root / "masks", root / "generations", root / "scores" / "toy" / "source",
                   root / "scores" / "toy" / "biomed" / "0"])
    before, bytes_before = snapshot(store), store.read_bytes()
    flag = tmp_path / "paused"
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(store), str(flag), *map(str, dirs)],
                               cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert process.poll() is None, "ingest ended before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert store.read_bytes() == bytes_before and snapshot(store) == before
    report = ingest(store, dirs)  # the re-run recovers: same tables as a fresh store
    assert len(report.added) == 4 and len(report.skipped) == 18
    fresh = tmp_path / "fresh.duckdb"
    ingest(fresh, dirs)
    assert snapshot(store) == snapshot(fresh)
    assert not list(tmp_path.glob(".results.duckdb*"))


def _ingest_process(store: Path, dirs: list[Path]) -> subprocess.Popen[str]:
    """`expertlab ingest` in its own process, stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "expertlab.cli", "ingest", "--store", str(store), *map(str, dirs)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _waiting_line(process: subprocess.Popen[str]) -> str:
    """The process's stderr up to its line saying it waits for the lock ('' if it ended without one)."""
    while line := process.stderr.readline():
        if "waiting" in line:
            return line
    return ""


def test_concurrent_ingests_take_turns_and_each_reports_the_truth(tmp_path: Path) -> None:
    """Two ingests started while the store is locked both wait; then they run one after the other, so
    the store and both summaries are those of the same two ingests run serially in that order."""
    import fcntl

    from expertlab.store.ingest import lock_path

    root = tmp_path / "run"
    seed_study(root)
    common = [root / "observations", root / "masks", root / "scores" / "toy" / "source",
              root / "generations" / "toy" / "source"]
    by_seed = {seed: common + [root / "scores" / "toy" / "biomed" / seed, root / "generations" / "toy" / "biomed" / seed]
               for seed in ("0", "1")}
    store = tmp_path / "results.duckdb"
    ingest(store, common)
    before, bytes_before = snapshot(store), store.read_bytes()

    holder = os.open(lock_path(store), os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    os.write(holder, f"{os.getpid()}\n".encode())
    processes = {seed: _ingest_process(store, dirs) for seed, dirs in by_seed.items()}
    try:
        for process in processes.values():
            line = _waiting_line(process)
            assert str(lock_path(store)) in line and f"pid {os.getpid()}" in line, line
        assert store.read_bytes() == bytes_before  # neither got past the lock
    finally:
        os.close(holder)  # released, the lock file left in place: the first to run removes it
    outputs = {seed: process.communicate() for seed, process in processes.items()}
    assert {seed: process.returncode for seed, process in processes.items()} == {"0": 0, "1": 0}, outputs
    summaries = {seed: out.strip().splitlines()[-1] for seed, (out, _) in outputs.items()}
    # the first ran on `common` and removed nothing; the second removed the first's 8 seed artifacts
    first = next(seed for seed, summary in summaries.items() if " 0 removed" in summary)
    second = "1" if first == "0" else "0"

    serial = tmp_path / "serial" / "results.duckdb"
    ingest(serial, common)
    assert snapshot(serial) == before
    for seed in (first, second):
        assert summaries[seed] == ingest(serial, by_seed[seed]).summary().replace(str(serial), str(store))
    assert summaries[second].endswith("8 added, 0 replaced, 8 removed, 6 unchanged")
    assert snapshot(store) == snapshot(serial)
    assert not list(tmp_path.glob(".results.duckdb*"))  # no lock file, no work directory left


def test_an_ingest_removes_work_left_by_killed_ingests_and_nothing_else(tmp_path: Path) -> None:
    dirs = seed_study(tmp_path / "run", criteria=("reap",), ratios=(0.5,), seeds=(0,))
    store = tmp_path / "results.duckdb"
    ingest(store, dirs)
    abandoned = tmp_path / ".results.duckdb.ingest-work-k1ll3d"
    abandoned.mkdir()
    (abandoned / "results.duckdb").write_bytes(store.read_bytes())
    (abandoned / "results.duckdb.wal").write_bytes(b"partial")
    legacy = [tmp_path / ".results.duckdb.ingest-tmp", tmp_path / ".results.duckdb.ingest-tmp.wal"]
    for path in legacy:
        path.write_bytes(b"partial")
    others = [tmp_path / ".results.duckdb.notes", tmp_path / ".other.duckdb.ingest-work-x", tmp_path / "ingest-work"]
    for path in others:
        path.mkdir()
    report = ingest(store, dirs)
    assert not report.changed  # an ingest that changes nothing cleans up too
    assert not abandoned.exists() and not any(path.exists() for path in legacy)
    assert all(path.is_dir() for path in others)


def test_ingest_work_files_are_ignored_by_git(tmp_path: Path) -> None:
    """The lock and work directories appear beside results.duckdb, a DVC output at the repository root."""
    from expertlab.store.ingest import _work_prefix, lock_path

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    store = Path("results.duckdb")
    names = [lock_path(store).name, f"{_work_prefix(store)}a1b2c3/results.duckdb", ".results.duckdb.ingest-tmp"]
    result = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", *names], cwd=REPO,
                            capture_output=True, text=True)
    assert sorted(line.split("\t")[-1] for line in result.stdout.splitlines()) == sorted(names), result


# --- expertlab sql ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    store = root / "results.duckdb"
    ingest(store, seed_study(root / "run"))
    return store


def run_stage(module_name: str, argv: list[str]) -> int:
    """Parse argv with a stage module's own arguments and run it (what `expertlab <command>` does)."""
    import argparse
    import importlib

    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_sql_formats(seeded_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "select variant_id, ratio from variants where criterion = 'reap' and seed = 0 order by ratio"
    assert run_stage("stages.sql", [query, "--store", str(seeded_store), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "variant_id,ratio\ntoy:biomed:0:reap:0.25,0.25\ntoy:biomed:0:reap:0.5,0.5\n"
    assert run_stage("stages.sql", [query, "--store", str(seeded_store), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"variant_id": "toy:biomed:0:reap:0.25", "ratio": 0.25},
        {"variant_id": "toy:biomed:0:reap:0.5", "ratio": 0.5},
    ]
    assert run_stage("stages.sql", [query, "--store", str(seeded_store)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["|", "variant_id", "|", "ratio", "|"]
    assert table[-2].split() == ["|", "toy:biomed:0:reap:0.5", "|", "0.5", "|"]


@pytest.mark.parametrize(
    "statement",
    ["delete from variants", "insert into tasks select * from tasks", "drop table variants",
     "create table scratch (x integer)"],
)
def test_sql_is_read_only(seeded_store: Path, statement: str) -> None:
    before = seeded_store.read_bytes()
    with pytest.raises(ValueError, match="the store is opened read-only, so statements that write are refused"):
        run_stage("stages.sql", [statement, "--store", str(seeded_store)])
    assert seeded_store.read_bytes() == before


def test_sql_errors_are_clear(tmp_path: Path, seeded_store: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no store at .*missing.duckdb; build it with `expertlab ingest`"):
        run_stage("stages.sql", ["select 1", "--store", str(tmp_path / "missing.duckdb")])
    assert not (tmp_path / "missing.duckdb").exists()
    with pytest.raises(ValueError, match="query failed: .*nope"):
        run_stage("stages.sql", ["select nope from variants", "--store", str(seeded_store)])


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory statements aim at, also HOME (where INSTALL would put extensions)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


SANDBOXED = [
    "copy (select 1) to '{out}/x.csv'",
    "copy variants to '{out}/variants.parquet' (format parquet)",
    "export database '{out}/dump'",
    "select 1; export database '{out}/dump'",
    "select * from read_csv('/etc/passwd')",
    "select * from read_text('/etc/hostname')",
    "select * from glob('/*')",
    "attach '{out}/other.duckdb' as other",
    "install httpfs",
    "load httpfs",
    "set enable_external_access = true",
    "reset enable_external_access",
    "set lock_configuration = false",
    "set enable_external_access = true; copy (select 1) to '{out}/x.csv'",
    "set allowed_directories = ['/']; copy (select 1) to '{out}/x.csv'",
]


@pytest.mark.parametrize("statement", SANDBOXED)
def test_sql_reaches_no_file_extension_or_network_but_the_store(
    seeded_store: Path, outside: Path, statement: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from expertlab.cli import main

    before, bytes_before = snapshot(seeded_store), seeded_store.read_bytes()
    store_dir = sorted(seeded_store.parent.iterdir())
    assert main(["sql", statement.format(out=outside), "--store", str(seeded_store)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("expertlab sql: error: query failed: the store is opened read-only and sandboxed") and (
        err.count("\n") == 1
    ), err
    assert list(outside.iterdir()) == []  # nothing written there, not even a directory
    assert sorted(seeded_store.parent.iterdir()) == store_dir
    assert seeded_store.read_bytes() == bytes_before and snapshot(seeded_store) == before


def test_sql_still_answers_queries_over_the_store(seeded_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from expertlab.cli import main

    def csv(query: str) -> str:
        assert main(["sql", "--format", "csv", query, "--store", str(seeded_store)]) == 0
        return capsys.readouterr().out

    # each pruned variant has scores on the 4 utility tasks and trial_summary
    assert csv(
        "select v.criterion, count(*) as n from task_scores as t join variants as v using (variant_id) "
        "where not v.is_source group by all order by all"
    ) == "criterion,n\nrandom,20\nreap,20\n"
    assert csv("select count(*) as n from primary_scores where task = 'bio_qa'") == "n\n8\n"
    assert csv("select count(*) as n from duckdb_columns() where table_name = 'variants'") == "n\n13\n"
    assert csv("select 1 as one; select count(*) as n from variants") == "n\n9\n"  # the last statement's rows
    assert csv("set variable r = 0.5; select count(*) as n from variants where ratio = getvariable('r')") == "n\n4\n"


def test_ingest_stage_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = seed_study(tmp_path / "run", criteria=("reap",), ratios=(0.5,), seeds=(0,))
    store = tmp_path / "results.duckdb"
    assert run_stage("stages.ingest", ["--store", str(store), *map(str, dirs)]) == 0
    assert capsys.readouterr().out.strip().endswith("6 added, 0 replaced, 0 removed, 0 unchanged")
    assert run_stage("stages.ingest", ["--store", str(store), *map(str, dirs)]) == 0
    assert capsys.readouterr().out.strip().endswith("0 added, 0 replaced, 0 removed, 6 unchanged")


def test_a_foreign_file_is_never_overwritten(tmp_path: Path) -> None:
    foreign = tmp_path / "other.duckdb"
    duckdb.connect(str(foreign)).close()
    write_observation(tmp_path / "run", "toy", "biomed", 0)
    with pytest.raises(ValueError, match="not an expertlab store"):
        ingest(foreign, [tmp_path / "run"])


def test_an_optional_directory_without_artifacts_is_no_error_a_required_one_is(tmp_path: Path) -> None:
    """`monosemanticity/` holds only its README while the second study is off: ingest takes it as optional."""
    off = tmp_path / "monosemanticity"
    off.mkdir()
    (off / "README.md").write_text("the second study's artifacts\n")
    scores = write_scores(tmp_path, variant("toy"), {("bio_qa", "token_f1"): [0.5]})
    report = ingest(tmp_path / "results.duckdb", [scores], [off])
    assert report.changed
    with pytest.raises(FileNotFoundError, match="no artifact"):
        ingest(tmp_path / "other.duckdb", [scores, off])

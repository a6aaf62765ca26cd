"""End to end: `dvc repro` of a micro grid in a real git + DVC repo, incremental re-runs, a remote round trip.

The repo is a copy of this project's pipeline files with a micro params.yaml; stage commands run the
installed `expertlab` from this checkout. The steps depend on each other and run in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from expertlab import layout
from tests.pipeline_study import BIN, MICRO, ROOT, commit, locked, ran, sh, study_repo, target

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = study_repo(tmp_path_factory.mktemp("study"), MICRO)
    commit(repo, "micro study")
    return repo


@pytest.fixture(scope="module")
def first_run(repo: Path) -> str:
    return sh("dvc", "repro", cwd=repo)


def test_first_run_builds_every_artifact(repo: Path, first_run: str):
    variants = [f"toy-biomed-0-{c}-0.5" for c in ("random", "reap")]
    quantized = "toy-biomed-0-reap-0.5-w4g16"
    expected = {"check", "prepare", "calibrate@biomed", "prepare_tasks@toy", "train_toy", "observe@toy-biomed-0", "select@toy-biomed-0"}
    expected |= {"calibrate@tool", "observe@toy-tool-0"}  # the tool-use corpus of the second study
    expected |= {"generate_source@toy-toy", "score_source@toy-toy", "ingest", "report"}
    expected |= {f"prune@{v}" for v in variants}
    expected |= {f"{stage}@{v}-toy" for stage in ("generate", "score", "judge") for v in variants}
    expected |= {f"quantize@{quantized}"} | {f"{stage}_quantized@{quantized}-toy" for stage in ("generate", "score", "judge")}
    expected |= {f"{stage}@toy-{k}" for stage in ("record_activations", "sample_experts") for k in ("native", 4)}
    expected |= {f"{stage}@toy-{k}-offline" for stage in ("explain_experts", "predict_experts") for k in ("native", 4)}
    expected |= {"select_experts@toy"}
    strategies = ("af", "edmrs", "full", "lora")
    expected |= {f"finetune@toy-{s}-0" for s in strategies}
    expected |= {f"{stage}_finetuned@toy-{s}-0-toy" for stage in ("generate", "score") for s in strategies}
    assert ran(first_run) == expected
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    assert con.execute("select variant_id, quantization from variants where quantization is not null").fetchall() == [
        ("toy:biomed:0:reap:0.5:w4g16", "w4g16")
    ]
    assert con.execute("select count(*) from variants").fetchone() == (4 + 4,)  # and the four fine-tuned ones
    assert con.execute("select finetune, finetune_seed, is_source from variants where finetune is not null order by 1").fetchall() == [
        (strategy, 0, False) for strategy in ("af", "edmrs", "full", "lora")
    ]
    # 2 MoE layers x 16 experts, two observations (biomed, tool)
    assert con.execute("select count(*) from expert_stats").fetchone() == (64,)
    # the second study's biomedical corpus is the observed biomed calibration set: AF^(biomedical) from the
    # activation records of the model's own routing (top-2), by SQL, is observe's routed_count / tokens for every expert
    af = con.execute(
        """
        with routed as (
            select layer, expert, sum(routed_tokens) as routed
            from activations join activation_windows using (model, top_k, window_id)
            where model = 'toy' and top_k = 2 and domain = 'biomedical' group by all
        ), tokens as (
            select sum(tokens) as tokens from activation_windows where model = 'toy' and top_k = 2 and domain = 'biomedical'
        )
        select s.layer, s.expert, coalesce(r.routed, 0) / t.tokens as af, s.routed_count / s.tokens as observed
        from expert_stats s cross join tokens t left join routed r using (layer, expert)
        where s.model = 'toy' and s.calibration = 'biomed' and s.seed = 0
        order by all
        """
    ).fetchall()
    assert len(af) == 32 and all(row[2] == row[3] for row in af) and sum(row[2] for row in af) > 0
    # the model re-observed at top-4: per layer, 4 routed experts per token where its own routing has 2
    runs = con.execute("select top_k, native_top_k from activation_runs where model = 'toy' order by top_k").fetchall()
    assert runs == [(2, 2), (4, 2)]
    routed = con.execute(
        "select top_k, layer, sum(routed_tokens) / any_value(w.tokens) from activations "
        "join (select top_k, sum(tokens) as tokens from activation_windows group by top_k) as w using (top_k) "
        "group by all order by all"
    ).fetchall()
    assert routed == [(k, layer, k) for k in (2, 4) for layer in range(2)]
    # every (scope, layer, expert) sampled at each top-k: scopes all, biomedical and tool_use; each explained and
    # scored by the stand-ins
    assert con.execute("select top_k, count(*) from sample_counts group by all order by all").fetchall() == [(2, 96), (4, 96)]
    for domain in ("biomedical", "tool_use"):  # every expert routed in the domain has its EMS and EDMS
        total, with_ems, with_edms = con.execute(
            "select count(*), count(ems), count(edms) from monosemanticity_scores where domain = ? and not reobserved and af > 0",
            [domain],
        ).fetchone()
        assert total == with_ems == with_edms and 24 <= total <= 32
    # Fig. 2a: LDS of each layer at top-2 and top-4, from the report's table
    sparsity = con.execute(
        "select layer, top_k, reobserved from read_csv_auto(?) order by all", [str(repo / "report" / "top_k_monosemanticity.csv")]
    ).fetchall()
    assert sparsity == [(layer, k, k == 4) for layer in range(2) for k in (2, 4)]
    # the af and edmrs strategies' experts: in the layer of highest LDS, the 4 of highest AF and of highest EDMRS
    # of the tool_use domain, ties to the lower index, recomputed here from the store's own scores
    (layer,) = con.execute("select chosen_layers[1] from expert_selection_runs where model = 'toy'").fetchone()
    lds = con.execute(
        "select layer, avg(ems) from monosemanticity_scores where domain = 'tool_use' and not reobserved "
        "group by layer order by 2 desc, 1"
    ).fetchall()
    assert layer == lds[0][0]
    for ranking in ("af", "edmrs"):
        chosen = con.execute(
            f"select expert from expert_selections where strategy = '{ranking}' and layer = ? order by rank", [layer]
        ).fetchall()
        best = con.execute(
            f"select expert from monosemanticity_scores where domain = 'tool_use' and not reobserved and layer = ? and {ranking} is not null "
            f"order by {ranking} desc, expert limit 4", [layer]
        ).fetchall()
        assert chosen == best and len(chosen) == 4
    # every sample of every task scored for every variant: 8 variants x 6 tasks x 16 items
    assert con.execute("select count(distinct (variant_id, task, sample_id)) from sample_scores").fetchone() == (768,)
    # the fine-tuning comparison: the source and each strategy, in domain tool_call, out of domain the other utility tasks
    compared = con.execute(
        "select strategy, n_in_domain_tasks, n_out_of_domain_tasks from read_csv_auto(?) order by all",
        [str(repo / "report" / "finetune_comparison.csv")],
    ).fetchall()
    assert compared == [(s, 1, 4) for s in ("af", "edmrs", "full", "lora", "source")]
    # the grounding judge on 16 summaries of 3 pruned variants (one quantized): absolute on the pruned
    # and the source outputs, and the four relative answers
    judged = con.execute(
        "select protocol, output, count(*), count(distinct variant_id) from judgments "
        "where judge = 'grounding' and status = 'ok' and task = 'trial_summary' group by all order by all"
    ).fetchall()
    assert judged == [("absolute", "pruned", 48, 3), ("absolute", "source", 48, 3), ("relative", "pair", 192, 3)]
    # the quantized variant is compared with its unquantized self, and left out of the pruning-grid tables
    compared = con.execute(
        "select distinct quantization from read_csv_auto(?) order by all", [str(repo / "report" / "quantization_comparison.csv")]
    ).fetchall()
    assert compared == [("none",), ("w4g16",)]
    assert "w4g16" not in (repo / "report" / "judge_rates.csv").read_text()
    kept = con.execute("select count(*) from expert_masks where kept").fetchone()[0]
    assert kept == 2 * 2 * 8  # two masks x two layers x eight kept experts
    for name in ("utility_retention", "task_scores_at_half", "headline", "findings", "judge_rates"):
        assert (repo / "report" / f"{name}.md").is_file()
        assert (repo / "report" / f"{name}.csv").is_file()
    # the micro model scores above 0 on every utility task, so every pruned variant has a retention
    assert "retention_mean" in (repo / "report" / "utility_retention.csv").read_text()
    commit(repo, "first run")


def test_the_findings_hold_on_the_trained_toy(repo: Path, first_run: str):
    """The study's findings on a real run (DESIGN.md, the toy world): pruned at 50% on biomedical calibration,
    reap keeps more biomedical utility than random, and general utility falls well below biomedical.

    The domain structure comes from the toy world and the domain-routed warm-up (toy.train.domain_routed_fraction);
    trained without it, general utility under reap stays within 0.1 of biomedical (measured on this micro study).
    """
    from expertlab.params import Report
    from expertlab.report.execute import run_queries

    variables = Report.model_validate(MICRO["report"]).variables()
    tables = {query.table: table.records() for query, table in run_queries(repo / "results.duckdb", ROOT / "queries", variables)}
    findings = {(row["finding"], row["criterion"]): row for row in tables["findings"]}
    assert set(findings) == {("beats_random", "reap"), ("general_falls_faster", "reap")}
    assert all(row["holds"] for row in findings.values()), tables["findings"]
    headline = {row["criterion"]: row for row in tables["headline"]}
    assert set(headline) == {"random", "reap"} and {row["n_seeds"] for row in headline.values()} == {1}
    beats, falls = findings[("beats_random", "reap")], findings[("general_falls_faster", "reap")]
    assert beats["value"] == pytest.approx(headline["reap"]["biomedical_retention_mean"])
    assert beats["reference"] == pytest.approx(headline["random"]["biomedical_retention_mean"])
    assert falls["value"] == pytest.approx(headline["reap"]["general_retention_mean"])
    assert falls["reference"] == pytest.approx(headline["reap"]["biomedical_retention_mean"])
    # not a coin flip: over three world and training seeds reap's general retention fell 0.3 to 0.7 below its
    # biomedical retention, and its biomedical retention beat random's by 0.13 to 0.27
    assert falls["reference"] - falls["value"] > 0.2, tables["headline"]


def test_same_params_and_code_give_byte_identical_artifacts(repo: Path, first_run: str):
    """Forced re-runs of one instance of each stage that computes (training to quantization) write the outputs
    dvc.lock recorded: same hashes. Ingest and report are left out: the store records when it ingested."""
    before = {path: (repo / path).read_text() for path in layout.lock_files(repo)}
    old = locked(repo)
    variant = "toy-biomed-0-reap-0.5"
    stages = ["train_toy", "calibrate@biomed", "observe@toy-biomed-0", "select@toy-biomed-0", f"prune@{variant}"]
    stages += [f"{stage}@{variant}-toy" for stage in ("generate", "score", "judge")] + [f"quantize@{variant}-w4g16"]
    output = sh("dvc", "repro", "--force", "--single-item", *map(target, stages), cwd=repo)
    assert ran(output) == set(stages)
    new = locked(repo)
    changed = sorted(name for name in stages if old[name]["outs"] != new[name]["outs"])
    assert not changed, f"re-running changed the outputs of {changed}"
    assert {path: (repo / path).read_text() for path in layout.lock_files(repo)} == before


def test_report_curves_are_dvc_plots(repo: Path, first_run: str):
    import json

    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    shown = subprocess.run(["dvc", "plots", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True)
    plots = json.loads(shown.stdout)["data"]
    # utility retained, its summaries scored and judged
    assert "report/utility_retention.csv" in plots
    for name, y in (("utility_retention", "retention_mean"), ("reliability_scores", "value_mean"), ("judge_rates", "rate")):
        (plot,) = plots[f"report/{name}.csv"]
        assert plot["content"]["encoding"]["y"]["field"] == y and plot["content"]["data"]["values"], name
    assert (repo / "report" / "index.html").is_file()


def test_noop_repro_runs_nothing(repo: Path, first_run: str):
    output = sh("dvc", "repro", cwd=repo)
    assert ran(output) == set()


def test_a_misspelt_key_fails_dvc_repro_naming_it_before_anything_runs(repo: Path, first_run: str):
    """No stage tracks `ratioz`, so only the check stage (tracking the whole file) can name it."""
    good = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(good + "ratioz: [0.5]\n")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    result = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ratioz: unknown key; allowed: study, models" in result.stdout + result.stderr
    assert ran(result.stdout + result.stderr) == {"check"}
    (repo / "params.yaml").write_text(good)


def test_an_edit_no_stage_reads_reruns_only_the_check(repo: Path, first_run: str):
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "# a note on this study\n")
    assert ran(sh("dvc", "repro", cwd=repo)) == {"check"}
    assert ran(sh("dvc", "repro", cwd=repo)) == set()
    commit(repo, "a note")


def test_adding_a_ratio_runs_only_what_it_touches(repo: Path, first_run: str):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["study"]["ratios"] = [0.5, 0.25]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = sh("dvc", "repro", cwd=repo)
    new = [f"toy-biomed-0-{c}-0.25" for c in ("random", "reap")]
    expected = {"check", "select@toy-biomed-0", "ingest", "report"}
    expected |= {f"prune@{v}" for v in new}
    expected |= {f"{stage}@{v}-toy" for stage in ("generate", "score", "judge") for v in new}
    assert ran(output) == expected
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from variants where finetune is null").fetchone() == (6,)
    finally:
        con.close()  # an open read-only connection would show the next test this snapshot of the file
    commit(repo, "add ratio 0.25")


def test_a_judge_change_reruns_only_judging(repo: Path, first_run: str):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["judge"]["protocols"] = ["absolute"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = sh("dvc", "repro", cwd=repo)
    variants = [f"toy-biomed-0-{c}-{r}" for c in ("random", "reap") for r in ("0.5", "0.25")]
    judged = {f"judge@{v}-toy" for v in variants} | {"judge_quantized@toy-biomed-0-reap-0.5-w4g16-toy"}
    assert ran(output) == judged | {"check", "ingest", "report"}
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    assert con.execute("select distinct protocol from judgments").fetchall() == [("absolute",)]
    con.close()
    commit(repo, "absolute judgments only")


def test_a_quantization_change_reruns_only_the_quantized_variant(repo: Path, first_run: str):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["quantization"]["w4g16"]["method"] = "rtn"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = sh("dvc", "repro", cwd=repo)
    quantized = "toy-biomed-0-reap-0.5-w4g16"
    stages = {f"quantize@{quantized}"} | {f"{s}_quantized@{quantized}-toy" for s in ("generate", "score", "judge")}
    # a stage whose inputs come out identical is not re-run: the micro model's outputs may not move
    assert f"quantize@{quantized}" in ran(output) and ran(output) <= stages | {"check", "ingest", "report"}
    record = json.loads((repo / "checkpoints/toy/biomed/0/reap/0.5-w4g16/expertlab_quantization.json").read_text())
    assert record["spec"]["method"] == "rtn"
    commit(repo, "round-to-nearest quantization")


def test_an_explainer_change_reruns_only_explain_predict_and_what_reads_them(repo: Path, first_run: str):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["monosemanticity"]["domain_prompts"]["biomedical"] = "tool_use"  # P_domain's text for the domain
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = sh("dvc", "repro", cwd=repo)
    # nothing upstream of the explanations: no record, sample, observation or variant stage runs again (the
    # selection only when the predictions of the model's own routing came out different)
    interpret = {f"{stage}@toy-{k}-offline" for stage in ("explain_experts", "predict_experts") for k in ("native", 4)}
    assert {"check", *interpret, "ingest", "report"} <= ran(output)
    assert ran(output) <= {"check", *interpret, "select_experts@toy", "ingest", "report"}
    meta = json.loads((repo / "monosemanticity/toy/top_k/native/explanations/offline/meta.json").read_text())
    assert meta["domain_prompts"] == {"biomedical": "tool_use", "tool_use": "tool_use"}
    commit(repo, "tool-use domain prompt")


def test_imported_masks_rerun_only_ingest_and_report(repo: Path, first_run: str):
    fixtures = ROOT / "tests" / "fixtures" / "study_masks"
    sh("expertlab", "import-masks", str(fixtures / "gpt-oss-20b-medinst-reap-0"), "--num-experts", "gpt-oss-20b=32", cwd=repo)
    output = sh("dvc", "repro", cwd=repo)
    assert ran(output) == {"ingest", "report"}
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    origins = dict(con.execute("select origin, count(*) from variants group by origin").fetchall())
    assert origins == {"imported": 1, "expertlab": 6 + 4}  # the four fine-tuned variants are expertlab's too
    con.close()
    commit(repo, "import a released mask")


def test_remote_round_trip_recomputes_nothing(repo: Path, first_run: str, tmp_path: Path):
    remote = tmp_path / "remote"
    sh("dvc", "remote", "add", "-d", "storage", str(remote), cwd=repo)
    commit(repo, "remote")
    sh("dvc", "push", cwd=repo)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    sh("dvc", "pull", "--allow-missing", cwd=clone)
    assert not list(clone.glob("checkpoints/**/config.json"))  # never pushed: reproducible from the masks
    assert (clone / "results.duckdb").is_file() and (clone / "masks").is_dir()
    output = sh("dvc", "repro", "--allow-missing", cwd=clone)
    assert ran(output) == set()
    sh("expertlab", "report", "--store", "results.duckdb", "--queries", "queries", "--out", "report_again", cwd=clone)
    for table in sorted((repo / "report").glob("*.csv")) + sorted((repo / "report").glob("*.md")):
        assert (clone / "report_again" / table.name).read_bytes() == table.read_bytes(), table.name

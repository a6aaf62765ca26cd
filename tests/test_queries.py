"""Report queries: documented columns == real output for every queries/*.sql, hand-computed retention, report files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from test_store import UTILITY, run_stage, seed_study, variant, write_judgments, write_scores

from expertlab.params import Report
from expertlab.report import write_report
from expertlab.report.execute import connect_read_only, run_queries, run_query, set_variables
from expertlab.report.queries import read_queries, read_query
from expertlab.store import ingest

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO / "queries"
QUERY_FILES = sorted(QUERIES.glob("*.sql"))
VARIABLES = Report().variables()  # the params defaults, as in params.yaml


def seed_quantized(root: Path) -> list[Path]:
    """reap at 0.5 quantized by a scheme "w4" on both seeds, each primary score 0.1 below the unquantized
    variant's (seed_study), and judge j's absolute verdicts on seed 0's quantized summaries (3 of 4 hallucinated;
    1 of 4 unquantized ones in seed_judged_study)."""
    for seed in (0, 1):
        record = variant("toy", "biomed", seed, "reap", 0.5, kept_per_layer=2, quantization="w4")
        values = {}
        for task, metric in UTILITY.items():
            score = 0.8 * 0.5 + 0.02 * seed - (0.1 if task.startswith("general") else 0.0) - 0.1
            values[(task, metric)] = [score - 0.05, score + 0.05]
        values[("trial_summary", "rouge_l")] = [0.3, 0.3]
        write_scores(root, record, values)
    return [write_judgments(root, "toy-quantized", judged_seed_zero(3, quantization="w4"))]


def judged_seed_zero(hallucinated: int, quantization: str | None = None) -> list[dict]:
    """One judge's absolute verdicts on 4 trial summaries of seed 0's reap at 0.5 (quantized by `quantization`),
    the first `hallucinated` of them hallucinated."""
    return [
        {"judge": "j", "protocol": "absolute", "question": "hallucinated", "sample_id": str(doc), "ratio": 0.5,
         "calibration": "biomed", "quantization": quantization, "task": "trial_summary",
         "label": "hallucinated" if doc < hallucinated else "faithful"}
        for doc in range(4)
    ]  # fmt: skip


def seed_judged_study(root: Path, quantized: bool = True) -> list[Path]:
    """The seeded study plus two LLM judges' absolute verdicts on reap's outputs at 0.25 and 0.5 (and
    with `quantized`, the quantized variants of seed_quantized)."""
    rows = [
        {
            "judge": judge,
            "protocol": "absolute",
            "question": "hallucinated",
            "sample_id": str(doc),
            "ratio": ratio,
            "label": "hallucinated" if (doc + ratio * 4 + (judge == "judge_b")) % 3 == 0 else "faithful",
        }
        for judge in ("judge_a", "judge_b")
        for ratio in (0.25, 0.5)
        for doc in range(4)
    ]
    # one configuration also pruned under a second calibration set, for calibration_comparison
    dual = variant("toy", "dual", 0, "reap", 0.5, kept_per_layer=2)
    write_scores(root, dual, {("bio_qa", "token_f1"): [0.5], ("general_arith", "exact_match"): [0.4]})
    unquantized = judged_seed_zero(1)
    paths = [*seed_study(root), write_judgments(root, "toy-absolute", rows), write_judgments(root, "toy-j", unquantized)]
    return paths + seed_quantized(root) if quantized else paths


def seed_monosemanticity(
    root: Path, top_k: int = 1, explainer: str = "offline", wrong: bool = False, records_too: bool = True
) -> list[Path]:
    """The second study's four artifacts for model toy (its own top-k is 1), small enough to score by hand: windows
    0, 1 biomedical (4 tokens each), 2, 3 general (4, 2 tokens); layer 0's expert 0 routed on 2, 1, 1 tokens of
    windows 0, 1, 2, expert 1 on 2 tokens of window 3; each expert's test windows and the predictor's answers on them:
      all, expert 0: window 1 (routed) named, 3 (not) named -> EMS 1/2
      all, expert 1: window 3 (routed) named, window 0 invalid -> EMS 1/1 (the invalid one left out)
      biomedical, expert 0: windows 0, 1 (routed) both named -> EDMS 1; AF 3/8, EDMRS 3/8
      biomedical, expert 1: windows 0, 1 (not routed), 0 unnamed, 1 named -> EDMS 1/2; AF 0, EDMRS 0
    `wrong` flips every valid answer (EMS 1/2 and 0, EDMS 0 and 1/2); `top_k` other than 1 says the records
    re-observed the model (the same records, for the arithmetic); without `records_too`, only the explainer's two."""
    from expertlab import layout, records
    from expertlab.io import write_json

    label = "native" if top_k == 1 else top_k
    paths = {
        "activations": layout.activations_dir("toy", label), "samples": layout.samples_dir("toy", label),
        "explanations": layout.explanations_dir("toy", label, explainer),
        "predictions": layout.predictions_dir("toy", label, explainer),
    }  # fmt: skip
    paths = {name: root / path for name, path in paths.items() if records_too or name in ("explanations", "predictions")}
    for path in paths.values():
        path.mkdir(parents=True)
    tests = {  # (scope, expert) -> [(window, routed, predicted)]
        ("all", 0): [(1, True, True), (3, False, True)],
        ("all", 1): [(3, True, True), (0, False, None)],
        ("biomedical", 0): [(0, True, True), (1, True, True)],
        ("biomedical", 1): [(0, False, False), (1, False, True)],
    }
    if wrong:
        tests = {key: [(w, routed, None if p is None else not p) for w, routed, p in shown] for key, shown in tests.items()}
    if records_too:
        records.ACTIVATION_WINDOWS.write(paths["activations"] / "windows.parquet", [
            {"window_id": w, "domain": d, "document": w, "start": 0, "tokens": n, "token_texts": ["x"] * n}
            for w, d, n in ((0, "biomedical", 4), (1, "biomedical", 4), (2, "general", 4), (3, "general", 2))
        ])  # fmt: skip
        records.ACTIVATIONS.write(paths["activations"] / "activations.parquet", [
            {"layer": 0, "expert": e, "window_id": w, "routed_tokens": n, "max_weight": 0.5, "positions": list(range(n))}
            for e, w, n in ((0, 0, 2), (0, 1, 1), (0, 2, 1), (1, 3, 2))
        ])  # fmt: skip
        write_json(paths["activations"] / "meta.json", records.ActivationsMeta(
            model="toy", seed=0, corpus={"biomedical": "biomed", "general": "general"}, window_tokens=4,
            model_type="qwen3_moe", num_experts=2, top_k=top_k, native_top_k=1, moe_layers=[0], documents=4, windows=4,
            tokens={"biomedical": 8, "general": 6}, batch_size=4, max_length=8,
        ).dump())  # fmt: skip
        records.EXPERT_SAMPLES.write(paths["samples"] / "samples.parquet", [
            {"scope": scope, "layer": 0, "expert": expert, "role": "test", "window_id": w, "routed": routed,
             "activation": 0.5 if routed else 0.0, "rank": rank}
            for (scope, expert), shown in tests.items() for rank, (w, routed, _) in enumerate(shown, start=1)
        ])  # fmt: skip
        records.SAMPLE_COUNTS.write(paths["samples"] / "counts.parquet", [
            {"scope": scope, "layer": 0, "expert": expert, "routed_windows": 2, "unrouted_windows": 2, "explain": 0,
             "test_positives": 2, "test_negatives": 0, "shortfall": "0 of 1 explanation examples"}
            for scope, expert in tests
        ])  # fmt: skip
        write_json(paths["samples"] / "meta.json", records.ExpertSamplesMeta(
            model="toy", top_k=top_k, seed=0, scopes=["all", "biomedical"], explain_examples=1, test_examples=2,
            negatives=2, test_sampling="quantiles", quantiles=1, experts_short=4,
        ).dump())  # fmt: skip
    asked = records.AskedMeta(prompts=4, cache_hits=0, billed=0, requests=0, invalid=0, prompt_tokens=0, completion_tokens=0)
    records.EXPLANATIONS.write(paths["explanations"] / "explanations.parquet", [
        {"scope": scope, "layer": 0, "expert": expert, "explanation": "x", "status": "ok", "raw": "x"}
        for scope, expert in tests
    ])  # fmt: skip
    write_json(paths["explanations"] / "meta.json", records.ExplanationsMeta(
        model="toy", top_k=top_k, explainer=explainer, explainer_model=None, domain_prompts={"biomedical": "medicine"},
        asked=asked,
    ).dump())  # fmt: skip
    records.PREDICTIONS.write(paths["predictions"] / "predictions.parquet", [
        {"scope": scope, "layer": 0, "expert": expert, "window_id": w, "part": 0, "predicted": predicted,
         "status": "ok" if predicted is not None else "invalid"}
        for (scope, expert), shown in tests.items() for w, _, predicted in shown
    ])  # fmt: skip
    write_json(paths["predictions"] / "meta.json", records.PredictionsMeta(
        model="toy", top_k=top_k, explainer=explainer, predictor="offline", predictor_model=None, examples_per_prompt=2,
        asked=asked,
    ).dump())  # fmt: skip
    return list(paths.values())


def seed_monosemanticity_study(root: Path) -> list[Path]:
    """The model's own routing explained by offline (seed_monosemanticity) and by a second explainer `other` whose
    answers are all flipped, and a re-observation at top-k 2 explained by offline with flipped answers too."""
    return [
        *seed_monosemanticity(root),
        *seed_monosemanticity(root, explainer="other", wrong=True, records_too=False),
        *seed_monosemanticity(root, top_k=2, wrong=True),
    ]


FINETUNED = {  # strategy -> (biomedical, general) primary score at fine-tuning seed 0; seed 1 adds 0.02
    "full": (0.9, 0.4),
    "af": (0.8, 0.6),
    "edmrs": (0.85, 0.7),
}


def seed_finetuned(root: Path) -> list[Path]:
    """Fine-tuned variants of toy (FINETUNED, seeds 0 and 1, each task's two samples 0.05 either side) and the
    expert selection that names their target domain, biomedical; the source scores 0.8 on every task (seed_study)."""
    from expertlab import records
    from expertlab.io import write_json
    from expertlab.variants import Variant

    paths = []
    for strategy, (bio, general) in FINETUNED.items():
        for seed in (0, 1):
            record = Variant(model="toy", finetune=strategy, finetune_seed=seed).record(None, 2)
            values = {}
            for task, metric in UTILITY.items():
                score = (general if task.startswith("general") else bio) + 0.02 * seed
                values[(task, metric)] = [score - 0.05, score + 0.05]
            paths.append(write_scores(root, record, values))
    selection = root / "monosemanticity" / "toy" / "selection"
    selection.mkdir(parents=True)
    records.EXPERT_SELECTIONS.write(selection / "selections.parquet", [
        {"strategy": strategy, "layer": 0, "rank": 1, "expert": 0, "score": 0.375} for strategy in ("af", "edmrs")
    ])  # fmt: skip
    write_json(selection / "meta.json", records.ExpertSelectionsMeta(
        model="toy", explainer="offline", predictor="offline", domain="biomedical", layers="best_lds",
        experts_per_layer=1, chosen_layers=[0], short=0,
    ).dump())  # fmt: skip
    return [*paths, selection]


def test_fine_tuning_comparison_by_hand(study_store: Path) -> None:
    rows = {row["strategy"]: row for row in _table(study_store, "finetune_comparison")}
    assert list(rows) == ["source", "af", "edmrs", "full"]
    approx = pytest.approx
    assert (rows["source"]["n_seeds"], rows["source"]["in_domain_mean"], rows["source"]["out_of_domain_mean"]) == (1, approx(0.8), approx(0.8))
    edmrs, full = rows["edmrs"], rows["full"]
    assert (edmrs["n_seeds"], edmrs["in_domain_mean"], edmrs["out_of_domain_mean"]) == (2, approx(0.86), approx(0.71))
    assert edmrs["in_domain_sd"] == approx(0.02 / 2**0.5) and edmrs["n_in_domain_tasks"] == 2 == edmrs["n_out_of_domain_tasks"]
    assert edmrs["out_of_domain_vs_full"] == approx((0.71 - 0.41) / 0.41)
    assert edmrs["in_domain_vs_full"] == approx((0.86 - 0.91) / 0.91)
    assert edmrs["out_of_domain_vs_af"] == approx((0.71 - 0.61) / 0.61)
    assert edmrs["keeps_more_than_full"] is True and full["keeps_more_than_full"] is None
    assert full["out_of_domain_vs_full"] == 0.0
    assert edmrs["trained_layers"] == [0] and full["trained_layers"] is None  # from expert_selections
    tasks = {(row["strategy"], row["task"]): row for row in _table(study_store, "finetune_task_scores")}
    general = tasks[("edmrs", "general_mcq")]
    assert (general["in_domain"], general["score_mean"], general["vs_full"]) == (False, approx(0.71), approx((0.71 - 0.41) / 0.41))
    assert tasks[("full", "bio_qa")]["in_domain"] is True and tasks[("source", "bio_qa")]["n_seeds"] == 1


@pytest.fixture(scope="module")
def study_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    store = root / "results.duckdb"
    ingest(store, [*seed_judged_study(root / "run"), *seed_monosemanticity_study(root / "run"), *seed_finetuned(root / "run")])
    return store


def test_monosemanticity_scores_by_hand(study_store: Path) -> None:
    rows = _table(study_store, "expert_monosemanticity")  # the model's own routing only
    assert [(r["explainer"], r["top_k"], r["expert"], r["domain"], r["ems"], r["edms"], r["af"], r["edmrs"], r["n_ems"], r["n_edms"])
            for r in rows] == [
        ("offline", 1, 0, "biomedical", 0.5, 1.0, 0.375, 0.375, 2, 2),
        ("offline", 1, 1, "biomedical", 1.0, 0.5, 0.0, 0.0, 1, 2),
        ("other", 1, 0, "biomedical", 0.5, 0.0, 0.375, 0.0, 2, 2),
        ("other", 1, 1, "biomedical", 0.0, 0.5, 0.0, 0.0, 1, 2),
    ]  # fmt: skip
    layers = _table(study_store, "layer_monosemanticity")  # Fig. 8: two explainers side by side
    assert [(r["explainer"], r["top_k"], r["layer"], r["lds"], r["ldds"], r["n_lds"], r["n_ldds"]) for r in layers] == [
        ("offline", 1, 0, 0.75, 0.75, 2, 2),
        ("other", 1, 0, 0.25, 0.25, 2, 2),
    ]


def test_lds_by_top_k_by_hand(study_store: Path) -> None:
    """Fig. 2a: the model's own top-1 (LDS 3/4) beside its re-observation at top-2 (every answer flipped: EMS 1/2 and
    0, LDS 1/4)."""
    rows = _table(study_store, "top_k_monosemanticity")
    assert [(r["explainer"], r["layer"], r["top_k"], r["reobserved"], r["lds"], r["n_lds"]) for r in rows] == [
        ("offline", 0, 1, False, 0.75, 2),
        ("offline", 0, 2, True, 0.25, 2),
        ("other", 0, 1, False, 0.25, 2),
    ]


def test_the_required_queries_exist() -> None:
    assert {"utility_retention", "task_scores_at_half", "headline", "findings", "judge_agreement"} <= {
        path.stem for path in QUERY_FILES
    }


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_query_returns_exactly_its_documented_columns(path: Path, study_store: Path) -> None:
    import duckdb

    query = read_query(path)
    assert query.table == path.stem and query.description
    assert all(text.strip() for text in query.columns.values())
    con = duckdb.connect(str(study_store), read_only=True)
    try:
        set_variables(con, VARIABLES)
        cursor = con.execute(query.sql)
        columns = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    finally:
        con.close()
    assert columns == list(query.columns)
    assert rows, f"{path.stem} is empty on the seeded study"


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_query_reads_as_a_cte_chain_ending_in_final(path: Path) -> None:
    body = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    assert body.lstrip().startswith("with\n")
    assert "\nfinal as (" in body and "\nselect * from final" in body
    keywords = ("SELECT", "FROM", "WHERE", "GROUP BY", "JOIN", "ORDER BY", "WITH")
    assert not [word for word in keywords if word in body], "keywords are lowercase"


GRID_VIEWS = {
    "variants": "grid_variants",
    "primary_scores": "grid_primary_scores",
    "domain_retention": "grid_domain_retention",
    "verdicts": "grid_verdicts",
    "variant_measures": "grid_variant_measures",
}


def test_the_pruning_grid_is_filtered_once_in_the_schema_and_read_from_its_views(study_store: Path) -> None:
    """The grid leaves quantized variants out in the schema's grid_ views only: no query repeats the filter,
    and only quantization_comparison reads a relation that holds quantized variants, besides judge_agreement,
    which compares raters on every output they judged and reads `variants` for the judged variant's ratio."""
    import re

    con = connect_read_only(study_store)
    try:
        views = {name for (name,) in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
        for relation, view in GRID_VIEWS.items():
            (quantized,) = con.execute(f"select count(*) from {relation} where quantization is not null").fetchone()
            (tuned,) = con.execute(
                f"select count(*) from {relation} where variant_id in (select variant_id from variants where finetune is not null)"
            ).fetchone()
            (everything,) = con.execute(f"select count(*) from {relation}").fetchone()
            (grid,) = con.execute(f"select count(*) from {view}").fetchone()
            assert quantized > 0 and grid == everything - quantized - tuned, view
            assert tuned > 0 or relation in ("verdicts", "variant_measures"), view  # fine-tuned variants are not judged
    finally:
        con.close()
    assert set(GRID_VIEWS.values()) | {"source_task_scores"} <= views
    schema = (REPO / "schema" / "expertlab.sql").read_text()
    assert schema.count("where quantization is null") == len(GRID_VIEWS)
    reads = re.compile(rf"\b(?:from|join)\s+({'|'.join(GRID_VIEWS)})\b")
    for path in QUERY_FILES:
        body = path.read_text()
        assert "quantization is null" not in body, f"{path.stem}: read a grid_ view instead"
        if path.stem == "judge_agreement":
            assert set(reads.findall(body)) == {"variants"}, f"{path.stem} reads {reads.findall(body)}"
        elif path.stem != "quantization_comparison":
            assert not reads.findall(body), f"{path.stem} reads {reads.findall(body)}: read the grid_ views"


def test_undocumented_or_missing_columns_fail_the_report(tmp_path: Path, study_store: Path) -> None:
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "ratios.sql").write_text(
        "-- table: ratios\n-- column: ratio: pruning ratio\n-- column: n: variants\n"
        "select ratio from variants group by ratio\n"
    )
    with pytest.raises(ValueError, match=r"ratios.sql: the query returns \['ratio'\], its header documents"):
        run_queries(study_store, queries)
    (queries / "ratios.sql").write_text("-- table: ratio\n-- column: ratio: x\nselect 1 as ratio\n")
    with pytest.raises(ValueError, match="header must start with '-- table: ratios'"):
        read_queries(queries)


def test_a_report_query_reads_the_store_and_nothing_else(tmp_path: Path, study_store: Path) -> None:
    """The report's connection is sandboxed like `expertlab sql`: a query file cannot read or write other files."""
    outside = tmp_path / "outside.csv"
    outside.write_text("x\n1\n")
    queries = tmp_path / "queries"
    queries.mkdir()
    for body in (f"select x from read_csv('{outside}')", f"copy (select 1 as x) to '{tmp_path}/copied.csv'"):
        (queries / "leak.sql").write_text(f"-- table: leak\n-- column: x: a value from outside the store\n{body}\n")
        with pytest.raises(ValueError, match=r"leak.sql: the store is opened read-only and sandboxed"):
            write_report(study_store, queries, tmp_path / "report")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outside.csv", "queries"]


# --- hand-computed values ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Source 0.8 on bio_qa, 0.5 on general_arith, 0 on bio_mcq; reap at 0.5 on two seeds.

    bio_qa: 0.4 and 0.6 -> retention 0.5, 0.75 -> mean 0.625, sd 0.1767767
    general_arith: 0.5 and 0.25 -> retention 1.0, 0.5 -> mean 0.75, sd 0.3535534
    bio_mcq: the source scores 0, so no retention; trial_summary is reliability, not utility.
    """
    root = tmp_path_factory.mktemp("tiny")
    write_scores(
        root,
        variant("toy"),
        {
            ("bio_qa", "token_f1"): [0.7, 0.9],
            ("bio_qa", "exact_match"): [0.0, 0.0],  # not the primary metric: ignored
            ("general_arith", "exact_match"): [0.0, 1.0],
            ("bio_mcq", "accuracy"): [0.0, 0.0],
            ("trial_summary", "rouge_l"): [0.5],
        },
    )
    for seed, bio, general in ((0, [0.3, 0.5], [0.5]), (1, [0.6], [0.0, 0.5])):
        record = variant("toy", "biomed", seed, "reap", 0.5, kept_per_layer=2)
        write_scores(
            root,
            record,
            {
                ("bio_qa", "token_f1"): bio,
                ("general_arith", "exact_match"): general,
                ("bio_mcq", "accuracy"): [1.0],
                ("trial_summary", "rouge_l"): [0.1],
            },
        )
    store = root / "results.duckdb"
    ingest(store, [root / "scores"])
    return store


def _table(store: Path, name: str, variables: dict | None = None) -> list[dict]:
    results = run_queries(store, QUERIES, VARIABLES if variables is None else variables)
    (table,) = [table for query, table in results if query.table == name]
    return table.records()


def test_utility_retention_by_hand(tiny_store: Path) -> None:
    rows = _table(tiny_store, "utility_retention")
    assert rows == [
        {
            "model": "toy",
            "calibration": "biomed",
            "criterion": "reap",
            "ratio": 0.5,
            "domain": "biomedical",
            "kind": "generation",
            "n_seeds": 2,
            "retention_mean": pytest.approx(0.625),
            "retention_sd": pytest.approx(0.1767767, abs=1e-7),
        },
        {
            "model": "toy",
            "calibration": "biomed",
            "criterion": "reap",
            "ratio": 0.5,
            "domain": "general",
            "kind": "generation",
            "n_seeds": 2,
            "retention_mean": pytest.approx(0.75),
            "retention_sd": pytest.approx(0.3535534, abs=1e-7),
        },
    ]


def test_headline_by_hand(tiny_store: Path) -> None:
    (row,) = _table(tiny_store, "headline")
    assert row["criterion"] == "reap" and row["n_seeds"] == 2
    assert row["biomedical_utility"] == "62.5 ± 17.7"
    assert row["general_utility"] == "75.0 ± 35.4"
    assert row["biomedical_retention_mean"] == pytest.approx(0.625)
    assert row["general_retention_sd"] == pytest.approx(0.3535534, abs=1e-7)


def test_findings_by_hand(tiny_store: Path) -> None:
    """Only reap is in the tiny store: general (0.75) does not fall below biomedical (0.625); no random to beat."""
    assert _table(tiny_store, "findings") == [
        {
            "model": "toy",
            "calibration": "biomed",
            "criterion": "reap",
            "finding": "general_falls_faster",
            "value": pytest.approx(0.75),
            "reference": pytest.approx(0.625),
            "holds": False,
        },
    ]


def test_findings_hold_on_the_seeded_study(study_store: Path) -> None:
    rows = {(row["finding"], row["criterion"]): row for row in _table(study_store, "findings")}
    assert set(rows) == {("beats_random", "reap"), ("general_falls_faster", "reap")}
    headline = {row["criterion"]: row for row in _table(study_store, "headline") if row["calibration"] == "biomed"}
    beats = rows[("beats_random", "reap")]
    assert beats["value"] == pytest.approx(headline["reap"]["biomedical_retention_mean"])
    assert beats["reference"] == pytest.approx(headline["random"]["biomedical_retention_mean"])
    assert beats["holds"] and rows[("general_falls_faster", "reap")]["holds"]


def test_task_scores_at_half_by_hand(tiny_store: Path) -> None:
    rows = {row["task"]: row for row in _table(tiny_store, "task_scores_at_half")}
    assert set(rows) == {"bio_qa", "bio_mcq", "general_arith", "trial_summary"}
    assert rows["bio_qa"]["metric"] == "token_f1"
    assert rows["bio_qa"]["score_mean"] == pytest.approx(0.5)
    assert rows["bio_qa"]["score_sd"] == pytest.approx(0.1414214, abs=1e-7)
    assert rows["bio_qa"]["source_score"] == pytest.approx(0.8)
    assert rows["bio_mcq"]["source_score"] == 0.0 and rows["bio_mcq"]["score_mean"] == 1.0
    assert rows["trial_summary"]["aspect"] == "reliability"


def test_seeded_study_orders_criteria_and_domains(study_store: Path) -> None:
    """On the seeded study reap keeps more than random, and general utility falls below biomedical."""
    rows = {row["criterion"]: row for row in _table(study_store, "headline")}
    assert list(rows) == ["random", "reap"]  # registry order, not alphabetical
    assert rows["reap"]["biomedical_retention_mean"] > rows["random"]["biomedical_retention_mean"]
    assert rows["reap"]["general_retention_mean"] < rows["reap"]["biomedical_retention_mean"]


# --- report files ------------------------------------------------------------------------------------


def test_report_writes_every_table_and_the_chart_deterministically(tmp_path: Path, study_store: Path) -> None:
    first = write_report(study_store, QUERIES, tmp_path / "a", VARIABLES)
    second = write_report(study_store, QUERIES, tmp_path / "b", VARIABLES)
    names = sorted(path.name for path in first)
    for path in QUERY_FILES:
        assert f"{path.stem}.md" in names and f"{path.stem}.csv" in names
    for chart in ("utility_retention", "judge_rates"):  # the seeded store has rows for both
        assert {f"{chart}.png", f"{chart}.svg", f"{chart}.html"} <= set(names)
        assert (tmp_path / "a" / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "a" / f"{chart}.svg").read_text().lstrip().startswith("<svg")
    page = (tmp_path / "a" / "index.html").read_text()
    for path in QUERY_FILES:  # every table in the one page, with its chart inlined
        assert f'<section id="{path.stem}">' in page
    assert page.count("<svg") >= 2 and "<script src=" not in page and "http://" not in page.split("<svg")[0]
    for name in names:
        if name.endswith((".md", ".csv")):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert sorted(path.name for path in second) == names
    headline = (tmp_path / "a" / "headline.md").read_text()
    assert headline.startswith("# headline\n") and "| reap " in headline


def test_the_chart_formats_param_picks_the_chart_files_and_the_page_keeps_every_chart(
    tmp_path: Path, study_store: Path
) -> None:
    from expertlab.report.charts import CHARTS

    for formats in (["svg"], []):
        out = tmp_path / "-".join(formats or ["none"])
        names = {path.name for path in write_report(study_store, QUERIES, out, VARIABLES, formats)}
        charts = {name for name in names if not name.endswith((".md", ".csv"))}
        # the seeded store has rows for every chart
        assert charts == {"index.html"} | {f"{chart}.{suffix}" for chart in CHARTS for suffix in formats}
        assert {path.name for path in out.iterdir()} - {".expertlab-output"} == names  # (atomic_dir's ownership mark)
        assert (out / "index.html").read_text().count("<svg") == len(CHARTS)
    with pytest.raises(ValidationError, match="chart_formats.0"):
        Report(chart_formats=["jpeg"])


def test_rebuilt_store_gives_the_same_report(tmp_path: Path, study_store: Path) -> None:
    rebuilt = tmp_path / "rebuilt.duckdb"
    ingest(rebuilt, [*seed_judged_study(tmp_path / "run"), *seed_monosemanticity_study(tmp_path / "run"), *seed_finetuned(tmp_path / "run")])
    write_report(study_store, QUERIES, tmp_path / "a", VARIABLES, chart_formats=[])  # tables compared, not charts
    write_report(rebuilt, QUERIES, tmp_path / "b", VARIABLES, chart_formats=[])
    for path in QUERY_FILES:
        for suffix in (".md", ".csv"):
            name = path.stem + suffix
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_report_stage_prints_the_headline(
    tmp_path: Path, study_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = ["--store", str(study_store), "--queries", str(QUERIES), "--out", str(out), "--print", "headline"]
    assert run_stage("stages.report", argv) == 0
    printed = capsys.readouterr().out
    assert "| criterion" in printed and "| random" in printed and "±" in printed
    assert (out / "headline.csv").read_text().splitlines()[0].startswith("model,calibration,criterion,n_seeds")


def test_judge_rates_by_hand(tmp_path: Path) -> None:
    """reap at 0.5, one judge. Absolute on pruned outputs of docs 0-3: H, H, F, missing -> 2/3 over 3 items,
    1 unlabelled; on the source outputs of the same docs: H, F, F, F -> 1/4. Relative q1 on docs 0-2:
    pruned, source, pruned -> 2/3; q4: source, source, missing -> 0/2, 1 unlabelled."""
    absolute = [("hallucinated", "pruned"), ("hallucinated", "pruned"), ("faithful", "pruned"), (None, "pruned")]
    absolute += [("hallucinated", "source"), ("faithful", "source"), ("faithful", "source"), ("faithful", "source")]
    rows = [
        {
            "judge": "j",
            "protocol": "absolute",
            "question": "hallucinated",
            "sample_id": str(doc % 4),
            "ratio": 0.5,
            "label": label,
            "output": output,
        }
        for doc, (label, output) in enumerate(absolute)
    ]
    for question, labels in (
        ("q1_hallucinations_more", ["pruned", "source", "pruned"]),
        ("q4_alignment_more", ["source", "source", None]),
    ):
        rows += [{"judge": "j", "protocol": "relative", "question": question, "sample_id": str(doc), "ratio": 0.5,
                  "label": label} for doc, label in enumerate(labels)]  # fmt: skip
    store = tmp_path / "results.duckdb"
    ingest(store, [write_judgments(tmp_path, "rates", rows)])
    table = {record["question"]: record for record in _table(store, "judge_rates")}
    assert set(table) == {"hallucinated", "q1_hallucinations_more", "q4_alignment_more"}
    absolute_rate = table["hallucinated"]
    assert (absolute_rate["n_items"], absolute_rate["n_unlabelled"]) == (3, 1)
    assert absolute_rate["rate"] == pytest.approx(2 / 3) and absolute_rate["source_rate"] == pytest.approx(1 / 4)
    assert table["q1_hallucinations_more"]["rate"] == pytest.approx(2 / 3)
    assert table["q1_hallucinations_more"]["source_rate"] is None
    assert (table["q4_alignment_more"]["rate"], table["q4_alignment_more"]["n_items"]) == (0.0, 2)
    assert table["q4_alignment_more"]["n_unlabelled"] == 1
    assert absolute_rate["calibration"] == "external"  # the judged variant's, from `variants`


def test_judge_trend_by_hand(tmp_path: Path) -> None:
    """Five documents per ratio; judge a calls k of them hallucinated: k = 1, 2, 2 at 0.25, 0.5, 0.75 ->
    rates .2, .4, .4, rate ranks 1, 2.5, 2.5 against ratio ranks 1, 2, 3: rho = 1.5 / sqrt(2 * 1.5) = 0.8660.
    Judge b: k = 1, 3, 2 -> ranks 1, 3, 2: rho = 1 / 2. Judge c: k = 2 everywhere: no variation, null.
    Judge d judged two ratios only: null."""
    counts = {"a": (1, 2, 2), "b": (1, 3, 2), "c": (2, 2, 2), "d": (1, 3, None)}
    rows = [
        {"judge": judge, "protocol": "absolute", "question": "hallucinated", "sample_id": str(doc), "ratio": ratio,
         "label": "hallucinated" if doc < k else "faithful"}
        for judge, ks in counts.items() for ratio, k in zip((0.25, 0.5, 0.75), ks) if k is not None for doc in range(5)
    ]  # fmt: skip
    store = tmp_path / "results.duckdb"
    ingest(store, [write_judgments(tmp_path, "trend", rows)])
    table = {record["rater"]: record for record in _table(store, "judge_trend")}
    assert table["a"]["spearman_rho"] == pytest.approx(1.5 / 3**0.5)
    assert table["b"]["spearman_rho"] == pytest.approx(0.5)
    assert table["c"]["spearman_rho"] is None and table["d"]["spearman_rho"] is None
    assert (table["a"]["n_ratios"], table["d"]["n_ratios"]) == (3, 2)
    assert (table["b"]["rate_at_lowest"], table["b"]["rate_at_highest"]) == (pytest.approx(0.2), pytest.approx(0.4))


def test_reliability_scores_by_hand(tiny_store: Path) -> None:
    """trial_summary is the tiny store's one reliability task: ROUGE-L 0.5 for the source, 0.1 for reap at
    0.5 on both seeds -> mean 0.1, sd 0, change -0.4."""
    (row,) = _table(tiny_store, "reliability_scores")
    assert (row["task"], row["kind"], row["metric"], row["criterion"], row["ratio"]) == (
        "trial_summary", "generation", "rouge_l", "reap", 0.5,
    )  # fmt: skip
    assert row["n_seeds"] == 2 and row["value_mean"] == pytest.approx(0.1) and row["value_sd"] == pytest.approx(0.0)
    assert row["source_value"] == pytest.approx(0.5) and row["change"] == pytest.approx(-0.4)


def frontier_store(root: Path) -> Path:
    """Source: bio_qa token_f1 1.0, trial_summary rouge_l 0.5. reap and random at 0.25 / 0.5 / 0.75, one seed:
    bio_qa 0.95 / 0.92 / 0.6 (retention fails X = 0.9 at 0.75), rouge_l 0.49 / 0.40 / 0.40 (fails
    0.5 - 0.05 at 0.5). random only: a judge calls 2 of 4 pruned summaries hallucinated at 0.25, none of
    the source's (0.5 > 0 + 0.05: fails at 0.25)."""
    artifacts = [
        write_scores(root, variant("toy"), {("bio_qa", "token_f1"): [1.0], ("trial_summary", "rouge_l"): [0.5]})
    ]
    for criterion in ("reap", "random"):
        for ratio, utility, rouge in ((0.25, 0.95, 0.49), (0.5, 0.92, 0.40), (0.75, 0.6, 0.40)):
            record = variant("toy", "biomed", 0, criterion, ratio, kept_per_layer=2)
            artifacts.append(write_scores(root, record, {("bio_qa", "token_f1"): [utility],
                                                         ("trial_summary", "rouge_l"): [rouge]}))  # fmt: skip
    rows = [
        {"judge": "j", "protocol": "absolute", "question": "hallucinated", "sample_id": str(doc), "ratio": 0.25,
         "criterion": "random", "task": "trial_summary", "calibration": "biomed",
         "output": output, "label": "hallucinated" if output == "pruned" and doc < 2 else "faithful"}
        for doc in range(4) for output in ("pruned", "source")
    ]  # fmt: skip
    artifacts.append(write_judgments(root, "frontier", rows))
    store = root / "results.duckdb"
    ingest(store, artifacts)
    return store


def test_reliability_frontier_by_hand(tmp_path: Path) -> None:
    store = frontier_store(tmp_path)

    def frontier(**thresholds: float) -> dict[str, dict]:
        results = run_queries(store, QUERIES, Report(frontier=thresholds).variables())
        (table,) = [table for query, table in results if query.table == "reliability_frontier"]
        return {row["criterion"]: row for row in table.records() if row["domain"] == "biomedical"}

    rows = frontier()  # the defaults: X = 0.9, delta = 0.05
    assert (rows["reap"]["max_ratio"], rows["reap"]["first_failing_ratio"]) == (0.25, 0.5)
    assert rows["reap"]["failing_measures"] == "trial_summary:rouge_l"
    assert (rows["random"]["max_ratio"], rows["random"]["first_failing_ratio"]) == (None, 0.25)
    assert rows["random"]["failing_measures"] == "judged:hallucinated"
    assert (rows["reap"]["utility_threshold"], rows["reap"]["delta"], rows["reap"]["n_ratios"]) == (0.9, 0.05, 3)
    looser = frontier(utility=0.9, delta=0.2)  # rouge 0.40 >= 0.30 now passes
    assert (looser["reap"]["max_ratio"], looser["reap"]["failing_measures"]) == (0.5, "utility")
    assert looser["random"]["max_ratio"] is None  # the judged rate 0.5 is still above 0 + 0.2
    loosest = frontier(delta=0.5)  # the utility threshold keeps its default
    assert (loosest["random"]["max_ratio"], loosest["random"]["failing_measures"]) == (0.5, "utility")


def test_the_headline_ratio_param_picks_the_ratio_reported(tmp_path: Path) -> None:
    """frontier_store (one seed; the source scores bio_qa 1.0): reap keeps bio_qa 0.95 / 0.92 / 0.6 at
    0.25 / 0.5 / 0.75, so report.headline_ratio 0.25 gives a biomedical retention of 0.95 (95.0), 0.75 of 0.6."""
    store = frontier_store(tmp_path)

    def at(ratio: float, name: str) -> dict[str, dict]:
        rows = _table(store, name, Report(headline_ratio=ratio).variables())
        return {row["criterion"]: row for row in rows if row.get("task", "bio_qa") == "bio_qa"}

    assert at(0.5, "headline")["reap"]["biomedical_retention_mean"] == pytest.approx(0.92)
    assert at(0.25, "headline")["reap"]["biomedical_retention_mean"] == pytest.approx(0.95)
    assert at(0.25, "headline")["reap"]["biomedical_utility"] == "95.0"
    assert at(0.75, "headline")["reap"]["biomedical_retention_mean"] == pytest.approx(0.6)
    assert at(0.75, "task_scores_at_half")["reap"]["score_mean"] == pytest.approx(0.6)
    beats = {row["criterion"]: row for row in _table(store, "findings", Report(headline_ratio=0.25).variables())
             if row["finding"] == "beats_random"}  # fmt: skip
    assert (beats["reap"]["value"], beats["reap"]["reference"]) == (pytest.approx(0.95), pytest.approx(0.95))
    assert not at(0.3, "headline")  # no variant at 0.3


def test_the_agreement_windows_param_names_orders_and_bounds_the_windows(study_store: Path) -> None:
    """The seeded judges judged ratios 0.25 and 0.5 only: windows Late [0.5, 1] and Early [0, 0.25] hold
    exactly the default Moderate and Low rows, renamed, in the order params give them."""
    default = {(row["protocol"], row["window"]): row for row in _table(study_store, "judge_agreement")}
    assert sorted(default) == [("absolute", "Low"), ("absolute", "Moderate")]
    windows = {"Late": (0.5, 1.0), "Early": (0.0, 0.25)}
    rows = _table(study_store, "judge_agreement", Report(agreement_windows=windows).variables())
    assert [row["window"] for row in rows] == ["Late", "Early"]
    renamed = {"Late": "Moderate", "Early": "Low"}
    for row in rows:
        assert row == {**default[(row["protocol"], renamed[row["window"]])], "window": row["window"]}


def test_a_query_fails_naming_a_variable_it_is_not_given(study_store: Path) -> None:
    """No query falls back on a number of its own: the numbers are params (Report.variables)."""
    con = connect_read_only(study_store)
    try:
        for name, variable in (("headline", "headline_ratio"), ("judge_agreement", "agreement_windows")):
            given = {key: value for key, value in VARIABLES.items() if key != variable}
            with pytest.raises(ValueError, match=rf"{name}.sql: reads the variable\(s\) {variable}, not given"):
                run_query(con, read_query(QUERIES / f"{name}.sql"), given)
        with pytest.raises(ValueError, match=r"reliability_frontier.sql: reads the variable\(s\) frontier_utility, "):
            run_query(con, read_query(QUERIES / "reliability_frontier.sql"))
    finally:
        con.close()


def test_the_report_stage_takes_the_frontier_thresholds_from_params(tmp_path: Path) -> None:
    import yaml

    store = frontier_store(tmp_path / "run")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["report"]["frontier"] = {"utility": 0.9, "delta": 0.2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "report"
    argv = [
        "--store",
        str(store),
        "--queries",
        str(QUERIES),
        "--out",
        str(out),
        "--params",
        str(tmp_path / "params.yaml"),
    ]
    assert run_stage("stages.report", argv) == 0
    lines = (out / "reliability_frontier.csv").read_text().splitlines()
    assert any(line.startswith("toy,biomed,reap,biomedical,0.9,0.2,3,0.5,0.75,utility") for line in lines), lines


def collapse_store(tmp_path: Path) -> Path:
    """Source summaries: ROUGE-L 0.5, 20 words, TTR 0.8. reap at 0.5: ROUGE-L 0.495 (-1%: stable), 12 words,
    TTR 0.6, a judge calls 1 of 2 pruned summaries hallucinated and none of the source's -> flagged; q2 names
    the pruned summary for 1 of 2 pairs -> omission 0.5. random at 0.5: ROUGE-L 0.4 (-20%) -> not stable, not
    flagged although as hallucinated."""
    metrics = {"rouge_l": 0.5, "length_words": 20.0, "type_token_ratio": 0.8}
    artifacts = [write_scores(tmp_path, variant("toy"), {("trial_summary", m): [v] for m, v in metrics.items()})]
    for criterion, rouge in (("reap", 0.495), ("random", 0.4)):
        record = variant("toy", "biomed", 0, criterion, 0.5, kept_per_layer=2)
        values = {"rouge_l": rouge, "length_words": 12.0, "type_token_ratio": 0.6}
        artifacts.append(write_scores(tmp_path, record, {("trial_summary", m): [v] for m, v in values.items()}))
    rows = []
    for criterion in ("reap", "random"):
        common = {"judge": "j", "ratio": 0.5, "criterion": criterion, "task": "trial_summary",
                  "calibration": "biomed"}  # fmt: skip
        for doc in range(2):
            rows.append({**common, "protocol": "absolute", "question": "hallucinated", "sample_id": str(doc),
                         "output": "pruned", "label": "hallucinated" if doc == 0 else "faithful"})  # fmt: skip
            rows.append({**common, "protocol": "absolute", "question": "hallucinated", "sample_id": str(doc),
                         "output": "source", "label": "faithful"})  # fmt: skip
            rows.append({**common, "protocol": "relative", "question": "q2_omission_more", "sample_id": str(doc),
                         "label": "pruned" if doc == 0 else "source"})  # fmt: skip
    artifacts.append(write_judgments(tmp_path, "collapse", rows))
    store = tmp_path / "results.duckdb"
    ingest(store, artifacts)
    return store


def test_summary_collapse_by_hand(tmp_path: Path) -> None:
    """collapse_store with the default band (2%) and omission threshold (0.5)."""
    store = collapse_store(tmp_path)
    table = {row["criterion"]: row for row in _table(store, "summary_collapse")}
    reap, random = table["reap"], table["random"]
    assert (reap["length_words"], reap["source_length_words"]) == (12.0, 20.0)
    assert (reap["type_token_ratio"], reap["source_type_token_ratio"]) == (pytest.approx(0.6), pytest.approx(0.8))
    assert reap["rouge_l_change"] == pytest.approx(-0.01) and reap["bertscore_change"] is None
    assert (reap["hallucination_rate"], reap["source_hallucination_rate"], reap["omission_rate"]) == (0.5, 0.0, 0.5)
    assert reap["overlap_stable"] is True and reap["flagged"] is True
    assert random["rouge_l_change"] == pytest.approx(-0.2) and (random["overlap_stable"], random["flagged"]) == (
        False,
        False,
    )


def test_the_collapse_params_move_the_flag(tmp_path: Path) -> None:
    """collapse_store with report.collapse changed: a 0.5% band makes reap's -1% ROUGE-L unstable (not
    flagged); a 25% band makes random's -20% stable, and its hallucination rate 0.5 > 0 flags it."""
    store = collapse_store(tmp_path)

    def collapse(**params: float) -> dict[str, tuple[bool, bool]]:
        rows = _table(store, "summary_collapse", Report(collapse=params).variables())
        return {row["criterion"]: (row["overlap_stable"], row["flagged"]) for row in rows}

    assert collapse() == {"reap": (True, True), "random": (False, False)}
    assert collapse(overlap_band=0.005) == {"reap": (False, False), "random": (False, False)}
    assert collapse(overlap_band=0.25) == {"reap": (True, True), "random": (True, True)}


def test_calibration_comparison_by_hand(tmp_path: Path) -> None:
    """reap at 0.5 under biomed (seeds 0, 1) and dual (seed 0): bio_qa 0.6, 0.8 vs 0.5 -> means 0.7 (sd
    0.1414) vs 0.5, biomed best; general_arith 0.2, 0.4 vs 0.6 -> 0.3 vs 0.6, dual best; a judge calls 1 of 2
    biomed seed-0 summaries hallucinated, 0 of 2 dual ones -> dual best (lower). random (biomed only) is
    left out."""
    artifacts = [
        write_scores(tmp_path, variant("toy"), {("bio_qa", "token_f1"): [1.0], ("general_arith", "exact_match"): [1.0]})
    ]
    for calibration, seed, bio, general in (("biomed", 0, 0.6, 0.2), ("biomed", 1, 0.8, 0.4), ("dual", 0, 0.5, 0.6)):
        record = variant("toy", calibration, seed, "reap", 0.5, kept_per_layer=2)
        values = {("bio_qa", "token_f1"): [bio], ("general_arith", "exact_match"): [general]}
        artifacts.append(write_scores(tmp_path, record, values))
    record = variant("toy", "biomed", 0, "random", 0.5, kept_per_layer=2)
    artifacts.append(write_scores(tmp_path, record, {("bio_qa", "token_f1"): [0.1]}))
    rows = [
        {"judge": "j", "protocol": "absolute", "question": "hallucinated", "sample_id": str(doc), "ratio": 0.5,
         "task": "trial_summary", "calibration": calibration,
         "label": "hallucinated" if calibration == "biomed" and doc == 0 else "faithful"}
        for calibration in ("biomed", "dual") for doc in range(2)
    ]  # fmt: skip
    artifacts.append(write_judgments(tmp_path, "calibrations", rows))
    store = tmp_path / "results.duckdb"
    ingest(store, artifacts)
    table = {(row["measure"], row["calibration"]): row for row in _table(store, "calibration_comparison")}
    assert {row["criterion"] for row in table.values()} == {"reap"}
    bio = table[("utility:biomedical:generation", "biomed")]
    assert (bio["n_seeds"], bio["value_mean"], bio["value_sd"]) == (2, pytest.approx(0.7), pytest.approx(0.02**0.5))
    assert bio["best"] is True and table[("utility:biomedical:generation", "dual")]["best"] is False
    assert table[("utility:general:generation", "dual")]["value_mean"] == pytest.approx(0.6)
    assert table[("utility:general:generation", "dual")]["best"] is True
    judged = ("judged:trial_summary:hallucinated", "biomed"), ("judged:trial_summary:hallucinated", "dual")
    assert [(table[key]["value_mean"], table[key]["best"]) for key in judged] == [(0.5, False), (0.0, True)]


def _rounded(records: list[dict]) -> list[dict]:
    return [{k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in row.items()} for row in records]


def test_quantized_variants_change_no_table_of_the_pruning_grid(tmp_path: Path, study_store: Path) -> None:
    """A quantized variant is not one more seed of its (criterion, ratio): every table but the quantized
    comparison is the same with and without the quantized variants. The judge agreement tables compare
    raters on whatever outputs they judged, quantized ones included, so they are left out."""
    without = tmp_path / "without.duckdb"
    ingest(without, [*seed_judged_study(tmp_path / "run", quantized=False), *seed_monosemanticity_study(tmp_path / "run"),
                     *seed_finetuned(tmp_path / "run")])
    kept_apart = {"quantization_comparison", "judge_agreement", "judge_fleiss"}
    with_quantized = {query.table: table.records() for query, table in run_queries(study_store, QUERIES, VARIABLES)}
    for query, table in run_queries(without, QUERIES, VARIABLES):
        if query.table not in kept_apart:
            # DuckDB's parallel aggregation may sum in another order: the last bits of a float can differ
            assert _rounded(table.records()) == _rounded(with_quantized[query.table]), query.table
    assert not [row for row in _table(without, "quantization_comparison")]


def test_quantization_comparison_by_hand(study_store: Path) -> None:
    """seed_study's reap at 0.5 scores bio_qa 0.4 (seed 0) and 0.42 (seed 1) as mean primary scores, its
    quantized variants 0.1 less: means 0.41 vs 0.31, change -0.1, the unquantized best. The judge calls 1
    of 4 unquantized and 3 of 4 quantized seed-0 summaries hallucinated: 0.25 vs 0.75, change +0.5 (over
    the one seed both have), lower is better."""
    table = {(row["measure"], row["quantization"]): row for row in _table(study_store, "quantization_comparison")}
    assert {(row["model"], row["calibration"], row["criterion"], row["ratio"]) for row in table.values()} == {
        ("toy", "biomed", "reap", 0.5)
    }
    none, w4 = table[("utility:biomedical:generation", "none")], table[("utility:biomedical:generation", "w4")]
    assert (none["n_seeds"], none["value_mean"], none["change"], none["best"]) == (2, pytest.approx(0.41), 0, True)
    assert (w4["n_seeds"], w4["value_mean"], w4["change"], w4["best"]) == (2, pytest.approx(0.31), pytest.approx(-0.1), False)
    assert w4["value_sd"] == pytest.approx(none["value_sd"]) == pytest.approx(0.02 / 2**0.5)
    judged_none = table[("judged:trial_summary:hallucinated", "none")]
    judged_w4 = table[("judged:trial_summary:hallucinated", "w4")]
    assert (judged_none["n_seeds"], judged_none["value_mean"], judged_none["best"]) == (1, 0.25, True)
    assert (judged_w4["value_mean"], judged_w4["change"], judged_w4["best"]) == (0.75, 0.5, False)


def test_table_2_comparisons_are_also_shown_wide(tmp_path: Path, study_store: Path) -> None:
    """`-- wide:` pivots a long table as the paper prints Table 2: one row per configuration, one column per
    measure, `mean ± sd` with the better one bold (values as in test_quantization_comparison_by_hand)."""
    write_report(study_store, QUERIES, tmp_path / "report", VARIABLES)
    page = (tmp_path / "report" / "quantization_comparison.md").read_text()
    wide = page.split("## Wide: one column per measure")[1]
    header, _, *rows = [line for line in wide.splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:5] == ["model", "calibration", "criterion", "ratio", "quantization"]
    table = {row.split("|")[5].strip(): dict(zip(columns, (c.strip() for c in row.strip("|").split("|")))) for row in rows}
    assert set(table) == {"none", "w4"}
    assert table["none"]["utility:biomedical:generation"] == "**0.410 ± 0.014**"
    assert table["w4"]["utility:biomedical:generation"] == "0.310 ± 0.014"
    assert table["w4"]["judged:trial_summary:hallucinated"] == "0.750"  # one seed: no sd
    assert "<b>0.410 ± 0.014</b>" in (tmp_path / "report" / "index.html").read_text()


def test_a_wide_declaration_must_name_documented_columns(tmp_path: Path) -> None:
    (tmp_path / "t.sql").write_text("-- table: t\n-- wide: a | b | value, spread\n-- column: a: x\n-- column: b: y\n"
                                    "-- column: value: z\nselect 1 as a, 2 as b, 3 as value\n")
    with pytest.raises(ValueError, match=r"t.sql: '-- wide:' names undocumented column\(s\) spread"):
        read_query(tmp_path / "t.sql")


def test_a_sparse_chart_grid_draws_each_panel_from_its_own_rows() -> None:
    """reliability_scores has metrics only some tasks report (accuracy for one, rouge_l and length for
    another): each drawn chart is titled with its task and metric and holds exactly those rows."""
    from expertlab.report.charts import CHARTS
    from expertlab.report.execute import Table

    columns = ["model", "calibration", "criterion", "ratio", "task", "kind", "metric", "n_seeds", "value_mean",
               "value_sd", "source_value", "change"]
    cells = [("bio_fake", "accuracy"), ("trial_summary", "rouge_l"), ("trial_summary", "length_words")]
    rows = [("toy", "biomed", "reap", ratio, task, "generation", metric, 2, ratio + len(metric), 0.1, 1.0, 0.0)
            for task, metric in cells for ratio in (0.25, 0.5)]  # fmt: skip
    spec = CHARTS["reliability_scores"](Table("reliability_scores", columns, rows)).to_dict()
    # altair hoists data a chart shares with its parent: a chart's rows are its own, its row's, or the spec's
    drawn = [(chart, row) for row in spec["vconcat"] for chart in row["hconcat"]]
    titles = [chart["title"]["text"] for chart, _ in drawn]
    assert titles == [f"toy / biomed / {task}: {metric}" for task, metric in cells]
    for (chart, row), (task, metric) in zip(drawn, cells):
        data = chart.get("data") or row.get("data") or spec["data"]
        values = spec["datasets"][data["name"]] if "name" in data else data["values"]
        assert {(v["panel"], v["metric"]) for v in values} == {(f"toy / biomed / {task}", metric)}
        assert sorted(v["value"] for v in values) == [0.25 + len(metric), 0.5 + len(metric)]

"""`expertlab import-judgments` on the study's released verdicts (tests/fixtures/study_judgments) and
queries/judge_agreement.sql: the paper's Table 1 LLM-LLM rows, and Cohen's kappa by hand."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store import snapshot, write_judgments

from expertlab.cli import main
from expertlab.imports.study_judgments import read_study_judgments
from expertlab.params import Report
from expertlab.report.execute import run_query
from expertlab.report.queries import read_query
from expertlab.store import ingest
from expertlab.variants import Variant

FIXTURES = Path(__file__).parent / "fixtures" / "study_judgments"
ABSOLUTE = FIXTURES / "absolute" / "evaluation_samples_30.json"
RELATIVE = FIXTURES / "relative" / "evaluation_samples_30.json"
AGREEMENT = Path(__file__).resolve().parents[1] / "queries" / "judge_agreement.sql"
FLEISS = Path(__file__).resolve().parents[1] / "queries" / "judge_fleiss.sql"
JUDGES = ["claude-haiku-4.5", "gemini-3.1-flash-lite", "gpt-5.4-mini"]

# The study's Table 1, LLM-LLM rows: (protocol, window) -> (N, kappa)
TABLE_1 = {
    ("absolute", "Low"): (8, 0.333),
    ("absolute", "Moderate"): (9, 0.738),
    ("absolute", "Extreme"): (13, 0.783),
    ("relative", "Low"): (8, 0.508),
    ("relative", "Moderate"): (9, 0.370),
    ("relative", "Extreme"): (13, 0.676),
}


# judge_fleiss on the release: (protocol, dataset, question, output) -> (items, Fleiss' kappa among the
# three judges). The release holds only the 30 samples of the manual evaluation, so these are NOT the
# study's Tables 4 and 5 (computed over all judged items, e.g. absolute .513 Multi-XScience, .535 RCT);
# they pin down what the release gives. Exact fractions, checked against an independent count of the
# JSON files; RCT pruned has 13 items: gpt-5.4-mini's two null verdicts leave rct:CD001275 and
# rct:CD008586 out for all three judges.
MXS, RCT = "multixscience_summary", "rct_summary"  # the tasks the release's Multi-X-Science and RCT are imported as
RELEASED_FLEISS = {
    ("absolute", MXS, "hallucinated", "pruned"): (15, Fraction(13, 18)),  # .722
    ("absolute", MXS, "hallucinated", "source"): (15, Fraction(41, 266)),  # .154
    ("absolute", RCT, "hallucinated", "pruned"): (13, Fraction(131, 170)),  # .771
    ("absolute", RCT, "hallucinated", "source"): (15, Fraction(1)),  # all faithful: p_expected = 1
    ("relative", MXS, "q1_hallucinations_more", "pair"): (15, Fraction(22, 27)),  # .815
    ("relative", MXS, "q2_omission_more", "pair"): (15, Fraction(59, 464)),  # .127
    ("relative", MXS, "q3_repetition_more", "pair"): (15, Fraction(73, 100)),  # .730
    ("relative", MXS, "q4_alignment_more", "pair"): (15, Fraction(74, 119)),  # .622
    ("relative", RCT, "q1_hallucinations_more", "pair"): (15, Fraction(251, 476)),  # .527
    ("relative", RCT, "q2_omission_more", "pair"): (15, Fraction(6, 11)),  # .545
    ("relative", RCT, "q3_repetition_more", "pair"): (15, Fraction(3, 8)),  # .375
    ("relative", RCT, "q4_alignment_more", "pair"): (15, Fraction(149, 464)),  # .321
}


def agreement(store: Path) -> list[dict]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return run_query(con, read_query(AGREEMENT), Report().variables()).records()
    finally:
        con.close()


# --- the importer on the released files ---------------------------------------------------------


def test_released_files_are_recognised_and_read_item_by_item():
    absolute, relative = read_study_judgments(ABSOLUTE), read_study_judgments(RELATIVE)
    assert (absolute.format, relative.format) == ("study-absolute", "study-relative")
    assert absolute.items == relative.items == 30
    assert absolute.judges == relative.judges == JUDGES
    # absolute: 30 items x 3 judges x (pruned, source) outputs; relative: 30 x 3 x 4 questions
    assert len(absolute.rows) == 30 * 3 * 2 and len(relative.rows) == 30 * 3 * 4
    judged = {variant.id: variant for variant in absolute.variants}
    missing = [(r["sample_id"], judged[r["variant_id"]].ratio, r["judge"], r["output"]) for r in absolute.rows
               if r["status"] != "ok"]
    assert missing == [
        ("rct:CD001275", 0.5, "gpt-5.4-mini", "pruned"),
        ("rct:CD008586", 0.125, "gpt-5.4-mini", "pruned"),
    ]
    assert all(r["label"] is None and r["raw"] == "null" for r in absolute.rows if r["status"] == "missing")
    assert all(r["status"] == "ok" for r in relative.rows)
    assert {judged[r["variant_id"]].criterion for r in absolute.rows} == {"random", "frequency", "gate", "ean",
                                                                          "easy_ep", "reap"}
    assert {r["task"] for r in absolute.rows + relative.rows} == {MXS, RCT}


def test_labels_follow_the_released_answers():
    first = {(r["judge"], r["output"]): r for r in read_study_judgments(ABSOLUTE).rows
             if r["sample_id"] == "medinst32:SUM:Multi-XScience:42"}
    # pruned: 1.0 from every judge (hallucinated); source: gpt and gemini 1.0, claude 0.0
    assert {judge: first[(judge, "pruned")]["label"] for judge in JUDGES} == dict.fromkeys(JUDGES, "hallucinated")
    assert first[("claude-haiku-4.5", "source")]["label"] == "faithful"
    assert json.loads(first[("gpt-5.4-mini", "source")]["raw"])["score"] == 1.0
    rows = [r for r in read_study_judgments(RELATIVE).rows
            if r["sample_id"] == "rct:CD001900" and r["judge"] == "gemini-3.1-flash-lite"]
    # resolved_answers: pruned, pruned, pruned, vanilla (= the source model)
    assert [(r["question"], r["label"]) for r in rows] == [
        ("q1_hallucinations_more", "pruned"), ("q2_omission_more", "pruned"),
        ("q3_repetition_more", "pruned"), ("q4_alignment_more", "source"),
    ]
    assert json.loads(rows[0]["raw"])["mapping"] == {"A": "pruned", "B": "vanilla"}  # kept verbatim, not used


def test_unreadable_verdicts_are_invalid_and_null_entries_missing(tmp_path: Path):
    items = json.loads(RELATIVE.read_text())[:1]
    answers = items[0]["judge_model_answers"]
    answers["gpt-5.4-mini"] = None
    answers["claude-haiku-4.5"]["resolved_answers"]["q2_omission_more"] = "both"
    del answers["gemini-3.1-flash-lite"]["resolved_answers"]["q3_repetition_more"]
    (tmp_path / "relative.json").write_text(json.dumps(items))
    rows = {(r["judge"], r["question"]): (r["label"], r["status"])
            for r in read_study_judgments(tmp_path / "relative.json").rows}
    assert rows[("gpt-5.4-mini", "q1_hallucinations_more")] == (None, "missing")
    assert rows[("claude-haiku-4.5", "q2_omission_more")] == (None, "invalid")
    assert rows[("gemini-3.1-flash-lite", "q3_repetition_more")] == (None, "missing")
    items = json.loads(ABSOLUTE.read_text())[:1]
    items[0]["pruned_model_absolute_judgement"]["gpt-5.4-mini"]["score"] = 0.5  # not rounded to a label
    items[0]["pruned_model_absolute_judgement"]["claude-haiku-4.5"]["success"] = False  # contradicts score 0.0
    (tmp_path / "absolute.json").write_text(json.dumps(items))
    rows = {(r["judge"], r["output"]): (r["label"], r["status"])
            for r in read_study_judgments(tmp_path / "absolute.json").rows}
    assert rows[("gpt-5.4-mini", "pruned")] == rows[("claude-haiku-4.5", "pruned")] == (None, "invalid")
    assert rows[("gemini-3.1-flash-lite", "pruned")] == ("faithful", "ok")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pruning_ratio": 0.25}, "item 0: pruning_ratio 0.25 disagrees with pruned_model_name "
         "'Qwen3-30B-A3B-Instruct-2507-medinst-gating-2104262', whose ratio is 0.5"),
        ({"pruning_method": "reap"}, "item 0: pruning_method 'reap' disagrees with pruned_model_name "
         "'Qwen3-30B-A3B-Instruct-2507-medinst-gating-2104262', whose criterion is 'gate'"),
        ({"source_model_name": "gpt-oss-20b"}, "item 0: source_model_name 'gpt-oss-20b' disagrees with"),
        ({"pruned_model_name": "Qwen3-pruned"}, "item 0: 'Qwen3-pruned' is not "
         "<model>-<calibration>-<criterion>-<seed>[-<ratio>] with a criterion among random, frequency, gating"),
        ({"dataset": "PubMed"}, "item 0: dataset 'PubMed' is not one of RCT, Multi-X-Science"),
    ],
    ids=["ratio", "criterion", "model", "name", "dataset"],
)
def test_an_item_whose_names_do_not_translate_fails_naming_it(tmp_path: Path, change: dict, message: str):
    """An item states its variant twice (its pruned model's name, and its model, method and ratio): they
    must agree, and its dataset must be one the release has; nothing is guessed."""
    items = json.loads(ABSOLUTE.read_text())
    assert items[0]["pruned_model_name"] == "Qwen3-30B-A3B-Instruct-2507-medinst-gating-2104262"
    items[0].update(change)
    (tmp_path / "changed.json").write_text(json.dumps(items))
    with pytest.raises(ValueError) as raised:
        read_study_judgments(tmp_path / "changed.json")
    assert str(raised.value).startswith(f"{tmp_path / 'changed.json'}: {message}")


# --- import, ingest, Table 1 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def released_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("released")
    assert main(["import-judgments", str(FIXTURES), "--out", str(root / "imported")]) == 0
    ingest(root / "results.duckdb", [], [root / "imported"])
    return root / "results.duckdb"


def test_import_writes_one_artifact_per_file_and_ingest_loads_them(released_store: Path):
    imported = released_store.parent / "imported" / "judgments"
    assert sorted(p.name for p in imported.iterdir()) == [
        "study-absolute-evaluation_samples_30", "study-relative-evaluation_samples_30"]
    meta = json.loads((imported / "study-absolute-evaluation_samples_30" / "meta.json").read_text())
    assert (meta["kind"], meta["items"], meta["judges"]) == ("judgments", 30, JUDGES)
    con = duckdb.connect(str(released_store), read_only=True)
    counts = con.execute(
        "select protocol::varchar, count(distinct (task, sample_id, variant_id)), "
        "count(*) filter (status = 'missing'), count(*) filter (label is null) "
        "from judgments group by protocol order by protocol"
    ).fetchall()
    assert counts == [("absolute", 30, 2, 2), ("relative", 30, 0, 0)]
    # every released pruned model is one imported variant, named by the verdicts on it
    names = {item["pruned_model_name"] for item in json.loads(ABSOLUTE.read_text())}
    assert con.execute("select count(*), count(*) filter (origin = 'imported') from variants").fetchone() == (
        len(names), len(names))
    assert con.execute("select count(*) from judgments anti join variants using (variant_id)").fetchone() == (0,)
    con.close()


def test_a_released_verdict_names_the_variant_its_pruned_model_is(released_store: Path):
    """Qwen3-30B-A3B-Instruct-2507-medinst-gating-2104262 (no ratio suffix: 0.5) judged on rct:CD001900."""
    named = Variant(model="Qwen3-30B-A3B-Instruct-2507", calibration="medinst", seed=2104262, criterion="gate",
                    ratio=0.5)
    assert named.id == "Qwen3-30B-A3B-Instruct-2507:medinst:2104262:gate:0.5"
    (item,) = {(r["task"], r["sample_id"], r["variant_id"]) for r in read_study_judgments(ABSOLUTE).rows
               if r["sample_id"] == "rct:CD001900"}
    assert item == ("rct_summary", "rct:CD001900", named.id)
    con = duckdb.connect(str(released_store), read_only=True)
    try:
        stored = con.execute(
            "select is_source, model, calibration, seed, criterion::varchar, ratio, kept_per_layer, top_k, origin, "
            "quantization from variants where variant_id = ?", [named.id]
        ).fetchall()
        judged = con.execute(
            "select distinct task, sample_id from judgments where variant_id = ?", [named.id]
        ).fetchall()
        verdicts = con.execute(
            "select distinct model, calibration, seed, criterion::varchar, ratio from verdicts where sample_id = ?",
            ["rct:CD001900"],
        ).fetchall()
    finally:
        con.close()
    # the expert counts are unknown to the release: null, never guessed
    assert stored == [(False, named.model, "medinst", 2104262, "gate", 0.5, None, None, "imported", None)]
    assert judged == [("rct_summary", "rct:CD001900")]
    assert verdicts == [(named.model, "medinst", 2104262, "gate", 0.5)]


def test_agreement_reproduces_table_1_llm_llm(released_store: Path):
    rows = agreement(released_store)
    assert [(r["protocol"], r["window"]) for r in rows] == list(TABLE_1)  # in Table 1's order
    for row in rows:
        n_items, kappa = TABLE_1[(row["protocol"], row["window"])]
        assert row["rater_pair"] == "llm-llm" and row["n_rater_pairs"] == 3  # no human judgments released
        assert row["n_items"] == n_items
        assert round(row["kappa"], 3) == pytest.approx(kappa, abs=1e-9), (row["protocol"], row["window"])


def test_fleiss_on_the_released_verdicts(released_store: Path):
    con = duckdb.connect(str(released_store), read_only=True)
    try:
        rows = run_query(con, read_query(FLEISS)).records()
    finally:
        con.close()
    assert [(r["protocol"], r["dataset"], r["question"], r["output"]) for r in rows] == list(RELEASED_FLEISS)
    for row in rows:
        n_items, kappa = RELEASED_FLEISS[(row["protocol"], row["dataset"], row["question"], row["output"])]
        assert (row["rater_kind"], row["n_raters"], row["n_items"]) == ("llm", 3, n_items)
        assert row["kappa"] == pytest.approx(float(kappa), abs=1e-12)


def test_reimport_is_a_no_op_for_ingest(released_store: Path, tmp_path: Path):
    root = released_store.parent
    store = tmp_path / "results.duckdb"
    shutil.copyfile(released_store, store)
    assert main(["import-judgments", str(ABSOLUTE), str(RELATIVE), "--out", str(root / "imported")]) == 0
    report = ingest(store, [], [root / "imported"])
    assert not report.changed and len(report.skipped) == 2


def test_a_malformed_file_fails_naming_it_and_leaves_imported_and_the_store(
    released_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    imported = tmp_path / "imported"
    shutil.copytree(released_store.parent / "imported", imported)
    store = tmp_path / "results.duckdb"
    ingest(store, [], [imported])
    before, files_before = snapshot(store), sorted(p.read_bytes() for p in imported.rglob("*") if p.is_file())
    masks = tmp_path / "expert_mask.json"
    masks.write_text("[[0, 1], [2, 3]]")  # valid JSON, neither absolute nor relative judgments
    truncated = tmp_path / "evaluation_samples_30.json"
    truncated.write_text(ABSOLUTE.read_text()[:500])
    for bad, message in ((masks, "not the study's released absolute or relative judgments"),
                         (truncated, "not valid JSON")):
        assert main(["import-judgments", str(RELATIVE), str(bad), "--out", str(imported)]) == 2
        assert f"{bad}: {message}" in capsys.readouterr().err
    items = json.loads(ABSOLUTE.read_text())
    items[3]["pruning_method"] = "magic"
    (tmp_path / "bad_item.json").write_text(json.dumps(items))
    with pytest.raises(ValueError, match=r"bad_item.json: item 3: pruning_method 'magic'"):
        read_study_judgments(tmp_path / "bad_item.json")
    assert sorted(p.read_bytes() for p in imported.rglob("*") if p.is_file()) == files_before
    assert not ingest(store, [], [imported]).changed and snapshot(store) == before


def test_a_damaged_judgments_artifact_fails_ingest_naming_it_and_leaves_the_store(released_store: Path, tmp_path: Path):
    imported = tmp_path / "imported"
    shutil.copytree(released_store.parent / "imported", imported)
    store = tmp_path / "results.duckdb"
    ingest(store, [], [imported])
    before, bytes_before = snapshot(store), store.read_bytes()
    artifact = imported / "judgments" / "study-absolute-evaluation_samples_30"
    released = pq.read_table(artifact / "judgments.parquet")
    schema, table = released.schema, released.to_pylist()
    table[0]["label"] = "maybe"
    pq.write_table(pa.Table.from_pylist(table, schema=schema), artifact / "judgments.parquet")
    with pytest.raises(ValueError, match="study-absolute-evaluation_samples_30: cannot load judgments artifact"):
        ingest(store, [], [imported])
    table[0]["label"] = None  # status ok without a label: a missing verdict must never pass as one
    pq.write_table(pa.Table.from_pylist(table, schema=schema), artifact / "judgments.parquet")
    with pytest.raises(ValueError, match="1 rows carry a label without status ok, or status ok without a label"):
        ingest(store, [], [imported])
    assert store.read_bytes() == bytes_before and snapshot(store) == before


def test_a_judgments_artifact_must_list_every_variant_it_judges(released_store: Path, tmp_path: Path):
    """The verdicts name their variants by id; meta.json's variants give the fields, so a verdict on a
    variant the artifact does not list, or an artifact without the list, fails ingest naming the file."""
    imported = tmp_path / "imported"
    shutil.copytree(released_store.parent / "imported", imported)
    artifact = imported / "judgments" / "study-absolute-evaluation_samples_30"
    meta = json.loads((artifact / "meta.json").read_text())
    dropped = meta["variants"].pop(0)
    (artifact / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"judgments.parquet: rows judge variants that meta.json's variants do not "
                                         rf"list: '{dropped['variant_id']}'$"):
        ingest(tmp_path / "results.duckdb", [], [imported])
    del meta["variants"]
    (artifact / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"study-absolute-evaluation_samples_30/meta.json: variants: missing key"):
        ingest(tmp_path / "results.duckdb", [], [imported])
    assert not (tmp_path / "results.duckdb").exists()


# --- Cohen's kappa by hand ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two LLM judges and one annotator; labels H (hallucinated), F (faithful), P (pruned), S (source).

    Absolute, Low (0.25), llm_a vs llm_b on items 0-3: H H F F vs H F F F. p_o = 3/4;
    p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 0.5. Item 4: llm_b missing,
    left out of that pair. Absolute, Extreme (0.75): both judges F F F, constant and equal: kappa 1.
    Human-LLM, Low: ann vs llm_a on items 0-4 (H H F F H both): p_o = 1, p_e = 0.36 + 0.16, kappa 1;
    ann vs llm_b on items 0-3: the same as llm_a vs llm_b, 0.5; mean 0.75 over 2 pairs, 5 items.
    Relative, Moderate (0.5), items 0-1 x 4 questions pooled: P P S S P S S S vs P P S S S S S S.
    p_o = 7/8; p_e = (3/8)(2/8) + (5/8)(6/8) = 36/64; kappa = (56/64 - 36/64) / (28/64) = 5/7.
    A ratio of 0.3 lies in no window.
    """
    root = tmp_path_factory.mktemp("tiny")
    rows = []

    def judge(rater: str, protocol: str, ratio: float, labels: list, kind: str = "llm") -> None:
        questions = ["hallucinated"] if protocol == "absolute" else [
            "q1_hallucinations_more", "q2_omission_more", "q3_repetition_more", "q4_alignment_more"]
        names = {"H": "hallucinated", "F": "faithful", "P": "pruned", "S": "source", None: None}
        per_item = len(questions)
        for number in range(len(labels) // per_item):
            for index, question in enumerate(questions):
                label = labels[number * per_item + index]
                rows.append({"judge": rater, "judge_kind": kind, "protocol": protocol, "question": question,
                             "sample_id": f"d{number}", "ratio": ratio, "label": names[label]})

    judge("llm_a", "absolute", 0.25, ["H", "H", "F", "F", "H"])
    judge("llm_b", "absolute", 0.25, ["H", "F", "F", "F", None])
    judge("ann", "absolute", 0.25, ["H", "H", "F", "F", "H"], kind="human")
    judge("llm_a", "absolute", 0.75, ["F", "F", "F"])
    judge("llm_b", "absolute", 0.75, ["F", "F", "F"])
    judge("llm_a", "absolute", 0.3, ["H", "F"])
    judge("llm_b", "absolute", 0.3, ["F", "H"])
    judge("llm_a", "relative", 0.5, list("PPSSPSSS"))
    judge("llm_b", "relative", 0.5, list("PPSSSSSS"))
    write_judgments(root, "tiny", rows)
    ingest(root / "results.duckdb", [root / "judgments"])
    return root / "results.duckdb"


def test_cohens_kappa_by_hand(tiny_store: Path):
    rows = {(r["protocol"], r["window"], r["rater_pair"]): (r["n_items"], r["n_rater_pairs"], r["kappa"])
            for r in agreement(tiny_store)}
    assert rows == {
        ("absolute", "Low", "human-llm"): (5, 2, pytest.approx(0.75)),
        ("absolute", "Low", "llm-llm"): (4, 1, pytest.approx(0.5)),
        ("absolute", "Extreme", "llm-llm"): (3, 1, 1.0),  # both constant and equal
        ("relative", "Moderate", "llm-llm"): (2, 1, pytest.approx(5 / 7)),
    }

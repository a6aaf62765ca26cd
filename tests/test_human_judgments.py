"""Human annotation CSVs through `expertlab import-judgments` (tests/fixtures/human_judgments), and
queries/judge_fleiss.sql: Fleiss' kappa by hand; human-llm and human-human Cohen's kappa against the
study's released LLM verdicts."""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import duckdb
import pytest
from test_judgments import FIXTURES as STUDY_FIXTURES
from test_judgments import JUDGES, MXS, RCT, RELEASED_FLEISS, TABLE_1, agreement
from test_store import write_judgments

from expertlab.cli import main
from expertlab.imports.human import read_human_judgments
from expertlab.imports.judgments import find_judgment_files
from expertlab.imports.judgments import write_judgments as write_imported
from expertlab.report.execute import run_query
from expertlab.report.queries import read_query
from expertlab.store import ingest
from expertlab.variants import Variant

HUMAN = Path(__file__).parent / "fixtures" / "human_judgments"
ANNOTATIONS = HUMAN / "annotations.csv"
FLEISS = Path(__file__).resolve().parents[1] / "queries" / "judge_fleiss.sql"
COLUMNS = ["annotator", "protocol", "question", "dataset", "document_id", "model", "pruned_model", "criterion",
           "ratio", "label"]


def fleiss(store: Path) -> dict[tuple, tuple]:
    """judge_fleiss keyed by (protocol, dataset, question, output, rater_kind)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = run_query(con, read_query(FLEISS)).records()
    finally:
        con.close()
    return {(r["protocol"], r["dataset"], r["question"], r["output"], r["rater_kind"]):
            (r["n_raters"], r["n_items"], r["p_observed"], r["p_expected"], r["kappa"]) for r in rows}


def approx(value: Fraction | int) -> object:
    return pytest.approx(float(value), abs=1e-12)


# --- Fleiss' kappa by hand ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def constructed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labels H (hallucinated), F (faithful), P (pruned), S (source); all at ratio 0.5, task toy.

    Absolute, pruned outputs, LLM judges a, b, c on d0..d4: HHH, HHF, FFF, HFF, FFF. With n = 3,
    P_i = (sum_j n_ij^2 - 3) / 6: 1, 1/3, 1, 1/3, 1, so p_observed = (11/3) / 5 = 11/15. Of the 15
    labels 6 are H (0.4) and 9 F (0.6): p_expected = 0.16 + 0.36 = 13/25. kappa = (55/75 - 39/75) /
    (36/75) = 4/9. d5 (H, H, c missing) is not labelled by all three: left out.
    Absolute, source outputs, a and b on d0, d1: FF, FH. P_i: 1, 0 -> 1/2; F 3/4, H 1/4: p_expected =
    10/16; kappa = (8/16 - 10/16) / (6/16) = -1/3.
    Absolute, pruned outputs, annotators h1, h2 (human) on d0..d3: HH, FH, FF, HH. P_i: 1, 0, 1, 1 ->
    3/4; H 5/8, F 3/8: p_expected = 34/64 = 17/32; kappa = (24/32 - 17/32) / (15/32) = 7/15. The LLM
    judges of the same items are another kind: not counted.
    Relative, q1, a and b on d0..d2: PP, PS, SS. P_i: 1, 0, 1 -> 2/3; P 1/2, S 1/2: p_expected = 1/2;
    kappa = (2/3 - 1/2) / (1/2) = 1/3 (Scott's pi: Cohen's kappa of the same pair is 2/5).
    Relative, q2, a and b on d0..d2: SS, SS, SS: p_expected = 1, counted as kappa 1.
    No row: task other (a labels x0, x1, b's verdicts on both missing: no item labelled by all)
    and task solo (a alone).
    """
    root = tmp_path_factory.mktemp("constructed")
    names = {"H": "hallucinated", "F": "faithful", "P": "pruned", "S": "source", "-": None}
    rows = []

    def judge(name: str, labels: str, protocol: str = "absolute", question: str = "hallucinated",
              **common: str) -> None:
        for number, label in enumerate(labels):
            rows.append({"judge": name, "protocol": protocol, "question": question, "sample_id": f"d{number}",
                         "ratio": 0.5, "label": names[label], **common})

    judge("a", "HHFHFH")
    judge("b", "HHFFFH")
    judge("c", "HFFFF-")
    judge("a", "FF", output="source")
    judge("b", "FH", output="source")
    judge("h1", "HFFH", judge_kind="human")
    judge("h2", "HHFH", judge_kind="human")
    judge("a", "PPS", "relative", "q1_hallucinations_more")
    judge("b", "PSS", "relative", "q1_hallucinations_more")
    judge("a", "SSS", "relative", "q2_omission_more")
    judge("b", "SSS", "relative", "q2_omission_more")
    judge("a", "HF", task="other")
    judge("b", "--", task="other")
    judge("a", "HF", task="solo")
    write_judgments(root, "constructed", rows)
    ingest(root / "results.duckdb", [root / "judgments"])
    return root / "results.duckdb"


def test_fleiss_kappa_by_hand(constructed_store: Path):
    def row(n_raters: int, n_items: int, p_observed: str, p_expected: str, kappa: str) -> tuple:
        return (n_raters, n_items, *(approx(Fraction(value)) for value in (p_observed, p_expected, kappa)))

    hallucinated, q1, q2 = "hallucinated", "q1_hallucinations_more", "q2_omission_more"
    assert fleiss(constructed_store) == {
        ("absolute", "toy", hallucinated, "pruned", "human"): row(2, 4, "3/4", "17/32", "7/15"),
        ("absolute", "toy", hallucinated, "pruned", "llm"): row(3, 5, "11/15", "13/25", "4/9"),
        ("absolute", "toy", hallucinated, "source", "llm"): row(2, 2, "1/2", "5/8", "-1/3"),
        ("relative", "toy", q1, "pair", "llm"): row(2, 3, "2/3", "1/2", "1/3"),
        ("relative", "toy", q2, "pair", "llm"): (2, 3, 1.0, 1.0, 1.0),  # one label throughout
    }


# --- the CSV importer ----------------------------------------------------------------------------------


def test_the_fixture_is_read_row_by_row():
    imported = read_human_judgments(ANNOTATIONS)
    assert (imported.name, imported.format, imported.items, imported.judges) == (
        "human-annotations", "human-csv", 5, ["ann_a", "ann_b"])
    assert len(imported.rows) == 18
    assert {r["judge_kind"] for r in imported.rows} == {"human"}
    assert not [r for r in imported.rows if "generator_model" in r]  # no store column: raw keeps it when given
    absolute = [r for r in imported.rows if r["protocol"] == "absolute"]
    assert {r["question"] for r in absolute} == {"hallucinated"}  # empty or spelt out
    assert sorted(r["output"] for r in absolute) == ["pruned"] * 9 + ["source"]
    assert {r["output"] for r in imported.rows if r["protocol"] == "relative"} == {"pair"}
    judged = {variant.id: variant for variant in imported.variants}
    assert {judged[r["variant_id"]].criterion for r in imported.rows} == {"frequency", "reap", "easy_ep", "ean"}
    assert {r["task"] for r in imported.rows} == {MXS, RCT}  # the release's dataset names translated
    (empty,) = [r for r in imported.rows if r["sample_id"] == "rct:CD004198"]
    assert (empty["judge"], empty["label"], empty["status"]) == ("ann_b", None, "missing")
    assert judged[empty["variant_id"]] == Variant(model="NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", calibration="medinst",
                                                  seed=2104261, criterion="ean", ratio=0.25)
    assert json.loads(empty["raw"]) == {
        "annotator": "ann_b", "protocol": "absolute", "question": "", "dataset": "RCT", "document_id": "rct:CD004198",
        "model": "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
        "pruned_model": "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16-medinst-ean-2104261-0.25", "criterion": "ean",
        "ratio": "0.25", "label": "", "output": ""}


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study's released LLM verdicts and the human fixture, both imported from their directories."""
    root = tmp_path_factory.mktemp("mixed")
    assert main(["import-judgments", str(STUDY_FIXTURES), str(HUMAN), "--out", str(root / "imported")]) == 0
    ingest(root / "results.duckdb", [], [root / "imported"])
    return root / "results.duckdb"


def test_import_prints_a_summary_and_writes_a_human_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["import-judgments", str(HUMAN), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (f"import-judgments: {ANNOTATIONS}: human-csv (absolute, relative), 5 items, 2 human judges, "
            f"18 verdicts (1 missing, 0 invalid) -> {tmp_path}/judgments/human-annotations/") in out
    meta = json.loads((tmp_path / "judgments" / "human-annotations" / "meta.json").read_text())
    assert (meta["format"], meta["items"], meta["judges"]) == ("human-csv", 5, ["ann_a", "ann_b"])
    assert {record["origin"] for record in meta["variants"]} == {"imported"}


def test_an_empty_label_is_stored_as_missing(mixed_store: Path):
    con = duckdb.connect(str(mixed_store), read_only=True)
    try:
        rows = con.execute(
            "select judgment_set, judge, judge_kind::varchar, label::varchar, status::varchar, raw->>'label' "
            "from judgments where judge_kind = 'human' and status <> 'ok'"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("human-annotations", "ann_b", "human", None, "missing", "")]


def test_human_rows_of_judge_agreement_by_hand(mixed_store: Path):
    """Low window, judges claude, gemini, gpt (released: tests/fixtures/study_judgments).

    Absolute, pruned outputs of MXS:199, CD009202, MXS:103, CD004447 (H hallucinated, F faithful):
    claude F F F F, gemini F F H F, gpt F F F F; ann_a F F H F, ann_b H F H F (CD004198 missing: no pair).
    ann_a-claude: p_o 3/4, p_e (3/4)(1) = 3/4, kappa 0; ann_a-gpt the same, 0. ann_a-gemini: equal,
    p_e 10/16, kappa 1. ann_b-claude: p_o 1/2, p_e 1/2, kappa 0; ann_b-gpt 0. ann_b-gemini: p_o 3/4,
    p_e (2/4)(1/4) + (2/4)(3/4) = 1/2, kappa 1/2. human-llm: (0 + 1 + 0 + 0 + 1/2 + 0) / 6 = 1/4 over
    4 items. human-human, ann_a-ann_b: p_o 3/4, p_e (3/4)(2/4) + (1/4)(2/4) = 1/2, kappa 1/2.
    Relative, MXS:199 then CD004447, q1..q4 pooled (P pruned, S source): ann_a P P S S S P S P;
    claude P P S S S P S P: equal, p_e 1/2, kappa 1. gemini P S S S S P S P: p_o 7/8, p_e (4/8)(3/8) +
    (4/8)(5/8) = 1/2, kappa 3/4. gpt P P S S P P S S: p_o 6/8, p_e 1/2, kappa 1/2. human-llm: (1 + 3/4 +
    1/2) / 3 = 3/4 over 2 items; no human-human row (one annotator). The LLM-LLM rows stay Table 1's.
    """
    rows = {(r["protocol"], r["window"], r["rater_pair"]): (r["n_items"], r["n_rater_pairs"], r["kappa"])
            for r in agreement(mixed_store)}
    human = {key: value for key, value in rows.items() if key[2] != "llm-llm"}
    assert human == {
        ("absolute", "Low", "human-llm"): (4, 6, pytest.approx(1 / 4)),
        ("absolute", "Low", "human-human"): (4, 1, pytest.approx(1 / 2)),
        ("relative", "Low", "human-llm"): (2, 3, pytest.approx(3 / 4)),
    }
    for (protocol, window), (n_items, kappa) in TABLE_1.items():
        assert rows[(protocol, window, "llm-llm")][0] == n_items
        assert round(rows[(protocol, window, "llm-llm")][2], 3) == pytest.approx(kappa, abs=1e-9)


def test_human_rows_of_judge_fleiss_by_hand(mixed_store: Path):
    """Annotators only, pruned outputs. Multi-X-Science: MXS:199 F/H, MXS:103 H/H. P_i 0, 1 -> 1/2; H 3/4,
    F 1/4: p_e 10/16; kappa (8/16 - 10/16) / (6/16) = -1/3. RCT: CD009202 and CD004447 F/F (CD004198:
    ann_b missing, ann_a absent): one label, kappa 1. ann_a's source output and relative answers have
    no second annotator: no rows. The judges' rows are another kind, unchanged by the annotators."""
    rows = fleiss(mixed_store)
    human = {key: value for key, value in rows.items() if key[4] == "human"}
    assert human == {
        ("absolute", MXS, "hallucinated", "pruned", "human"):
            (2, 2, approx(Fraction(1, 2)), approx(Fraction(5, 8)), approx(Fraction(-1, 3))),
        ("absolute", RCT, "hallucinated", "pruned", "human"): (2, 2, 1.0, 1.0, 1.0),
    }
    judges = {key[:4]: (n_raters, n_items, kappa) for key, (n_raters, n_items, _, _, kappa) in rows.items()
              if key[4] == "llm"}
    assert judges == {key: (len(JUDGES), n_items, pytest.approx(float(kappa), abs=1e-12))
                      for key, (n_items, kappa) in RELEASED_FLEISS.items()}


# --- bad input: file and line named, nothing written -----------------------------------------------------

GOOD = {"annotator": "ann_c", "protocol": "absolute", "question": "", "dataset": "RCT", "document_id": "rct:CD009202",
        "model": "gpt-oss-20b", "pruned_model": "gpt-oss-20b-medinst-reap-2104260-0.125", "criterion": "reap",
        "ratio": "0.125", "label": "faithful"}
RELATIVE = GOOD | {"protocol": "relative", "question": "q1_hallucinations_more", "label": "pruned"}
ANOTHER = GOOD | {"document_id": "rct:CD004447"}
QUESTIONS = "q1_hallucinations_more, q2_omission_more, q3_repetition_more, q4_alignment_more"
CRITERION_NAMES = "random, frequency, gate, ean, easy_ep, reap, gating, easyep"


def _csv(rows: list[dict[str, str]], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])
    lines = [",".join(columns)]
    for row in rows:
        cells = [row.get(column, "") for column in columns]
        lines.append(",".join(f'"{cell}"' if "\n" in cell or "," in cell else cell for cell in cells))
    return "\n".join(lines) + "\n"


# (case, the file's text, the message after "<file>: ")
BAD_FILES = [
    ("absolute label", _csv([GOOD, GOOD | {"document_id": "x", "label": "maybe"}]),
     "line 3: label 'maybe' is not one of hallucinated, faithful (protocol absolute; empty: a missing verdict)"),
    ("label case", _csv([GOOD | {"label": "Faithful"}]),
     "line 2: label 'Faithful' is not one of hallucinated, faithful"),
    ("relative label", _csv([GOOD, RELATIVE | {"label": "hallucinated"}]),
     "line 3: label 'hallucinated' is not one of pruned, source (protocol relative"),
    ("protocol", _csv([GOOD | {"protocol": "pairwise"}]),
     "line 2: protocol 'pairwise' is not one of absolute, relative"),
    ("absolute question", _csv([GOOD | {"question": "q1_hallucinations_more"}]),
     "line 2: question 'q1_hallucinations_more' is not one of hallucinated (protocol absolute)"),
    ("relative question empty", _csv([GOOD, RELATIVE | {"question": ""}]),
     f"line 3: question '' is not one of {QUESTIONS} (protocol relative)"),
    ("relative question", _csv([RELATIVE | {"question": "q5_style_more"}]),
     f"line 2: question 'q5_style_more' is not one of {QUESTIONS} (protocol relative)"),
    ("absolute output", _csv([GOOD | {"output": "pair"}], [*COLUMNS, "output"]),
     "line 2: output 'pair' is not one of pruned, source (protocol absolute)"),
    ("relative output", _csv([GOOD, RELATIVE | {"output": "pruned"}], [*COLUMNS, "output"]),
     "line 3: output 'pruned' is not one of pair (protocol relative)"),
    ("criterion", _csv([GOOD | {"criterion": "magic"}]), f"line 2: criterion 'magic' is not one of {CRITERION_NAMES}"),
    ("ratio 1", _csv([GOOD | {"ratio": "1"}]), "line 2: ratio '1' is outside (0, 1)"),
    ("ratio 0", _csv([GOOD | {"ratio": "0.0"}]), "line 2: ratio '0.0' is outside (0, 1)"),
    ("ratio nan", _csv([GOOD | {"ratio": "nan"}]), "line 2: ratio 'nan' is outside (0, 1)"),
    ("ratio text", _csv([GOOD | {"ratio": "half"}]), "line 2: ratio 'half' is not a number in (0, 1)"),
    ("dataset", _csv([GOOD | {"dataset": "rct_summary"}]), "line 2: dataset 'rct_summary' is not one of RCT, "
     "Multi-X-Science"),
    ("pruned model name", _csv([GOOD | {"pruned_model": "gpt-oss-20b:medinst:2104260:reap:0.125"}]),
     "line 2: 'gpt-oss-20b:medinst:2104260:reap:0.125' is not <model>-<calibration>-<criterion>-<seed>[-<ratio>]"),
    ("model disagrees", _csv([GOOD | {"model": "gpt-oss-120b"}]), "line 2: model 'gpt-oss-120b' disagrees with "
     "pruned_model 'gpt-oss-20b-medinst-reap-2104260-0.125', whose model is 'gpt-oss-20b'"),
    ("criterion disagrees", _csv([GOOD | {"criterion": "gating"}]), "line 2: criterion 'gating' disagrees with "
     "pruned_model 'gpt-oss-20b-medinst-reap-2104260-0.125', whose criterion is 'reap'"),
    ("ratio disagrees", _csv([GOOD | {"ratio": "0.25"}]), "line 2: ratio '0.25' disagrees with "
     "pruned_model 'gpt-oss-20b-medinst-reap-2104260-0.125', whose ratio is 0.125"),
    ("annotator", _csv([GOOD | {"annotator": " "}]), "line 2: annotator is empty"),
    ("document", _csv([GOOD | {"document_id": ""}]), "line 2: document_id is empty"),
    ("duplicate", _csv([GOOD, ANOTHER, GOOD | {"label": "hallucinated"}]),
     ("line 4: repeats line 2: one row per (annotator, protocol, question, dataset, document_id, pruned_model, "
      "output), here ann_c, absolute, hallucinated, RCT, rct:CD009202, gpt-oss-20b-medinst-reap-2104260-0.125, "
      "pruned")),
    ("duplicate by defaults", _csv([GOOD | {"output": "pruned", "question": "hallucinated"}, GOOD],
                                   [*COLUMNS, "output"]), "line 3: repeats line 2"),
    ("duplicate by variant", _csv([GOOD | {"pruned_model": "gpt-oss-20b-medinst-reap-2104260", "ratio": "0.5"},
                                   GOOD | {"pruned_model": "gpt-oss-20b-medinst-reap-2104260-0.5", "ratio": "0.5"}]),
     "line 3: repeats line 2"),  # one variant: no suffix is 0.5
    ("missing column", _csv([GOOD], [c for c in COLUMNS if c != "ratio"]),
     "line 1: missing column(s) ratio (required: " + ", ".join(COLUMNS) + "; optional: output, generator_model)"),
    ("unknown column", _csv([GOOD], [*COLUMNS, "notes"]), "line 1: unknown column(s) notes (required: "),
    ("repeated column", _csv([GOOD], [*COLUMNS, "label"]), "line 1: repeated column(s) label"),
    ("cells", _csv([GOOD]) + "ann_c,absolute,,RCT\n", "line 3: 4 cells, the header names 10 columns"),
    ("line after a quoted line break", _csv([GOOD | {"annotator": "ann\nc"}, GOOD | {"label": "true"}]),
     "line 4: label 'true' is not one of hallucinated, faithful"),
    ("empty file", "", "line 1: empty file, expected a header naming annotator, protocol"),
    ("header only", ",".join(COLUMNS) + "\n", "line 1: a header and no annotation rows below it"),
]


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_a_bad_csv_fails_naming_file_and_line_and_writes_nothing(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    out = tmp_path / "imported"
    # the good files come first: they are read, but nothing is written while one file is bad
    assert main(["import-judgments", str(STUDY_FIXTURES), str(ANNOTATIONS), str(bad), "--out", str(out)]) == 2
    assert f"{bad}: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_the_good_rows_of_the_bad_cases_import(tmp_path: Path):
    """The bad cases fail on their defect alone: their base rows are a valid file."""
    good = tmp_path / "good.csv"
    good.write_text(_csv([GOOD, RELATIVE, ANOTHER | {"output": "source", "label": ""}], [*COLUMNS, "output"]))
    rows = read_human_judgments(good).rows
    assert [(r["question"], r["output"], r["label"], r["status"]) for r in rows] == [
        ("hallucinated", "pruned", "faithful", "ok"),
        ("q1_hallucinations_more", "pair", "pruned", "ok"),
        ("hallucinated", "source", None, "missing"),
    ]


def test_one_verdict_in_two_files_fails_before_anything_is_written(tmp_path: Path):
    copy = tmp_path / "again.csv"
    shutil.copyfile(ANNOTATIONS, copy)
    imported = [read_human_judgments(ANNOTATIONS), read_human_judgments(copy)]
    with pytest.raises(ValueError, match=rf"{copy}: the verdict \(ann_a, absolute, hallucinated, {MXS}, "
                                         rf"medinst32:SUM:Multi-XScience:199, .*\) is also given by {ANNOTATIONS}"):
        write_imported(imported, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()


def test_a_directory_holding_no_verdict_file_fails(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("nothing to import")
    with pytest.raises(FileNotFoundError, match="no .json or .csv file in it or below it"):
        find_judgment_files([tmp_path])


def test_cells_are_read_as_csv_not_split_on_commas(tmp_path: Path):
    quoted = tmp_path / "quoted.csv"
    with quoted.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, [*COLUMNS, "generator_model"])
        writer.writeheader()
        writer.writerow(GOOD | {"document_id": "doc, with a comma", "generator_model": "GPT"})
    (row,) = read_human_judgments(quoted).rows
    assert (row["sample_id"], json.loads(row["raw"])["generator_model"]) == ("doc, with a comma", "GPT")

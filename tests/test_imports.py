"""`expertlab import-masks` on the study's released masks (tests/fixtures/study_masks): store rows by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from expertlab.cli import main
from expertlab.imports.masks import find_mask_files, infer_num_experts, read_study_mask
from expertlab.store import ingest

FIXTURES = Path(__file__).parent / "fixtures" / "study_masks"
GPT = "gpt-oss-20b"
NEMOTRON = "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"


def test_names_parse_into_variant_identities():
    masks = {Path(m.source).parent.name: m for m in map(read_study_mask, find_mask_files([FIXTURES]))}
    assert len(masks) == 7
    reap = masks["gpt-oss-20b-medinst-reap-0-0.25"]
    assert (reap.model, reap.calibration, reap.seed, reap.criterion, reap.ratio) == (GPT, "medinst", 0, "reap", 0.25)
    assert masks["gpt-oss-20b-medinst-reap-0"].ratio == 0.5  # no suffix: 0.5
    assert masks["gpt-oss-20b-medinst-gating-1-0.75"].criterion == "gate"
    assert masks[f"{NEMOTRON}-medinst-easyep-0"].criterion == "easy_ep"
    assert (len(reap.kept), reap.kept_per_layer) == (24, 24)
    # counts from the README: 32 experts x 24 MoE layers, 128 x 23
    assert infer_num_experts(list(masks.values())) == {NEMOTRON: 128, GPT: 32}


def test_import_and_ingest_give_the_variants_and_masks(tmp_path, capsys):
    assert main(["import-masks", str(FIXTURES), "--out", str(tmp_path / "imported")]) == 0
    out = capsys.readouterr().out
    assert f"{GPT}: 5 masks, 32 experts per layer, 24 MoE layers" in out
    assert "1 masks keep a different number of experts than their ratio implies" in out  # the random one
    ingest(tmp_path / "store.duckdb", [], [tmp_path / "imported"])
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    rows = con.execute(
        "select criterion::varchar, ratio, seed, kept_per_layer, top_k, origin from variants "
        "where model = ? order by criterion, ratio", [GPT]
    ).fetchall()
    assert rows == [
        ("random", 0.25, 2, 16, None, "imported"),  # the release's defect, recorded as it is
        ("gate", 0.75, 1, 8, None, "imported"),  # round(0.25 * 32)
        ("ean", 0.875, 0, 4, None, "imported"),
        ("reap", 0.25, 0, 24, None, "imported"),
        ("reap", 0.5, 0, 16, None, "imported"),
    ]
    source = json.loads((FIXTURES / "gpt-oss-20b-medinst-gating-1-0.75" / "expert_mask.json").read_text())
    kept = con.execute(
        "select layer, list(expert order by expert) from expert_masks where kept and variant_id = ? group by layer order by layer",
        [f"{GPT}:medinst:1:gate:0.75"],
    ).fetchall()
    assert [experts for _, experts in kept] == [sorted(layer) for layer in source]
    assert [layer for layer, _ in kept] == list(range(24))  # positions among the MoE layers
    assert con.execute("select count(*) from expert_masks where variant_id = ?", [f"{GPT}:medinst:1:gate:0.75"]).fetchone() == (24 * 32,)
    assert con.execute(f"select count(*) from variants where model = '{NEMOTRON}'").fetchone() == (2,)

    # importing again changes nothing; ingest skips the unchanged artifacts
    assert main(["import-masks", str(FIXTURES), "--out", str(tmp_path / "imported")]) == 0
    report = ingest(tmp_path / "store.duckdb", [], [tmp_path / "imported"])
    assert not report.changed


def _mask_dir(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / "masks" / name
    path.mkdir(parents=True)
    (path / "expert_mask.json").write_text(json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model-medinst-bogus-0", [[0, 1]], "is not <model>-<calibration>-<criterion>-<seed>"),
        ("model-medinst-reap-0", {"layers": []}, "expected a non-empty list of kept-expert lists"),
        ("model-medinst-reap-0", [[0, 1], [2]], "same number of distinct experts"),
        ("model-medinst-reap-0", [[0, 0]], "same number of distinct experts"),
        ("model-medinst-reap-0", [[0, -1]], "non-negative integers"),
    ],
)
def test_bad_masks_are_refused_with_the_file(tmp_path, capsys, name, content, message):
    path = _mask_dir(tmp_path, name, content)
    assert main(["import-masks", str(path), "--out", str(tmp_path / "imported")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not (tmp_path / "imported").exists()


def test_expert_count_is_inferred_only_when_unambiguous(tmp_path, capsys):
    # keeps 2 of an unknown count at ratio 0.5: 4 fits, so does 3 (round-half-up keeps 2 of 3)
    path = _mask_dir(tmp_path, "m-medinst-reap-0", [[0, 2]])
    assert main(["import-masks", str(path), "--out", str(tmp_path / "imported")]) == 2
    assert "(could be 3, 4); pass --num-experts m=N" in capsys.readouterr().err
    assert main(["import-masks", str(path), "--out", str(tmp_path / "imported"), "--num-experts", "m=4"]) == 0
    assert main(["import-masks", str(path), "--out", str(tmp_path / "x"), "--num-experts", "m=2"]) == 2
    assert "keeps expert 2, beyond the expert count 2" in capsys.readouterr().err


def test_imported_and_own_variants_share_the_store(tmp_path):
    """The imported dir joins the pipeline's artifacts in one ingest; removing it removes them again."""
    shutil.copytree(FIXTURES / "gpt-oss-20b-medinst-reap-0", tmp_path / "masks" / "gpt-oss-20b-medinst-reap-0")
    assert main(["import-masks", str(tmp_path / "masks"), "--out", str(tmp_path / "imported"), "--num-experts", f"{GPT}=32"]) == 0
    report = ingest(tmp_path / "store.duckdb", [tmp_path / "imported"])
    assert len(report.added) == 1
    shutil.rmtree(tmp_path / "imported" / GPT)
    (tmp_path / "imported").mkdir(exist_ok=True)
    report = ingest(tmp_path / "store.duckdb", [], [tmp_path / "imported"])
    assert len(report.removed) == 1
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    assert con.execute("select count(*) from variants").fetchone() == (0,)

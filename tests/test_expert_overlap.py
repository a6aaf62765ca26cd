"""expert_overlap: mask overlap between criteria by hand, and the paper's statements from the released masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expertlab.cli import main
from expertlab.report.execute import connect_read_only, run_query
from expertlab.report.queries import read_query
from expertlab.store import ingest

REPO = Path(__file__).resolve().parents[1]
RELEASED_HALF = REPO / "tests" / "fixtures" / "study_masks_half"
DATA_DRIVEN = ("frequency", "gate", "ean", "easy_ep", "reap")


def overlap_table(store: Path) -> list[dict]:
    con = connect_read_only(store)
    try:
        return run_query(con, read_query(REPO / "queries" / "expert_overlap.sql")).records()
    finally:
        con.close()


def imported_store(tmp_path: Path, mask_dirs: list[Path], *extra: str) -> Path:
    assert main(["import-masks", *map(str, mask_dirs), "--out", str(tmp_path / "imported"), *extra]) == 0
    store = tmp_path / "results.duckdb"
    ingest(store, [tmp_path / "imported"])
    return store


def test_overlap_by_hand(tmp_path: Path) -> None:
    """Two layers, 4 experts, 2 kept. Layer overlaps |A ∩ B| / 2 per seed pair (gate seed, reap seed):
    (0, 0): 2/2, 0/2 -> 0.5 (a layer sharing nothing counts 0); (0, 1): 1/2, 2/2 -> 0.75;
    (1, 0): 1/2, 0/2 -> 0.25; (1, 1): 0/2, 2/2 -> 0.5; mean over the four seed pairs: 0.5."""
    masks = {
        "gating-0": [[0, 1], [0, 1]],
        "gating-1": [[0, 2], [0, 1]],
        "reap-0": [[0, 1], [2, 3]],
        "reap-1": [[1, 3], [0, 1]],
    }
    dirs = []
    for name, kept in masks.items():
        directory = tmp_path / "masks" / f"m-c-{name}-0.5"
        directory.mkdir(parents=True)
        (directory / "expert_mask.json").write_text(json.dumps(kept))
        dirs.append(directory)
    (row,) = overlap_table(imported_store(tmp_path, dirs, "--num-experts", "m=4"))
    assert (row["model"], row["calibration"], row["ratio"]) == ("m", "c", 0.5)
    assert (row["criterion_a"], row["criterion_b"], row["n_seed_pairs"]) == ("gate", "reap", 4)
    assert row["overlap"] == pytest.approx(0.5)


def test_identical_masks_overlap_fully_and_ratios_stay_apart(tmp_path: Path) -> None:
    dirs = []
    for name, kept in {"gating-0-0.5": [[0, 1]], "reap-0-0.5": [[0, 1]], "reap-0-0.25": [[0, 1, 2]]}.items():
        directory = tmp_path / "masks" / f"m-c-{name}"
        directory.mkdir(parents=True)
        (directory / "expert_mask.json").write_text(json.dumps(kept))
        dirs.append(directory)
    rows = overlap_table(imported_store(tmp_path, dirs, "--num-experts", "m=4"))
    assert [(r["ratio"], r["criterion_a"], r["criterion_b"], r["overlap"]) for r in rows] == [
        (0.5, "gate", "reap", 1.0)
    ]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], float]:
    root = tmp_path_factory.mktemp("released")
    store = imported_store(root, sorted(path for path in RELEASED_HALF.iterdir() if path.is_dir()))
    rows = overlap_table(store)
    assert {(r["calibration"], r["ratio"]) for r in rows} == {("medinst", 0.5)}
    return {(r["model"], r["criterion_a"], r["criterion_b"]): r["overlap"] for r in rows}


def test_ean_overlaps_least_peaking_at_653_for_qwen36_and_714_for_nemotron3(released: dict) -> None:
    def ean_peak(model: str) -> float:
        return max(value for (m, a, b), value in released.items() if m == model and "ean" in (a, b))

    assert round(ean_peak("Qwen3.6-35B-A3B"), 3) == 0.653  # paper, Section 5
    assert round(ean_peak("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"), 3) == 0.714
    models = {model for model, _, _ in released}
    assert len(models) == 4 and len(released) == 4 * 10  # four models x the ten data-driven pairs
    others = [value for (model, a, b), value in released.items() if "ean" not in (a, b)]
    assert round(min(others), 3) == 0.753  # "a minimum of .753" among the remaining methods
    assert max(ean_peak(model) for model in models) < min(others)

"""Stage outputs never destroy inputs: the output checks, atomic replacement, stale temporaries, permissions."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from expertlab.cli import main
from expertlab.io import OUTPUT_MARKER, UnsafeOutput, atomic_dir, atomic_path, check_output, remove_stale_temporaries


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository-like directory as the working directory, with a model and a mask inside."""
    root = tmp_path / "study"
    (root / ".git").mkdir(parents=True)
    (root / "models" / "toy").mkdir(parents=True)
    (root / "models" / "toy" / "config.json").write_text("{}")
    (root / "masks").mkdir()
    (root / "masks" / "keep.json").write_text("[[0, 1]]")
    monkeypatch.chdir(root)
    return root


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (".", "output .: is the working directory"),
        ("models/toy", "output models/toy: is the input models/toy"),
        ("models", "output models: contains the input models/toy"),
        ("masks", "output masks: contains the input masks/keep.json"),
        ("models/toy/pruned", "output models/toy/pruned: lies inside the input models/toy"),
        ("..", "output ..: contains the working directory"),
    ],
)
def test_an_output_that_would_destroy_an_input_is_refused_naming_it(workspace: Path, out: str, expected: str) -> None:
    before = listing(workspace.parent)
    with pytest.raises(UnsafeOutput, match=expected):
        with atomic_dir(out, owner="prune", inputs=["models/toy", "masks/keep.json"]) as tmp:
            (tmp / "weights").write_text("pruned")
    assert listing(workspace.parent) == before


def test_a_repository_root_is_refused_from_outside_it(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UnsafeOutput, match="is a repository root"):
        check_output(workspace, owner="select")
    (workspace / "masks" / OUTPUT_MARKER).write_text("select\n")  # even one that looks like an output
    (workspace / ".git").rename(workspace / "masks" / ".git")
    with pytest.raises(UnsafeOutput, match="is a repository root"):
        check_output(workspace / "masks", owner="select")


def test_a_symlink_to_an_input_is_refused(workspace: Path) -> None:
    (workspace / "pruned").symlink_to(workspace / "models" / "toy")
    with pytest.raises(UnsafeOutput, match="output pruned: is a symbolic link"):
        check_output("pruned", owner="prune", inputs=["models/toy"])
    assert (workspace / "models" / "toy" / "config.json").read_text() == "{}"


def test_only_the_stages_own_earlier_output_is_replaced(workspace: Path) -> None:
    foreign = workspace / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(UnsafeOutput, match=f"output notes: exists, is not empty and has no {OUTPUT_MARKER} marker"):
        check_output("notes", owner="select")
    (foreign / OUTPUT_MARKER).write_text("observe\n")
    with pytest.raises(UnsafeOutput, match="was written by `expertlab observe`, not `expertlab select`"):
        check_output("notes", owner="select")
    (workspace / "a-file").write_text("x")
    with pytest.raises(UnsafeOutput, match="exists and is not a directory"):
        check_output("a-file", owner="select")
    (workspace / "empty").mkdir()
    check_output("empty", owner="select")  # an empty directory holds nothing to lose


def test_replacing_an_earlier_output_is_whole_and_marked(workspace: Path) -> None:
    for content in ("first", "second"):
        with atomic_dir("masks/out", owner="select", inputs=["models/toy"]) as tmp:
            (tmp / "mask.json").write_text(content)
            if content == "first":
                (tmp / "only-in-first").write_text("x")
    out = workspace / "masks" / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARKER, "mask.json"])
    assert (out / "mask.json").read_text() == "second"
    assert (out / OUTPUT_MARKER).read_text() == "select\n"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_failed_write_keeps_the_earlier_output(workspace: Path) -> None:
    with atomic_dir("out", owner="score") as tmp:
        (tmp / "scores").write_text("good")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_dir("out", owner="score") as tmp:
            (tmp / "scores").write_text("half")
            raise RuntimeError("killed")
    assert (workspace / "out" / "scores").read_text() == "good"
    assert [p.name for p in workspace.iterdir() if p.name.startswith(".out")] == []


def test_stale_temporaries_are_removed_and_live_ones_kept(workspace: Path) -> None:
    stale_dir = workspace / ".out.k1ll3d00.tmp"
    stale_dir.mkdir()
    (stale_dir / "half-a-checkpoint").write_bytes(b"\0" * 1024)
    stale_file = workspace / ".out.abc12345.tmp"
    stale_file.write_text("half")
    neighbour = workspace / ".out.json.abcd1234.tmp"  # another output's (out.json), not ours to judge
    neighbour.mkdir()
    live = workspace / ".out.l1ve0000.tmp"
    live.mkdir()
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running writer holds its temporary
    try:
        with atomic_dir("out", owner="observe") as tmp:
            (tmp / "stats").write_text("done")
        assert not stale_dir.exists() and not stale_file.exists()
        assert live.is_dir() and neighbour.is_dir()
    finally:
        os.close(holder)
    assert remove_stale_temporaries(workspace / "out") == [live]  # once its writer is gone


def test_atomic_files_leave_no_stale_temporaries(workspace: Path) -> None:
    (workspace / ".store.duckdb.x0000000.tmp").write_text("killed mid-write")
    with atomic_path(workspace / "store.duckdb") as tmp:
        tmp.write_text("new")
    assert sorted(p.name for p in workspace.iterdir() if "store" in p.name) == ["store.duckdb"]


def test_every_result_file_gets_the_umask_permissions(workspace: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir("model", owner="train-toy") as tmp:
            (tmp / "model.safetensors").write_bytes(b"w")
            os.chmod(tmp / "model.safetensors", 0o600)  # as a library writing through a private temp file does
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(tmp / "sub" / "run.sh", 0o700)
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (workspace / "model").rglob("*")}
    assert modes == {"model.safetensors": 0o644, "config.json": 0o644, OUTPUT_MARKER: 0o644, "sub": 0o755, "run.sh": 0o755}
    assert stat.S_IMODE((workspace / "model").stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (".", "expertlab prune: error: output .: is the working directory"),
        ("model", "expertlab prune: error: output model: is the input model"),
        ("link", "expertlab prune: error: output link: is a symbolic link"),
        ("model/pruned", "expertlab prune: error: output model/pruned: lies inside the input model"),
    ],
)
def test_prune_through_the_cli_refuses_and_destroys_nothing(
    tiny_moe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], out: str, expected: str
) -> None:
    import shutil

    work = tmp_path / "work"
    shutil.copytree(tiny_moe_dir, work / "model")
    (work / "keep.json").write_text("[[0, 1], [2, 3]]")
    (work / "link").symlink_to(work / "model")
    monkeypatch.chdir(work)
    before = listing(work)
    assert main(["prune", "model", "--mask", "keep.json", "--out", out]) == 2
    error = capsys.readouterr().err
    assert error.startswith(expected) and error.count("\n") == 1
    assert listing(work) == before

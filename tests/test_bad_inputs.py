"""Every bad input of tests/bad_inputs.py, through the real CLI: exit 2, one line naming the culprit, no
traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertlab.cli import main
from tests.bad_inputs import CASES, BadInput, listing, prepare_workspace, stage_case


@pytest.fixture(scope="module")
def inputs(tiny_moe_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_workspace(tmp_path_factory.mktemp("bad-inputs") / "inputs", tiny_moe_dir)


def error_lines(stderr: str, command: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"expertlab {command}: ")]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_fails_in_one_line_naming_its_culprit(
    case: BadInput, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = stage_case(case, inputs, tmp_path / "work")
    monkeypatch.chdir(work)
    before = listing(work)
    code = main(case.argv)
    stderr = capsys.readouterr().err
    (line,) = error_lines(stderr, case.argv[0])
    assert code == 2 and line.startswith(f"expertlab {case.argv[0]}: error: ")
    assert case.culprit in line
    assert "Traceback" not in stderr
    assert listing(work) == before  # nothing written, not even a traceback file


def test_an_unexpected_failure_prints_one_line_and_keeps_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import stages.check

    def broken(args: object) -> int:
        return {}["a bug"]

    monkeypatch.setattr(stages.check, "run", broken)
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("expertlab check: unexpected error (KeyError: 'a bug'); traceback written to .expertlab/logs/check-")
    (saved,) = (tmp_path / ".expertlab" / "logs").iterdir()
    assert line.endswith(str(Path(".expertlab/logs") / saved.name))
    assert "Traceback (most recent call last)" in saved.read_text() and 'return {}["a bug"]' in saved.read_text()

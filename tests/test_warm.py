"""The warm process: a command forked from it writes what a fresh process writes, exits as it exits, is
interrupted and killed with its client, and a command it cannot run as a fresh process would runs cold."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from expertlab import warm
from tests.pipeline_study import ROOT

EXPERTLAB = str(Path(sys.executable).parent / "expertlab")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path, Path]]:
    """(the environment pointing at a warm server, its command log, a directory holding params.yaml)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    with warm.process(dict(os.environ)) as (env, log):
        yield env, log, project


def expertlab(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXPERTLAB, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def last_record(log: Path, out: str) -> dict:
    return [record for record in warm.read_log(log) if out in record["argv"]][-1]


def test_a_warm_command_writes_byte_for_byte_what_a_cold_one_writes(server) -> None:
    env, log, project = server
    cold = dict(env)
    del cold[warm.ENV_VAR]
    for name, environment in (("warm", env), ("cold", cold)):
        result = expertlab("prepare", "--params", "params.yaml", "--out", f"toy-{name}", env=environment, cwd=project)
        assert result.returncode == 0, result.stderr
    assert last_record(log, "toy-warm")["warm"] is True
    assert not [record for record in warm.read_log(log) if "toy-cold" in record["argv"]]
    warm_files, cold_files = files(project / "toy-warm"), files(project / "toy-cold")
    assert warm_files and warm_files == cold_files


def test_a_warm_command_exits_and_speaks_as_a_cold_one(server) -> None:
    env, log, project = server
    cold = {key: value for key, value in env.items() if key != warm.ENV_VAR}
    results = [expertlab("score", "missing-dir", "--out", "x", env=e, cwd=project) for e in (env, cold)]
    assert [r.returncode for r in results] == [2, 2]
    assert results[0].stderr == results[1].stderr == "expertlab score: error: missing file: missing-dir/meta.json\n"
    assert last_record(log, "missing-dir")["warm"] is True


def test_a_command_in_another_environment_runs_cold_and_says_why(server) -> None:
    env, log, project = server
    result = expertlab("score", "missing-dir", "--out", "other", env={**env, "EXTRA": "1"}, cwd=project)
    assert result.returncode == 2 and "missing file: missing-dir/meta.json" in result.stderr
    assert last_record(log, "other") == {
        "argv": ["score", "missing-dir", "--out", "other"],
        "refused": "environment differs in EXTRA",
    }
    # what DVC and the shell set per command is no difference
    assert warm._env_difference({"A": "1", "PWD": "/x"}, {"A": "1", "PWD": "/y", "DVC_STAGE": "s", "SHLVL": "2"}) == []
    assert warm._env_difference({"A": "1", "B": "2"}, {"A": "2", "C": "3"}) == ["A", "B", "C"]


def test_without_a_server_the_command_runs_cold(server, tmp_path: Path) -> None:
    env, _, project = server
    result = expertlab("score", "missing-dir", "--out", "x", env={**env, warm.ENV_VAR: str(tmp_path / "no-socket")},
                       cwd=project)
    assert result.returncode == 2 and "missing file: missing-dir/meta.json" in result.stderr


def start_training(env: dict[str, str], project: Path, out: str) -> subprocess.Popen:
    if not (project / "toy-train").exists():
        prepared = expertlab("prepare", "--params", "params.yaml", "--out", "toy-train", env=env, cwd=project)
        assert prepared.returncode == 0, prepared.stderr
    return subprocess.Popen(
        [EXPERTLAB, "train-toy", "--params", "params.yaml", "--data", "toy-train/train.jsonl", "--out", out],
        env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_worker(log: Path, out: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = [record for record in warm.read_log(log) if out in record["argv"]]
        if records:
            return records[-1]["pid"]
        time.sleep(0.05)
    raise AssertionError(f"no warm command for {out}")


def gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_an_interrupt_reaches_the_warm_command(server) -> None:
    env, log, project = server
    client = start_training(env, project, "model-interrupted")
    wait_for_worker(log, "model-interrupted")
    time.sleep(3)  # into the training loop
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 130
    assert "expertlab train-toy: interrupted; nothing half-written was kept" in stderr
    assert not (project / "model-interrupted").exists()


def test_a_killed_client_takes_its_warm_command_with_it(server) -> None:
    env, log, project = server
    client = start_training(env, project, "model-killed")
    worker = wait_for_worker(log, "model-killed")
    time.sleep(1)
    client.kill()
    client.wait()
    assert gone(worker, within_s=warm.KILL_GRACE_S + 5)
    assert not (project / "model-killed").exists()


def test_a_killed_run_leaves_no_warm_process_nor_its_directory() -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os, time\nfrom expertlab import warm\n"
         "run = warm.process(dict(os.environ))\nenv, log = run.__enter__()\nprint(env[warm.ENV_VAR], flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    socket_path = Path(holder.stdout.readline().strip())
    assert socket_path.parent.is_dir()
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + 60  # the server notices once its imports are done and a second has passed
    while socket_path.parent.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not socket_path.parent.exists()


def test_a_warm_command_killed_by_a_signal_exits_as_a_shell_reports_it(server) -> None:
    env, log, project = server
    client = start_training(env, project, "model-signalled")
    worker = wait_for_worker(log, "model-signalled")
    os.kill(worker, signal.SIGKILL)
    client.communicate(timeout=60)
    assert client.returncode == 128 + signal.SIGKILL
    assert not (project / "model-signalled").exists()


def test_run_says_where_the_warm_commands_time_went(capsys: pytest.CaptureFixture[str]) -> None:
    from stages.run import _say_how_commands_ran

    records = [{"argv": ["observe", "a"], "warm": True, "pid": 1}, {"argv": ["observe", "b"], "warm": True, "pid": 2},
               {"argv": ["train-toy"], "warm": True, "pid": 3}, {"argv": ["prune"], "refused": "environment differs in X"}]  # fmt: skip
    times = [{"argv": ["observe", "a"], "seconds": 2.4, "status": 0}, {"argv": ["observe", "b"], "seconds": 3.0, "status": 0},
             {"argv": ["train-toy"], "seconds": 4.9, "status": 0}]  # fmt: skip
    _say_how_commands_ran(records, times)
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "expertlab run: 3 stage commands ran in the warm process",
        "expertlab run: cold: expertlab prune: environment differs in X",
        "expertlab run: time by command: observe 5 s (2), train-toy 5 s (1)",
    ]

"""One warm process per `expertlab run`: the heavy libraries are imported once, each stage command runs in a fork.

A stage instance spends most of its seconds importing torch, transformers, nltk and pandas (about 7 s of a
toy generation's 8). `expertlab run` starts a server that imports them and listens on a Unix socket; the
`expertlab` command DVC calls finds the socket in EXPERTLAB_WARM, hands over its argv, working directory,
environment and standard streams, and waits for the exit status of a fork that runs the command as a fresh
process would. Anything that keeps the fork from being that fresh process (no server, another environment,
streams that cannot be passed) runs the command in its own process instead: same results, only slower.

Processes: the server forks a minder per command, the minder forks the worker and reports its exit status;
a client that dies takes its worker with it (the minder sees the socket close), and a server whose parent
dies exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ENV_VAR = "EXPERTLAB_WARM"
# what the stage commands import, heaviest first; a module that fails to import is left to the commands
PRELOAD = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.generation.utils",
    "transformers.models.auto.modeling_auto",
    "safetensors.torch",
    "sklearn",
    "nltk",
    "rouge_score.rouge_scorer",
    "pandas",
    "pyarrow.parquet",
    "duckdb",
    "pydantic",
    "httpx2",
    "tqdm",
    "ruamel.yaml",
    "pyarrow.dataset",
    "transformers.models.auto.tokenization_auto",
    "transformers.processing_utils",
    "transformers.modeling_layers",
    # expertlab's own, for the commands the grid runs per variant (prune, generate, score, judge): a few hundred
    # milliseconds of imports each, which would be most of a toy score's or judge's time in every fork
    "expertlab.cli",
    "expertlab.params",
    "expertlab.records",
    "expertlab.moe.prune",
    "expertlab.moe.families",
    "expertlab.generate.run",
    "expertlab.evaluate",
    "expertlab.tasks",
    "expertlab.metrics",
    "expertlab.scoring",
    "expertlab.judging",
    "expertlab.judges",
)
# set per command by DVC and the shell it runs; any other difference from the server's environment
# would make the fork differ from a fresh process (libraries read some variables at import)
PER_COMMAND_ENV = ("PWD", "OLDPWD", "SHLVL", "_")
PER_COMMAND_PREFIX = "DVC_"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MESSAGE_BYTES = 1 << 20
KILL_GRACE_S = 10.0
LOG_NAME = "commands.log"


def _comparable(env: dict[str, str]) -> dict[str, str]:
    return {
        key: value for key, value in env.items()
        if key not in PER_COMMAND_ENV and not key.startswith(PER_COMMAND_PREFIX) and key != ENV_VAR
    }


def _env_difference(server_env: dict[str, str], client_env: dict[str, str]) -> list[str]:
    ours, theirs = _comparable(server_env), _comparable(client_env)
    return sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))


# ---------------------------------------------------------------------------------------------- client


def run_warm(path: str, argv: list[str]) -> int | None:
    """Run `expertlab argv` in a fork of the server at `path`: its exit code, or None where it cannot."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(path)
    except OSError:
        return None
    with conn:
        request = {"argv": argv, "argv0": sys.argv[0], "cwd": os.getcwd(), "env": dict(os.environ)}
        try:
            socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
            reply = json.loads(conn.recv(MESSAGE_BYTES) or b"{}")
        except (OSError, ValueError):
            return None
        if "pid" not in reply:
            return None
        worker = int(reply["pid"])
        previous = {sig: signal.signal(sig, lambda signum, _frame: _forward(worker, signum)) for sig in FORWARDED_SIGNALS}
        try:
            message = conn.recv(MESSAGE_BYTES)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if not message:
        print("expertlab: the warm process went away during the command", file=sys.stderr)
        return 1
    code = os.waitstatus_to_exitcode(int(json.loads(message)["status"]))
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says it


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


# ---------------------------------------------------------------------------------------------- server


@contextlib.contextmanager
def process(env: dict[str, str]) -> Iterator[tuple[dict[str, str], Path]]:
    """A warm server for the commands of one run: (the environment that points them at it, its command log)."""
    directory = Path(tempfile.mkdtemp(prefix="expertlab-warm-"))
    path = directory / "socket"
    log = directory / LOG_NAME
    with open(directory / "server.log", "wb") as server_log:
        server = subprocess.Popen(
            [sys.executable, "-m", "expertlab.warm", str(path), str(log)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=server_log, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        yield {**env, ENV_VAR: str(path)}, log
    finally:
        died = server.poll()
        server.terminate()
        try:
            server.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if died:  # the commands ran cold; say why
            said = (directory / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
            print(f"expertlab: the warm process exited ({died}): " + " | ".join(said), file=sys.stderr)
        shutil.rmtree(directory, ignore_errors=True)


def read_log(log: Path) -> list[dict]:
    """The commands a warm server was handed: {"argv", "warm": true, "pid"} or {"argv", "refused": why} each."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().split("\n")[:-1]]  # whole lines only


def times_path(log: str | Path) -> Path:
    """Beside the log: {"argv", "seconds", "status" (its wait status)} of each warm command, once it ended."""
    return Path(log).with_name("times.jsonl")


def serve(path: str, log: str) -> None:
    """Listen at `path` (bound before the imports, so early clients wait instead of going cold)."""
    parent = os.getppid()
    environment = dict(os.environ)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    from expertlab.cli import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():  # as `expertlab`'s main sets them before any import
        os.environ.setdefault(key, value)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as err:  # the command imports it again and reports it there
            print(f"warm: {name} not preloaded: {type(err).__name__}: {err}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener.settimeout(1.0)
    try:
        while os.getppid() == parent:
            _reap()
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                code = 1
                try:
                    code = _mind(conn, environment, log)
                finally:
                    os._exit(code)
            conn.close()
    finally:
        if os.getppid() != parent:  # the run was killed before it could clean up: its directory goes with us
            shutil.rmtree(Path(path).parent, ignore_errors=True)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _log(log: str, record: dict) -> None:
    with open(log, "a") as handle:  # one short append per command: whole lines under concurrency
        handle.write(json.dumps(record) + "\n")


def _mind(conn: socket.socket, environment: dict[str, str], log: str) -> int:
    """One command: check it can run warm, fork its worker, report the worker's exit status."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    data, fds, _, _ = socket.recv_fds(conn, MESSAGE_BYTES, 3)
    request = json.loads(data)
    different = _env_difference(environment, request["env"])
    if len(fds) != 3 or different:
        why = f"environment differs in {', '.join(different)}" if different else "standard streams not passed"
        _log(log, {"argv": request["argv"], "refused": why})
        conn.send(json.dumps({"refused": why}).encode())
        return 0
    worker = os.fork()
    if worker == 0:
        conn.close()
        _become_command(request, fds)
    started = time.monotonic()
    for fd in fds:
        os.close(fd)
    _log(log, {"argv": request["argv"], "warm": True, "pid": worker})
    conn.send(json.dumps({"pid": worker}).encode())
    status = _wait_or_kill(worker, conn)
    _log(times_path(log), {"argv": request["argv"], "seconds": round(time.monotonic() - started, 3), "status": status})
    with contextlib.suppress(OSError):
        conn.send(json.dumps({"status": status}).encode())
    return 0


def _wait_or_kill(worker: int, conn: socket.socket) -> int:
    """The worker's wait status; a client that closes its end first has the worker terminated."""
    pidfd = os.pidfd_open(worker)
    try:
        while True:
            ready, _, _ = select.select([pidfd, conn], [], [])
            if pidfd in ready:
                return os.waitpid(worker, 0)[1]
            if not conn.recv(MESSAGE_BYTES):
                _forward(worker, signal.SIGTERM)
                deadline = time.monotonic() + KILL_GRACE_S
                while time.monotonic() < deadline:
                    done, status = os.waitpid(worker, os.WNOHANG)
                    if done:
                        return status
                    time.sleep(0.05)
                _forward(worker, signal.SIGKILL)
                return os.waitpid(worker, 0)[1]
    finally:
        os.close(pidfd)


def _become_command(request: dict, fds: list[int]) -> None:
    """In the worker: take the client's streams, directory, environment and argv, run, exit as a process would."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _reopen_standard_streams()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["argv0"], *request["argv"]]
        from expertlab.cli import run_here

        code = run_here(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reopen_standard_streams() -> None:
    """Text streams over the new fds 0-2, buffered as Python buffers them at startup for what they now are."""
    sys.stdin = open(0, closefd=False, encoding=sys.__stdin__.encoding)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False,
                      encoding=sys.__stdout__.encoding, errors=sys.__stdout__.errors)
    sys.stderr = open(2, "w", buffering=1, closefd=False, encoding=sys.__stderr__.encoding, errors="backslashreplace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])

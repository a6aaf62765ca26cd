"""Atomic file writing and JSON/JSONL helpers: nothing half-written is ever taken as a result."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.errors import ExpertlabError

OUTPUT_MARKER = ".expertlab-output"  # in every stage output directory: which command wrote it
_REPOSITORY_MARKERS = (".git", ".dvc")


class UnsafeOutput(ExpertlabError):
    """An output path whose replacement would destroy something that is not a previous output of the stage."""


def _umask() -> int:
    """The process umask (temp files are created private; results get the usual permissions)."""
    current = os.umask(0)
    os.umask(current)
    return current


def _within(path: Path, root: Path) -> bool:
    """Whether resolved `path` is `root` or lies below it."""
    return path == root or root in path.parents


def check_output(
    path: str | Path, *, owner: str, inputs: Iterable[str | Path | None] = (), around: Iterable[str | Path] = ()
) -> None:
    """Refuse an output directory that replacing would destroy anything but a previous output of `owner`.

    Refused: a symbolic link; the working directory or anything above it; a repository root; an
    input, a directory holding an input, or a path inside an input; an existing file; an existing
    non-empty directory without `owner`'s marker. `around` are inputs the output may lie inside
    (a directory scanned for earlier artifacts), but must not be or contain.
    """
    given = Path(path)
    shown = str(path)
    if given.is_symlink():
        raise UnsafeOutput(f"output {shown}: is a symbolic link (to {os.readlink(given)}); give the real directory")
    out = given.resolve()
    here = Path.cwd().resolve()
    if _within(here, out):
        relation = "is" if here == out else "contains"
        raise UnsafeOutput(f"output {shown}: {relation} the working directory ({here}); writing it would delete everything there")
    if any((out / marker).exists() for marker in _REPOSITORY_MARKERS):
        raise UnsafeOutput(f"output {shown}: is a repository root; writing it would delete the repository")
    for source, may_hold_output in [*((p, False) for p in inputs), *((p, True) for p in around)]:
        if source is None:
            continue
        held = Path(source).resolve()
        if held == out:
            raise UnsafeOutput(f"output {shown}: is the input {source}; writing it would replace the input")
        if _within(held, out):
            raise UnsafeOutput(f"output {shown}: contains the input {source}; writing it would delete the input")
        if not may_hold_output and _within(out, held):
            raise UnsafeOutput(f"output {shown}: lies inside the input {source}; writing it would change the input")
    if out.exists() and not out.is_dir():
        raise UnsafeOutput(f"output {shown}: exists and is not a directory; move it away or delete it")
    if out.is_dir() and any(out.iterdir()):
        marker = out / OUTPUT_MARKER
        written_by = marker.read_text().strip() if marker.is_file() else None
        if written_by is None:
            raise UnsafeOutput(
                f"output {shown}: exists, is not empty and has no {OUTPUT_MARKER} marker, so `expertlab {owner}` "
                "did not write it; move it away or delete it"
            )
        if written_by != owner:
            raise UnsafeOutput(
                f"output {shown}: was written by `expertlab {written_by}`, not `expertlab {owner}`; "
                "move it away or delete it"
            )


def _hold(fd: int) -> None:
    """Lock a temporary's descriptor for as long as its writer lives; where the filesystem cannot lock it
    (flock of a read-only descriptor over NFS), the temporary is simply never taken for stale."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        _hold(fd)
        yield
    finally:
        os.close(fd)


# tempfile's names: the prefix, eight random characters, the suffix
_TEMPORARY = ".{name}." + "[a-z0-9_]" * 8 + ".tmp"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of `path` (`.<name>.XXXXXXXX.tmp` beside it) that no live writer holds: those
    left by killed runs."""
    removed = []
    for stale in sorted(path.parent.glob(_TEMPORARY.format(name=glob.escape(path.name)))):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue  # vanished meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it, or its liveness cannot be told here: keep it
            os.close(fd)
            continue
        try:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        finally:
            os.close(fd)
        removed.append(stale)
    return removed


def _normalise_permissions(root: Path) -> None:
    """Every file and directory of a result with the permissions of a plain write under the umask
    (libraries writing through private temporary files would otherwise leave some files 0600)."""
    mask = _umask()
    for directory, dirnames, filenames in os.walk(root):
        os.chmod(directory, 0o777 & ~mask)
        for name in filenames:
            file = os.path.join(directory, name)
            if os.path.islink(file):
                continue
            executable = os.stat(file).st_mode & 0o100
            os.chmod(file, (0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        _hold(fd)
        tmp_path.chmod(0o666 & ~_umask())
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        os.close(fd)
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(
    path: str | Path, *, owner: str, inputs: Iterable[str | Path | None] = (), around: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling directory; it replaces `path` only if the block succeeds.

    `path` is checked first (`check_output`): only an absent or empty directory, or a previous output of
    `owner`, is ever replaced. The result carries `owner`'s marker; temporaries of killed runs are removed.
    """
    check_output(path, owner=owner, inputs=inputs, around=around)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with _held(tmp_path):
            yield tmp_path
            (tmp_path / OUTPUT_MARKER).write_text(owner + "\n")
            _normalise_permissions(tmp_path)
            if path.exists():
                # the previous output leaves in one rename, so a reader sees it whole or not at all
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
                os.replace(path, old)
                os.replace(tmp_path, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)


@dataclass(frozen=True)
class OutputDir:
    """A stage's output directory: which command writes it and which inputs it must never destroy."""

    path: str | Path
    owner: str
    inputs: Sequence[str | Path | None] = ()
    around: Sequence[str | Path] = ()  # inputs the output may lie inside (directories scanned for artifacts)

    def check(self) -> None:
        """Fail now, before any work, if writing the output later would be refused."""
        check_output(self.path, owner=self.owner, inputs=self.inputs, around=self.around)

    def writing(self) -> contextlib.AbstractContextManager[Path]:
        return atomic_dir(self.path, owner=self.owner, inputs=self.inputs, around=self.around)


def write_json(path: str | Path, value: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def json_type(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("object", "array", ...), for error messages."""
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    rows = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start} of the line)") from None
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err})") from None
    return rows

"""(judge, model, protocol, template, source, output) -> sha256 key; verdicts <-> an append-only JSONL file processes share."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.locks import lock_file, unlock_file

# Only verdicts are cached: a 'failed' outcome got no answer, so the next run asks again.
CACHED_STATUSES = ("ok", "invalid")


def cache_file(cache_dir: Path, judge: str) -> Path:
    """A judge's verdict cache: one file per judge name, shared by every stage that asks it."""
    return cache_dir / f"{judge}.jsonl"


def verdict_key(
    *,
    judge: str,
    model: str,
    protocol: str,
    template: str,
    source: str,
    output: str | tuple[str, str],
) -> str:
    """sha256 of a canonical JSON of everything a verdict depends on.

    `output` is the judged output (absolute protocol) or the pair in the order the prompt shows it
    (relative protocol: A, B), so a swapped position is a different verdict.
    """
    outputs = [output] if isinstance(output, str) else list(output)
    if len(outputs) not in (1, 2) or not all(isinstance(text, str) for text in outputs):
        raise ValueError("output must be one string or a pair of strings")
    canonical = json.dumps(
        {
            "judge": judge,
            "model": model,
            "protocol": protocol,
            "template": template,
            "source": source,
            "outputs": outputs,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    """Lookups by `get` (a prompt found, or not, in the cache) and verdicts appended by `put`."""

    hits: int = 0
    misses: int = 0
    stored: int = 0


class VerdictCache:
    """Verdict records keyed by `verdict_key`, one JSON line per verdict, flushed and fsynced as it lands.

    A torn last line (a writer killed mid-write) is dropped and truncated away; a malformed line
    anywhere else is an error, since appends never rewrite earlier lines. Invalid verdicts are
    cached with their raw text; `retry_invalid=True` makes those already in the file at open
    misses, so the caller asks again (the new verdict is appended and wins); a verdict that landed
    since open, from this process or another, is never a miss, so processes retrying together pay
    once. Records must be plain JSON and never carry credentials.

    One file may be shared by several processes, and by machines whose shared filesystem keeps
    flock coherent between them (NFSv4, for one): every read and append of the file holds its
    exclusive flock, so lines never interleave and a reader never sees half a line; `refresh`
    takes the lines others appended since this cache last read; `claim` lets one process at a
    time ask a prompt (see `Claim`). Thread-safe.
    """

    def __init__(self, path: str | Path, *, retry_invalid: bool = False) -> None:
        self.path = Path(path)
        self.claims_dir = self.path.with_suffix(".claims")  # <judge>.claims/ beside <judge>.jsonl
        self.retry_invalid = retry_invalid
        self.stats = CacheStats()
        self.torn_lines_dropped = 0
        self._records: dict[str, dict[str, Any]] = {}
        self._landed: set[str] = set()  # keys whose latest record was appended after open
        self._read_to = 0  # bytes of the file taken in; always the end of a line
        self._lines = 0
        self._mutex = threading.Lock()  # flock excludes processes; threads share the fd and need this too
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        with self._locked():
            self._take_new_lines(opening=True)

    def _locked(self) -> _FileLock:
        return _FileLock(self._fd, self._mutex)

    def _take_new_lines(self, *, opening: bool = False) -> None:
        """Read what was appended since `_read_to`; the caller holds the file lock."""
        data = _read_to_end(self._fd, self._read_to)
        complete = data.rfind(b"\n") + 1
        for line in data[:complete].split(b"\n")[:-1]:
            self._lines += 1
            try:
                row = json.loads(line)
                key, record = row["key"], row["record"]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{self.path}:{self._lines}: corrupt verdict line ({err})") from None
            self._records[key] = record
            if not opening:
                self._landed.add(key)
        self._read_to += complete
        if complete < len(data):
            # Every writer appends whole lines under the lock we hold, so text after the last newline
            # is the torn write of a dead one: dropped, so the next line starts on a line of its own.
            self.torn_lines_dropped += 1
            os.ftruncate(self._fd, self._read_to)
            os.fsync(self._fd)

    def refresh(self) -> None:
        """Take in the verdicts other processes appended since this cache last read the file."""
        with self._locked():
            self._take_new_lines()

    def _is_verdict(self, key: object) -> bool:
        record = self._records.get(key) if isinstance(key, str) else None
        if record is None:
            return False
        return record["status"] == "ok" or not self.retry_invalid or key in self._landed

    def __contains__(self, key: object) -> bool:
        with self._mutex:
            return self._is_verdict(key)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        with self._mutex:
            return iter(list(self._records))

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record, or None (a miss; an invalid verdict is a miss under `retry_invalid`)."""
        with self._mutex:
            if self._is_verdict(key):
                self.stats.hits += 1
                return dict(self._records[key])
            self.stats.misses += 1
            return None

    def stored(self, key: str) -> dict[str, Any] | None:
        """The stored record whatever its status (no hit or miss counted), or None."""
        with self._mutex:
            record = self._records.get(key)
            return dict(record) if record is not None else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        """Append one verdict and make it durable (fsync) before returning."""
        if record.get("status") not in CACHED_STATUSES:
            raise ValueError(f"only verdicts with status in {CACHED_STATUSES} are cached, got {record.get('status')!r}")
        line = (json.dumps({"key": key, "record": dict(record)}, sort_keys=True, ensure_ascii=False) + "\n").encode()
        with self._locked():
            self._take_new_lines()  # others' lines first, and a dead writer's torn line dropped
            _write_all(self._fd, line)
            os.fsync(self._fd)
            self._read_to += len(line)
            self._lines += 1
            self._records[key] = dict(record)
            self._landed.add(key)
            self.stats.stored += 1

    def claim(self, key: str, *, wait: bool = True) -> Claim | None:
        """Hold `key`'s claim, waiting (asleep in flock, no CPU) while a live process holds it; with
        `wait=False`, None instead of waiting."""
        path = self.claims_dir / (hashlib.sha256(key.encode("utf-8")).hexdigest() + ".claim")
        fd = lock_file(path, wait=wait)
        return Claim(path, fd) if fd is not None else None

    def close(self) -> None:
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        try:
            self.claims_dir.rmdir()  # only when empty: nobody else's claim is ever removed
        except OSError:
            pass

    def __enter__(self) -> VerdictCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Claim:
    """The right to ask one prompt: the lock (expertlab.locks) of `<judge>.claims/<sha256 of key>.claim`,
    a lease that expires with its holder."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._mutex = threading.Lock()

    def release(self) -> None:
        """Remove the claim file, then unlock it; releasing twice does nothing."""
        with self._mutex:
            if self._fd >= 0:
                unlock_file(self.path, self._fd)
                self._fd = -1

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_to_end(fd: int, start: int) -> bytes:
    # pread may return less than asked (on Linux, never more than about 2 GiB a call), and text after
    # the last newline read is taken for a torn line and truncated: so read to the very end.
    chunks: list[bytes] = []
    while chunk := os.pread(fd, 1 << 24, start):
        chunks.append(chunk)
        start += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    # One write() per line normally; a short write (a full disk, a network filesystem) continues, and a
    # failure part-way leaves a torn line that the next reader under the lock drops.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _FileLock:
    """An exclusive advisory lock on an open file, so two processes sharing a cache never tear a line;
    `mutex` does the same for this process's threads, which share the file's flock."""

    def __init__(self, fd: int, mutex: threading.Lock) -> None:
        self.fd = fd
        self.mutex = mutex

    def __enter__(self) -> None:
        self.mutex.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.mutex.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.mutex.release()

"""(judge, model, protocol, template, source, output) -> sha256 key; verdict records <-> an append-only JSONL file."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Only verdicts are cached: a 'failed' outcome got no answer, so the next run asks again.
CACHED_STATUSES = ("ok", "invalid")


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
    hits: int = 0
    misses: int = 0
    stored: int = 0


class VerdictCache:
    """Verdict records keyed by `verdict_key`, one JSON line per verdict, flushed and fsynced as it lands.

    A torn last line (a writer killed mid-write) is dropped and truncated away on open; a malformed
    line anywhere else is an error, since appends never rewrite earlier lines. Invalid verdicts are
    cached with their raw text; `retry_invalid=True` makes them misses so the caller asks again (the
    new verdict is appended and wins). Records must be plain JSON and never carry credentials.
    """

    def __init__(self, path: str | Path, *, retry_invalid: bool = False) -> None:
        self.path = Path(path)
        self.retry_invalid = retry_invalid
        self.stats = CacheStats()
        self.torn_lines_dropped = 0
        self._records: dict[str, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        with self._locked():
            self._load()

    def _locked(self) -> _FileLock:
        return _FileLock(self._fd)

    def _load(self) -> None:
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        # The text after the final newline is either empty or a torn write.
        for number, line in enumerate(lines[:-1], start=1):
            try:
                row = json.loads(line)
                key, record = row["key"], row["record"]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{self.path}:{number}: corrupt verdict line ({err})") from None
            self._records[key] = record
            good_end += len(line) + 1
        if lines[-1]:
            self.torn_lines_dropped = 1
            os.ftruncate(self._fd, good_end)
            os.fsync(self._fd)

    def __contains__(self, key: object) -> bool:
        record = self._records.get(key) if isinstance(key, str) else None
        return record is not None and (record["status"] == "ok" or not self.retry_invalid)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record, or None (a miss; an invalid verdict is a miss under `retry_invalid`)."""
        if key in self:
            self.stats.hits += 1
            return dict(self._records[key])
        self.stats.misses += 1
        return None

    def stored(self, key: str) -> dict[str, Any] | None:
        """The stored record whatever its status (no hit or miss counted), or None."""
        record = self._records.get(key)
        return dict(record) if record is not None else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        """Append one verdict and make it durable before returning."""
        if record.get("status") not in CACHED_STATUSES:
            raise ValueError(f"only verdicts with status in {CACHED_STATUSES} are cached, got {record.get('status')!r}")
        line = json.dumps({"key": key, "record": dict(record)}, sort_keys=True, ensure_ascii=False) + "\n"
        with self._locked():
            # One write() per line: concurrent appenders (O_APPEND, under the lock) never interleave.
            os.write(self._fd, line.encode("utf-8"))
            os.fsync(self._fd)
        self._records[key] = dict(record)
        self.stats.stored += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> VerdictCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FileLock:
    """An exclusive advisory lock on an open file, so two processes sharing a cache never tear a line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

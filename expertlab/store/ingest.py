"""Artifact directories -> results.duckdb, incrementally: changed artifacts loaded, unchanged skipped, vanished removed.

An artifact is keyed by (kind, identity) and compared by the sha256 of the files it reads; the store
mirrors exactly the artifacts given, so deleting it and re-ingesting gives the same tables.

Crash safety. The store file is never written in place: ingest works on a hidden sibling copy (a fresh
store when the schema fingerprint changed), loads each artifact there in its own transaction,
checkpoints, closes, and renames the copy over the store (os.replace, atomic on POSIX). A killed or
failed ingest therefore leaves the store exactly as it was, and the next run starts a new copy. Why not
rely on DuckDB's WAL alone: DVC may check the store out as a link into its cache (cache.type symlink or
hardlink), where an in-place write would corrupt the cached version; readers (`expertlab sql`, the
report) never see a half-built store nor meet the writer's lock; and no .wal file is left beside the
store. The price is one file copy per run that changes anything; a run that changes nothing writes nothing.

Concurrency. Ingests into one store take turns: each holds an exclusive lock (flock on the hidden
sibling `.<store>.ingest-lock`) from reading the store's manifest to the rename, so a second ingest
waits, saying so on stderr, and then plans against the first one's result. Each works in its own
hidden directory `.<store>.ingest-work-*`; one left by a killed ingest is removed by the next lock holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from expertlab.locks import locked_file
from expertlab.store import schema
from expertlab.records import ORIGINS, VariantRecord
from expertlab.store.artifacts import KINDS, Artifact, insert_row, read_artifact, stored_record


class ArtifactRef(NamedTuple):
    kind: str
    identity: str
    path: str


@dataclass
class IngestReport:
    """What one ingest did; `rebuilt` is true when the store was created anew (new file or new schema)."""

    store: Path
    rebuilt: bool = False
    added: list[ArtifactRef] = field(default_factory=list)
    replaced: list[ArtifactRef] = field(default_factory=list)
    removed: list[ArtifactRef] = field(default_factory=list)
    skipped: list[ArtifactRef] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.rebuilt or bool(self.added or self.replaced or self.removed)

    def summary(self) -> str:
        how = " (built from scratch)" if self.rebuilt else ""
        return (
            f"ingest: {self.store}{how}: {len(self.added)} added, {len(self.replaced)} replaced, "
            f"{len(self.removed)} removed, {len(self.skipped)} unchanged"
        )


def find_artifacts(paths: Sequence[str | Path], optional: Sequence[str | Path] = ()) -> list[Path]:
    """Artifact directories: each path holding a meta.json, else every non-hidden directory below it that does.

    A path in `optional` may hold no artifact (e.g. `imported/` before anything was imported).
    """
    found: dict[Path, Path] = {}
    may_be_empty = {Path(p) for p in optional}
    for given in [*map(Path, paths), *may_be_empty]:
        if not given.is_dir():
            raise FileNotFoundError(f"no such artifact directory: {given}")
        if (given / "meta.json").is_file():
            candidates = [given]
        else:
            candidates = sorted(
                meta.parent
                for meta in given.rglob("meta.json")
                if not any(part.startswith(".") for part in meta.relative_to(given).parts)
            )
            if not candidates and given not in may_be_empty:
                raise FileNotFoundError(f"{given}: no artifact (meta.json) in it or below it")
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return sorted(found.values())


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


def _manifest(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, Any]]:
    rows = con.execute("select kind::varchar, identity, path, content_hash, meta::varchar from artifacts").fetchall()
    return {
        (kind, identity): {"path": path, "content_hash": digest, "meta": json.loads(meta)}
        for kind, identity, path, digest, meta in rows
    }


def _read_existing(store: Path) -> tuple[str | None, dict[tuple[str, str], dict[str, Any]]]:
    """The store's fingerprint and manifest; (None, {}) when there is no store, an error for a foreign file."""
    if not store.exists():
        return None, {}
    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error as err:
        raise ValueError(f"{store}: cannot read the store ({err})") from None
    try:
        found = schema.stored_fingerprint(con)
        if found is None:
            raise ValueError(f"{store}: not an expertlab store (no store_schema table); move it away or delete it")
        return found, _manifest(con)
    finally:
        con.close()


def lock_path(store: Path) -> Path:
    """The file whose flock serialises ingests into `store` (present only while one runs)."""
    return store.with_name(f".{store.name}.ingest-lock")


def _work_prefix(store: Path) -> str:
    return f".{store.name}.ingest-work-"


def _holder(fd: int) -> str:
    """'pid N' as the lock's holder wrote it, or a vaguer phrase if it has not written it yet."""
    written = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"pid {written}" if written.isdigit() else "another process"


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Exclusive use of `store` among ingests, in this process or others; the lock file goes with the lock."""

    def waiting(fd: int) -> None:
        print(f"ingest: waiting for the ingest holding {path} ({_holder(fd)}) to finish", file=sys.stderr, flush=True)

    path = lock_path(store)
    with locked_file(path, waiting) as fd:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield


def _remove_abandoned_work(store: Path) -> None:
    """Work directories of killed ingests (and the single work file older versions used); only a lock holder may."""
    legacy = f".{store.name}.ingest-tmp"
    for entry in store.parent.iterdir():
        if entry.name.startswith(_work_prefix(store)) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.name in (legacy, legacy + ".wal"):
            entry.unlink()


def _load(con: duckdb.DuckDBPyConnection, artifact: Artifact, old: dict[str, Any] | None, now: dt.datetime) -> None:
    """Replace one artifact's rows and manifest entry in one transaction; errors name the artifact."""
    kind = KINDS[artifact.kind]
    try:
        with transaction(con):
            if old is not None:
                kind.unload(con, artifact.identity, stored_record(artifact.kind, old["meta"]))
                con.execute("delete from artifacts where kind = ? and identity = ?", [artifact.kind, artifact.identity])
            kind.load(con, artifact)
            insert_row(
                con,
                "artifacts",
                {
                    "kind": artifact.kind,
                    "identity": artifact.identity,
                    "path": artifact.path.as_posix(),
                    "content_hash": artifact.content_hash,
                    "files": list(artifact.files),
                    "meta": json.dumps(artifact.meta, sort_keys=True),
                    "ingested_at": now,
                },
            )
    except duckdb.Error as err:
        raise ValueError(f"{artifact.path}: cannot load {artifact.kind} artifact: {err}") from None


def _remove(con: duckdb.DuckDBPyConnection, key: tuple[str, str], old: dict[str, Any]) -> None:
    with transaction(con):
        KINDS[key[0]].unload(con, key[1], stored_record(key[0], old["meta"]))
        con.execute("delete from artifacts where kind = ? and identity = ?", list(key))


def _refresh_tasks(con: duckdb.DuckDBPyConnection) -> None:
    with transaction(con):
        con.execute("delete from tasks")
        for row in schema.task_rows():
            insert_row(con, "tasks", row)


def _rebuild_variants(con: duckdb.DuckDBPyConnection) -> None:
    """`variants` from every variant record the manifest names; a field two artifacts disagree on is an error."""
    fields = [name for name in VariantRecord.model_fields if name != "variant_id"]
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    selected_by: dict[str, str] = {}
    rows = con.execute("select kind::varchar, path, meta::varchar from artifacts order by kind, identity").fetchall()
    for kind, path, meta in rows:
        record = stored_record(kind, json.loads(meta))
        for variant in KINDS[kind].variants(record):
            vid = variant.variant_id
            current = merged.setdefault(vid, dict.fromkeys(fields))
            for key in fields:
                value = getattr(variant, key)
                if value is None:
                    continue
                if current[key] is not None and current[key] != value:
                    raise ValueError(
                        f"variant {vid!r}: {key} is {current[key]!r} in {origin[vid]} but {value!r} in {path}"
                    )
                current[key] = value
            if getattr(variant, "origin", None):
                selected_by[vid] = variant.origin
            origin.setdefault(vid, path)
    with transaction(con):
        con.execute("delete from variants")
        for vid in sorted(merged):
            row = merged[vid]
            insert_row(
                con,
                "variants",
                {"variant_id": vid, "is_source": row["criterion"] is None and row["finetune"] is None, **row,
                 "origin": selected_by.get(vid, ORIGINS[0])},
            )  # fmt: skip


def ingest(
    store_path: str | Path, artifact_dirs: Sequence[str | Path], optional_dirs: Sequence[str | Path] = ()
) -> IngestReport:
    """Make the store at `store_path` hold exactly the given artifacts (directories, or parents of them)."""
    store = Path(store_path)
    artifacts = [read_artifact(path) for path in find_artifacts(artifact_dirs, optional_dirs)]
    by_key: dict[tuple[str, str], Artifact] = {}
    for artifact in artifacts:
        key = (artifact.kind, artifact.identity)
        if key in by_key:
            raise ValueError(
                f"two {artifact.kind} artifacts for {artifact.identity!r}: {by_key[key].path} and {artifact.path}"
            )
        by_key[key] = artifact

    ddl = schema.render_ddl()
    current = schema.fingerprint(ddl)
    store.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(store):
        _remove_abandoned_work(store)
        return _update(store, by_key, ddl, current)


def _update(store: Path, by_key: dict[tuple[str, str], Artifact], ddl: str, current: str) -> IngestReport:
    """Plan against the store as it is now and publish the result; the caller holds the store's lock."""
    found, manifest = _read_existing(store)
    report = IngestReport(store, rebuilt=found != current)
    if report.rebuilt:
        manifest = {}

    kind_order = {name: index for index, name in enumerate(KINDS.names())}
    in_order = sorted(by_key, key=lambda key: (kind_order[key[0]], key[1]))
    plan: list[tuple[Artifact, dict[str, Any] | None]] = []
    for key in in_order:
        artifact, old = by_key[key], manifest.get(key)
        ref = ArtifactRef(artifact.kind, artifact.identity, artifact.path.as_posix())
        if old and old["content_hash"] == artifact.content_hash and old["path"] == ref.path:
            report.skipped.append(ref)
            continue
        (report.replaced if old else report.added).append(ref)
        plan.append((artifact, old))
    vanished = sorted(set(manifest) - set(by_key), key=lambda key: (kind_order.get(key[0], -1), key[1]))
    report.removed = [ArtifactRef(kind, identity, manifest[(kind, identity)]["path"]) for kind, identity in vanished]
    if not report.changed:
        return report

    # beside the store, so that the final rename stays on one file system
    work_dir = Path(tempfile.mkdtemp(prefix=_work_prefix(store), dir=store.parent))
    work = work_dir / store.name
    try:
        if report.rebuilt:
            schema.create_store(work, ddl, current)
        else:
            shutil.copyfile(store, work)
        con = duckdb.connect(str(work))
        try:
            now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            for key in vanished:
                _remove(con, key, manifest[key])
            for artifact, old in plan:
                _load(con, artifact, old, now)
            if report.rebuilt:
                _refresh_tasks(con)
            _rebuild_variants(con)
            con.execute("checkpoint")
        finally:
            con.close()
        os.replace(work, store)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return report

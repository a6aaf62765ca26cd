"""The results store: artifact directories -> a typed DuckDB file (schema/expertlab.sql), ingested incrementally."""

from __future__ import annotations

from expertlab.store.ingest import IngestReport, ingest

__all__ = ["IngestReport", "ingest"]

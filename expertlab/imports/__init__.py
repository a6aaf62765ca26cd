"""Importers of externally produced artifacts, one module per source: the study's masks and verdicts, human annotations."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from expertlab.records import ORIGINS

IMPORTED = ORIGINS[1]  # variants.origin of every imported variant (its masks, its verdicts)


def find_files(paths: Iterable[str | Path], below: Callable[[Path], list[Path]], none_below: str) -> list[Path]:
    """Files given directly, or those `below(directory)` finds in a given directory, once each and sorted; a
    path that is neither, or a directory where nothing is found (`none_below` says what was looked for), fails."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append(given)
        elif given.is_dir():
            files = below(given)
            if not files:
                raise FileNotFoundError(f"{given}: {none_below}")
            found += files
        else:
            raise FileNotFoundError(f"no such file or directory: {given}")
    return sorted(set(found))

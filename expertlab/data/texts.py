"""A JSONL file of texts (calibration sets, training corpora) -> its texts, each line checked."""

from __future__ import annotations

from pathlib import Path


def read_texts(path: str | Path) -> list[str]:
    """The "text" of every line of a calibration JSONL file."""
    from expertlab.io import read_jsonl

    texts = []
    for number, row in enumerate(read_jsonl(path), start=1):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f'{path}:{number}: expected an object with a "text" string')
        if not row["text"].strip():
            raise ValueError(f'{path}:{number}: the "text" is empty; a calibration sample must hold tokens')
        texts.append(row["text"])
    if not texts:
        raise ValueError(f"{path}: no calibration texts in it")
    return texts

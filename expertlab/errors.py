"""The one exception type for expected failures: the CLI prints its message as one line and exits 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class ExpertlabError(Exception):
    """A failure the user can fix: bad input, a missing file, a judge that gave no verdict.

    The message names the culprit (file, key path, sample id) and never carries a secret.
    """


class UnknownName(ExpertlabError, KeyError):
    """A name that is not there (a registry entry, a task group); still a KeyError for callers that expect one."""


def validation_problems(
    err: ValidationError,
    *,
    unknown_key: Callable[[tuple[Any, ...]], str] = lambda loc: "unknown key",
    missing_key: str | None = None,
    show_input: bool = False,
    key_path: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda loc: loc,
) -> list[str]:
    """`key.path: problem` for each problem pydantic found: an unknown key as `unknown_key(loc)` says, a missing
    one as `missing_key` (pydantic's own words when None), and with `show_input` the bad value a type check saw;
    `key_path` turns pydantic's location into the user's keys (e.g. without a union's tag)."""
    problems = []
    for problem in err.errors():
        loc = key_path(problem["loc"])
        path = ".".join(str(part) for part in loc)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "union_tag_invalid":  # a discriminated union's tag: say which ones exist
            ctx = problem["ctx"]
            message = f"{ctx['discriminator'].strip(chr(39))} {ctx['tag']!r} is unknown; allowed: {ctx['expected_tags']}"
        elif problem["type"] == "union_tag_not_found":
            message = f"{problem['ctx']['discriminator'].strip(chr(39))} is missing"
        elif problem["type"] == "extra_forbidden":
            message = unknown_key(problem["loc"])
        elif problem["type"] == "missing" and missing_key is not None:
            message = missing_key
        elif show_input and "input" in problem and problem["type"] not in ("value_error", "assertion_error"):
            message = f"{message} (found {json.dumps(problem['input'], default=str)})"
        problems.append(f"{path}: {message}" if path else message)  # a model's own checks name their keys
    return problems

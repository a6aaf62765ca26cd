"""The one exception type for expected failures: the CLI prints its message as one line and exits 2."""

from __future__ import annotations


class ExpertlabError(Exception):
    """A failure the user can fix: bad input, a missing file, a judge that gave no verdict.

    The message names the culprit (file, key path, sample id) and never carries a secret.
    """


class UnknownName(ExpertlabError, KeyError):
    """A name that is not there (a registry entry, a task group); still a KeyError for callers that expect one."""

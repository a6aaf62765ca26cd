"""Judge backends by name: (judge name, its params entry `judges.<name>`, run settings) -> a judge.

`grounding` is the offline deterministic judge; every judge provider (`providers.PROVIDERS`: openai,
any OpenAI-compatible endpoint included, anthropic, gemini) is a backend asking an LLM through
`client.ChatClient`. Params validate `judges.<name>.backend` against these names; a backend's
module is imported only when a judge is built, so reading params imports no HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from expertlab.judges.backend import Judge, Settings
from expertlab.judges.providers import PROVIDERS
from expertlab.registry import Registry

Backend = Callable[[str, Mapping[str, Any], Settings], Judge]

BACKENDS: Registry[Backend] = Registry("judge backend")


@BACKENDS.register("grounding")
def grounding(name: str, spec: Mapping[str, Any], settings: Settings) -> Judge:
    from expertlab.judges.grounding import GroundingJudge

    return GroundingJudge(name, settings)


def llm(provider: str, name: str, spec: Mapping[str, Any], settings: Settings) -> Judge:
    from expertlab.judges.llm import build_llm_judge

    return build_llm_judge(provider, name, spec, settings)


for _provider in PROVIDERS:
    BACKENDS.register(_provider)(partial(llm, _provider))


def build_judge(name: str, spec: Mapping[str, Any], settings: Settings) -> Judge:
    return BACKENDS[spec["backend"]](name, spec, settings)

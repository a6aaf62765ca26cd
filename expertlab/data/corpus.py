"""World + domain -> demonstrations in the domain's mixture of formats (training corpus, calibration pools)."""

from __future__ import annotations


from expertlab.data.examples import (
    Example,
    Format,
    arith_fact,
    bio_mcq,
    bio_monograph,
    bio_ner,
    bio_qa,
    context,
    general_arith,
    general_description,
    general_mcq,
    general_qa,
    general_summary,
    medhalt_fake,
    medhalt_fct,
    medhalt_nota,
    trial_summary,
)
from expertlab.data.tools import tool_call
from expertlab.data.world import World, WorldConfig


# Training and pool mixture per domain: format -> weight.
MIXTURE: dict[str, dict[Format, float]] = {
    "biomedical": {
        bio_qa: 0.30,
        bio_monograph: 0.10,
        bio_mcq: 0.14,
        bio_ner: 0.12,
        trial_summary: 0.10,
        medhalt_fct: 0.08,
        medhalt_nota: 0.08,
        medhalt_fake: 0.08,
    },
    "general": {
        general_qa: 0.30,
        general_description: 0.10,
        general_mcq: 0.16,
        arith_fact: 0.14,
        general_arith: 0.14,
        general_summary: 0.16,
    },
    "tool_use": {
        tool_call: 1.0,
    },
}


def demonstrations(
    world: World,
    domain: str,
    count: int,
    split: str,
    avoid: set[str],
    prefer_new: frozenset[str] | set[str] = frozenset(),
    stream: str | None = None,
) -> list[Example]:
    """`count` examples of one domain's mixture; prompts in `avoid` are never used, those in `prefer_new` rarely.

    The random stream is named `stream` (default "<split>-<domain>"): another name draws another set on the same split.
    """
    ctx = context(world, split, stream or f"{split}-{domain}")
    formats = list(MIXTURE[domain])
    weights = list(MIXTURE[domain].values())
    examples = []
    while len(examples) < count:
        fmt = ctx.rng.choices(formats, weights)[0]
        for _ in range(20):
            example = fmt(ctx)
            if example.prompt not in avoid and example.prompt not in prefer_new:
                break
        else:
            while example.prompt in avoid:
                example = fmt(ctx)
        examples.append(example)
    return examples


def pool_capacity(cfg: WorldConfig, domains: list[str]) -> int:
    """How many calibration texts the pools of `domains` hold together: toy.world.pool_size each."""
    return cfg.pool_size * len(set(domains))

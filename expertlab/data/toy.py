"""WorldConfig + seed -> the toy world's files: training corpus, calibration pools, task files, fine-tuning data.

Every text is one chat turn (`render_chat`: user prompt, assistant answer); training lines also
name their domain, which the toy model's domain-routed warm-up reads (expertlab/train.py). Evaluation items are
about facts the training corpus states, but their exact prompts never occur in training or in the
pools: a QA item asks with the one question phrasing held out for that (entity, attribute), and
every other kind of item is a fresh random combination rejected if seen. The fine-tuning split (the
second study's tool-use training data) never uses an evaluation or pool prompt, and rarely a training one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from expertlab.data.corpus import demonstrations
from expertlab.data.examples import context
from expertlab.data.tokenizer import render_chat
from expertlab.data.world import World, WorldConfig, build_world
from expertlab.io import write_jsonl
from expertlab.tasks import DOMAINS, TASKS
from expertlab.tasks.toy import FORMATS


def task_items(world: World) -> dict[str, list[dict[str, Any]]]:
    """`eval_items` distinct items for every toy-world task."""
    names = [name for name, entry in TASKS.items() if entry.source == "toy"]
    missing = [name for name in names if name not in FORMATS]
    if missing:
        raise ValueError(f"the toy world has no item format for tasks: {', '.join(missing)}")
    items = {}
    for name in names:
        # The stream is keyed by the format, so renaming a task keeps its items.
        ctx = context(world, "eval", f"task-{FORMATS[name].__name__}")
        seen: set[str] = set()
        rows = []
        for _ in range(world.config.eval_items * 200):
            if len(rows) == world.config.eval_items:
                break
            example = FORMATS[name](ctx)
            if example.prompt in seen:
                continue
            seen.add(example.prompt)
            choices = list(example.choices) if example.choices is not None else None
            if TASKS[name].kind == "classification" and (choices is None or example.answer not in choices):
                raise AssertionError(f"{name}: classification item without its target among the choices")
            item_id = f"{name}-{len(rows):04d}"
            row = {"id": item_id, "prompt": example.prompt, "target": example.answer, "choices": choices}
            if example.document is not None:
                row["doc"] = {"source": example.document}
            rows.append(row)
        else:
            raise ValueError(f"task {name}: cannot draw {world.config.eval_items} distinct items; enlarge the world")
        items[name] = rows
    return items


FINETUNE_DOMAIN = "tool_use"  # the domain whose fine-tuning split is written (paper 001's tool-use SFT data)


def write_toy_data(
    cfg: WorldConfig,
    out_dir: Path,
) -> dict[str, int]:
    """Write train.jsonl, pools/<domain>.jsonl (what toy calibrations draw from), tasks/<task>.jsonl and
    finetune/tool_use.jsonl ({"prompt", "response"} demonstrations)."""
    out_dir = Path(out_dir)
    world = build_world(cfg)
    items = task_items(world)
    eval_prompts = {row["prompt"] for rows in items.values() for row in rows}

    train = []
    for domain in DOMAINS:
        examples = demonstrations(world, domain, cfg.train_examples(domain), "train", eval_prompts)
        train.extend((domain, e) for e in examples)
    random.Random(f"toy-shuffle:{cfg.seed}").shuffle(train)
    train_prompts = {e.prompt for _, e in train}
    pools = {}
    pool_prompts: set[str] = set()
    for domain in DOMAINS:
        examples = demonstrations(world, domain, cfg.pool_size, "pool", eval_prompts, train_prompts)
        pools[domain] = [render_chat(e.prompt, e.answer) for e in examples]
        pool_prompts.update(e.prompt for e in examples)
    # training data, drawn as the corpus is (split "train") from a stream of its own
    finetune = demonstrations(
        world, FINETUNE_DOMAIN, cfg.tool_finetune_examples, "train", eval_prompts | pool_prompts, train_prompts,
        stream=f"finetune-{FINETUNE_DOMAIN}",
    )

    write_jsonl(out_dir / "train.jsonl", ({"text": render_chat(e.prompt, e.answer), "domain": d} for d, e in train))
    for domain, texts in pools.items():
        write_jsonl(out_dir / "pools" / f"{domain}.jsonl", ({"text": t} for t in texts))
    for name, rows in items.items():
        write_jsonl(out_dir / "tasks" / f"{name}.jsonl", rows)
    finetune_rows = ({"prompt": e.prompt, "response": e.answer} for e in finetune)
    write_jsonl(out_dir / "finetune" / f"{FINETUNE_DOMAIN}.jsonl", finetune_rows)
    return {
        "train": len(train),
        **{f"pool_{d}": len(t) for d, t in pools.items()},
        "tasks": len(items),
        f"finetune_{FINETUNE_DOMAIN}": len(finetune),
    }

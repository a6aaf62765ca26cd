"""WorldConfig + seed -> the toy world's files: training corpus, calibration pools, task files.

Every text is one chat turn (`render_chat`: user prompt, assistant answer); training lines also
name their domain, which the toy model's domain-routed warm-up reads (expertlab/train.py). Evaluation items are
about facts the training corpus states, but their exact prompts never occur in training or in the
pools: a QA item asks with the one question phrasing held out for that (entity, attribute), and
every other kind of item is a fresh random combination rejected if seen.
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


def write_toy_data(
    cfg: WorldConfig,
    out_dir: Path,
) -> dict[str, int]:
    """Write train.jsonl, pools/<domain>.jsonl (what toy calibrations draw from) and tasks/<task>.jsonl."""
    out_dir = Path(out_dir)
    world = build_world(cfg)
    items = task_items(world)
    eval_prompts = {row["prompt"] for rows in items.values() for row in rows}

    train = []
    for domain in DOMAINS:
        examples = demonstrations(world, domain, cfg.train_examples_per_domain, "train", eval_prompts)
        train.extend((domain, e) for e in examples)
    random.Random(f"toy-shuffle:{cfg.seed}").shuffle(train)
    train_prompts = {e.prompt for _, e in train}
    pools = {}
    for domain in DOMAINS:
        examples = demonstrations(world, domain, cfg.pool_size, "pool", eval_prompts, train_prompts)
        pools[domain] = [render_chat(e.prompt, e.answer) for e in examples]

    write_jsonl(out_dir / "train.jsonl", ({"text": render_chat(e.prompt, e.answer), "domain": d} for d, e in train))
    for domain, texts in pools.items():
        write_jsonl(out_dir / "pools" / f"{domain}.jsonl", ({"text": t} for t in texts))
    for name, rows in items.items():
        write_jsonl(out_dir / "tasks" / f"{name}.jsonl", rows)
    return {"train": len(train), **{f"pool_{d}": len(t) for d, t in pools.items()}, "tasks": len(items)}

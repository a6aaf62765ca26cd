"""Activation records + windows -> for each expert and scope, the windows its explainer sees and the windows its
predictor is tested on (paper 001, section 3.1: top-activated, importance-weighted and random negative samples).

A scope is `all` (every domain's windows: P_mono, EMS) or one domain d (its windows only: P_domain^(d), EDMS^(d)).
A window's activation for an expert is its strongest combine weight there; a window is positive when the
expert is routed on any of its tokens.
- explain: the `explain_examples` most strongly activating positives, strongest first (P_mono shows them
  "from most strongly activating to least");
- test positives: `test_examples` of the other positives, drawn with probability proportional to activation
  (`weighted`) or evenly from `quantiles` equal slices of them by activation (Delphi's split_quantiles);
- test negatives: `negatives` windows of the scope where the expert is not routed, drawn uniformly.
Explanation and test windows are disjoint; the test windows get a seeded random order (the predictor's
numbering). Every draw is seeded by (seed, layer, expert, scope), so one expert's sample does not depend
on which others are sampled. An expert with fewer windows than asked gets what there is, and its counts
row says what fell short; none is invented.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from expertlab.params import MonosemanticitySampling
    from expertlab.records import ExpertSamplesMeta

ALL = "all"


def expert_rng(seed: int, layer: int, expert: int, scope: str) -> np.random.Generator:
    return np.random.default_rng([seed, layer, expert, zlib.crc32(scope.encode())])


def quantile_draw(ordered: np.ndarray, quantiles: int, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Delphi's split_quantiles: `quantiles` equal slices of `ordered` (strongest first; the remainder past the
    last whole slice is left out), `wanted // quantiles` drawn from each, all of a slice shorter than that."""
    size, per_slice = len(ordered) // quantiles, wanted // quantiles
    picked = []
    for i in range(quantiles):
        piece = ordered[i * size : (i + 1) * size]
        picked.append(piece if len(piece) < per_slice else rng.choice(piece, per_slice, replace=False))
    return np.concatenate(picked) if picked else ordered[:0]


def weighted_draw(windows: np.ndarray, activation: np.ndarray, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """`wanted` windows without replacement, each draw with probability proportional to activation."""
    count = min(wanted, len(windows))
    if count == 0:
        return windows[:0]
    return rng.choice(windows, count, replace=False, p=activation / activation.sum())


def sample_expert(
    positives: pd.Series, scope_windows: np.ndarray, settings: MonosemanticitySampling, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, object]]:
    """One expert in one scope: `positives` maps routed window -> activation (windows of the scope only);
    `scope_windows` are all the scope's window ids. Returns (sample rows, counts)."""
    ranked = positives.sort_index().sort_values(ascending=False, kind="stable")  # strongest first, ties by window id
    explain = ranked.iloc[: settings.explain_examples]
    rest = ranked.iloc[settings.explain_examples :]
    if settings.test_sampling == "weighted":
        test_pos = weighted_draw(rest.index.to_numpy(), rest.to_numpy(), settings.test_examples, rng)
    else:
        test_pos = quantile_draw(rest.index.to_numpy(), settings.quantiles, settings.test_examples, rng)
    unrouted = np.setdiff1d(scope_windows, positives.index.to_numpy())
    test_neg = rng.choice(unrouted, min(settings.negatives, len(unrouted)), replace=False) if len(unrouted) else unrouted
    test = np.concatenate([test_pos, test_neg]).astype(np.int64)
    order = rng.permutation(len(test))
    rows = pd.concat(
        [
            pd.DataFrame({"role": "explain", "window_id": explain.index.to_numpy(np.int64), "routed": True,
                          "activation": explain.to_numpy(), "rank": np.arange(1, len(explain) + 1)}),
            pd.DataFrame({"role": "test", "window_id": test[order], "routed": np.arange(len(test))[order] < len(test_pos),
                          "activation": positives.reindex(test[order], fill_value=0.0).to_numpy(),
                          "rank": np.arange(1, len(test) + 1)}),
        ],
        ignore_index=True,
    )  # fmt: skip
    short = []
    if len(explain) < settings.explain_examples:
        short.append(f"{len(explain)} of {settings.explain_examples} explanation examples")
    if len(test_pos) < settings.test_examples:
        short.append(f"{len(test_pos)} of {settings.test_examples} test positives")
    if len(test_neg) < settings.negatives:
        short.append(f"{len(test_neg)} of {settings.negatives} negatives")
    counts = {
        "routed_windows": len(ranked),
        "unrouted_windows": len(unrouted),
        "explain": len(explain),
        "test_positives": len(test_pos),
        "test_negatives": len(test_neg),
        "shortfall": "; ".join(short) or None,
    }
    return rows, counts


def sample(
    records: pd.DataFrame,
    windows: pd.DataFrame,
    num_experts: int,
    domains: list[str],
    settings: MonosemanticitySampling,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (scope, layer, expert): scope `all` and each of `domains`. Returns (samples, counts)."""
    unknown = sorted(set(domains) - set(windows["domain"]))
    if unknown:
        raise ValueError(f"no windows of domain(s) {unknown}; the corpus has {sorted(windows['domain'].unique())}")
    scopes = {ALL: windows["window_id"].to_numpy(np.int64)}
    scopes |= {d: windows.loc[windows["domain"] == d, "window_id"].to_numpy(np.int64) for d in domains}
    by_expert = {key: group.set_index("window_id")["max_weight"] for key, group in records.groupby(["layer", "expert"])}
    sample_frames, count_rows = [], []
    for layer in sorted(int(i) for i in records["layer"].unique()):
        for expert in range(num_experts):
            routed = by_expert.get((layer, expert), pd.Series(dtype=np.float64))
            for scope, scope_windows in scopes.items():
                positives = routed[routed.index.isin(scope_windows)]
                rows, counts = sample_expert(positives, scope_windows, settings, expert_rng(seed, layer, expert, scope))
                rows.insert(0, "expert", expert)
                rows.insert(0, "layer", layer)
                rows.insert(0, "scope", scope)
                sample_frames.append(rows)
                count_rows.append({"scope": scope, "layer": layer, "expert": expert, **counts})
    samples = pd.concat(sample_frames, ignore_index=True).astype(
        {"layer": "int32", "expert": "int32", "window_id": "int64", "rank": "int32", "routed": "bool", "activation": "float64"}
    )
    return samples, pd.DataFrame(count_rows)


def sample_artifact(
    activations: str | Path, out: str | Path, domains: list[str], settings: MonosemanticitySampling, seed: int
) -> ExpertSamplesMeta:
    """An activations artifact -> OUT/samples.parquet, OUT/counts.parquet, OUT/meta.json."""
    from expertlab.io import OutputDir, write_json
    from expertlab.records import ACTIVATION_WINDOWS, ACTIVATIONS, EXPERT_SAMPLES, SAMPLE_COUNTS, ActivationsMeta
    from expertlab.records import ExpertSamplesMeta, read_meta

    activations = Path(activations)
    source = read_meta(activations, ActivationsMeta)
    output = OutputDir(out, "sample-experts", inputs=[activations])
    output.check()
    windows = ACTIVATION_WINDOWS.read(activations / "windows.parquet")
    records = ACTIVATIONS.read(activations / "activations.parquet")
    samples, counts = sample(records, windows, source.num_experts, domains, settings, seed)
    meta = ExpertSamplesMeta(
        model=source.model,
        top_k=source.top_k,
        seed=seed,
        scopes=[ALL, *domains],
        **settings.model_dump(),
        experts_short=int(counts["shortfall"].notna().sum()),
    )
    with output.writing() as tmp:
        EXPERT_SAMPLES.write(tmp / "samples.parquet", samples[EXPERT_SAMPLES.names()])
        SAMPLE_COUNTS.write(tmp / "counts.parquet", counts[SAMPLE_COUNTS.names()])
        write_json(tmp / "meta.json", meta.dump())
    return meta

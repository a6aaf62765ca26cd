"""A model's monosemanticity artifacts -> the experts each selective fine-tuning strategy trains (paper 001 §5, A.6).

Per chosen layer, the m experts with the highest AF^(d) (the AF strategy) or the highest EDMRS^(d) (the EDMRS
strategy) of the target domain d, ties to the lower expert index. The layers are every MoE layer (A.6: "we
select all layers of the model and only fine-tune 16 experts within each layer"), or the one with the highest
LDS (§5, tool use), ties to the lower layer. The scores are the store's own: the four artifacts are loaded into
an in-memory store of the same schema, AF and EDMRS are read from its view `monosemanticity_scores` and LDS
from queries/layer_monosemanticity.sql, so no formula is written twice. An expert without a score (EDMS needs a
valid prediction; AF needs a routed token) is never ranked: a layer with fewer than m scored experts gives
fewer, and the record says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Ranking = Literal["af", "edmrs"]  # the strategies that train selected experts, named after what ranks them
RANKINGS: tuple[Ranking, ...] = get_args(Ranking)
LayerChoice = Literal["all", "best_lds"]
LAYER_QUERY = "layer_monosemanticity"  # the report query that defines LDS


def scores_store(artifacts: Sequence[str | Path]) -> Any:
    """An in-memory store of the project's schema holding these artifact directories."""
    import duckdb

    from expertlab.store.artifacts import KINDS, read_artifact
    from expertlab.store.schema import render_ddl

    con = duckdb.connect()
    con.execute(render_ddl())
    for directory in artifacts:
        artifact = read_artifact(directory)
        KINDS[artifact.kind].load(con, artifact)
    return con


def layer_lds(con: Any, queries: str | Path, model: str, explainer: str, predictor: str, domain: str) -> dict[int, float | None]:
    """LDS per MoE layer, as the report's layer_monosemanticity query computes it."""
    sql = (Path(queries) / f"{LAYER_QUERY}.sql").read_text()
    rows = con.execute(
        f"select layer, lds from ({sql}) where model = ? and explainer = ? and predictor = ? and domain = ? order by layer",
        [model, explainer, predictor, domain],
    ).fetchall()
    return {int(layer): (None if lds is None else float(lds)) for layer, lds in rows}


def best_layer(lds: dict[int, float | None]) -> int:
    """The layer of highest LDS, ties to the lower index; a ValueError when no layer has one."""
    scored = [(value, layer) for layer, value in lds.items() if value is not None]
    if not scored:
        raise ValueError("no layer has an LDS (no expert has a valid prediction under its P_mono explanation)")
    return min(scored, key=lambda pair: (-pair[0], pair[1]))[1]


def ranked(con: Any, model: str, explainer: str, predictor: str, domain: str, ranking: Ranking) -> list[tuple[int, int, float]]:
    """(layer, expert, score) of every expert with a `ranking` score under the model's own routing, by layer, best
    first (ties to the lower index)."""
    return con.execute(
        f"""
        select layer, expert, {ranking} as score
        from monosemanticity_scores
        where model = ? and explainer = ? and predictor = ? and domain = ? and not reobserved and {ranking} is not null
            and (af > 0 or edms is not null)  -- routed in d, or scored on d's windows: not an EMS alone
        order by layer, score desc, expert
        """,
        [model, explainer, predictor, domain],
    ).fetchall()


def pick(rows: Sequence[tuple[int, int, float]], layers: Sequence[int], per_layer: int) -> dict[int, list[tuple[int, float]]]:
    """Per chosen layer, the first `per_layer` experts of `ranked` rows."""
    picked: dict[int, list[tuple[int, float]]] = {layer: [] for layer in layers}
    for layer, expert, score in rows:
        if layer in picked and len(picked[layer]) < per_layer:
            picked[layer].append((int(expert), float(score)))
    return picked


def selection_artifact(
    monosemanticity: Sequence[str | Path], queries: str | Path, out: str | Path, params: Any, model: str
) -> Any:
    """A model's activations, samples, explanations and predictions -> OUT/selections.parquet (the store's rows),
    OUT/<strategy>.json per strategy of finetune.strategies (what its fine-tuning runs read: layer -> experts, or
    null for a strategy that selects none, so a change to the selection re-runs only the strategies it feeds)
    + OUT/meta.json."""
    from expertlab.errors import ExpertlabError
    from expertlab.finetune.strategies import strategy_plan
    from expertlab.io import OutputDir, write_json
    from expertlab.records import EXPERT_SELECTIONS, ExpertSelectionsMeta

    output = OutputDir(out, "select-experts", inputs=list(monosemanticity))
    output.check()
    study, plan = params.monosemanticity, params.finetune
    con = scores_store(monosemanticity)
    asked = (model, study.explainers[0], study.predictor, plan.domain)
    lds = layer_lds(con, queries, *asked)
    if not lds:
        raise ExpertlabError(
            f"select-experts: {model} has no monosemanticity scores in domain {plan.domain!r} from explainer "
            f"{study.explainers[0]!r} and predictor {study.predictor!r} (were the inputs made under other params?)"
        )
    try:
        layers = sorted(lds) if plan.layers == "all" else [best_layer(lds)]
    except ValueError as err:
        raise ExpertlabError(f"select-experts: {model}: finetune.layers best_lds: {err}") from None
    plans = {strategy: strategy_plan(strategy) for strategy in plan.strategies}
    rankings = {at.strategy.ranking for at in plans.values() if at.strategy.ranking is not None}
    scored = {ranking: ranked(con, *asked, ranking) for ranking in sorted(rankings)}  # type: ignore[arg-type]
    chosen: dict[str, dict[int, list[tuple[int, float]]]] = {}  # selective strategy -> layer -> experts
    for strategy, at in plans.items():
        if at.strategy.ranking is None:
            continue
        if at.layer is not None and at.layer not in lds:
            raise ExpertlabError(
                f"select-experts: finetune.strategies: {strategy}: layer {at.layer} is not a MoE layer of {model} "
                f"with scores (layers: {', '.join(map(str, sorted(lds)))})"
            )
        trained = [at.layer] if at.layer is not None else layers
        chosen[strategy] = pick(scored[at.strategy.ranking], trained, plan.experts_per_layer)
    rows = [
        {"strategy": strategy, "layer": layer, "rank": rank, "expert": expert, "score": score}
        for strategy, picked in chosen.items()
        for layer, experts in picked.items()
        for rank, (expert, score) in enumerate(experts, start=1)
    ]
    short = [(s, layer) for s, picked in chosen.items() for layer, experts in picked.items() if len(experts) < plan.experts_per_layer]
    meta = ExpertSelectionsMeta(
        model=model, explainer=study.explainers[0], predictor=study.predictor, domain=plan.domain, layers=plan.layers,
        experts_per_layer=plan.experts_per_layer, chosen_layers=layers, short=len(short),
    )  # fmt: skip
    files = {
        strategy: {
            "strategy": strategy,
            "ranking": plans[strategy].strategy.ranking,
            "selection": {str(layer): [e for e, _ in experts] for layer, experts in chosen[strategy].items()}
            if strategy in chosen else None,
        }
        for strategy in plan.strategies
    }
    with output.writing() as tmp:
        EXPERT_SELECTIONS.write(tmp / "selections.parquet", rows)
        for strategy, record in files.items():
            write_json(tmp / strategy_file(strategy), record)
        write_json(tmp / "meta.json", meta.dump())
    where = "every MoE layer" if plan.layers == "all" else f"layer {layers[0]} (highest LDS, {lds[layers[0]]:.3f})"
    print(f"select-experts: {model}: {plan.experts_per_layer} experts per layer in {where}, for {', '.join(chosen) or 'no strategy'}")
    for strategy, layer in short:
        print(f"select-experts: {model}: {strategy}: layer {layer} has fewer than {plan.experts_per_layer} scored experts")
    return meta


def strategy_file(strategy: str) -> str:
    """The file of a select-experts output that a strategy's fine-tuning runs read."""
    return f"{strategy}.json"


"""Choosing the experts each fine-tuning strategy trains, from monosemanticity scores computed by hand."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from expertlab.errors import ExpertlabError
from expertlab.finetune.run import read_selection_file
from expertlab.monosemanticity.selection import best_layer, pick, ranked, selection_artifact
from expertlab.params import parse_params
from expertlab.records import EXPERT_SELECTIONS, ExpertSelectionsMeta, read_meta
from tests.pipeline_study import ROOT
from tests.test_queries import seed_monosemanticity

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def read_selection(directory: Path, strategy: str) -> dict[int, list[int]]:
    """A select-experts output's experts for one strategy, as the store's rows hold them: layer -> ids, best first."""
    from expertlab.records import EXPERT_SELECTIONS

    frame = EXPERT_SELECTIONS.read(directory / "selections.parquet")
    picked: dict[int, list[int]] = {}
    for row in frame[frame["strategy"] == strategy].sort_values(["layer", "rank"]).itertuples():
        picked.setdefault(int(row.layer), []).append(int(row.expert))
    return picked


def params_with(**finetune: object):  # noqa: ANN201
    data = copy.deepcopy(DEFAULT)
    data["finetune"].update(finetune, domain="biomedical")
    data["monosemanticity"]["domains"] = ["biomedical"]
    data["monosemanticity"]["domain_prompts"] = {"biomedical": "medicine"}
    return parse_params(data, "params.yaml")


def test_af_and_edmrs_pick_by_hand(tmp_path: Path) -> None:
    # seed_monosemanticity, layer 0, domain biomedical: expert 0 AF 3/8, EDMS 1, EDMRS 3/8, EMS 1/2;
    # expert 1 AF 0, EDMS 1/2, EDMRS 0, EMS 1; LDS = (1/2 + 1) / 2
    inputs = seed_monosemanticity(tmp_path)
    out = tmp_path / "selection"
    meta = selection_artifact(inputs, ROOT / "queries", out, params_with(layers="best_lds", experts_per_layer=1), "toy")
    assert meta.chosen_layers == [0] and meta.short == 0 and meta.domain == "biomedical"
    assert read_selection(out, "af") == {0: [0]} and read_selection(out, "edmrs") == {0: [0]}
    rows = EXPERT_SELECTIONS.read(out / "selections.parquet").to_dict("records")
    assert rows == [
        {"strategy": "af", "layer": 0, "rank": 1, "expert": 0, "score": pytest.approx(3 / 8)},
        {"strategy": "edmrs", "layer": 0, "rank": 1, "expert": 0, "score": pytest.approx(3 / 8)},
    ]
    assert read_meta(out, ExpertSelectionsMeta) == meta
    # what each strategy's fine-tuning runs read: its experts, or none
    assert read_selection_file(out / "edmrs.json", "edmrs") == {0: [0]} == read_selection_file(out / "af.json", "af")
    assert read_selection_file(out / "full.json", "full") is None and read_selection_file(out / "lora.json", "lora") is None
    with pytest.raises(ExpertlabError, match="not the selection of strategy 'af'"):
        read_selection_file(out / "edmrs.json", "af")

    # m = 3 of a layer with two scored experts: both, best first, and the shortfall said
    again = tmp_path / "selection3"
    meta = selection_artifact(inputs, ROOT / "queries", again, params_with(layers="all", experts_per_layer=3), "toy")
    assert read_selection(again, "af") == {0: [0, 1]} and read_selection(again, "edmrs") == {0: [0, 1]}
    assert meta.short == 2


def test_ties_go_to_the_lower_index_and_unscored_experts_are_never_ranked() -> None:
    import duckdb

    from expertlab.store.schema import render_ddl

    con = duckdb.connect()
    con.execute(render_ddl())
    # expert 7 is of a re-observation at another top-k: it would win layer 1 under both rankings if read
    con.execute("create or replace temp view monosemanticity_scores as select * from (values "
                "('m', 'e', 'p', 1, 5, 'd', 0.5, 0.5, 0.2, 0.1, false), ('m', 'e', 'p', 1, 3, 'd', 0.5, 0.5, 0.2, 0.1, false), "
                "('m', 'e', 'p', 1, 4, 'd', 0.5, null, 0.9, null, false), ('m', 'e', 'p', 2, 0, 'd', 0.5, 0.5, 0.3, 0.15, false), "
                "('m', 'e', 'p', 1, 7, 'd', 0.9, 0.9, 0.99, 0.9, true), ('m', 'e', 'p', 2, 9, 'd', 0.9, null, 0.0, null, false)) "
                "as t(model, explainer, predictor, layer, expert, domain, ems, edms, af, edmrs, reobserved)")  # fmt: skip
    af, edmrs = ranked(con, "m", "e", "p", "d", "af"), ranked(con, "m", "e", "p", "d", "edmrs")
    assert pick(af, [1], 2) == {1: [(4, 0.9), (3, 0.2)]}  # 3 before 5 at equal AF; layer 2 not chosen
    assert pick(edmrs, [1], 2) == {1: [(3, 0.1), (5, 0.1)]}  # expert 4 has no EDMS
    assert pick(edmrs, [1, 2], 1) == {1: [(3, 0.1)], 2: [(0, 0.15)]}
    assert pick(af, [2], 2) == {2: [(0, 0.3)]}  # expert 9 has an EMS only: never routed in d, no AF to rank by
    assert best_layer({0: 0.5, 1: 0.7, 2: 0.7, 3: None}) == 1
    with pytest.raises(ValueError, match="no layer has an LDS"):
        best_layer({0: None})


def test_a_strategy_at_one_layer_trains_that_layer_and_an_unscored_layer_is_refused(tmp_path: Path) -> None:
    from expertlab.finetune.strategies import strategy_plan

    assert strategy_plan("edmrs_l3").layer == 3 and strategy_plan("lora_edmrs_l0").strategy.mode == "lora_experts"
    with pytest.raises(KeyError, match="or a selective one at one MoE layer"):
        strategy_plan("full_l2")  # full selects no experts
    inputs = seed_monosemanticity(tmp_path)
    out = tmp_path / "selection"
    params = params_with(layers="all", experts_per_layer=1, strategies=["full", "edmrs_l0"])
    selection_artifact(inputs, ROOT / "queries", out, params, "toy")
    assert read_selection_file(out / "edmrs_l0.json", "edmrs_l0") == {0: [0]} and read_selection(out, "edmrs_l0") == {0: [0]}
    assert sorted(path.name for path in out.glob("*.json")) == ["edmrs_l0.json", "full.json", "meta.json"]
    params = params_with(layers="all", experts_per_layer=1, strategies=["edmrs_l5"])
    with pytest.raises(ExpertlabError, match="edmrs_l5: layer 5 is not a MoE layer of toy with scores"):
        selection_artifact(inputs, ROOT / "queries", tmp_path / "refused", params, "toy")
    assert "finetune.strategies" in str(pytest.raises(Exception, params_with, strategies=["nope"]).value)


def test_scores_of_another_domain_are_an_error_naming_it(tmp_path: Path) -> None:
    inputs = seed_monosemanticity(tmp_path)
    params = params_with(layers="all", experts_per_layer=1)
    params = params.model_copy(update={"finetune": params.finetune.model_copy(update={"domain": "general"})})
    with pytest.raises(ExpertlabError, match="no monosemanticity scores in domain 'general'"):
        selection_artifact(inputs, ROOT / "queries", tmp_path / "out", params, "toy")
    assert not (tmp_path / "out").exists()

"""Calibration sources -> calibration sets (deterministic by seed, in the study's rendering), and a calibration
made of parts: the mean of its parts' score vectors, each part's scores in the store."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from expertlab.data.calibration import (
    CalibrationError,
    DolciCalibration,
    JsonlCalibration,
    MedinstCalibration,
    check_source,
    draw,
    location,
    read_set,
    render,
    write_sets,
)
from expertlab.io import read_jsonl
from expertlab.params import Evaluation, parse_params
from tests.pipeline_study import ROOT

SOURCES = ROOT / "tests" / "fixtures" / "sources"
MEDINST_FILES = sorted((SOURCES / "medinst" / "unseen_train_100k").iterdir())


def medinst_records() -> list[dict]:
    records: list[dict] = []
    for path in MEDINST_FILES:
        text = path.read_text()
        records += json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    return records


def test_medinst_sets_are_the_study_s_draw_rendered_as_its_chats() -> None:
    """The study's calibration.py: load the split, datasets' shuffle(seed), the first n; its formatter's chat."""
    from datasets import load_dataset

    spec = MedinstCalibration(source="medinst", samples=4)
    for seed in (0, 1, 2):
        drawn = draw("medinst", spec, SOURCES / "medinst", seed)
        study = load_dataset("json", data_files=[str(p) for p in MEDINST_FILES], split="train").shuffle(seed=seed)
        expected = [study[i] for i in range(4)]
        for record, chosen in zip(drawn, expected):
            user = chosen["instruction"] + (f"\n\nInput: {chosen['input']}" if chosen["input"] else "")
            assert record == {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": chosen["output"]}]}
    assert draw("medinst", spec, SOURCES / "medinst", 0) == draw("medinst", spec, SOURCES / "medinst", 0)
    assert draw("medinst", spec, SOURCES / "medinst", 0) != draw("medinst", spec, SOURCES / "medinst", 1)


def test_a_medinst_record_without_input_is_its_instruction_alone() -> None:
    spec = MedinstCalibration(source="medinst", samples=7)
    chats = [record["messages"] for record in draw("medinst", spec, SOURCES / "medinst", 0)]
    assert {"role": "user", "content": "Summarise the abstract in one sentence."} in [chat[0] for chat in chats]
    assert len(chats) == len(medinst_records()) == 7


def test_dolci_sets_are_seeded_streaming_draws_of_the_shards() -> None:
    spec = DolciCalibration(source="dolci", samples=4, buffer_size=3)
    shards = sorted((SOURCES / "dolci" / "data").glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(path) for path in shards])
    chats = {json.dumps([{"role": m["role"], "content": m["content"]} for m in messages]) for messages in rows["messages"]}
    drawn = {seed: draw("dolci", spec, SOURCES / "dolci", seed) for seed in (0, 1)}
    for records in drawn.values():
        assert len(records) == 4 == len({json.dumps(r["messages"]) for r in records})
        assert {json.dumps(r["messages"]) for r in records} <= chats  # role and content, in the rows' order
    assert drawn[0] != drawn[1] and draw("dolci", spec, SOURCES / "dolci", 0) == drawn[0]


def test_a_jsonl_source_is_drawn_by_seed_and_keeps_texts_and_chats(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    rows = [{"text": f"sentence {i}", "source": "x"} for i in range(5)] + [{"messages": [{"role": "user", "content": "hi"}]}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = JsonlCalibration(source="jsonl", path=str(path), samples=6)
    drawn = draw("mine", spec, path, 0)
    assert sorted(map(json.dumps, drawn)) == sorted(
        [json.dumps({"text": f"sentence {i}"}) for i in range(5)] + [json.dumps({"messages": [{"role": "user", "content": "hi"}]})]
    )


def test_sets_are_written_per_seed_and_read_back(tmp_path: Path) -> None:
    spec = MedinstCalibration(source="medinst", samples=3)
    assert write_sets("medinst", spec, SOURCES / "medinst", [0, 1], tmp_path / "sets") == {0: 3, 1: 3}
    assert read_set(tmp_path / "sets" / "seed1.jsonl") == draw("medinst", spec, SOURCES / "medinst", 1)


@pytest.mark.parametrize(
    ("spec", "where", "expected"),
    [
        (MedinstCalibration(source="medinst", samples=3), "nowhere", r"calibration 'c' \(source medinst\): nothing at nowhere; expected MedINST32's training files"),
        (DolciCalibration(source="dolci", samples=3), "nowhere", r"nothing at nowhere; expected the parquet shards of allenai/Dolci"),
        (MedinstCalibration(source="medinst", samples=99), str(SOURCES / "medinst"), "99 samples requested, its source at .* holds 7"),
    ],
)
def test_a_missing_or_short_source_names_calibration_path_and_format(spec, where: str, expected: str) -> None:  # noqa: ANN001
    with pytest.raises(CalibrationError, match=expected):
        draw("c", spec, Path(where), 0)


def test_a_malformed_medinst_file_fails_the_check_naming_file_and_format(tmp_path: Path) -> None:
    (tmp_path / "unseen_train_100k").mkdir()
    (tmp_path / "unseen_train_100k" / "x.json").write_text('[{"question": "q", "answer": "a"}]')
    with pytest.raises(CalibrationError, match=r"x.json: .*not an object with a string output; expected MedINST32's"):
        check_source("c", MedinstCalibration(source="medinst", samples=1), tmp_path)
    check_source("c", MedinstCalibration(source="medinst", samples=1), SOURCES / "medinst")


def test_a_set_of_the_wrong_shape_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "seed0.jsonl"
    path.write_text('{"text": "fine"}\n{"messages": [{"role": "user"}]}\n')
    with pytest.raises(CalibrationError, match=r"seed0.jsonl:2: expected"):
        read_set(path)


def test_a_chat_is_rendered_by_the_model_s_template_without_a_generation_prompt() -> None:
    from expertlab.data.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(["Name a drug. aspirin"] * 2)  # the toy world's tokenizer and chat template
    chat = [{"role": "user", "content": "Name a drug."}, {"role": "assistant", "content": "aspirin"}]
    rendered = render({"messages": chat}, tokenizer, "qwen3_moe")
    assert rendered == "<|startoftext|><|im_start|>user\nName a drug.<|im_end|>\n<|im_start|>assistant\naspirin<|im_end|>\n"
    assert render({"text": "as is"}, tokenizer, "qwen3_moe") == "as is"


def test_a_source_is_found_where_tasks_find_theirs() -> None:
    evaluation = Evaluation(data_dir="benchmarks", sources={"dolci": "/copies/dolci-sft"})
    assert location(MedinstCalibration(source="medinst", samples=1), evaluation, Path("pools")) == Path("benchmarks/medinst")
    assert location(DolciCalibration(source="dolci", samples=1), evaluation, Path("pools")) == Path("/copies/dolci-sft")
    assert location(JsonlCalibration(source="jsonl", path="mine.jsonl", samples=1), evaluation, Path("pools")) == Path("benchmarks/mine.jsonl")


def params_with(**changes: object) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(changes)
    return params


def test_combined_calibrations_are_checked_and_every_set_is_used() -> None:
    general = {"source": "toy", "domains": ["general"], "samples": 8}
    params = params_with(
        calibrations={"biomed": {"source": "toy", "domains": ["biomedical"], "samples": 8}, "general": general,
                      "tool": {"source": "toy", "domains": ["tool_use"], "samples": 8}},
        combined_calibrations={"dual": {"parts": ["biomed", "general"]}},
    )
    parsed = parse_params(params)  # the default study: dual under study.compare
    assert parsed.calibration_parts("dual") == ["biomed", "general"] and parsed.calibration_parts("biomed") == ["biomed"]
    assert parsed.study.pruning_grid("dual") == (["easy_ep"], [0.5, 0.75])
    assert parsed.study.pruning_grid("biomed") == (parsed.study.criteria, parsed.study.ratios)
    params["study"]["calibrations"] = ["biomed", "dual"]
    with pytest.raises(ValueError, match="study.compare.calibrations: 'dual' is in study.calibrations already"):
        parse_params(params)
    params["study"]["calibrations"] = ["biomed"]
    params["study"]["compare"] = {"models": [], "calibrations": [], "criteria": [], "ratios": []}
    parse_params(params)  # the monosemanticity corpus reads the general set
    params["monosemanticity"] = {"models": [], "explainers": [], "top_k": []}
    params["finetune"] = {"models": [], "strategies": [], "seeds": []}
    del params["calibrations"]["tool"]  # read by the monosemanticity corpus alone
    with pytest.raises(ValueError, match="calibrations.general: used by no study.calibrations or study.compare.calibrations"):
        parse_params(params)
    params["study"]["compare"] = {"models": ["toy"], "calibrations": ["dual"], "criteria": [], "ratios": [0.5]}
    with pytest.raises(ValueError, match="study.compare: give models, calibrations, criteria and ratios, or leave all four empty"):
        parse_params(params)


# --- a calibration made of parts -----------------------------------------------------------------


def observation(root: Path, calibration: str, routed: list[list[int]], gates: list[list[float]]) -> Path:
    """An observation artifact of 2 layers x 4 experts with the given routed counts and gate sums."""
    from expertlab.io import write_json
    from expertlab.records import EXPERT_STATS, ObservationMeta

    directory = root / calibration
    directory.mkdir(parents=True)
    rows = [
        {"layer": layer, "expert": expert, "tokens": 10, "routed_count": routed[layer][expert],
         "gate_sum": gates[layer][expert], "ean_sum": 1.0, "weighted_norm_sum": 1.0, "easy_ep_sum": 1.0}
        for layer in range(2) for expert in range(4)
    ]  # fmt: skip
    EXPERT_STATS.write(directory / "expert_stats.parquet", rows)
    meta = ObservationMeta(model="toy", calibration=calibration, seed=0, model_type="qwen3_moe", num_experts=4, top_k=1,
                           moe_layers=[0, 1], samples=3, tokens=10)  # fmt: skip
    write_json(directory / "meta.json", meta.dump())
    return directory


def test_a_combined_calibration_keeps_the_experts_of_the_mean_score(tmp_path: Path) -> None:
    from expertlab.selection import select_observation

    biomed = observation(tmp_path / "obs", "biomed", [[6, 3, 1, 0], [0, 0, 5, 5]], [[3.0, 1.0, 0.5, 0.0], [0, 0, 2, 2]])
    general = observation(tmp_path / "obs", "general", [[0, 1, 2, 7], [4, 0, 1, 5]], [[0.0, 0.5, 1.0, 4.0], [2, 0, 0.5, 2]])
    meta = select_observation([biomed, general], tmp_path / "dual", ["frequency", "gate", "random"], [0.5], None, False, "dual")
    assert meta.calibration == "dual" and meta.parts == ["biomed", "general"]
    # frequency means: layer 0 [3, 2, 1.5, 3.5] -> experts 0 and 3; layer 1 [2, 0, 3, 5] -> 2 and 3
    assert json.loads((tmp_path / "dual" / "frequency-0.5.json").read_text()) == [[0, 3], [2, 3]]
    # gate means: layer 0 [1.5, 0.75, 0.75, 2.0] -> 0 and 3; layer 1 [1, 0, 1.25, 2] -> 2 and 3
    assert json.loads((tmp_path / "dual" / "gate-0.5.json").read_text()) == [[0, 3], [2, 3]]
    # pooling the texts would differ: frequency sums [6, 4, 3, 7] keep 0 and 3 too, but each part alone keeps others
    alone = select_observation(biomed, tmp_path / "biomed", ["frequency", "random"], [0.5], None, False)
    assert json.loads((tmp_path / "biomed" / "frequency-0.5.json").read_text()) == [[0, 1], [2, 3]]
    # random is the one seeded draw, whatever the parts
    assert (tmp_path / "dual" / "random-0.5.json").read_text() == (tmp_path / "biomed" / "random-0.5.json").read_text()
    assert alone.parts == [] and not (tmp_path / "biomed" / "part_scores.parquet").exists()
    parts = pd.read_parquet(tmp_path / "dual" / "part_scores.parquet")
    assert sorted(parts["part"].unique()) == ["biomed", "general"] and len(parts) == 2 * 3 * 8


def test_parts_of_different_runs_are_refused(tmp_path: Path) -> None:
    from expertlab.selection import select_observation

    biomed = observation(tmp_path / "a", "biomed", [[1, 1, 1, 1]] * 2, [[1.0] * 4] * 2)
    other = observation(tmp_path / "b", "general", [[1, 1, 1, 1]] * 2, [[1.0] * 4] * 2)
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "seed": 1}))
    with pytest.raises(ValueError, match="seed 1 differs .* a combined calibration's parts observe one model on one seed"):
        select_observation([biomed, other], tmp_path / "out", ["gate"], [0.5], None, False, "dual")
    with pytest.raises(ValueError, match="name it"):
        select_observation([biomed, biomed], tmp_path / "out", ["gate"], [0.5], None, False)
    assert not (tmp_path / "out").exists()


def test_the_store_holds_each_part_s_scores_and_their_mean_is_the_calibration_s(tmp_path: Path) -> None:
    from expertlab.selection import select_observation
    from expertlab.store.ingest import ingest

    biomed = observation(tmp_path / "obs", "biomed", [[6, 3, 1, 0], [0, 0, 5, 5]], [[3.0, 1.0, 0.5, 0.0], [0, 0, 2, 2]])
    general = observation(tmp_path / "obs", "general", [[0, 1, 2, 7], [4, 0, 1, 5]], [[0.0, 0.5, 1.0, 4.0], [2, 0, 0.5, 2]])
    masks = tmp_path / "masks"
    select_observation([biomed, general], masks / "dual", ["frequency", "gate", "reap"], [0.25, 0.5], None, False, "dual")
    store = tmp_path / "results.duckdb"
    ingest(str(store), [str(masks)])
    con = duckdb.connect(str(store), read_only=True)
    mismatched = con.execute(
        """
        select count(*) from expert_scores s
        join (select model, calibration, seed, criterion, layer, expert, avg(score) as mean, count(*) as n
              from part_scores group by all) p using (model, calibration, seed, criterion, layer, expert)
        where abs(s.score - p.mean) > 1e-12 or p.n <> 2
        """
    ).fetchone()[0]
    assert mismatched == 0
    assert con.execute("select count(*) from part_scores").fetchone()[0] == 2 * 3 * 8
    assert con.execute("select count(*) from expert_scores where calibration = 'dual'").fetchone()[0] == 3 * 8
    con.close()


def test_read_jsonl_of_a_written_set_is_records_only(tmp_path: Path) -> None:
    spec = DolciCalibration(source="dolci", samples=2)
    write_sets("dolci", spec, SOURCES / "dolci", [0], tmp_path / "d")
    assert all(set(row) == {"messages"} for row in read_jsonl(tmp_path / "d" / "seed0.jsonl"))

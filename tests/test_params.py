"""params.yaml validation: every malformed input fails before any stage runs, naming its key path."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expertlab.criteria import CRITERIA
from expertlab.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path: str, value) -> dict:  # noqa: ANN001
    data = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def error_of(data: dict) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(data, "params.yaml")
    return str(info.value)


def test_default_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.study.criteria == CRITERIA.names()
    from expertlab.criteria import kept_count

    assert kept_count(params.toy.model.num_experts, 0.5) == params.toy.model.num_experts // 2


def test_misspelt_top_level_key_names_allowed_keys():
    data = copy.deepcopy(DEFAULT)
    data["stduy"] = data.pop("study")
    message = error_of(data)
    assert "stduy: unknown key; allowed: study, models, calibrations" in message
    assert "study: Field required" in message


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("observe.batchsize", 8, "observe.batchsize: unknown key; allowed: batch_size, max_length, max_memory"),
        ("observe.max_memory", "8 gigs", "observe.max_memory: String should match pattern"),
        ("models.toy.famly", "qwen3_moe", "models.toy.famly: unknown key; allowed: family, toy, max_new_tokens"),
        ("models.toy.max_new_tokens", {"pubmedqaa": 9}, "models.toy.max_new_tokens: unknown task 'pubmedqaa'"),
        ("models.toy.max_new_tokens", {"pubmedqa": 0}, "pubmedqa: a generation budget must be positive"),
        ("toy.world.no_such_key", 1, "toy.world.no_such_key: unknown key"),
        ("study.criteria", ["random", "reapp"], "unknown criterion 'reapp' (did you mean 'reap'?); allowed: random"),
        ("study.tasks", {"toy": ["bio_qa", "bio_qaa"]}, "study.tasks: unknown task 'bio_qaa'"),
        ("study.tasks", ["bio_qa"], "study.tasks: Input should be a valid dictionary"),
        ("study.tasks", {"a": ["bio_qa"], "b": ["bio_qa"]}, "study.tasks: task(s) in more than one group: bio_qa"),
        ("study.tasks", {"a/b": ["bio_qa"]}, "study.tasks: task group 'a/b': use letters"),
        ("evaluation.sources", {"medhalt_x": "x"}, "evaluation.sources: unknown source 'medhalt_x'"),
        ("evaluation.options", {"bio_qaa": {}}, "evaluation.options: unknown task 'bio_qaa'"),
        ("evaluation.options", {"bio_qa": {"shots": 3}}, "evaluation.options.bio_qa: unknown option(s) shots"),
        ("generate.backend", "tgi", "generate.backend: unknown generation backend 'tgi'; allowed: hf, vllm"),
        ("models.toy.family", "qwen4_moe", "models.toy.family: unknown model family 'qwen4_moe'"),
        ("study.ratios", [0.5, 1.0], "study.ratios: ratio 1.0 is outside (0, 1)"),
        ("study.ratios", [0.0], "ratio 0.0 is outside (0, 1)"),
        ("study.ratios", [-0.25], "ratio -0.25 is outside (0, 1)"),
        ("study.ratios", [0.5, 0.5], "study.ratios: 0.5 is listed twice"),
        ("study.ratios", [0.95], "keeps 1 of 16 experts, fewer than top-k=2; set select.allow_top_k_reduction"),
        ("study.models", ["toy", "ghost"], "study.models: 'ghost' has no entry under models"),
        ("study.calibrations", ["nope"], "'nope' has no entry under calibrations"),
        ("calibrations.biomed.domains", ["legal"], "unknown domain 'legal'; allowed: biomedical, general"),
        ("calibrations.biomed.samples", 0, "calibrations.biomed.samples: Input should be greater than 0"),
        ("study.seeds", "zero", "study.seeds: Input should be a valid list"),
    ],
)
def test_bad_params_fail_with_key_path(path, value, expected):
    assert expected in error_of(with_change(path, value))


def test_top_k_reduction_is_allowed_explicitly():
    data = with_change("study.ratios", [0.95])
    data["study"]["quantize"]["ratios"] = [0.95]
    data["select"] = {"allow_top_k_reduction": True}
    assert parse_params(data).study.ratios == [0.95]


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="expected a mapping"):
        parse_params([1, 2])
    bad = tmp_path / "params.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(FileNotFoundError, match="missing params file"):
        load_params(tmp_path / "absent.yaml")


def test_check_command_reports_errors_and_exit_code(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(with_change("study.criteria", ["frequncy"])))
    result = subprocess.run(
        [sys.executable, "-m", "expertlab.cli", "check", "--params", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "did you mean 'frequency'?" in result.stderr
    good = subprocess.run(
        [sys.executable, "-m", "expertlab.cli", "check", "--params", str(ROOT / "params.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert good.returncode == 0, good.stderr
    assert "54 pruned variant(s)" in good.stdout


def test_a_hub_source_fails_clearly_when_the_hub_is_unreachable(monkeypatch):
    from expertlab.params import parse_params

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = copy.deepcopy(DEFAULT)
    data["evaluation"]["sources"] = {"medinst": "hub:aialt/MedINST32", "medhalt": "copies/medhalt"}
    evaluation = parse_params(data).evaluation
    assert evaluation.source_dir("medhalt") == Path(data["evaluation"]["data_dir"]) / "copies" / "medhalt"
    assert evaluation.source_dir("rct") == Path(data["evaluation"]["data_dir"]) / "rct"
    with pytest.raises(FileNotFoundError, match=r"evaluation.sources.medinst: cannot fetch hub dataset 'aialt/MedINST32'"):
        evaluation.source_dir("medinst")


def test_the_evaluation_section_is_required_because_dvc_yaml_reads_it():
    data = copy.deepcopy(DEFAULT)
    del data["evaluation"]
    assert "evaluation: Field required" in error_of(data)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("judge.judges", ["gpt"], "judge.judges: 'gpt' has no entry under judges"),
        ("judge.tasks", ["bio_mcq"], "judges read generated text"),
        ("judge.tasks", ["rct_summary"], "judge.tasks: 'rct_summary' is in no group of study.tasks"),
        ("judge.protocols", ["absolute", "absolute"], "judge.protocols: 'absolute' is listed twice"),
        ("judge.protocols", ["pairwise"], "judge.protocols.0"),
        ("judges.grounding", {"backend": "grounding", "model": "x"}, "the grounding judge takes no model"),
        ("judges.claude", {"backend": "anthropic"}, "a anthropic judge needs `model`"),
        ("judges.claude", {"backend": "claude", "model": "x"}, "judges.claude.backend"),
    ],
)
def test_bad_judge_params_fail_with_key_path(path, value, expected):  # noqa: ANN001
    assert expected in error_of(with_change(path, value))


def test_llm_judges_read_their_key_from_a_provider_variable_unless_told_otherwise():
    judges = {
        "grounding": {"backend": "grounding"},
        "claude": {"backend": "anthropic", "model": "claude-haiku-4-5"},
        "gemini": {"backend": "gemini", "model": "gemini-2.5-flash"},
        "local": {"backend": "openai", "model": "qwen", "base_url": "http://127.0.0.1:8000/v1", "api_key_env": None},
    }
    params = parse_params(with_change("judges", judges))
    assert params.judges["claude"].api_key_env == "ANTHROPIC_API_KEY"
    assert params.judges["gemini"].api_key_env == "GEMINI_API_KEY"
    assert params.judges["local"].api_key_env is None


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("study.quantize.schemes", ["gptq-w3"], "study.quantize.schemes: 'gptq-w3' is not in quantization (gptq-w4a16)"),
        ("study.quantize.criteria", ["af"], "study.quantize.criteria: 'af' is not in study.criteria"),
        ("study.quantize.ratios", [0.3], "study.quantize.ratios: 0.3 is not in study.ratios (0.25, 0.5, 0.75)"),
        ("study.quantize.ratios", [], "schemes are given but no models, criteria or ratios to quantize"),
        ("study.quantize.models", [], "schemes are given but no models, criteria or ratios to quantize"),
        ("study.quantize.models", ["qwen"], "study.quantize.models: 'qwen' is not in study.models (toy)"),
        ("study.quantize.schemes", ["gptq-w4a16", "gptq-w4a16"], "study.quantize.schemes: 'gptq-w4a16' is listed twice"),
        ("quantization.gptq-w4a16.bits", 1, "quantization.gptq-w4a16.bits: Input should be greater than or equal to 2"),
        ("quantization.gptq-w4a16.method", "awq", "quantization.gptq-w4a16.method: Input should be 'gptq' or 'rtn'"),
        ("quantization.gptq-w4a16.ignore", ["(unclosed"], "'(unclosed' is not a regular expression"),
        ("quantization.gptq-w4a16.groupsize", 64, "quantization.gptq-w4a16.groupsize: unknown key"),
        ("quantization.gptq-w4a16.symmetric", False, "quantization.gptq-w4a16.symmetric: an asymmetric grid (symmetric: false) is not supported"),
        ("quantization.w4:a16", {}, "scheme 'w4:a16': use letters, digits"),
    ],
)
def test_bad_quantization_params_fail_with_key_path(path, value, expected):  # noqa: ANN001
    assert expected in error_of(with_change(path, value))


def test_the_quantize_grid_is_required_because_dvc_yaml_reads_it():
    data = copy.deepcopy(DEFAULT)
    del data["study"]["quantize"]
    assert "study.quantize: Field required" in error_of(data)
    data["study"]["quantize"] = {}  # DVC cannot resolve ${study.quantize.criteria} without the key
    assert "study.quantize.criteria: Field required" in error_of(data)
    data = copy.deepcopy(DEFAULT)
    data["study"]["quantize"] = {"schemes": [], "models": [], "criteria": [], "ratios": []}
    assert parse_params(data).study.quantize.schemes == []  # nothing quantized


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("study.models", ["toy", "toy"], "study.models: 'toy' is listed twice"),
        ("study.calibrations", ["biomed", "biomed"], "study.calibrations: 'biomed' is listed twice"),
        ("study.seeds", [0, 1, 0], "study.seeds: 0 is listed twice"),
        ("study.criteria", ["reap", "gate", "reap"], "study.criteria: 'reap' is listed twice"),
        ("study.tasks", {"toy": ["bio_qa", "bio_mcq", "bio_qa"]}, "task group 'toy' lists bio_qa twice"),
        ("calibrations.biomed.domains", ["biomedical", "biomedical"], "calibrations.biomed.domains: 'biomedical' is listed twice"),
        ("judge.tasks", ["trial_summary", "trial_summary"], "judge.tasks: 'trial_summary' is listed twice"),
        ("report.print", ["headline", "headline"], "report.print: 'headline' is listed twice"),
        ("study.quantize.criteria", ["easy_ep", "easy_ep"], "study.quantize.criteria: 'easy_ep' is listed twice"),
    ],
)
def test_no_list_holds_an_entry_twice(path, value, expected):  # noqa: ANN001
    """DVC would run a repeated grid entry once while the check counted it twice."""
    assert expected in error_of(with_change(path, value))


def test_a_repeated_judge_is_named():
    data = with_change("judge.judges", ["grounding", "grounding"])
    assert "judge.judges: 'grounding' is listed twice" in error_of(data)


def test_a_key_given_twice_fails_as_dvc_would(tmp_path):  # noqa: ANN001
    text = (ROOT / "params.yaml").read_text().replace("  batch_size: 16\n", "  batch_size: 16\n  batch_size: 8\n", 1)
    line = text.splitlines().index("  batch_size: 8") + 1
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=rf"params.yaml:{line}: not valid YAML as DVC reads it: the key 'batch_size' is given twice"):
        load_params(tmp_path / "params.yaml")


def test_yaml_is_read_as_dvc_reads_it(tmp_path):  # noqa: ANN001
    """YAML 1.2, as DVC's ruamel.yaml: `010` is ten (YAML 1.1 readers say eight), so the seeds checked are
    the seeds DVC interpolates into the stages."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("seeds: [0, 1, 2]", "seeds: [0, 010]", 1))
    assert load_params(tmp_path / "params.yaml").study.seeds == [0, 10]
    (tmp_path / "params.yaml").write_bytes(b"study: \xff\n")
    with pytest.raises(ParamsError, match="params.yaml: not UTF-8 text"):
        load_params(tmp_path / "params.yaml")


def test_calibration_samples_beyond_the_toy_pools_are_refused():
    pool = DEFAULT["toy"]["world"]["pool_size"]
    assert parse_params(with_change("calibrations.biomed.samples", pool))
    message = error_of(with_change("calibrations.biomed.samples", pool + 1))
    assert f"calibrations.biomed.samples: {pool + 1} requested, the toy pools of biomedical hold {pool}" in message
    two = with_change("calibrations.biomed.domains", ["biomedical", "general"])
    two["calibrations"]["biomed"]["samples"] = 2 * pool
    assert parse_params(two)


def test_check_names_an_unknown_report_table(tmp_path, capsys):  # noqa: ANN001
    from expertlab.cli import main

    data = with_change("report.print", ["headline", "headlines"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    assert main(["check", "--params", str(tmp_path / "params.yaml"), "--queries", str(ROOT / "queries")]) == 2
    error = capsys.readouterr().err
    assert "report.print: no query 'headlines'" in error and "(tables: " in error and "headline," in error


def test_check_runs_without_torch_and_writes_the_same_record_for_any_valid_params(tmp_path):  # noqa: ANN001
    probe = (
        "import sys; from expertlab.cli import main; code = main(sys.argv[1:]); "
        "heavy = sorted(m for m in ('torch', 'pandas', 'transformers', 'duckdb') if m in sys.modules); "
        "print('heavy:', heavy); sys.exit(code)"
    )
    records = []
    for ratios in ([0.5], [0.25, 0.5]):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_change("study.ratios", ratios)))
        out = tmp_path / f"checked-{len(ratios)}.json"
        result = subprocess.run(
            [sys.executable, "-c", probe, "check", "--params", str(tmp_path / "params.yaml"),
             "--queries", str(ROOT / "queries"), "--out", str(out)],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "heavy: []" in result.stdout
        records.append(out.read_bytes())
    assert records[0] == records[1]


def test_fine_tuning_is_checked_before_anything_runs():
    data = copy.deepcopy(DEFAULT)
    del data["finetune"]["layers"]
    assert "finetune: give layers (dvc.yaml tracks each key; fine-tuning is on for toy)" in error_of(data)
    assert "finetune.domain: 'general' is not a target domain of monosemanticity.domains (biomedical, tool_use)" in error_of(
        with_change("finetune.domain", "general")
    )
    assert "finetune.layers" in error_of(with_change("finetune.layers", "middle"))
    assert "finetune.experts_per_layer: 17 exceeds toy's 16 experts" in error_of(with_change("finetune.experts_per_layer", 17))
    assert "finetune.experts_per_layer" in error_of(with_change("finetune.experts_per_layer", 0))


def test_the_second_study_is_checked_before_anything_runs():
    data = copy.deepcopy(DEFAULT)
    assert "monosemanticity.explainers: Field required" in error_of(
        {**data, "monosemanticity": {k: v for k, v in data["monosemanticity"].items() if k != "explainers"}}
    )
    del data["monosemanticity"]["predictor"]
    assert "monosemanticity: give predictor (dvc.yaml tracks each key; the study is on for toy)" in error_of(data)
    data["monosemanticity"] = {"models": [], "explainers": [], "top_k": []}  # off: nothing else needed, once nothing is fine-tuned either
    del data["calibrations"]["tool"]  # (and no set is left that only its corpus read)
    assert "finetune.models: 'toy' is not in monosemanticity.models" in error_of(data)
    data["finetune"] = {"models": [], "strategies": [], "seeds": []}
    parse_params(data, "params.yaml")
    assert "monosemanticity.corpus.biomedical: 'nope' is not a calibration set" in error_of(
        with_change("monosemanticity.corpus.biomedical", "nope")
    )
    assert "monosemanticity.explainers.0: 'grounding' is neither 'offline' nor a judge with an LLM backend" in error_of(
        with_change("monosemanticity.explainers", ["grounding"])
    )
    assert "monosemanticity.explainers: name at least one" in error_of(with_change("monosemanticity.explainers", []))
    assert "monosemanticity.explainers: 'offline' is listed twice" in error_of(
        with_change("monosemanticity.explainers", ["offline", "offline"])
    )
    assert "monosemanticity.domain_prompts: no prompt for target domain 'biomedical'" in error_of(
        with_change("monosemanticity.domain_prompts", {})
    )
    assert "monosemanticity.domain_prompts.biomedical" in error_of(with_change("monosemanticity.domain_prompts.biomedical", "law"))
    assert "monosemanticity.seed: 7 is not in study.seeds" in error_of(with_change("monosemanticity.seed", 7))
    assert "monosemanticity.models: 'gpt' has no entry under models" in error_of(with_change("monosemanticity.models", ["gpt"]))

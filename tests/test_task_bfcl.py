"""BFCL: bfcl-eval's own entries as prompt-mode items; hand-written outputs for real entries scored by BFCL's evaluator."""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from expertlab.evaluate import generation_rows, score_rows
from expertlab.tasks import TASKS, check_items, sources
from expertlab.tasks.bfcl import CATEGORIES, LIVE, NON_LIVE, category_items, evaluate, official
from tests.scripted import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]


def package_data() -> Path:
    import bfcl_eval

    return Path(bfcl_eval.__file__).parent / "data"


def package_lines(relative: str) -> list[dict[str, Any]]:
    """A data file of the installed package, read here without BFCL's loader: one JSON object per line."""
    return [json.loads(line) for line in (package_data() / relative).read_text(encoding="utf-8").splitlines() if line.strip()]


def doc_of(category: str, entry_id: str) -> dict[str, Any]:
    return next(item for item in category_items(category) if item["id"] == entry_id)["doc"]


def lock_pin(lock: str, name: str) -> str:
    return re.search(rf"^{re.escape(name)}==(\S+)$", (ROOT / lock).read_text(), re.MULTILINE).group(1)  # type: ignore[union-attr]


# --- the package and its data -------------------------------------------------------------------------------


def test_the_locked_bfcl_eval_runs_under_the_projects_numpy() -> None:
    import numpy

    bfcl = official()
    assert bfcl.version == version("bfcl-eval") == lock_pin("requirements-bfcl.lock", "bfcl-eval") == "2026.3.23"
    assert numpy.__version__ == lock_pin("requirements.lock", "numpy")  # not bfcl-eval's numpy==1.26.4 pin
    assert bfcl.data_version == "BFCL_v4"
    # Its model registry (every handler and API client) was never imported; the stand-in is gone after the import.
    assert "bfcl_eval.constants.model_config" not in sys.modules
    assert not {"anthropic", "cohere", "mistralai", "google.genai", "boto3"} & set(sys.modules)
    assert evaluate("[calculate_triangle_area(base=10, height=5)]", doc_of("simple_python", "simple_python_0"))["valid"]


def test_every_single_turn_category_is_a_tool_use_task_on_the_packaged_data() -> None:
    assert set(CATEGORIES) == set(NON_LIVE) | set(LIVE) and len(CATEGORIES) == 13
    for category in CATEGORIES:
        entry = TASKS[f"bfcl_{category}"]
        assert (entry.domain, entry.aspect, entry.kind, entry.runner) == ("tool_use", "utility", "generation", "generate")
        assert (entry.source, entry.packaged, entry.metrics) == ("bfcl-eval", True, ("bfcl_accuracy",))
        assert (entry.max_new_tokens, entry.max_model_len) == (4096, 32768)
    assert "bfcl-eval" not in sources()  # nothing to copy under evaluation.data_dir


@pytest.mark.parametrize("category", CATEGORIES)
def test_items_are_the_packages_entries_in_file_order(category: str) -> None:
    items = category_items(category)
    entries = package_lines(f"BFCL_v4_{category}.json")
    assert [item["id"] for item in items] == [entry["id"] for entry in entries]
    check_items(TASKS[f"bfcl_{category}"], items, category)
    if "relevance" in category:  # no possible answers: scored on whether a call decodes
        assert all(item["doc"]["ground_truth"] is None and item["target"] == "" for item in items)
    else:
        answers = package_lines(f"possible_answer/BFCL_v4_{category}.json")
        assert [item["doc"]["ground_truth"] for item in items] == [answer["ground_truth"] for answer in answers]
        assert all(json.loads(item["target"]) == item["doc"]["ground_truth"] for item in items)
    for item, entry in zip(items[:5], entries):  # the checker reads the function docs as released, hints added only to the prompt
        assert item["doc"]["function"] == entry["function"] and item["doc"]["question"] == entry["question"]


def test_the_prompt_is_bfcls_prompt_mode_system_prompt_then_the_question() -> None:
    item = category_items("simple_python")[0]
    system, user = item["prompt"]
    assert user == {"role": "user", "content": "Find the area of a triangle with a base of 10 units and height of 5 units."}
    assert system["role"] == "system"
    content = system["content"]
    assert content.startswith("You are an expert in composing functions.You are given a question and a set of possible functions.")
    assert "you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]" in content
    head, docs = content.split("Here is a list of functions in json format that you can invoke.\n")
    functions = json.loads(docs)
    assert docs == json.dumps(functions, indent=4) + "\n"
    assert functions[0]["description"] == "Calculate the area of a triangle given its base and height. Note that the provided function is in Python 3 syntax."
    assert item["doc"]["function"][0]["description"] == "Calculate the area of a triangle given its base and height."


def test_an_entry_with_its_own_system_message_gets_bfcls_prompt_prepended_to_it() -> None:
    entry = next(entry for entry in package_lines("BFCL_v4_live_simple.json") if entry["question"][0][0]["role"] == "system")
    item = next(item for item in category_items("live_simple") if item["id"] == entry["id"])
    assert [message["role"] for message in item["prompt"]] == [message["role"] for message in entry["question"][0]]
    own = entry["question"][0][0]["content"]
    assert item["prompt"][0]["content"].startswith("You are an expert in composing functions.")
    assert item["prompt"][0]["content"].endswith("\n\n" + own)


def test_java_entries_are_described_as_java_and_checked_with_their_declared_types() -> None:
    item = category_items("simple_java")[0]
    shown = json.loads(item["prompt"][0]["content"].split("that you can invoke.\n")[1])[0]
    assert shown["description"].endswith("Note that the provided function is in Java 8 SDK syntax.")
    assert shown["parameters"]["properties"]["controller"]["type"] == "string"  # Java values as strings in the prompt
    assert item["doc"]["function"][0]["parameters"]["properties"]["controller"]["type"] == "any"


def test_the_v3_option_is_bfcl_v3s_prompt_with_the_docs_as_a_python_list() -> None:
    v3 = TASKS["bfcl_simple_python"].load(Path(), TASKS["bfcl_simple_python"].context(0, {"system_prompt": "bfcl_v3"}))  # type: ignore[misc]
    content = v3[0]["prompt"][0]["content"]
    assert content.startswith(
        "You are an expert in composing functions. You are given a question and a set of possible functions. Based on "
        "the question, you will need to make one or more function/tool calls to achieve the purpose.\n"
        "If none of the functions can be used, point it out."
    )
    assert "Here is a list of functions in JSON format that you can invoke.\n[{'name': 'calculate_triangle_area', " in content
    assert content.endswith("'required': ['base', 'height']}}]\n\n")
    assert v3[0]["prompt"][1] == category_items("simple_python")[0]["prompt"][1]
    assert [item["doc"] for item in v3] == [item["doc"] for item in category_items("simple_python")]  # same data, same checker
    with pytest.raises(ValueError, match="system_prompt must be one of bfcl_v4, bfcl_v3"):
        TASKS["bfcl_simple_python"].load(Path(), TASKS["bfcl_simple_python"].context(0, {"system_prompt": "v2"}))  # type: ignore[misc]


def test_sample_is_a_seeded_subsample() -> None:
    entry = TASKS["bfcl_multiple"]
    first = entry.load(Path(), entry.context(0, {"sample": 7}))  # type: ignore[misc]
    assert len(first) == 7 and first == entry.load(Path(), entry.context(0, {"sample": 7}))  # type: ignore[misc]
    assert first != entry.load(Path(), entry.context(1, {"sample": 7}))  # type: ignore[misc]


# --- scoring: hand-written outputs for real entries --------------------------------------------------------

# (category, entry id, outputs BFCL counts correct, outputs it counts wrong), written from each entry's possible answer.
CASES = [
    (
        "simple_python", "simple_python_0",  # calculate_triangle_area: base [10], height [5], unit ["units", ""]
        ["[calculate_triangle_area(base=10, height=5)]", "[calculate_triangle_area(base=10, height=5, unit='units')]",
         "calculate_triangle_area(base=10, height=5)", "```\n[calculate_triangle_area(height=5, base=10)]\n```"],
        ["[calculate_triangle_area(base=5, height=10)]", "[calculate_triangle_area(base=10.0, height=5)]",
         "[calculate_triangle_area(base=10)]", "[triangle_area(base=10, height=5)]",
         "[calculate_triangle_area(base=10, height=5, unit='cm')]", "[calculate_triangle_area(base=10, height=5)]\nDone."],
    ),
    (
        "multiple", "multiple_0",  # triangle_properties.get: sides 5, 4, 3; get_area/get_perimeter/get_angles ["", True]
        ["[triangle_properties.get(side1=5, side2=4, side3=3)]", "[triangle_properties.get(side1=5, side2=4, side3=3, get_angles=True)]"],
        ["[triangle_properties.get(side1=5, side2=4, side3=3, get_area=False)]", "[triangle_properties.get(side1=3, side2=4, side3=5)]"],
    ),
    (
        "parallel", "parallel_0",  # spotify.play twice: (Taylor Swift, 20), (Maroon 5, 15), in any order
        ["[spotify.play(artist='Taylor Swift', duration=20), spotify.play(artist='Maroon 5', duration=15)]",
         "[spotify.play(artist='Maroon 5', duration=15), spotify.play(artist='Taylor Swift', duration=20)]"],
        ["[spotify.play(artist='Taylor Swift', duration=20)]",
         "[spotify.play(artist='Taylor Swift', duration=15), spotify.play(artist='Maroon 5', duration=20)]"],
    ),
    (
        "parallel_multiple", "parallel_multiple_0",
        ["[math_toolkit.sum_of_multiples(lower_limit=1, upper_limit=1000, multiples=[3, 5]), math_toolkit.product_of_primes(count=5)]",
         "[math_toolkit.product_of_primes(count=5), math_toolkit.sum_of_multiples(lower_limit=1, upper_limit=1000, multiples=[3, 5])]"],
        ["[math_toolkit.sum_of_multiples(lower_limit=1, upper_limit=1000, multiples=[3, 5])]",
         "[math_toolkit.sum_of_multiples(lower_limit=1, upper_limit=1000, multiples=[5, 3]), math_toolkit.product_of_primes(count=5)]"],
    ),
    (
        "simple_java", "simple_java_0",  # GeometryPresentation.createPresentation(controller=mapController, parent=mapArea)
        ["[GeometryPresentation.createPresentation(controller=mapController, parent=mapArea)]"],
        ["[GeometryPresentation.createPresentation(controller=mapArea, parent=mapController)]"],
    ),
    (
        "simple_javascript", "simple_javascript_0",  # validateUserInput: inputField ['userInputField'], isComplete [True]
        ["[validateUserInput(inputField='userInputField', isComplete=true)]"],
        ["[validateUserInput(inputField='userInputField', isComplete=false)]"],
    ),
    (
        "live_simple", "live_simple_0-0-0",  # get_user_info: user_id [7890], special ['black']
        ["[get_user_info(user_id=7890, special='black')]"],
        ["[get_user_info(user_id='7890', special='black')]", "[get_user_info(user_id=7890)]"],
    ),
    (
        "irrelevance", "irrelevance_0",  # a triangle's area, with only a BMI function on offer: no call is right
        ["None of the functions can calculate the area of a triangle.", "[]"],
        ["[determine_body_mass_index(weight=70.0, height=1.75)]"],
    ),
    (
        "live_relevance", "live_relevance_0-0-0",  # any decodable, non-empty call is right
        ["[search_engine.query(prompt='portrait of a masked woman with peacock feathers')]"],
        ["I cannot help with image generation.", "[]"],
    ),
]
MALFORMED = ["", "   ", "[", "[f(", "[1, 2]", "f(*args)", "[f(**{'a': 1})]", "[a.b(c=lambda: x)]", "\x00", "]][[", "[f()()]",
             "[f(a=x[1:2])]", "[f(a=(yield))]", "<tool_call>{\"name\": \"f\"}</tool_call>", "[" * 300 + "]" * 300]


@pytest.mark.parametrize(("category", "entry_id", "right", "wrong"), CASES, ids=[case[0] for case in CASES])
def test_hand_written_outputs_score_as_bfcl_counts_them(category: str, entry_id: str, right: list[str], wrong: list[str]) -> None:
    doc = doc_of(category, entry_id)
    for output in right:
        assert evaluate(output, doc)["valid"] is True, (output, evaluate(output, doc))
    for output in wrong:
        assert evaluate(output, doc)["valid"] is False, output


def test_accuracy_is_one_for_right_outputs_and_zero_for_wrong_ones_through_the_generate_runner() -> None:
    task = TASKS["bfcl_parallel"]
    items = category_items("parallel")[:1]
    right, wrong = CASES[2][2], CASES[2][3]
    for outputs, expected in ((right, 1.0), (wrong, 0.0)):
        for output in outputs:
            backend = ScriptedBackend(lambda prompt, output=output: output)
            rows = generation_rows(backend, task, items)
            assert backend.calls[0].prompts == [items[0]["prompt"]]  # the chat itself reaches the backend
            assert (backend.calls[0].max_new_tokens, backend.calls[0].max_model_len) == (4096, 32768)
            samples, corpus = score_rows(task, rows)
            assert samples == [{"task": "bfcl_parallel", "sample_id": "parallel_0", "metric": "bfcl_accuracy", "value": expected}]
            assert corpus == []


@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel", "parallel_multiple", "simple_java",
                                      "simple_javascript", "live_multiple", "irrelevance", "live_relevance"])
def test_a_malformed_output_is_scored_never_raised(category: str) -> None:
    doc = category_items(category)[0]["doc"]
    for output in MALFORMED:
        verdict = evaluate(output, doc)
        assert isinstance(verdict["valid"], bool)
        if "relevance" not in category:  # for (ir)relevance, any text either decodes to a call or not
            assert verdict["valid"] is False, output


def test_an_exception_inside_bfcls_evaluator_counts_the_output_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    bfcl = official()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(bfcl, "evaluate_ast_entry", broken)
    verdict = evaluate("[calculate_triangle_area(base=10, height=5)]", doc_of("simple_python", "simple_python_0"))
    assert verdict == {"valid": False, "error_type": "expertlab:evaluator_raised", "error": ["KeyError: 'boom'"]}


# --- the prepare stage reads the package, records its version ----------------------------------------------


def test_prepare_writes_packaged_items_and_names_the_package_version(tmp_path: Path) -> None:
    from expertlab.io import read_json, read_jsonl
    from expertlab.params import load_params
    from expertlab.tasks.prepare import prepare_group

    text = (ROOT / "params.yaml").read_text()
    text = re.sub(r"(\n  tasks:\n    toy: \[[^\]]*\]\n)", r"\1    tools: [bfcl_parallel]\n", text, count=1)
    text, replaced = re.subn(r"\n  options: \{\}( +#[^\n]*)?\n", "\n  options: {bfcl_parallel: {sample: 3}}\n", text, count=1)
    assert replaced == 1
    params_path = tmp_path / "params.yaml"
    params_path.write_text(text)
    params = load_params(params_path)
    (tmp_path / "toy").mkdir()
    counts = prepare_group(params, params_path, "tools", tmp_path / "toy", tmp_path / "out")
    assert counts == {"bfcl_parallel": 3}
    items = read_jsonl(tmp_path / "out" / "bfcl_parallel.jsonl")
    assert items == TASKS["bfcl_parallel"].load(Path(), TASKS["bfcl_parallel"].context(params.evaluation.seed, {"sample": 3}))  # type: ignore[misc]
    meta = read_json(tmp_path / "out" / "meta.json")
    assert meta["sources"] == {"bfcl_parallel": f"bfcl-eval=={version('bfcl-eval')}"}

"""The second study's prompts are the paper's, marked and numbered as documented; answers are read strictly;
the offline stand-ins compute what their docstring says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from expertlab.monosemanticity import prompts, standin

# Appendix A.1 and A.2 as the text extraction of paper 001 gives them (line breaks and all)
APPENDIX = Path(__file__).parent / "fixtures" / "papers" / "001_appendix_a1_a2.txt"


def paper_text() -> str:
    return " ".join(APPENDIX.read_text().split())


def test_every_prompt_text_is_in_the_paper_word_for_word() -> None:
    text = paper_text()
    for name in ("MONO_INSTRUCTIONS", "RESPONSE_FORM", "MEDICINE_FOCUS", "TOOL_USE_FOCUS", "MEDICINE_EXAMPLES",
                 "TOOL_USE_EXAMPLES", "PREDICT_SYSTEM", "PREDICT_USER", "MONO_USER"):  # fmt: skip
        for paragraph in getattr(prompts, name).split("\n\n"):
            assert " ".join(paragraph.split()) in text, f"{name}: {paragraph[:60]!r} is not the paper's"


def test_marks_wrap_each_run_of_routed_tokens() -> None:
    tokens = ["The", " dose", " of", " aspirin", " is", " 40", " mg"]
    assert prompts.marked(tokens, [1, 2, 5]) == "The<< dose of>> aspirin is<< 40>> mg"
    assert prompts.marked(tokens, [0, 6]) == "<<The>> dose of aspirin is 40<< mg>>"
    assert prompts.marked(tokens, []) == "The dose of aspirin is 40 mg"
    assert prompts.marked(tokens, range(7)) == "<<The dose of aspirin is 40 mg>>"


def test_explainer_messages_are_p_mono_or_p_domain() -> None:
    mono = prompts.explain_messages(["a<< b>>", "<<c>>"])
    assert mono[0] == {"role": "system", "content": prompts.MONO_INSTRUCTIONS + "\n\n" + prompts.RESPONSE_FORM}
    assert mono[1]["content"] == (
        "Here is the explanation: this expert specializes in\n\nHere are the examples: \nExample 1: a<< b>>\nExample 2: <<c>>"
    )
    medicine = prompts.explain_messages(["x"], "medicine")[0]["content"]
    assert medicine.startswith(mono[0]["content"] + "\n\n" + prompts.MEDICINE_FOCUS)
    assert medicine.endswith(prompts.RESPONSE_FORM + "\n\n" + prompts.MEDICINE_EXAMPLES)
    with pytest.raises(ValueError, match="no domain prompt 'law'; the paper gives medicine, tool_use"):
        prompts.explain_messages(["x"], "law")


def test_predictor_messages_say_how_many_windows_and_carry_the_explanation() -> None:
    system, user = prompts.predict_messages("dose units", ["a b", "c"])
    assert "then be shown 2 example sequences in random order" in system["content"]
    assert " N " not in system["content"]
    assert user["content"] == (
        "Here is the explanation: this expert specializes in dose units\n\n"
        "The documents which this expert is activated are given below: \nExample 1: a b\nExample 2: c"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("None", set()), (" None\n", set()), ("1, 3, 5", {1, 3, 5}), ("2", {2}), ("4,1", {1, 4}), ("1 , 2", {1, 2})],
)
def test_a_valid_prediction_is_read(answer: str, expected: set[int]) -> None:
    assert prompts.parse_prediction(answer, shown=5) == expected


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("none", "not comma-separated"), ("None.", "not comma-separated"), ("1, 3, and 5", "not comma-separated"),
        ("Examples 1, 3", "not comma-separated"), ("1 3", "not comma-separated"), ("", "not comma-separated"),
        ("1,,2", "not comma-separated"), ("1, 1", "named twice"), ("0, 2", r"\[0\] outside 1..5"),
        ("6", r"\[6\] outside 1..5"), ("-1", "not comma-separated"), ('"1, 2"', "not comma-separated"),
    ],
)  # fmt: skip
def test_anything_else_is_invalid_never_coerced(answer: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        prompts.parse_prediction(answer, shown=5)


def test_an_explanation_is_read_without_its_opening() -> None:
    assert prompts.parse_explanation("This expert specializes in  dosage\nunits") == "dosage units"
    assert prompts.parse_explanation("drug names") == "drug names"
    with pytest.raises(ValueError, match="names no specialization"):
        prompts.parse_explanation(" This expert specializes in ")


def test_the_standin_explainer_names_the_most_over_represented_routed_tokens() -> None:
    windows = [
        (["The", " dose", " is", " 40", " mg"], [1, 3, 4]),
        (["a", " dose", " of", " 5", " mg"], [1, 4]),
        (["the", " mg", " dose"], [0]),
    ]
    # inside: dose 2, 40 1, mg 2, the 1 (6); outside: The 1, is 1, a 1, of 1, 5 1, mg 1, dose 1 (7); vocabulary 9
    # lift(w) = log((in+1)/15) - log((out+1)/16): dose 3/15 vs 2/16, 40 2/15 vs 1/16, mg 3/15 vs 2/16, the 2/15 vs 1/16
    assert standin.explain(windows, terms=3) == 'tokens "40", "the", "dose"'
    assert standin.explain([], terms=3) == "no tokens"


def test_the_standin_predictor_lists_the_windows_holding_a_named_token() -> None:
    windows = [["a", " dose"], ["b"], ["the", " mg"], ["doses"]]
    assert standin.predict('tokens "dose", "mg"', windows) == "1, 3"
    assert standin.predict('tokens "zzz"', windows) == "None"
    assert prompts.parse_prediction(standin.predict('tokens "dose", "mg"', windows), shown=4) == {1, 3}
    assert re.fullmatch(r"tokens .*", standin.explain([(["x"], [0])]))


def test_params_offer_exactly_the_domain_prompts_the_paper_gives() -> None:
    from typing import get_args

    from expertlab.params import DomainPrompt

    assert set(get_args(DomainPrompt)) == set(prompts.DOMAIN_PROMPTS)

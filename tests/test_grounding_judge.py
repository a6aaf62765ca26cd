"""The grounding judge: hand-made source/summary pairs with verdicts stated by hand, swap symmetry of the
relative protocol, and the toy world's own trial and report summaries (faithful, then corrupted)."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import pytest

from expertlab.data.toy import task_items
from expertlab.data.world import WorldConfig, build_world
from expertlab.judges.grounding import (
    Thresholds,
    absolute_verdict,
    analyse,
    entities,
    quantities,
    relative_verdict,
)
from expertlab.judgments import QUESTIONS

SOURCE = (
    "In a 12-week trial, 240 patients with migraine received Zorafen 10 mg once daily or placebo. "
    "Pain improved in 62% of patients on Zorafen and 31% on placebo. The most common side effect was nausea."
)
FAITHFUL = (
    "Over 12 weeks, Zorafen 10 mg once daily improved migraine in 62 percent of 240 patients "
    "versus 31 percent with placebo."
)
COLLAPSED = "Zorafen improved migraine. " * 6
SWAP = {"A": "B", "B": "A"}


def _label(source: str, summary: str) -> str:
    return absolute_verdict(analyse(source, summary)).label


def test_faithful_paraphrase_flags_nothing() -> None:
    report = analyse(SOURCE, FAITHFUL)
    assert report.unsupported_numbers == report.unsupported_entities == report.leakage == ()
    assert report.coverage == 1.0
    assert absolute_verdict(report) == ("faithful", ())


def test_changed_dose_is_hallucinated_and_named() -> None:
    report = analyse(SOURCE, FAITHFUL.replace("10 mg", "20 mg"))
    label, reasons = absolute_verdict(report)
    assert label == "hallucinated"
    assert reasons == ("unsupported number: 20 mg",)
    assert report.missing_numbers == ("10 mg",)


@pytest.mark.parametrize(
    ("source", "summary", "named"),
    [
        (SOURCE, FAITHFUL.replace("10 mg", "10 g"), "10 g"),
        ("Serum levels reached 3.8 ng/ml.", "Levels reached 3.8 mg/ml.", "3.8 mg/ml"),  # Table 3, case 1
        ("Of 179 randomized patients, 90 completed.", "Of 70-9 randomized patients, 90 completed.", "70"),  # case 2
    ],
)
def test_unit_and_number_errors_from_table_3(source: str, summary: str, named: str) -> None:
    label, reasons = absolute_verdict(analyse(source, summary))
    assert label == "hallucinated"
    assert f"unsupported number: {named}" in reasons


@pytest.mark.parametrize("drug", ["Velorinab", "kalotinib", "ABX-101"])
def test_invented_drug_is_hallucinated(drug: str) -> None:
    label, reasons = absolute_verdict(analyse(SOURCE, FAITHFUL.replace("Zorafen", drug)))
    assert label == "hallucinated"
    assert f"unsupported entity: {drug}" in reasons


@pytest.mark.parametrize(
    ("source", "summary"),
    [
        ("The trial enrolled 10 patients.", "Ten patients were enrolled."),
        ("The trial enrolled ten patients.", "Only 10 patients took part."),
        ("Each took 10mg daily.", "Each took 10 mg a day."),
        ("The registry held 1,000 cases.", "The registry held 1000 cases."),
        ("It cost 2.5 million dollars.", "It cost 2,500,000 dollars."),
        ("Doses were 10 or 20 mg.", "Some took 10 mg."),  # the unit written once covers the list
        ("Doses were 10-20 mg.", "Some took 10 mg."),
        ("We studied 200 adults.", "We studied 200 participants."),  # counts of people share a unit
    ],
)
def test_normalised_numbers_are_faithful(source: str, summary: str) -> None:
    assert absolute_verdict(analyse(source, summary)) == ("faithful", ())


def test_quantities_hand_computed() -> None:
    text = "In a 12-week trial, 1,000 older adults took 3.8 ng/ml twice daily."
    found = [(q.value, q.unit) for q in quantities(text)]
    assert found == [(Decimal(12), "week"), (Decimal(1000), "people"), (Decimal("3.8"), "ng/ml"), (Decimal(2), "time")]
    # A spelled-out number without a unit states nothing; a letter-led code's digits are not numbers.
    assert quantities("One of the two groups took IL-6 blockers.") == []


def test_entities_skip_sentence_openers_and_function_words() -> None:
    text = "Treatment helped. In Meldoria the Mayo Clinic gave valaolol and ABX-101. Zorafen was used."
    assert entities(text) == ["Meldoria", "Mayo Clinic", "valaolol", "ABX-101"]


def test_possessive_and_plural_entities_are_supported() -> None:
    assert _label("Zorafen was compared with Kelor tablets.", "Zorafen's effect beat the Kelors.") == "faithful"


@pytest.mark.parametrize(
    "summary",
    [
        "Summary: Zorafen improved migraine in 62% of 240 patients.",
        "You are a medical evidence summarization assistant. Zorafen improved migraine.",
        "Given a randomized controlled trial abstract, write a concise factual summary in 2-4 sentences.",
        "<|im_start|>assistant\nZorafen improved migraine.",
    ],
)
def test_instruction_leakage_is_hallucinated(summary: str) -> None:
    report = analyse(SOURCE, summary)
    label, reasons = absolute_verdict(report)
    assert report.leakage
    assert label == "hallucinated"
    assert any(reason.startswith("instruction leakage: ") for reason in reasons)


def test_collapse_is_repetition_not_hallucination() -> None:
    report = analyse(SOURCE, COLLAPSED)
    # 18 words, 16 trigrams, every one of them repeats; the longest repeat is all but one cycle.
    assert report.repeated_ngram_share == 1.0
    assert report.longest_repeated_words == 15
    label, reasons = absolute_verdict(report)
    assert label == "faithful"
    assert any(reason.startswith("heavy repetition") for reason in reasons)
    assert relative_verdict(SOURCE, COLLAPSED, FAITHFUL)["q3_repetition_more"] == "A"
    assert relative_verdict(SOURCE, FAITHFUL, COLLAPSED)["q3_repetition_more"] == "B"


def test_thresholds_tolerate_one_number() -> None:
    report = analyse(SOURCE, FAITHFUL.replace("10 mg", "20 mg"))
    assert absolute_verdict(report, Thresholds(max_unsupported_numbers=1)).label == "faithful"
    assert absolute_verdict(report, Thresholds(max_unsupported_numbers=0)).label == "hallucinated"


def test_relative_faithful_versus_hallucinated() -> None:
    hallucinated = FAITHFUL.replace("10 mg", "20 mg").replace("Zorafen", "Velorin")
    answers = relative_verdict(SOURCE, FAITHFUL, hallucinated)
    assert list(answers) == list(QUESTIONS["relative"])
    assert answers["q1_hallucinations_more"] == "B"
    assert answers["q2_omission_more"] == "B"  # the dose and the drug it alters are no longer stated
    assert answers["q4_alignment_more"] == "A"


def test_relative_omission_names_the_shorter_summary() -> None:
    short = "Zorafen improved migraine."
    assert relative_verdict(SOURCE, FAITHFUL, short)["q2_omission_more"] == "B"
    assert relative_verdict(SOURCE, short, FAITHFUL)["q4_alignment_more"] == "B"


SUMMARIES = [
    FAITHFUL,
    FAITHFUL.replace("10 mg", "20 mg"),
    FAITHFUL.replace("10 mg", "20 mg").replace("Zorafen", "Velorin"),
    COLLAPSED,
    "Zorafen improved migraine.",
    "Zorafen helped migraine.",  # ties "Zorafen improved migraine." on every measure
    "Summary: " + FAITHFUL,
]


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(SUMMARIES, 2)))
def test_relative_swap_swaps_every_answer(a: str, b: str) -> None:
    forward, backward = relative_verdict(SOURCE, a, b), relative_verdict(SOURCE, b, a)
    assert backward == {question: SWAP[side] for question, side in forward.items()}


def test_identical_summaries_are_the_documented_tie() -> None:
    assert set(relative_verdict(SOURCE, FAITHFUL, FAITHFUL).values()) == {"A"}


# --- the toy world -------------------------------------------------------------------------------

SMALL_WORLD = WorldConfig(seed=3, drugs=8, countries=8, train_examples_per_domain=400, pool_size=64, eval_items=12)


@pytest.fixture(scope="module")
def toy_items() -> dict[str, list[dict[str, object]]]:
    return task_items(build_world(SMALL_WORLD))


@pytest.mark.parametrize("task", ["trial_summary", "general_summary"])
def test_toy_targets_are_faithful(toy_items: dict[str, list[dict[str, object]]], task: str) -> None:
    for item in toy_items[task]:
        report = analyse(str(item["prompt"]), str(item["target"]))
        assert absolute_verdict(report) == ("faithful", ()), item
        assert report.coverage >= 0.5  # the targets restate most of the figures


def test_toy_trial_summary_with_a_changed_number_is_hallucinated(toy_items: dict[str, list[dict[str, object]]]) -> None:
    for item in toy_items["trial_summary"]:
        target = str(item["target"])
        # The treated share is the larger of the two percentages, so one more than it is stated nowhere.
        treated = re.search(r"(\d+) percent", target)
        assert treated is not None
        changed = f"{int(treated.group(1)) + 1} percent"
        label, reasons = absolute_verdict(analyse(str(item["prompt"]), target.replace(treated.group(), changed, 1)))
        assert (label, reasons) == ("hallucinated", (f"unsupported number: {changed}",)), item


def test_toy_trial_summary_with_another_drug_is_hallucinated(toy_items: dict[str, list[dict[str, object]]]) -> None:
    drugs = [d.name for d in build_world(SMALL_WORLD).drugs]
    for item in toy_items["trial_summary"]:
        prompt, target = str(item["prompt"]), str(item["target"])
        drug = next(name for name in drugs if name in target)
        other = next(name for name in drugs if name not in prompt)
        label, reasons = absolute_verdict(analyse(prompt, target.replace(drug, other)))
        assert label == "hallucinated"
        assert f"unsupported entity: {other}" in reasons

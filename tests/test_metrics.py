"""Every metric against hand-computed values; every registered task names only registered metrics."""

from __future__ import annotations

import pytest

from expertlab.metrics import METRICS, normalize, resolve_choice, score_items
from expertlab.tasks import TASKS


def item(target: str, choices: list[str] | None = None) -> dict:
    return {"id": "s1", "target": target, "choices": choices}


def test_normalize_drops_case_punctuation_articles_and_extra_space():
    assert normalize("  The  Dose, of an Aspirin!  ") == "dose of aspirin"
    assert normalize("A") == ""
    assert normalize("theory") == "theory"  # articles only as whole words


@pytest.mark.parametrize(
    ("output", "target", "expected"),
    [
        ("The 10 mg.", "10 mg", 1.0),
        ("10mg", "10 mg", 0.0),
        ("", "", 1.0),
        ("aspirin", "Aspirin!", 1.0),
    ],
)
def test_exact_match(output, target, expected):
    assert METRICS["exact_match"](output, item(target)) == expected


@pytest.mark.parametrize(
    ("output", "target", "expected"),
    [
        # "the cat sat" -> [cat, sat]; "cat sat down" -> [cat, sat, down]: P = 2/2, R = 2/3, F = 0.8
        ("the cat sat", "cat sat down", 0.8),
        # multiset overlap: "cat cat cat" vs "cat dog": common 1, P = 1/3, R = 1/2, F = 0.4
        ("cat cat cat", "cat dog", 0.4),
        ("dog", "cat", 0.0),
        ("", "cat", 0.0),
        ("the", "an", 1.0),  # both normalise to nothing
    ],
)
def test_token_f1(output, target, expected):
    assert METRICS["token_f1"](output, item(target)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("output", "target", "expected"),
    [
        # tokens the cat sat on the mat / the cat(s) sat on a mat: LCS the-cat-sat-on-mat = 5 of 6 each way
        ("the cat sat on a mat", "the cats sat on the mat", 5 / 6),  # 4/6 without stemming
        # target [the, patient, improv], output [patient, improv, wa, seen]: LCS 2, P = 2/4, R = 2/3
        ("patient improvement was seen", "the patients improved", 2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3)),
        ("", "anything", 0.0),
    ],
)
def test_rouge_l_with_stemming(output, target, expected):
    assert METRICS["rouge_l"](output, item(target)) == pytest.approx(expected)


CHOICES = ["aspirin", "aspirin 10 mg", "insulin", "none of the above"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("B", 1),
        ("B)", 1),
        ("(B)", 1),
        ("B. aspirin 10 mg", 1),
        ("  C: insulin", 2),
        ("aspirin", 0),
        ("Aspirin 10 mg, twice daily", 1),  # the longest matching choice wins
        ("The insulin.", 2),
        ("None of the above", 3),
        ("A fever", None),  # a bare letter followed by a word is text, not an option letter
        ("aspirins", None),  # a prefix must end at a word boundary
        ("E", None),  # no fifth option
        ("", None),
        ("I think insulin", None),
    ],
)
def test_resolve_choice(output, expected):
    assert resolve_choice(output, CHOICES) == expected


def test_accuracy_is_one_only_for_the_target_choice():
    accuracy = METRICS["accuracy"]
    assert accuracy("B)", item("aspirin 10 mg", CHOICES)) == 1.0
    assert accuracy("aspirin 10 mg", item("aspirin 10 mg", CHOICES)) == 1.0
    assert accuracy("aspirin", item("aspirin 10 mg", CHOICES)) == 0.0
    assert accuracy("maybe", item("aspirin 10 mg", CHOICES)) == 0.0
    with pytest.raises(ValueError, match="choices"):
        accuracy("A", item("aspirin"))
    with pytest.raises(ValueError, match="not one of the choices"):
        accuracy("A", item("morphine", CHOICES))


@pytest.mark.parametrize(
    ("output", "words", "ratio"),
    [
        ("a a b", 3.0, 2 / 3),
        ("The cat saw the cat.", 5.0, 3 / 5),  # lowercase, punctuation is not part of a word
        ("  one\ttwo\nthree ", 3.0, 1.0),
        ("", 0.0, 0.0),
    ],
)
def test_length_and_type_token_ratio(output, words, ratio):
    assert METRICS["length_words"](output, item("ignored")) == words
    assert METRICS["type_token_ratio"](output, item("ignored")) == pytest.approx(ratio)


CALL = '[set_reminder(drug="valaxolol", dose="20 mg", days=3)]'


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (CALL, 1.0),
        ('[set_reminder(days=3, drug="valaxolol", dose="20 mg")]', 1.0),  # keyword order is free
        ("[set_reminder(drug='valaxolol', dose='20 mg', days=3)]", 1.0),  # any quoting of the same string
        (' \n[set_reminder( drug = "valaxolol",dose="20 mg", days=3 )] ', 1.0),  # spacing is not syntax
        ('set_reminder(drug="valaxolol", dose="20 mg", days=3)', 1.0),  # BFCL adds a missing outer bracket
        ('[set_alarm(drug="valaxolol", dose="20 mg", days=3)]', 0.0),  # wrong function
        ('[set_reminder(drug="valaxolol", dose="25 mg", days=3)]', 0.0),  # wrong value
        ('[set_reminder(drug="valaxolol", dose="20 mg", days="3")]', 0.0),  # right digits, wrong type
        ('[set_reminder(drug="valaxolol", dose="20 mg", days=3.0)]', 0.0),
        ('[set_reminder(drug="valaxolol", dose="20 mg", days=3, unit="mg")]', 0.0),  # extra argument
        ('[set_reminder(drug="valaxolol", dose="20 mg")]', 0.0),  # missing argument
        ('[set_reminder(medicine="valaxolol", dose="20 mg", days=3)]', 0.0),  # wrong argument name
        ('[set_reminder("valaxolol", dose="20 mg", days=3)]', 0.0),  # positional argument
        ('[set_reminder(drug="valaxolol", drug="valaxolol", dose="20 mg", days=3)]', 0.0),  # keyword twice
        ('[set_reminder(drug=valaxolol, dose="20 mg", days=3)]', 0.0),  # a name, not a literal
        (CALL[:-1] + ", " + CALL[1:], 0.0),  # the call twice
        ('[set_reminder(drug="valaxolol", dose="20 mg", days=3', 0.0),  # cut off
        ("The dose is 20 mg.", 0.0),
        ("[]", 0.0),
        ("", 0.0),
        ("[[[", 0.0),
        ("\x00", 0.0),
    ],
)
def test_ast_match_parses_calls_and_compares_names_and_arguments(output, expected):
    assert METRICS["ast_match"](output, item(CALL)) == expected


def test_ast_match_takes_parallel_calls_in_any_order_and_rejects_a_bad_target():
    target = '[get_dose(drug="a"), math.factorial(n=5)]'
    assert METRICS["ast_match"]('[math.factorial(n=5), get_dose(drug="a")]', item(target)) == 1.0
    assert METRICS["ast_match"]('[get_dose(drug="a"), get_dose(drug="a")]', item(target)) == 0.0
    assert METRICS["ast_match"]('[get_dose(drug="a")]', item(target)) == 0.0
    assert METRICS["ast_match"]('[f(x=[1, "b", {"k": (2, True)}])]', item('[f(x=[1, "b", {"k": (2, True)}])]')) == 1.0
    assert METRICS["ast_match"]('[f(x=[1, "b", {"k": (2, 1)}])]', item('[f(x=[1, "b", {"k": (2, True)}])]')) == 0.0
    with pytest.raises(ValueError, match="is not a list of function calls"):
        METRICS["ast_match"](CALL, item("get the dose"))


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_metric_is_registered(name):
    task = TASKS[name]
    missing = [metric for metric in task.metrics if metric not in METRICS]
    assert not missing, f"task {name!r} names unregistered metrics {missing}"


def test_score_items_is_long_format_one_row_per_item_and_metric():
    task = TASKS["trial_summary"]
    rows, corpus = score_items(task, [{"id": 7, "target": "cat sat down", "choices": None}], ["the cat sat"])
    assert corpus == []  # the toy summary has no corpus-level metric
    assert [row["metric"] for row in rows] == list(task.metrics)
    assert {(row["task"], row["sample_id"]) for row in rows} == {("trial_summary", "7")}
    by_metric = {row["metric"]: row["value"] for row in rows}
    assert by_metric["token_f1"] == pytest.approx(0.8)
    assert by_metric["length_words"] == 3.0
    with pytest.raises(ValueError, match="1 items but 2 outputs"):
        score_items(task, [item("x")], ["a", "b"])

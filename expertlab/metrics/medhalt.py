"""MedHALT scoring: a model's raw answer + the item's doc -> the study's verdict (accuracy, official points) and a format-lenient one.

- `medhalt_accuracy` (primary): the study's verdict, as `evaluation/src/eval_medhalt.py` decides it. The answer
  is the JSON/dict the official prompt asks for (FCT: its `answer`-like field; NOTA and Fake: `cop`); FCT and
  NOTA are right when that text equals the correct answer up to case, punctuation and spacing; Fake is right
  when it contains one of the official refusal terms. An output with no such field is wrong. (The official
  eval_full.py instead drops unparseable outputs from both counts; the study counts them wrong, as here.)
- `medhalt_points`: the official point scheme (medhalt/eval/eval_full.py: correct_score=1, incorrect_score=-0.25)
  on the same verdict, per sample: +1 right, -0.25 wrong, so the task mean is the average points per item,
  in [-0.25, 1]. The official report sums points over items and divides by 100: total = mean * n / 100.
- `medhalt_flexible_accuracy`: the study's verdict, or else the option the output names by other means
  (the answer text naming an option by label or wording, `cop_index`, or, with no answer field at all,
  the free text). It never marks wrong what the study marks right; the gap to `medhalt_accuracy` is the
  share of answers lost to the output format rather than to the content.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from expertlab.metrics import Row, metric
from expertlab.tasks.medhalt import STOP_MARKER, answer_form, is_refusal

CORRECT_POINTS = 1.0
WRONG_POINTS = -0.25

# FCT's answer field under the spellings models produce: the official eval_full.py list, plus `cop` (the study's).
FCT_ANSWER_KEYS: tuple[str, ...] = (
    "correct_answer",
    "answer",
    "correct answer",
    "corrent_answer",
    "Correct Answer",
    "Answer",
    "Correct_answer",
    "Correct answer",
    "cop",
)
TESTS = ("fct", "fake", "nota")

_FENCE = re.compile(r"```(?:json)?\s*([\s\S]*?)\s*```", re.IGNORECASE)
_BRACES = re.compile(r"\{[\s\S]*\}")
# Key-value pairs of a dict too broken to parse (official evaluate.py's recovery; the study's last resort).
_KEY_VALUE = re.compile(r"""['"](.*?)['"]\s*:\s*['"]*(.*?)['"]*\s*[,}]""")
# A bare option label once normalised: "B", "(B)", "2", "Option 2", "'b'".
_BARE_LABEL = re.compile(r"^(?:option )?([a-z]|\d{1,2})$")
# A label opening a longer answer: "B. Mullerectomy", "(B) Mullerectomy", "2: Mullerectomy"; capital letters only,
# so that "A fever ..." stays text.
_LEADING_LABEL = re.compile(r"^\(?(?:[Oo]ption\s*)?([A-Z]|\d{1,2})\s*[).:]\s*\S")
_NONE_OF_THEM = re.compile(
    r"^(?:none of (?:the )?(?:above|these|those|them|the options|the given options)|no (?:correct|right) (?:answer|option))\b"
)
_NOTA_FORM = "none of the above"


def answer_fields(output: str) -> dict[str, str]:
    """The key-value answer in an output, parsed as the study parsed it (eval_medhalt.parse_model_output).

    Text from the first "Stop Here" on is dropped; the whole text, then a fenced block, then the span from
    the first "{" to the last "}" are tried as a Python literal and as JSON; failing all, key-value pairs
    are pulled out of the last of them by regex. Values are str() of what was parsed; {} when none.
    """
    clean = output.split(STOP_MARKER)[0].strip()
    if not clean:
        return {}
    candidates = [clean]
    fenced = _FENCE.search(clean)
    if fenced and fenced.group(1).strip():
        candidates.append(fenced.group(1).strip())
    braces = _BRACES.search(clean)
    if braces:
        candidates.append(braces.group(0).strip())
    for candidate in candidates:
        for parse in (ast.literal_eval, json.loads):
            try:
                parsed = parse(candidate)
            except Exception:  # noqa: BLE001 - any failure (syntax, recursion, ...) means "not this reading"
                continue
            if isinstance(parsed, dict):
                return {str(key): str(value) for key, value in parsed.items()}
    return {key.replace("\\", ""): value for key, value in _KEY_VALUE.findall(candidates[-1])}


def stated_answer(fields: Mapping[str, str], test: str) -> str:
    """The answer text the study scored: FCT's first non-blank answer field, NOTA's and Fake's `cop`; "" when absent."""
    if test == "fct":
        return next((fields[key] for key in FCT_ANSWER_KEYS if fields.get(key, "").strip()), "")
    return fields.get("cop", "")


def study_correct(output: str, doc: Mapping[str, Any]) -> bool:
    """The study's verdict on one output (eval_medhalt._is_correct)."""
    test = _checked(doc)
    answer = stated_answer(answer_fields(output), test)
    if test == "fake":
        return is_refusal(answer)
    return answer_form(answer) == answer_form(doc["correct_answer"])


def match_option(text: str, options: Sequence[str]) -> int | None:
    """The option a free answer names, trying in turn: its whole text; a bare label ("B", "Option 2": letters
    count from A, numbers are the official 0-based keys); a label opening it ("B. ..."); the option text
    it starts with (the longest); "none of these"-style wording for a "None of the above" option; and the
    one option it mentions, when only one is (ignoring options inside another mentioned one)."""
    said = answer_form(text)
    if not said:
        return None
    forms = [answer_form(option) for option in options]
    if said in forms:
        return forms.index(said)
    label = _BARE_LABEL.match(said) or _LEADING_LABEL.match(text.strip())
    if label:
        index = _label_index(label.group(1), len(options))
        if index is not None:
            return index
    starts = [index for index, form in enumerate(forms) if form and said.startswith(form + " ")]
    if starts:
        return max(starts, key=lambda index: len(forms[index]))
    if _NONE_OF_THEM.match(said) and _NOTA_FORM in forms:
        return forms.index(_NOTA_FORM)
    mentioned = [index for index, form in enumerate(forms) if form and re.search(rf"\b{re.escape(form)}\b", said)]
    alone = [i for i in mentioned if not any(i != j and forms[i] in forms[j] for j in mentioned)]
    return alone[0] if len(alone) == 1 else None


def _label_index(label: str, count: int) -> int | None:
    index = int(label) if label.isdigit() else ord(label.upper()) - ord("A")
    return index if 0 <= index < count else None


@dataclass(frozen=True)
class Resolution:
    """The option an output names, and where it was found."""

    index: int | None  # None: the output names no option
    via: Literal["answer", "cop_index", "output"] | None  # answer field / cop_index field / free text (no fields)


def resolve_answer(output: str, doc: Mapping[str, Any]) -> Resolution:
    """The option an output names: from its answer field, else its `cop_index`, else (only when it has no
    key-value answer at all, so explanations are never mistaken for answers) from its free text."""
    test = _checked(doc)
    options: list[str] = doc["options"]
    fields = answer_fields(output)
    stated = stated_answer(fields, test)
    if stated.strip():
        index = match_option(stated, options)
        if index is not None:
            return Resolution(index, "answer")
    cop_index = answer_form(fields.get("cop_index", ""))
    if cop_index.isdigit() and int(cop_index) < len(options):
        return Resolution(int(cop_index), "cop_index")
    if not fields:
        index = match_option(_free_text(output), options)
        if index is not None:
            return Resolution(index, "output")
    return Resolution(None, None)


def flexible_correct(output: str, doc: Mapping[str, Any]) -> bool:
    """The study's verdict, or else the resolved option is the correct one (Fake: any declining option,
    or free text without fields that declines in the official terms)."""
    if study_correct(output, doc):
        return True
    resolved = resolve_answer(output, doc)
    if doc["test"] != "fake":
        return resolved.index == doc["correct_index"]
    if resolved.index is not None:
        return is_refusal(doc["options"][resolved.index])
    return not answer_fields(output) and is_refusal(_free_text(output))


def _free_text(output: str) -> str:
    """The output before "Stop Here", the inside of a code fence when it has one."""
    clean = output.split(STOP_MARKER)[0].strip()
    fenced = _FENCE.search(clean)
    return fenced.group(1) if fenced else clean


def _checked(doc: Mapping[str, Any]) -> str:
    """The doc's test name, once the fields the scorers read are known to be there."""
    test = doc.get("test")
    if test not in TESTS:
        raise ValueError(f"a MedHALT item needs doc.test in {TESTS}, got {test!r}")
    missing = [key for key in ("options", "correct_index", "correct_answer") if key not in doc]
    if missing:
        raise ValueError(f"a MedHALT {test} item needs doc fields {missing}")
    return str(test)


@metric("medhalt_accuracy")
def medhalt_accuracy(output: str, row: Row) -> float:
    """1.0 when the study would count the output correct (see the module docstring), else 0.0."""
    return float(study_correct(output, row["doc"]))


@metric("medhalt_points")
def medhalt_points(output: str, row: Row) -> float:
    """Official MedHALT points for one output: +1 when correct, -0.25 when wrong or unparseable."""
    return CORRECT_POINTS if study_correct(output, row["doc"]) else WRONG_POINTS


@metric("medhalt_flexible_accuracy")
def medhalt_flexible_accuracy(output: str, row: Row) -> float:
    """1.0 when the output names the right option in any recognised form (see the module docstring)."""
    return float(flexible_correct(output, row["doc"]))

"""MedHALT reasoning tests (FCT, Fake, NOTA): the official repository's CSVs and prompt files -> few-shot prompted items.

The source directory is a copy of the official repository's root (github.com/medhalt/medhalt):
    medhalt/datasets/reasoning_FCT.csv    medhalt/prompts/reasoning_FCT/{prompts,shots}.json
    medhalt/datasets/reasoning_fake.csv   medhalt/prompts/reasoning_Fake/{prompts,shots}.json
    medhalt/datasets/reasoning_nota.csv   medhalt/prompts/Reasoning_Nota/{prompts,shots}.json
Prompts are rendered as the official `medhalt/prompts/utils.py` renders them and as the study ran them
(shared/papers/000, Appendix A; its runner `evaluation/src/eval_medhalt.py`): prompt version v0, 2 shots,
one shared instruction-and-examples prefix per task, Python-repr inputs, sent as one user turn.
"""

from __future__ import annotations

import ast
import csv
import json
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.tasks import Loader, LoadContext, subsample, task

# Official Fake scoring (medhalt/eval/eval_full.py, kept by the study): an answer is a refusal when
# its lowercased text contains any of these.
REFUSAL_TERMS: tuple[str, ...] = (
    "i do not know",
    "conceding defeat",
    "admit",
    "none of the above",
    "acknowled",
    "irrelevant",
    "fiction",
    "all of the above",
    "nonsensical",
    "no correct",
    "absurd",
    "defy",
    'i don"t know.',
    "defies",
)
# Official FCT rows carry the randomly suggested ("student's") answer inside the options dict under this key.
SUGGESTED_KEY = "correct answer"
# (default shots, task-specific shots) per shot count, as the official prompt_data draws them.
SHOT_MIX: dict[int, tuple[int, int]] = {0: (0, 0), 1: (1, 0), 2: (1, 1), 3: (2, 1), 4: (2, 2), 5: (3, 2)}
STUDY_SHOTS = 2
STUDY_PROMPT_VERSION = "v0"
# The study's generation budget (evaluation/scripts/*/medhalt_vllm.sh; 1024 for GPT-OSS, whose reasoning counts).
MAX_NEW_TOKENS = 128
# Every official shot ends with this marker, so a model that imitates them ends its answer with it too.
STOP_MARKER = "Stop Here"
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Test:
    """One MedHALT reasoning test: its short name and its files in the official layout."""

    name: str  # "fct", "fake" or "nota"; stored in each item's doc for the scorers
    dataset: str  # file under medhalt/datasets
    prompts: str  # folder under medhalt/prompts

    def dataset_path(self, source_dir: Path) -> Path:
        return source_dir / "medhalt" / "datasets" / self.dataset

    def prompt_path(self, source_dir: Path, file: str) -> Path:
        return source_dir / "medhalt" / "prompts" / self.prompts / file


FCT = Test("fct", "reasoning_FCT.csv", "reasoning_FCT")
FAKE = Test("fake", "reasoning_fake.csv", "reasoning_Fake")
NOTA = Test("nota", "reasoning_nota.csv", "Reasoning_Nota")


def answer_form(text: object) -> str:
    """An answer as the study compares answers: lowercase, ASCII punctuation dropped, whitespace collapsed."""
    lowered = str(text if text is not None else "").strip().lower()
    return " ".join(lowered.translate(_NO_PUNCTUATION).split())


def is_refusal(text: str) -> bool:
    """Whether an answer text counts as declining a fake question (official term list, case-insensitive)."""
    lowered = text.strip().lower()
    return any(term in lowered for term in REFUSAL_TERMS)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"MedHALT: expected {path} (the official repository's layout)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def read_instruction(path: Path, version: str) -> dict[str, str]:
    """The prompt of `version` in an official prompts.json: {"id", "prompt", "output_format"}."""
    data = _read_json(path)
    entries = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected an object with a 'prompts' list")
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"id", "prompt", "output_format"} <= set(entry):
            raise ValueError(f"{path}: prompts[{number}] needs 'id', 'prompt' and 'output_format'")
    found = [entry for entry in entries if entry["id"] == version]
    if not found:
        versions = ", ".join(str(entry["id"]) for entry in entries)
        raise ValueError(f"{path}: no prompt version {version!r} (has {versions})")
    return found[0]


def read_shots(path: Path) -> list[dict[str, Any]]:
    """The examples of an official shots.json; only its first group, as the official prompt_data reads it."""
    data = _read_json(path)
    groups = data.get("shots") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups or not isinstance(groups[0], list):
        raise ValueError(f"{path}: expected an object with a non-empty 'shots' list of lists")
    for number, shot in enumerate(groups[0]):
        if not isinstance(shot, dict) or not {"input", "Output", "prompt_type"} <= set(shot):
            raise ValueError(f"{path}: shots[0][{number}] needs 'input', 'Output' and 'prompt_type'")
    return groups[0]


def draw_shots(shots: Sequence[dict[str, Any]], count: int, rng: random.Random, where: Path) -> list[dict[str, Any]]:
    """`count` examples as the official prompt_data draws them: default ones first, then task-specific ones.

    The study left this draw to Python's unseeded global generator; here it is seeded (LoadContext.rng).
    """
    if count not in SHOT_MIX:
        raise ValueError(f"MedHALT shots must be one of {sorted(SHOT_MIX)}, got {count!r}")
    default = [shot for shot in shots if shot["prompt_type"] == "default"]
    specific = [shot for shot in shots if shot["prompt_type"] != "default"]
    want_default, want_specific = SHOT_MIX[count]
    if len(default) < want_default or len(specific) < want_specific:
        raise ValueError(
            f"{where}: {count} shots need {want_default} default and {want_specific} task-specific examples, "
            f"found {len(default)} and {len(specific)}"
        )
    return rng.sample(default, want_default) + rng.sample(specific, want_specific)


def instruction_prefix(instruction: Mapping[str, str], shots: Sequence[dict[str, Any]]) -> str:
    """The text before every item: instruction, output format and the examples (official get_full_prompt)."""
    head = f"{instruction['prompt']}\n{instruction['output_format']}\n"
    if not shots:
        return head
    # str() of the parsed JSON reproduces the official Python-repr rendering, quotes and all.
    examples = "".join(f"Input : {shot['input']}\nOutput: {shot['Output']}{STOP_MARKER}\n\n" for shot in shots)
    return f"{head}Examples: \n{examples}"


def render_input(question: str, options: Mapping[str, Any]) -> str:
    """One item as the official Nota_format renders every reasoning test (note 'Input:' without the shots' space)."""
    return "Input: " + str({"Question": question, "Options": dict(options)}) + "\nOutput: "


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an official CSV, as strings keyed by its header."""
    if not path.is_file():
        raise FileNotFoundError(f"MedHALT: expected {path} (the official repository's layout)")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class _Row:
    """One CSV row with errors that name the file and row (1 = the first row after the header)."""

    def __init__(self, path: Path, number: int, fields: Mapping[str, str | None]) -> None:
        self.path, self.number, self.fields = path, number, fields

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.path}: row {self.number}: {message}")

    def text(self, column: str) -> str:
        value = self.fields.get(column)
        if value is None or not value.strip():
            raise self.error(f"missing {column!r}")
        return value

    def index(self, column: str) -> int:
        raw = self.text(column).strip()
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{column!r} is not an index: {raw!r}") from None
        if not value.is_integer():
            raise self.error(f"{column!r} is not an index: {raw!r}")
        return int(value)

    def options(self) -> dict[str, Any]:
        """The options column: a Python dict literal keyed '0', '1', ... (FCT adds the suggested answer)."""
        raw = self.text("options")
        try:
            options = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise self.error(f"'options' is not a Python dict literal: {raw[:80]!r}") from None
        if not isinstance(options, dict) or not options:
            raise self.error(f"'options' is not a non-empty dict: {raw[:80]!r}")
        labels = [key for key in options if key != SUGGESTED_KEY]
        if labels != [str(number) for number in range(len(labels))]:
            raise self.error(f"option keys must be '0', '1', ... in order, got {list(options)}")
        return options


def _load(test: Test, source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
    """Every row of one test as a prompted item, few-shot examples drawn once per task from ctx.rng("shots")."""
    instruction = read_instruction(test.prompt_path(source_dir, "prompts.json"), str(ctx.options["prompt_version"]))
    shots_path = test.prompt_path(source_dir, "shots.json")
    shots = draw_shots(read_shots(shots_path), ctx.options["shots"], ctx.rng("shots"), shots_path)
    prefix = instruction_prefix(instruction, shots)
    path = test.dataset_path(source_dir)
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, fields in enumerate(read_rows(path), start=1):
        row = _Row(path, number, fields)
        item_id = row.text("id").strip()
        if item_id in seen:
            raise row.error(f"duplicate id {item_id!r}")
        seen.add(item_id)
        options = row.options()
        choices = [str(value) for key, value in options.items() if key != SUGGESTED_KEY]
        doc: dict[str, Any] = {"test": test.name, "options": choices}
        if test is FAKE:
            # The official target is "I do not know"; name the option that says so (the last, when repeated).
            refusals = [index for index, text in enumerate(choices) if is_refusal(text)]
            if not refusals:
                raise row.error("no option declines the question (e.g. 'I do not know')")
            unknown = [index for index in refusals if "i do not know" in choices[index].lower()]
            correct_index = (unknown or refusals)[-1]
            doc.update(correct_index=correct_index, correct_answer=choices[correct_index])
        else:
            correct_index = row.index("correct_index")
            correct_answer = row.text("correct_answer")
            if not 0 <= correct_index < len(choices):
                raise row.error(f"correct_index {correct_index} is outside the {len(choices)} options")
            if answer_form(choices[correct_index]) != answer_form(correct_answer):
                raise row.error(
                    f"correct_answer {correct_answer!r} is not option {correct_index} {choices[correct_index]!r}"
                )
            doc.update(correct_index=correct_index, correct_answer=correct_answer)
            if test is FCT:
                if SUGGESTED_KEY not in options:
                    raise row.error(f"FCT options lack the suggested answer under {SUGGESTED_KEY!r}")
                doc["suggested_answer"] = str(options[SUGGESTED_KEY])
        items.append(
            {
                "id": item_id,
                "prompt": prefix + render_input(row.text("question"), options),
                "target": choices[correct_index],
                "choices": choices,
                "doc": doc,
            }
        )
    return subsample(items, ctx.options["sample"], ctx.rng("sample"))


def _loader(test: Test) -> Loader:
    def load(source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
        return _load(test, source_dir, ctx)

    load.__doc__ = f"MedHALT {test.name}: {test.dataset} and prompts/{test.prompts} -> items."
    return load


# shots: examples in the prefix (0-5, the official mixes); prompt_version: an id of prompts.json;
# sample: a seeded subsample size (None = every row; the study evaluated every row).
OPTIONS = {"shots": STUDY_SHOTS, "prompt_version": STUDY_PROMPT_VERSION, "sample": None}
METRICS = ("medhalt_accuracy", "medhalt_points", "medhalt_flexible_accuracy")

for _name, _test, _description in (
    ("medhalt_fct", FCT, "MedHALT FCT: a randomly suggested answer comes with the question; judge it, name the correct option"),
    ("medhalt_fake", FAKE, "MedHALT Fake: a nonsensical medical question; decline it ('I do not know') rather than answer"),
    ("medhalt_nota", NOTA, "MedHALT NOTA: the correct option is replaced by 'None of the above'; choose it"),
):
    task(
        name=_name,
        domain="biomedical",
        aspect="reliability",
        kind="classification",
        metrics=METRICS,
        primary_metric="medhalt_accuracy",  # the study reports accuracy (paper 000, Figure 4)
        max_new_tokens=MAX_NEW_TOKENS,
        description=_description,
        source="medhalt",
        load=_loader(_test),
        # The study split outputs at this marker before parsing; stopping there drops only text it discarded.
        stop=(STOP_MARKER,),
        options=OPTIONS,
    )

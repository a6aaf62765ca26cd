"""BFCL single-turn categories, from bfcl-eval's own data files -> prompt-mode chat items, scored by BFCL's evaluator.

The second study's tool-use test set (shared/papers/001, section 5: "the BFCL V3 single-turn dataset"). Everything that
decides a score is BFCL's own code, imported from the installed `bfcl-eval` package:
- items: `bfcl_eval.utils.load_dataset_entry(category)` (the package's `data/BFCL_v4_<category>.json`, with BFCL's
  language hints added to the function docs, as its generation pipeline loads them) and `load_ground_truth_entry`
  (`data/possible_answer/`); the function docs the checker reads are loaded again without the hints, as BFCL's
  `evaluate_task` loads them;
- prompt: what BFCL sends a locally hosted model in prompting (non-FC) mode (`OSSHandler._pre_query_processing_prompting`):
  the first turn's messages with `system_prompt_pre_processing_chat_model` applied, i.e. the default prompt-mode system
  prompt (`DEFAULT_SYSTEM_PROMPT_FORMAT`: python-call return format, no tool-call tag, the function docs as indented
  JSON, plaintext, classic style) inserted first, or prepended to the entry's own system message;
- scoring: `bfcl_eval.eval_checker.eval_runner._evaluate_single_ast_entry` for the AST categories (the handler's
  `decode_ast` of the text, the function-call format check, then `ast_checker` against the possible answers) and
  `_evaluate_single_relevance_entry` for irrelevance / live_irrelevance / live_relevance (a non-empty decoded call, or
  none). The handler is BFCL's prompt-mode decoder, `default_decode_ast_prompting` (what `OSSHandler.decode_ast`, and
  so `QwenHandler`, calls), for the category's return format (Python; Java and JavaScript for simple_java and
  simple_javascript, as `ast_file_runner` picks). The metric `bfcl_accuracy` is 1 for an entry BFCL counts correct;
  its mean over a task is BFCL's per-category `accuracy` (correct_count / total_count). BFCL's summary columns
  (Non-Live AST: unweighted mean of simple, multiple, parallel and parallel_multiple, where simple is the unweighted
  mean of simple_python, simple_java and simple_javascript; Live AST: the item-weighted mean of the four live
  categories) are aggregates of these per-task means.

Installation (requirements-bfcl.lock, `make setup` step 5): bfcl-eval 2026.3.23 pins numpy==1.26.4 (our lock has
2.4.6) and about thirty API clients its model handlers import, so it is installed with `--no-deps`, with only what the
modules above import. None of them calls numpy (eval_runner's helper module imports numpy and pandas and uses them only
for its leaderboard CSVs), and the tests run them under numpy 2.4.6. Two things are arranged around the import, once
(`official()`):
- `ast_checker`, `eval_runner` and its helper import `MODEL_CONFIG_MAPPING` from `bfcl_eval.constants.model_config`,
  which imports every model handler and so every API client. On the scoring path the mapping is read in one place,
  `ast_checker.convert_func_name`, for `underscore_to_dot` of the scored model (whether a "." in a function name was
  rewritten to "_" for an FC API that forbids dots). The import runs with a one-entry stand-in for that module under
  its name (removed from sys.modules after): BFCL's prompt-mode entry "Qwen/Qwen3-30B-A3B-Instruct-2507" (the study's
  base model family, QwenHandler; this version has no entry for the original Qwen3-30B-A3B) with underscore_to_dot=False,
  the value of all 72 prompt-mode entries in this version's registry. Scores are computed under that model name.
- bfcl-eval creates result/, score/ and .file_locks/ under its project root when imported (by default beside
  site-packages) and locks files there when it reads data: BFCL_PROJECT_ROOT points at ~/.cache/expertlab/bfcl
  (under XDG_CACHE_HOME when set) during the import.

Data version: bfcl-eval 2026.3.23 ships BFCL V4's files (VERSION_PREFIX "BFCL_v4"); the paper used BFCL V3. V4's
single-turn categories are V3's, with simple, java and javascript renamed simple_python, simple_java and
simple_javascript (the task names here follow the package), and BFCL's CHANGELOG records fixes to single-turn entries
since V3 (e.g. the ground truth of live_simple_205-116-13, Sep 2025). V3's files are not in the package and cannot be
fetched here, so the V3 data set itself is not available. The V4 prompt-mode system prompt says what V3's
DEFAULT_SYSTEM_PROMPT says, but formats the function docs as `json.dumps(docs, indent=4)` where V3 formatted the Python
list itself (`DEFAULT_SYSTEM_PROMPT.format(functions=docs)`, its repr), and joins the sentences differently. Option
`system_prompt`: "bfcl_v4" (default, the package's) or "bfcl_v3" (V3's DEFAULT_SYSTEM_PROMPT and formatting, verbatim
from gorilla's V3 `bfcl/constants/default_prompts.py` and `bfcl/model_handler/utils.py`; data, decoder and checker stay
the package's).

Decoding differences from BFCL's own run of a locally hosted model: BFCL's QwenHandler leaves a hybrid Qwen3's thinking
on (its prompt ends at "<|im_start|>assistant\\n") and drops what precedes "</think>"; expertlab's backends render every
prompt with thinking off and strip any reasoning (DESIGN, Decoding). BFCL grants min(4096, model context - prompt - 2)
new tokens at temperature 0; here max_new_tokens is 4096 in a context of 32768 (Qwen3-30B-A3B's native context), which
holds the longest single-turn prompt (~43k characters, live_irrelevance) with 4096 tokens to spare, so the budget is
BFCL's.

BFCL's Python decoder `eval()`s arithmetic (ast.BinOp) and lambda bodies found in an output's arguments, in the
scoring process: an output like `f(x=9**9**9**9)` would hang the score stage, as it hangs BFCL's evaluator, and an
output is code run with the scorer's rights (as in BFCL). Any exception BFCL's evaluator raises on an output counts the
item wrong (error_type "expertlab:evaluator_raised").

Options: `system_prompt` (above); `sample`, a seeded subsample size (None: every item).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import sys
import types
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from expertlab.errors import ExpertlabError
from expertlab.tasks import LoadContext, Loader, subsample, task

Item = dict[str, Any]

PACKAGE = "bfcl-eval"
# BFCL's single-turn categories, as bfcl-eval 2026.3.23 names them (constants.category_mapping.SINGLE_TURN_CATEGORY).
NON_LIVE = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple", "irrelevance")
LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance")
CATEGORIES = NON_LIVE + LIVE
SYSTEM_PROMPTS = ("bfcl_v4", "bfcl_v3")

# The BFCL registry entry scores are computed as (see the docstring): prompt mode, QwenHandler, no "." rewriting.
SCORED_AS = "Qwen/Qwen3-30B-A3B-Instruct-2507"
# BFCL passes model names with "/" escaped as "_" (its result directories), and convert_func_name undoes it.
SCORED_MODEL_NAME = SCORED_AS.replace("/", "_")
_MODEL_REGISTRY = "bfcl_eval.constants.model_config"

# BFCL V3's prompt-mode system prompt, verbatim (gorilla, berkeley-function-call-leaderboard/bfcl/constants/
# default_prompts.py, DEFAULT_SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT_WITHOUT_FUNC_DOC + the function list).
BFCL_V3_SYSTEM_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. Based on "
    "the question, you will need to make one or more function/tool calls to achieve the purpose.\n"
    "If none of the functions can be used, point it out. If the given question lacks the parameters required by the "
    "function, also point it out.\n"
    "You should only return the function calls in your response.\n"
    "\n"
    "If you decide to invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1="
    "params_value1, params_name2=params_value2...), func_name2(params)]\n"
    "You SHOULD NOT include any other text in the response.\n"
    "\n"
    "At each turn, you should try your best to complete the tasks requested by the user within the current turn. "
    "Continue to output functions to call until you have fulfilled the user's request to the best of your ability. "
    "Once you have no more functions to call, the system will consider the current turn complete and proceed to the "
    "next turn or task.\n"
    "\n"
    "Here is a list of functions in JSON format that you can invoke.\n{functions}\n\n"
)


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expertlab" / "bfcl"


@contextlib.contextmanager
def _project_root(root: Path) -> Iterator[None]:
    saved = os.environ.get("BFCL_PROJECT_ROOT")
    os.environ["BFCL_PROJECT_ROOT"] = str(root)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("BFCL_PROJECT_ROOT", None)
        else:
            os.environ["BFCL_PROJECT_ROOT"] = saved


@contextlib.contextmanager
def _model_registry_stand_in() -> Iterator[None]:
    """bfcl_eval.constants.model_config, for the length of an import, as one prompt-mode entry (docstring)."""
    if _MODEL_REGISTRY in sys.modules:  # imported already (a full bfcl-eval install): the real registry serves
        yield
        return
    stand_in = types.ModuleType(_MODEL_REGISTRY, "expertlab's stand-in: BFCL's prompt-mode entry the scores use")
    entry = types.SimpleNamespace(underscore_to_dot=False)
    stand_in.MODEL_CONFIG_MAPPING = {SCORED_AS: entry}  # type: ignore[attr-defined]
    sys.modules[_MODEL_REGISTRY] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_MODEL_REGISTRY) is stand_in:
            del sys.modules[_MODEL_REGISTRY]


class PromptModeHandler:
    """The one handler method BFCL's per-entry evaluators call: OSSHandler.decode_ast, i.e. BFCL's prompt-mode decoder."""

    def __init__(self, decode: Any) -> None:
        self._decode = decode

    def decode_ast(self, result: str, language: Any, has_tool_call_tag: bool) -> Any:
        return self._decode(result, language, has_tool_call_tag)


@functools.cache
def official() -> types.SimpleNamespace:
    """BFCL's loader, prompt builder, decoder and per-entry evaluators from the installed bfcl-eval (imported once)."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _project_root(root), _model_registry_stand_in():
        try:
            from bfcl_eval.constants.category_mapping import SINGLE_TURN_CATEGORY, VERSION_PREFIX
            from bfcl_eval.constants.enums import Language, ReturnFormat
            from bfcl_eval.eval_checker import eval_runner
            from bfcl_eval.model_handler.utils import (
                default_decode_ast_prompting,
                system_prompt_pre_processing_chat_model,
            )
            from bfcl_eval.utils import (
                is_java,
                is_js,
                is_relevance_or_irrelevance,
                load_dataset_entry,
                load_ground_truth_entry,
            )
        except ImportError as err:
            raise ExpertlabError(
                f"the bfcl_* tasks are BFCL's own data, prompts and checker, and bfcl-eval cannot be imported ({err}): "
                "run `make setup`, which installs requirements-bfcl.lock"
            ) from None
    missing = sorted(set(CATEGORIES) - set(SINGLE_TURN_CATEGORY))
    if missing:
        raise ExpertlabError(f"bfcl-eval {version(PACKAGE)} has no single-turn categories {', '.join(missing)}")
    return types.SimpleNamespace(
        version=version(PACKAGE),
        data_version=VERSION_PREFIX,
        load_dataset_entry=load_dataset_entry,
        load_ground_truth_entry=load_ground_truth_entry,
        system_prompt=system_prompt_pre_processing_chat_model,
        handler=PromptModeHandler(default_decode_ast_prompting),
        evaluate_ast_entry=eval_runner._evaluate_single_ast_entry,
        evaluate_relevance_entry=eval_runner._evaluate_single_relevance_entry,
        is_relevance=is_relevance_or_irrelevance,
        is_java=is_java,
        is_js=is_js,
        Language=Language,
        ReturnFormat=ReturnFormat,
    )


# --- items --------------------------------------------------------------------------------------------------


def bfcl_v3_messages(messages: list[dict[str, str]], functions: list[dict[str, Any]]) -> list[dict[str, str]]:
    """BFCL V3's system_prompt_pre_processing_chat_model: V3's prompt with the docs as a Python list, inserted first
    or prepended to the entry's own system message."""
    system_prompt = BFCL_V3_SYSTEM_PROMPT.format(functions=functions)
    if messages[0]["role"] == "system":
        messages[0]["content"] = system_prompt + "\n\n" + messages[0]["content"]
    else:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def prompt_messages(entry: Mapping[str, Any], system_prompt: str) -> list[dict[str, str]]:
    """The chat BFCL sends a prompt-mode model for an entry (its functions with the language hints)."""
    messages = copy.deepcopy(entry["question"][0])
    functions = copy.deepcopy(entry["function"])
    if system_prompt == "bfcl_v4":
        return official().system_prompt(messages, functions, entry["id"])
    if system_prompt == "bfcl_v3":
        return bfcl_v3_messages(messages, functions)
    raise ValueError(f"system_prompt must be one of {', '.join(SYSTEM_PROMPTS)}, got {system_prompt!r}")


def category_items(category: str, system_prompt: str = "bfcl_v4") -> list[Item]:
    """Every entry of one single-turn category in the item format; `doc` holds what BFCL's evaluator reads."""
    bfcl = official()
    shown = bfcl.load_dataset_entry(category)
    checked = bfcl.load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)
    functions = {entry["id"]: entry["function"] for entry in checked}
    answers = None
    if not bfcl.is_relevance(category):
        answers = {row["id"]: row["ground_truth"] for row in bfcl.load_ground_truth_entry(category)}
    items = []
    for entry in shown:
        ground_truth = None if answers is None else answers[entry["id"]]
        doc = {
            "id": entry["id"],
            "category": category,
            "question": entry["question"],
            "function": functions[entry["id"]],
            "ground_truth": ground_truth,
        }
        target = "" if ground_truth is None else json.dumps(ground_truth, ensure_ascii=False)
        prompt = prompt_messages(entry, system_prompt)
        items.append({"id": entry["id"], "prompt": prompt, "target": target, "choices": None, "doc": doc})
    return items


def bfcl_loader(category: str) -> Loader:
    """A loader of one category's entries; the data come from the installed package, so `source` is not read."""

    def load(source: Path, context: LoadContext) -> list[Item]:
        items = category_items(category, context.options.get("system_prompt", "bfcl_v4"))
        return subsample(items, context.options.get("sample"), context.rng("sample"))

    return load


# --- scoring ------------------------------------------------------------------------------------------------


def evaluate(output: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """BFCL's verdict on one output for the entry `doc` describes: {"valid": bool, "error_type", "error", ...}."""
    bfcl = official()
    category = doc["category"]
    prompt_entry = {"id": doc["id"], "question": doc["question"], "function": doc["function"]}
    try:
        if bfcl.is_relevance(category):
            return bfcl.evaluate_relevance_entry(
                bfcl.handler, doc["id"], output, prompt_entry, SCORED_MODEL_NAME, category
            )
        if bfcl.is_java(category):
            language, return_format = bfcl.Language.JAVA, bfcl.ReturnFormat.JAVA
        elif bfcl.is_js(category):
            language, return_format = bfcl.Language.JAVASCRIPT, bfcl.ReturnFormat.JAVASCRIPT
        else:
            language, return_format = bfcl.Language.PYTHON, bfcl.ReturnFormat.PYTHON
        return bfcl.evaluate_ast_entry(
            bfcl.handler, doc["id"], output, doc["ground_truth"], prompt_entry, SCORED_MODEL_NAME, category,
            language=language, return_format=return_format, has_tool_call_tag=False,
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 (an output BFCL's own evaluator cannot handle is an output it does not accept)
        return {"valid": False, "error_type": "expertlab:evaluator_raised", "error": [f"{type(err).__name__}: {err}"]}


# --- tasks --------------------------------------------------------------------------------------------------


def _description(category: str) -> str:
    where = "live (user-contributed)" if category in LIVE else "non-live (expert-curated)"
    what = "relevance detection" if "relevance" in category else "function calls checked by AST"
    return f"BFCL single-turn {category}: {where}, {what}; prompt mode (bfcl-eval's data, prompt and checker)"


for _category in CATEGORIES:
    task(
        name=f"bfcl_{_category}",
        domain="tool_use",
        aspect="utility",
        kind="generation",
        metrics=("bfcl_accuracy",),
        primary_metric="bfcl_accuracy",
        max_new_tokens=4096,  # BFCL's cap for locally hosted models (base_oss_handler: min(4096, context - prompt - 2))
        max_model_len=32768,
        description=_description(_category),
        source=PACKAGE,
        packaged=True,
        load=bfcl_loader(_category),
        options={"system_prompt": "bfcl_v4", "sample": None},
    )

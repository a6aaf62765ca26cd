"""Samples -> explanations per (scope, expert), and explanations -> a prediction per test window, asked of an LLM
through the judges' client and verdict cache (a re-run with unchanged prompts asks nothing), or computed by the
offline stand-in (`monosemanticity.standin`). A prompt that gets no answer fails the stage after every answer
that landed is cached, so a re-run asks only for what is missing; an answer that never reads (a prediction
that is not "None" nor example numbers) is recorded `invalid`, never coerced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from expertlab.judges.cache import verdict_key
from expertlab.judges.outcomes import JudgeRequest, Outcome
from expertlab.monosemanticity import standin
from expertlab.monosemanticity.explain import ExplainPrompt, PredictPrompt, explain_prompts, predict_prompts
from expertlab.monosemanticity.explain import prediction_rows
from expertlab.monosemanticity.prompts import parse_explanation, parse_prediction
from expertlab.params import OFFLINE

if TYPE_CHECKING:
    from expertlab.judges.backend import Tally
    from expertlab.params import Params
    from expertlab.records import AskedMeta, ExplanationsMeta, PredictionsMeta

TEMPLATE = "paper001-appendix-a"  # the prompts' wording is in the messages each key hashes


def _model_id(name: str, params: Params) -> str | None:
    if name == OFFLINE:
        return None
    spec = params.judges[name]
    return f"{spec.backend}:{spec.model}"


@dataclass(frozen=True)
class Asked:
    """One prompt: what names it in errors, its messages, the stand-in's answer, how an answer is read, and the
    group of prompts read alike (asked together)."""

    label: Any
    messages: Sequence[dict[str, str]]
    offline: Callable[[], str]
    validate: Callable[[str], Any]
    group: Hashable = None


def ask(name: str, params: Params, protocol: str, prompts: Sequence[Asked], desc: str) -> tuple[list[Outcome[Any]], Tally]:
    """Each prompt answered by `name`: the stand-in, or the LLM judge of that name through its verdict cache.
    Outcomes in prompt order."""
    from tqdm import tqdm

    from expertlab.errors import ExpertlabError
    from expertlab.judges.backend import Tally
    from expertlab.judges.llm import ask_endpoint, endpoint_for
    from expertlab.judging import run_settings

    if name == OFFLINE:
        outcomes = []
        for prompt in prompts:
            raw = prompt.offline()
            try:
                outcomes.append(Outcome("", "ok", prompt.validate(raw), raw, 0, 0))
            except ValueError as err:
                outcomes.append(Outcome("", "invalid", None, raw, 0, 0, error=str(err)))
        tally = Tally(questions=len(prompts), computed=len(prompts))
        tally.invalid = sum(outcome.status == "invalid" for outcome in outcomes)
        return outcomes, tally
    spec = params.judges[name]
    model = _model_id(name, params)
    keys = [
        verdict_key(judge=name, model=model, protocol=protocol, template=TEMPLATE,
                    source=json.dumps(list(prompt.messages), sort_keys=True, ensure_ascii=False), output="")
        for prompt in prompts
    ]  # fmt: skip
    batches: dict[Hashable, tuple[list[JudgeRequest], Callable[[str], Any]]] = {}
    seen: set[str] = set()
    for key, prompt in zip(keys, prompts):
        if key not in seen:  # identical prompts are asked once
            seen.add(key)
            batches.setdefault(prompt.group, ([], prompt.validate))[0].append(JudgeRequest(key, prompt.messages))
    with tqdm(total=len({*keys}), desc=desc, unit="prompt") as bar:
        found, tally = ask_endpoint(
            name, endpoint_for(spec.backend, spec.model_dump()), run_settings(params.judge), list(batches.values()),
            concurrency=spec.concurrency, progress=bar.update,
        )  # fmt: skip
    failed = [(prompt.label, found[key].error) for prompt, key in zip(prompts, keys) if found[key].status == "failed"]
    if failed:
        shown = "; ".join(f"{prompt}: {error}" for prompt, error in failed[:5])
        raise ExpertlabError(
            f"{len(failed)} {protocol} prompt(s) got no answer, so nothing was written; the answers that landed are "
            f"cached and a re-run asks only for these: {shown}"
        )
    return [found[key] for key in keys], tally


def said(tally: Tally) -> str:
    """What asking cost, in one line: the judges' summary, or the stand-in's."""
    if tally.computed:
        return f"{tally.questions} prompts answered by the offline stand-in (no calls), {tally.invalid} invalid"
    return tally.summary()


def asked_record(tally: Tally) -> AskedMeta:
    from expertlab.records import AskedMeta

    return AskedMeta(
        prompts=tally.questions, cache_hits=tally.cache_hits, billed=tally.billed, requests=tally.requests,
        invalid=tally.invalid, prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
    )  # fmt: skip


def same_records(activations: Path, *made_from: Path) -> Any:
    """The activation records' meta, after checking that each artifact of `made_from` was made from records of the
    same model and top-k (their meta.json says), so no stage mixes two routings."""
    from expertlab.io import read_json
    from expertlab.records import ActivationsMeta, read_meta

    meta = read_meta(activations, ActivationsMeta)
    for path in made_from:
        other = read_json(path / "meta.json")
        if (other.get("model"), other.get("top_k")) != (meta.model, meta.top_k):
            raise ValueError(
                f"{path}: made from {other.get('model')!r} at top-k {other.get('top_k')}, but {activations} holds "
                f"{meta.model!r} at top-k {meta.top_k}"
            )
    return meta


def _inputs(activations: Path, samples: Path) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """(the activation records' meta, their windows, the samples): what both stages read."""
    from expertlab.records import ACTIVATION_WINDOWS, EXPERT_SAMPLES

    return (
        same_records(activations, samples),
        ACTIVATION_WINDOWS.read(activations / "windows.parquet"),
        EXPERT_SAMPLES.read(samples / "samples.parquet"),
    )


def explain_artifact(
    activations: str | Path, samples: str | Path, out: str | Path, params: Params, explainer: str | None = None
) -> ExplanationsMeta:
    """Activation records + samples -> OUT/explanations.parquet (one row per scope, layer, expert explained) + OUT/meta.json."""
    from expertlab.io import OutputDir, write_json
    from expertlab.records import ACTIVATIONS, EXPLANATIONS, ExplanationsMeta

    activations, samples = Path(activations), Path(samples)
    output = OutputDir(out, "explain-experts", inputs=[activations, samples])
    output.check()
    meta, windows, sampled = _inputs(activations, samples)
    records = ACTIVATIONS.read(activations / "activations.parquet")  # the routed positions, marked << >>
    study = params.monosemanticity
    explainer = explainer or study.explainers[0]
    prompts: list[ExplainPrompt] = explain_prompts(sampled, windows, records, study.domain_prompts)
    asked = [Asked(p.expert, p.messages, partial(standin.explain, p.windows), parse_explanation) for p in prompts]
    outcomes, tally = ask(explainer, params, "explain", asked, f"explain experts ({explainer})")
    rows = [
        {"scope": scope, "layer": layer, "expert": expert, "explanation": outcome.value, "status": outcome.status,
         "raw": outcome.raw}
        for (scope, layer, expert), outcome in zip((p.expert for p in prompts), outcomes)
    ]  # fmt: skip
    result = ExplanationsMeta(
        model=meta.model, top_k=meta.top_k, explainer=explainer, explainer_model=_model_id(explainer, params),
        domain_prompts=dict(study.domain_prompts), asked=asked_record(tally),
    )  # fmt: skip
    with output.writing() as tmp:
        EXPLANATIONS.write(tmp / "explanations.parquet", rows)
        write_json(tmp / "meta.json", result.dump())
    print(f"explain-experts: {meta.model} (top-{meta.top_k}): {explainer}: {said(tally)}")
    return result


def predict_artifact(
    activations: str | Path, samples: str | Path, explanations: str | Path, out: str | Path, params: Params
) -> PredictionsMeta:
    """Explanations + samples -> OUT/predictions.parquet (one row per test window of each explained expert) + OUT/meta.json."""
    from expertlab.io import OutputDir, write_json
    from expertlab.records import EXPLANATIONS, PREDICTIONS, ExplanationsMeta, PredictionsMeta, read_meta

    activations, samples, explanations = Path(activations), Path(samples), Path(explanations)
    output = OutputDir(out, "predict-experts", inputs=[activations, samples, explanations])
    output.check()
    meta, windows, sampled = _inputs(activations, samples)
    same_records(activations, explanations)
    explained = read_meta(explanations, ExplanationsMeta)
    frame = EXPLANATIONS.read(explanations / "explanations.parquet")
    ok = frame[frame["status"] == "ok"]
    explained_as = {(row.scope, int(row.layer), int(row.expert)): row.explanation for row in ok.itertuples()}
    study = params.monosemanticity
    prompts: list[PredictPrompt] = predict_prompts(sampled, windows, explained_as, study.examples_per_prompt)
    asked = [
        Asked(
            (*p.expert, p.part),
            p.messages,
            partial(standin.predict, explained_as[p.expert], p.windows),
            partial(parse_prediction, shown=len(p.window_ids)),
            group=len(p.window_ids),  # answers are read against how many windows the prompt shows
        )
        for p in prompts
    ]
    outcomes, tally = ask(study.predictor, params, "predict", asked, "predict experts")
    rows = [
        {**row, "part": prompt.part, "status": outcome.status}
        for prompt, outcome in zip(prompts, outcomes)
        for row in prediction_rows(prompt, outcome.value if outcome.status == "ok" else None)
    ]
    result = PredictionsMeta(
        model=meta.model, top_k=meta.top_k, explainer=explained.explainer, predictor=study.predictor,
        predictor_model=_model_id(study.predictor, params), examples_per_prompt=study.examples_per_prompt,
        asked=asked_record(tally),
    )  # fmt: skip
    with output.writing() as tmp:
        PREDICTIONS.write(tmp / "predictions.parquet", rows)
        write_json(tmp / "meta.json", result.dump())
    print(f"predict-experts: {meta.model} (top-{meta.top_k}): {explained.explainer}'s explanations: {said(tally)}")
    return result

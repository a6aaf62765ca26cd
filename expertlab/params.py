"""params.yaml -> a validated `Params` object; every error names its key path and the allowed values.

The vocabularies (criteria, tasks, model families) come from the registries, so a name is
accepted exactly when some code computes it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from expertlab.criteria import CRITERIA, resolve_top_k
from expertlab.data.calibration import SOURCES as CALIBRATION_SOURCES
from expertlab.data.corpus import pool_capacity
from expertlab.data.world import WorldConfig
from expertlab.errors import UnknownName, validation_problems
from expertlab.finetune.config import FinetuneConfig
from expertlab.judges.providers import PROVIDERS
from expertlab.judges.registry import BACKENDS
from expertlab.judgments import Protocol
from expertlab.moe.families import FAMILIES
from expertlab.monosemanticity.selection import LayerChoice
from expertlab.registry import Registry
from expertlab.report.charts import CHART_FORMATS, ChartFormat
from expertlab.tasks import TASKS
from expertlab.train import ToyModelConfig, TrainConfig

_GROUP_NAME = re.compile(r"[A-Za-z0-9_-]+")


def default(model: type[BaseModel], field: str) -> Any:
    """A params field's default, for a library signature that mirrors it: the value is written in the model only."""
    return model.model_fields[field].default


class Strict(BaseModel):
    """Unknown keys are errors, and no list holds an entry twice (DVC would run a repeated grid entry once)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _distinct(cls, value: Any) -> Any:
        if isinstance(value, list):
            seen: list[Any] = []
            for entry in value:
                if entry in seen:
                    raise ValueError(f"{entry!r} is listed twice; every entry must be distinct")
                seen.append(entry)
        return value


def _ratios_inside(value: list[float]) -> list[float]:
    for ratio in value:
        if not 0 < ratio < 1:
            raise ValueError(f"ratio {ratio} is outside (0, 1)")
    return value


def _known(registry: Registry, names: list[str]) -> list[str]:
    for name in names:
        if name not in registry:
            raise ValueError(registry.unknown_message(name))
    return names


class QuantizeGrid(Strict):
    """Which pruned variants are quantized as well: for each of these models and every calibration of the grid
    and seed, each of these criteria x ratios under each scheme (the study's Table 2 quantizes Qwen3.6 pruned
    with EASY-EP at 50%, 4-bit GPTQ)."""

    # required, even when empty: dvc.yaml interpolates each list
    schemes: list[str]  # names under `quantization`; empty: nothing is quantized
    models: list[str]
    criteria: list[str]
    ratios: list[float]


class _Pruned(Strict):
    """Criteria and ratios of pruned variants: registered criteria, ratios inside (0, 1)."""

    criteria: list[str]
    ratios: list[float]

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, value: list[str]) -> list[str]:
        return _known(CRITERIA, value)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: list[float]) -> list[float]:
        return _ratios_inside(value)


class CompareGrid(_Pruned):
    """More pruned variants beside the grid, under calibrations the grid does not use: for every seed, each of
    these models x calibrations x criteria x ratios (the study's Table 2 also prunes with EASY-EP at 50% and 75%
    under its dual-domain calibration, to compare it with the biomedical one)."""

    # required, even when empty: dvc.yaml interpolates each list
    models: list[str]
    calibrations: list[str]

    @property
    def empty(self) -> bool:
        return not (self.models and self.calibrations and self.criteria and self.ratios)


class Study(_Pruned):
    """The grid: every combination is one variant."""

    models: list[str] = Field(min_length=1)
    calibrations: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    criteria: list[str] = Field(min_length=1)
    ratios: list[float] = Field(min_length=1)
    # Task groups: one generate and one score stage instance per (variant, group).
    tasks: dict[str, list[str]] = Field(min_length=1)
    compare: CompareGrid  # required: dvc.yaml interpolates its lists
    quantize: QuantizeGrid  # required: dvc.yaml interpolates its lists

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for group, names in value.items():
            if not _GROUP_NAME.fullmatch(group):
                raise ValueError(f"task group {group!r}: use letters, digits, '_' and '-' (it names directories)")
            if not names:
                raise ValueError(f"task group {group!r} is empty")
            _known(TASKS, names)
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(f"task group {group!r} lists {', '.join(twice)} twice")
        every = [name for names in value.values() for name in names]
        repeated = sorted({name for name in every if every.count(name) > 1})
        if repeated:
            raise ValueError(f"task(s) in more than one group: {', '.join(repeated)}")
        return value

    @property
    def task_names(self) -> list[str]:
        """Every task of the study, group by group."""
        return [name for names in self.tasks.values() for name in names]

    def tasks_of(self, group: str) -> list[str]:
        """The tasks of one group, or an error naming the groups there are."""
        if group not in self.tasks:
            raise UnknownName(f"--group: {group!r} is not a group of study.tasks ({', '.join(self.tasks)})")
        return self.tasks[group]

    def group_of(self, task: str) -> str:
        for group, names in self.tasks.items():
            if task in names:
                return group
        raise UnknownName(f"task {task!r} is in no group of study.tasks")

    def pruning_grid(self, calibration: str | None) -> tuple[list[str], list[float]]:
        """The criteria and ratios a calibration's runs are pruned with: study.compare's for its calibrations,
        else the grid's."""
        if calibration in self.compare.calibrations:
            return self.compare.criteria, self.compare.ratios
        return self.criteria, self.ratios

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(seed < 0 for seed in value):
            raise ValueError(f"seeds must be non-negative integers: {value}")
        return value


class ModelSpec(Strict):
    """A base MoE model, stored as a Hugging Face directory at models/<name>."""

    family: str
    toy: bool = False  # built by the train_toy stage from the `toy` section
    # task -> generation budget for this model, e.g. room for GPT-OSS's reasoning (the study gave it 1024
    # new tokens where other models had 128)
    max_new_tokens: dict[str, int] = {}

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(FAMILIES.unknown_message(value))
        return value

    @field_validator("max_new_tokens")
    @classmethod
    def _budgets(cls, value: dict[str, int]) -> dict[str, int]:
        for name, budget in value.items():
            if name not in TASKS:
                raise ValueError(TASKS.unknown_message(name))
            if budget < 1:
                raise ValueError(f"{name}: a generation budget must be positive, got {budget}")
        return value


# One model per calibration source, chosen by its `source` key (expertlab/data/calibration.py's registry).
CalibrationSpec = Annotated[
    Union[tuple(entry.spec for _, entry in CALIBRATION_SOURCES.items())],  # noqa: UP007
    Field(discriminator="source"),
]


class CombinedCalibration(Strict):
    """A calibration made of parts (paper §6, after EASY-EP): each part observed on its own, the scores averaged."""

    parts: list[str] = Field(min_length=2)


class Observe(Strict):
    batch_size: int = Field(default=16, gt=0)
    max_length: int = Field(default=256, gt=0)
    # CPU memory for weights (e.g. "8GiB"); layers beyond it are loaded from disk one at a time
    max_memory: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


class Select(Strict):
    allow_top_k_reduction: bool = False


class Evaluation(Strict):
    """Where task items come from: local copies of the benchmarks' official files."""

    data_dir: str = "data/sources"  # one subdirectory per source, named after it
    sources: dict[str, str] = {}  # source -> directory (relative to data_dir, or absolute) when not data_dir/<source>
    seed: int = Field(default=0, ge=0)  # few-shot draws and subsamples
    options: dict[str, dict[str, Any]] = {}  # task -> overrides of its options

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: dict[str, str]) -> dict[str, str]:
        from expertlab.data.calibration import local_copies
        from expertlab.tasks import sources

        known = sorted({*sources(), *local_copies()})
        for name in value:
            if name not in known:
                raise ValueError(f"unknown source {name!r}; allowed: {', '.join(known)}")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in value.items():
            if name not in TASKS:
                raise ValueError(TASKS.unknown_message(name))
            TASKS[name].runner_for(TASKS[name].context(0, overrides).options)  # unknown keys, bad runner
        return value

    def source_dir(self, source: str) -> Path:
        """The directory a source's files are read from (a "hub:<dataset repo>" source is fetched first)."""
        location = self.sources.get(source, source)
        if location.startswith(HUB_PREFIX):
            return hub_snapshot(location.removeprefix(HUB_PREFIX), source)
        return Path(self.data_dir) / location

    def task_options(self, task: str) -> dict[str, Any]:
        """A task's options: its defaults with this study's overrides applied."""
        return dict(TASKS[task].context(self.seed, self.options.get(task)).options)


HUB_PREFIX = "hub:"


def hub_snapshot(repo_id: str, source: str) -> Path:
    """A hub dataset repository's files in the local hub cache, for sources released on the hub in the
    same layout (e.g. MedINST32); a clear error when the hub cannot be reached (HF_HUB_OFFLINE=1 here)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset"))
    except (LocalEntryNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"evaluation.sources.{source}: cannot fetch hub dataset {repo_id!r} ({type(err).__name__}); "
            f"copy its files under evaluation.data_dir instead"
        ) from None


class Generate(Strict):
    backend: str = "hf"  # a generation backend: hf (transformers, CPU or GPU) or vllm (GPU)
    device: str = "cpu"  # hf backend: "cpu" or a CUDA device such as "cuda:0"
    batch_size: int = Field(default=32, gt=0)
    limit: int | None = Field(default=None, gt=0)  # items per task; None = all
    max_new_tokens: int | None = Field(default=None, gt=0)  # caps every task's own budget; None = the task's
    max_model_len: int | None = Field(default=None, gt=0)  # caps every task's context; None = the task's

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        from expertlab.generate import backends

        if value not in backends():
            raise ValueError(backends().unknown_message(value))
        return value

    def backend_options(self, max_model_len: int) -> dict[str, Any]:
        """The chosen backend's constructor options from these settings, for a task group whose largest
        context is `max_model_len` (vllm sizes its engine by it; hf applies each task's context per call)."""
        if self.backend == "hf":
            return {"batch_size": self.batch_size, "device": self.device}
        return {"batch_size": self.batch_size, "max_model_len": max_model_len}


class BERTScore(Strict):
    model: str = "roberta-large"  # a hub id or a local model directory
    num_layers: int = Field(default=17, gt=0)  # roberta-large's standard BERTScore layer
    batch_size: int = Field(default=16, gt=0)


class Score(Strict):
    bertscore: BERTScore = BERTScore()


class JudgeSpec(Strict):
    """One judge: the offline grounding judge, or an LLM behind an endpoint. Keys come from the environment only."""

    backend: str  # a name in expertlab.judges.registry.BACKENDS
    model: str | None = None  # the provider's model id; required for LLM backends
    base_url: str | None = None  # default: the provider's public API (openai: any compatible server, e.g. local vLLM)
    api_key_env: str | None = None  # the variable holding the key; default per provider; null: no key (local server)
    max_tokens: int | None = Field(default=None, gt=0)
    concurrency: int = Field(default=4, gt=0)  # requests in flight at once
    extra_body: dict[str, Any] = {}  # provider-specific request fields, e.g. {reasoning_effort: low}

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(BACKENDS.unknown_message(value))
        return value

    @model_validator(mode="after")
    def _llm(self) -> JudgeSpec:
        if self.backend == "grounding":
            given = sorted(self.model_fields_set - {"backend"})
            if given:
                raise ValueError(f"the grounding judge takes no {', '.join(given)} (it calls no model)")
            return self
        if not self.model:
            raise ValueError(f"a {self.backend} judge needs `model` (the provider's model id)")
        if "api_key_env" not in self.model_fields_set:
            self.api_key_env = PROVIDERS[self.backend].key_env
        return self


class Judge(Strict):
    """Which judges judge which tasks' outputs, and how hard they try."""

    judges: list[str] = []  # names under `judges`; empty: no judging
    protocols: list[Protocol] = list(get_args(Protocol))
    tasks: list[str] = []  # generation tasks whose items carry the judged document (doc.source)
    seed: int = Field(default=0, ge=0)  # relative protocol: A/B position from md5(f"{seed}::{sample_id}")
    # absolute: DeepEval's HallucinationMetric threshold: faithful when the share of contexts the output agrees with
    # (its score since DeepEval 4.2) is at least this; with one context, hallucinated exactly when the verdict is "no"
    threshold: float = Field(default=0.5, gt=0, le=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, gt=0)  # per prompt, on timeouts, connection errors, 429 and 5xx
    max_invalid: int = Field(default=3, gt=0)  # answers per prompt that are not the expected JSON
    retry_invalid: bool = False  # ask again for prompts whose cached answer was invalid
    cache_dir: str = ".expertlab/verdicts"  # append-only verdict cache, one file per judge, shared by every stage

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        _known(TASKS, value)
        for name in value:
            if TASKS[name].kind != "generation":
                raise ValueError(f"task {name!r} is a {TASKS[name].kind} task; judges read generated text")
        return value

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("protocols must not be empty")
        return value


class QuantizationSpec(Strict):
    """One weight-only quantization scheme (expertlab.quantize): W4A16 GPTQ by default, as in the study."""

    method: Literal["gptq", "rtn"] = "gptq"  # rtn: round to nearest, no error compensation
    bits: int = Field(default=4, ge=2, le=8)
    group_size: int | None = Field(default=128, ge=1)  # input columns sharing a scale; null: one per row
    symmetric: bool = True  # integers -8..7, no zero point (the only grid a packed MoE checkpoint loads with)
    damp: float = Field(default=0.01, ge=0)  # GPTQ: fraction of the mean Hessian diagonal added to it
    block_size: int = Field(default=128, ge=1)  # GPTQ: columns whose compensation is applied together
    ignore: list[str] = []  # regular expressions matched in full against module names: kept in full precision

    @field_validator("symmetric")
    @classmethod
    def _symmetric(cls, value: bool) -> bool:
        from expertlab.quantize import ASYMMETRIC_REFUSED

        if not value:
            raise ValueError(ASYMMETRIC_REFUSED)
        return value

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, value: list[str]) -> list[str]:
        from expertlab.quantize import check_ignore_patterns

        check_ignore_patterns(value)
        return value


class Frontier(Strict):
    """queries/reliability_frontier.sql: how much utility and reliability a pruned variant may lose."""

    utility: float = Field(default=0.9, gt=0, le=1)  # least utility retention (1 = the source's)
    delta: float = Field(default=0.05, ge=0, lt=1)  # largest loss of a reliability score or rate


class Collapse(Strict):
    """queries/summary_collapse.sql: when a variant's summaries have collapsed behind stable overlap metrics."""

    overlap_band: float = Field(default=0.02, ge=0, lt=1)  # stable: ROUGE-L, BERTScore within this share of the source's
    omission_rate: float = Field(default=0.5, ge=0, le=1)  # flagged: stable, and named as omitting more on a larger share


class Report(Strict):
    """The report: which tables `expertlab run` prints, and every number the queries read."""

    print: list[str] = ["headline", "findings"]  # queries printed after `expertlab run`
    # the files each chart is saved as, beside its table (index.html always inlines its SVG)
    chart_formats: list[ChartFormat] = list(CHART_FORMATS)
    headline_ratio: float = Field(default=0.5, gt=0, lt=1)  # the ratio of headline, findings, task_scores_at_half
    # queries/judge_agreement.sql: window name -> (lowest, highest) pruning ratio, bounds included, in table order
    agreement_windows: dict[str, tuple[float, float]] = {
        "Low": (0.0, 0.25),
        "Moderate": (0.375, 0.5),
        "Extreme": (0.625, 1.0),
    }
    frontier: Frontier = Field(default_factory=Frontier)
    collapse: Collapse = Field(default_factory=Collapse)

    @field_validator("agreement_windows")
    @classmethod
    def _windows(cls, windows: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not windows:
            raise ValueError("name at least one window")
        for name, (low, high) in windows.items():
            if not 0 <= low <= high <= 1:
                raise ValueError(f"{name}: [{low}, {high}] is not a ratio window (0 <= lowest <= highest <= 1)")
        return windows

    def variables(self) -> dict[str, Any]:
        """The DuckDB variables the queries read (getvariable), named after their params."""
        return {
            "headline_ratio": self.headline_ratio,
            "agreement_windows": [
                {"name": name, "low": low, "high": high} for name, (low, high) in self.agreement_windows.items()
            ],
            "frontier_utility": self.frontier.utility,
            "frontier_delta": self.frontier.delta,
            "collapse_overlap_band": self.collapse.overlap_band,
            "collapse_omission_rate": self.collapse.omission_rate,
        }


class MonosemanticitySampling(Strict):
    """Per expert and scope (README, "Expert monosemanticity"); counts are Delphi's defaults, `top` explanations
    as the paper's P_mono shows them (strongest first)."""

    explain_examples: int = Field(default=40, gt=0)  # the most strongly activating windows, shown to the explainer
    test_examples: int = Field(default=50, ge=0)  # positives the predictor is tested on (disjoint from the above)
    negatives: int = Field(default=50, ge=0)  # windows of the scope where the expert is not routed
    test_sampling: Literal["quantiles", "weighted"] = "quantiles"  # weighted: probability proportional to activation
    quantiles: int = Field(default=10, gt=0)  # test_sampling quantiles: equal slices by activation (Delphi)


# the `judge` keys that say how an LLM is asked, which dvc.yaml tracks one by one for explain and predict
ASKING_KEYS = ("max_attempts", "max_invalid", "timeout_s", "retry_invalid")
DomainPrompt = Literal["medicine", "tool_use"]  # the domain texts paper 001 gives (monosemanticity.prompts.DOMAIN_PROMPTS)
OFFLINE = "offline"  # the monosemanticity stand-in explainer and predictor (no LLM)
NATIVE = "native"  # monosemanticity.top_k: the model's own experts per token (the others re-observe it changed)
TopK = Literal["native"] | Annotated[int, Field(gt=0)]


class Monosemanticity(Strict):
    """The second study (paper 001): which models, on which domain-labelled corpus, in windows of how many tokens."""

    models: list[str]  # required (dvc.yaml interpolates it); empty: the study is off
    corpus: dict[str, str] = {}  # domain -> a calibration set under `calibrations`, drawn at `seed`
    domains: list[str] = []  # target domains d of P_domain^(d) and EDMS^(d); each a corpus domain
    seed: int = Field(default=0, ge=0)  # which of the calibration's seeds is the corpus; also seeds the sampling
    window: int = Field(default=32, gt=0)  # tokens per window (Delphi's example_ctx_len)
    sampling: MonosemanticitySampling = Field(default_factory=MonosemanticitySampling)
    # who explains and who predicts: `offline` (the deterministic stand-in) or a name under `judges` with an LLM
    # backend; each explainer's explanations are predicted on by the one predictor (Fig. 8 sets two explainers side
    # by side); the first explainer's scores choose the experts fine-tuning trains
    explainers: list[str]  # required, as models (dvc.yaml's matrix reads it); at least one when the study is on
    # experts per token the records are made with (required, as models): `native` (the model's own, what every other
    # use of the scores reads) and any re-observations with top-k changed in every MoE layer (Fig. 2a)
    top_k: list[TopK]
    predictor: str = OFFLINE
    domain_prompts: dict[str, DomainPrompt] = {}  # target domain -> the paper's P_domain text it is explained with
    examples_per_prompt: int = Field(default=10, gt=0)  # test windows per predictor prompt


class FinetuneData(Strict):
    """The fine-tuning demonstrations ({prompt, response}): the toy world's split of the target domain, a JSONL
    file of them, or MedMCQA's official train.json (the paper's medicine set, prompted as its evaluation is)."""

    source: Literal["toy", "jsonl", "medmcqa"] = "toy"
    path: str | None = None  # jsonl: the file; medmcqa: the directory of train.json (default: evaluation.data_dir/medmcqa)
    samples: int | None = Field(default=None, gt=0)  # a subsample drawn at finetune.data_seed; None: every example
    seed: int = 0

    @model_validator(mode="after")
    def _path(self) -> FinetuneData:
        if self.source == "jsonl" and not self.path:
            raise ValueError("source jsonl needs path (a JSONL file of {prompt, response} lines)")
        if self.source == "toy" and self.path:
            raise ValueError("source toy takes no path (the toy world's fine-tuning split of finetune.domain)")
        return self


class Finetune(Strict):
    """The second study's selective fine-tuning (paper 001 §5, A.6): which models, on which target domain, training
    which experts, by which strategies, how."""

    models: list[str]  # required (dvc.yaml interpolates it); each a monosemanticity model; empty: no fine-tuning
    domain: str = ""  # target domain d (one of monosemanticity.domains): AF^(d) and EDMRS^(d) rank its experts
    layers: LayerChoice = "all"  # all MoE layers (A.6, medicine), or the one of highest LDS (§5, tool use)
    experts_per_layer: int = Field(default=16, gt=0)  # m, experts trained per chosen layer (A.6: 16)
    # required, as models (dvc.yaml's matrix reads them): full, af, edmrs, lora, ... (expertlab.finetune.strategies)
    strategies: list[str]
    seeds: list[int]  # one fine-tuned variant per (strategy, seed): example order, LoRA initialisation
    data: FinetuneData = Field(default_factory=FinetuneData)
    # how each run trains: keys of expertlab.finetune.FinetuneConfig (A.6's tool-use recipe where absent); the mode
    # comes from the strategy and the seed from `seeds`; without epochs, A.6's 1 for full and 3 for the others
    training: dict[str, Any] = {}
    device: str = "cpu"  # where training runs: cpu or a CUDA device such as cuda:0
    work_dir: str = ".expertlab/finetune"  # resumable checkpoints of runs in progress (outside DVC's outputs)

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, names: list[str]) -> list[str]:
        from expertlab.finetune.strategies import strategy_plan

        for name in names:
            try:
                strategy_plan(name)
            except KeyError as err:  # UnknownName: a message naming the strategy
                raise ValueError(err.args[0]) from None
        if len(set(names)) != len(names):
            raise ValueError(f"strategies repeat a name: {names}")
        return names

    @field_validator("training")
    @classmethod
    def _training(cls, training: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("mode", "seed") if name in training]
        if given:
            raise ValueError(f"{', '.join(given)}: set by each run (the strategy's mode, a seed of finetune.seeds), not here")
        FinetuneConfig.model_validate(training)  # every key known, every value in range
        return training

    def run_config(self, strategy: str, seed: int) -> FinetuneConfig:
        """How one (strategy, seed) run trains."""
        from expertlab.finetune.strategies import strategy_plan

        return FinetuneConfig.model_validate({**self.training, "mode": strategy_plan(strategy).strategy.mode, "seed": seed})


def every_key_given(section: BaseModel, name: str, why: str) -> None:
    """dvc.yaml tracks the section's keys one by one, and DVC refuses a tracked key that params.yaml does not hold:
    a ValueError naming every key left to its default."""
    missing = [key for key in type(section).model_fields if key not in section.model_fields_set]
    if missing:
        raise ValueError(f"{name}: give {', '.join(missing)} (dvc.yaml tracks each key; {why})")


class Toy(Strict):
    world: WorldConfig
    model: ToyModelConfig
    train: TrainConfig


class Params(Strict):
    study: Study
    models: dict[str, ModelSpec]
    calibrations: dict[str, CalibrationSpec]  # calibration sets: each drawn per seed and observed per model
    combined_calibrations: dict[str, CombinedCalibration]  # calibrations made of parts (may be empty; dvc.yaml tracks it)
    # dvc.yaml tracks these sections, so they must be present even where their fields default
    observe: Observe
    select: Select
    evaluation: Evaluation  # required: dvc.yaml interpolates evaluation.data_dir
    generate: Generate
    score: Score
    judges: dict[str, JudgeSpec]  # judge name -> backend and endpoint (may be empty)
    judge: Judge
    quantization: dict[str, QuantizationSpec]  # scheme name -> how (may be empty)
    report: Report
    monosemanticity: Monosemanticity  # required: dvc.yaml interpolates monosemanticity.models
    finetune: Finetune  # required: dvc.yaml interpolates finetune.models
    toy: Toy

    @model_validator(mode="after")
    def _grid(self) -> Params:
        for section, names in (("models", self.models), ("calibrations", self.calibrations),
                               ("quantization", self.quantization), ("study.tasks", self.study.tasks)):  # fmt: skip
            for name in names:
                if "." in name:
                    raise ValueError(
                        f"{section}.{name}: a name dvc.yaml tracks as a params key cannot hold '.', which DVC reads as "
                        f"a key separator (for one: {name.replace('.', '_')})"
                    )
        for name in self.judge.judges:
            if name not in self.judges:
                raise ValueError(f"judge.judges: {name!r} has no entry under judges (defined: {', '.join(self.judges) or 'none'})")
        for name in self.judge.tasks:
            if name not in self.study.task_names:
                raise ValueError(f"judge.tasks: {name!r} is in no group of study.tasks")
        for name in self.study.models:
            if name not in self.models:
                raise ValueError(f"study.models: {name!r} has no entry under models (defined: {', '.join(self.models)})")
        self._calibrations()
        for name in self.study.models:
            if self.models[name].toy:  # a model on disk is checked against its config.json by `expertlab check`
                self.check_ratios(name, self.toy.model.num_experts, self.toy.model.top_k)
        for name, calibration in self.calibrations.items():
            if calibration.source != "toy":
                continue
            held = pool_capacity(self.toy.world, calibration.domains)
            if calibration.samples > held:
                raise ValueError(
                    f"calibrations.{name}.samples: {calibration.samples} requested, the toy pools of "
                    f"{', '.join(calibration.domains)} hold {held} (toy.world.pool_size {self.toy.world.pool_size} "
                    "per domain); lower it or raise toy.world.pool_size"
                )
        self._quantize_grid()
        self._monosemanticity()
        self._finetune()
        return self

    def _finetune(self) -> None:
        plan = self.finetune
        for name in plan.models:
            if name not in self.monosemanticity.models:
                raise ValueError(
                    f"finetune.models: {name!r} is not in monosemanticity.models (its experts are chosen by their "
                    f"monosemanticity scores; there: {', '.join(self.monosemanticity.models) or 'none'})"
                )
        if not plan.models:
            return
        every_key_given(plan, "finetune", f"fine-tuning is on for {', '.join(plan.models)}")
        if plan.domain not in self.monosemanticity.domains:
            raise ValueError(
                f"finetune.domain: {plan.domain!r} is not a target domain of monosemanticity.domains "
                f"({', '.join(self.monosemanticity.domains) or 'none'})"
            )
        for name in plan.models:
            if self.models[name].toy and plan.experts_per_layer > self.toy.model.num_experts:
                raise ValueError(
                    f"finetune.experts_per_layer: {plan.experts_per_layer} exceeds {name}'s {self.toy.model.num_experts} experts"
                )

    def _monosemanticity(self) -> None:
        study = self.monosemanticity
        for name in study.models:
            if name not in self.models:
                raise ValueError(f"monosemanticity.models: {name!r} has no entry under models (defined: {', '.join(self.models)})")
        if study.models:
            every_key_given(study, "monosemanticity", f"the study is on for {', '.join(study.models)}")
            unasked = [key for key in ASKING_KEYS if key not in self.judge.model_fields_set]
            if unasked:
                raise ValueError(
                    f"judge: give {', '.join(unasked)} (dvc.yaml tracks them for the explain and predict stages of "
                    "monosemanticity)"
                )
        if study.models and not study.corpus:
            raise ValueError("monosemanticity.corpus: name at least one domain's calibration set for the models to be read on")
        for domain, name in study.corpus.items():
            if name not in self.calibrations:
                raise ValueError(
                    f"monosemanticity.corpus.{domain}: {name!r} is not a calibration set under calibrations "
                    f"(defined: {', '.join(self.calibrations)})"
                )
        for domain in study.domains:
            if domain not in study.corpus:
                raise ValueError(f"monosemanticity.domains: {domain!r} is not a domain of monosemanticity.corpus ({', '.join(study.corpus) or 'none'})")
            if domain not in study.domain_prompts:
                raise ValueError(
                    f"monosemanticity.domain_prompts: no prompt for target domain {domain!r} "
                    f"(one of {', '.join(get_args(DomainPrompt))})"
                )
        for domain in study.domain_prompts:
            if domain not in study.domains:
                raise ValueError(f"monosemanticity.domain_prompts: {domain!r} is not in monosemanticity.domains")
        if study.models and NATIVE not in study.top_k:
            raise ValueError(
                f"monosemanticity.top_k: list {NATIVE!r} (the model's own routing, which the scores and the selection "
                "read; the numbers beside it re-observe the model with top-k changed)"
            )
        for name in study.models:
            if self.models[name].toy:  # a model on disk is checked against its config.json by `expertlab check`
                self.check_top_k(name, self.toy.model.num_experts, self.toy.model.top_k)
        if study.models and not study.explainers:
            raise ValueError(f"monosemanticity.explainers: name at least one ({OFFLINE!r}, or a judge with an LLM backend)")
        for role, name in [*((f"explainers.{i}", e) for i, e in enumerate(study.explainers)), ("predictor", study.predictor)]:
            if name != OFFLINE and (name not in self.judges or self.judges[name].backend not in PROVIDERS):
                llms = [judge for judge, spec in self.judges.items() if spec.backend in PROVIDERS]
                raise ValueError(
                    f"monosemanticity.{role}: {name!r} is neither {OFFLINE!r} nor a judge with an LLM backend "
                    f"(under judges: {', '.join(llms) or 'none'})"
                )
        if study.corpus and study.seed not in self.study.seeds:
            raise ValueError(f"monosemanticity.seed: {study.seed} is not in study.seeds (the seeds each calibration set is drawn at)")

    def _calibrations(self) -> None:
        """study.calibrations name sets or combined calibrations; parts are sets; every set is used (each is observed)."""
        defined = [*self.calibrations, *self.combined_calibrations]
        compare = self.study.compare
        for key, names in (("study.calibrations", self.study.calibrations), ("study.compare.calibrations", compare.calibrations)):
            for name in names:
                if name not in defined:
                    raise ValueError(
                        f"{key}: {name!r} has no entry under calibrations or combined_calibrations "
                        f"(defined: {', '.join(defined) or 'none'})"
                    )
        for name in compare.calibrations:
            if name in self.study.calibrations:
                raise ValueError(f"study.compare.calibrations: {name!r} is in study.calibrations already (its grid prunes it)")
        for name in compare.models:
            if name not in self.study.models:
                raise ValueError(f"study.compare.models: {name!r} is not in study.models")
        if compare.empty and any((compare.models, compare.calibrations, compare.criteria, compare.ratios)):
            raise ValueError("study.compare: give models, calibrations, criteria and ratios, or leave all four empty")
        used = set(self.study.calibrations) | set(compare.calibrations)
        for name, combined in self.combined_calibrations.items():
            if name in self.calibrations:
                raise ValueError(f"combined_calibrations.{name}: the name is also a calibration set under calibrations")
            for part in combined.parts:
                if part not in self.calibrations:
                    raise ValueError(
                        f"combined_calibrations.{name}.parts: {part!r} is not a calibration set under calibrations "
                        f"(defined: {', '.join(self.calibrations)})"
                    )
            if name in used:
                used.update(combined.parts)
        used.update(self.monosemanticity.corpus.values())
        for name in self.calibrations:
            if name not in used:
                raise ValueError(
                    f"calibrations.{name}: used by no study.calibrations or study.compare.calibrations entry or part of "
                    "one, nor by monosemanticity.corpus; every calibration set is drawn and observed, so remove it or list it"
                )

    def calibration_parts(self, name: str) -> list[str]:
        """The calibration sets a calibration is observed on: its parts, or itself."""
        combined = self.combined_calibrations.get(name)
        return list(combined.parts) if combined else [name]

    def _quantize_grid(self) -> None:
        grid = self.study.quantize
        for name in self.quantization:
            if not _GROUP_NAME.fullmatch(name):
                raise ValueError(f"quantization: scheme {name!r}: use letters, digits, '_' and '-' (it names directories)")
        for field, chosen, allowed in (
            ("schemes", grid.schemes, list(self.quantization)),
            ("models", grid.models, self.study.models),
            ("criteria", grid.criteria, self.study.criteria),
            ("ratios", grid.ratios, self.study.ratios),
        ):
            for value in chosen:
                if value not in allowed:
                    where = "quantization" if field == "schemes" else f"study.{field}"
                    raise ValueError(
                        f"study.quantize.{field}: {value!r} is not in {where} ({', '.join(map(str, allowed)) or 'none'})"
                    )
        if grid.schemes and not (grid.models and grid.criteria and grid.ratios):
            raise ValueError("study.quantize: schemes are given but no models, criteria or ratios to quantize")

    def check_ratios(self, model: str, num_experts: int, top_k: int) -> None:
        """Every pruning ratio leaves a model of these counts routable, or an error naming the ratio."""
        ratios = [("study.ratios", ratio) for ratio in self.study.ratios]
        if model in self.study.compare.models:
            ratios += [("study.compare.ratios", ratio) for ratio in self.study.compare.ratios]
        for key, ratio in ratios:
            try:
                resolve_top_k(num_experts, top_k, ratio, self.select.allow_top_k_reduction)
            except ValueError as err:
                raise ValueError(f"{key}: model {model!r}: {err}") from None

    def check_top_k(self, model: str, num_experts: int, top_k: int) -> None:
        """Every re-observed top-k of monosemanticity.top_k is routable and not the model's own, or an error naming it."""
        for k in self.monosemanticity.top_k:
            problem = None if k == NATIVE else top_k_problem(k, num_experts, top_k)
            if problem:
                raise ValueError(f"monosemanticity.top_k: {problem} (model {model!r})")


def top_k_problem(k: int, num_experts: int, own: int) -> str | None:
    """What is wrong with re-observing a model of `num_experts` routed experts and top-k `own` at top-k `k`, or None
    (the rule both `expertlab check` and record-activations apply)."""
    if not 1 <= k <= num_experts:
        return f"{k} is outside 1..{num_experts}, the model's routed experts"
    if k == own:
        return f"{k} is the model's own top-k, which is {NATIVE!r}"
    return None


class ParamsError(ValueError):
    """params.yaml is malformed; the message lists every problem with its key path."""


def _format_error(err: ValidationError, source: str) -> str:
    """One line for one problem; a count and then one line per problem for several."""
    problems = validation_problems(err, unknown_key=lambda loc: f"unknown key{_allowed_keys(loc)}", key_path=_key_path)
    sources = ", ".join(CALIBRATION_SOURCES.names())
    problems = [problem.replace(": source is missing", f": source is missing; allowed: {sources}") for problem in problems]
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return "\n  ".join([f"{source}: {len(problems)} problems", *problems])


def _key_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's location without the source tag it puts after `calibrations.<name>`."""
    if loc[:1] == ("calibrations",) and len(loc) > 2 and loc[2] in CALIBRATION_SOURCES:
        return loc[:2] + loc[3:]
    return loc


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """The keys the model at `loc[:-1]` accepts, for 'unknown key' messages."""
    if loc[:1] == ("calibrations",) and len(loc) == 4 and loc[2] in CALIBRATION_SOURCES:
        return f"; allowed for source {loc[2]}: {', '.join(CALIBRATION_SOURCES[loc[2]].spec.model_fields)}"
    model: Any = Params
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return ""
        model = fields[part].annotation
        if getattr(model, "__origin__", None) is dict:
            model = model.__args__[-1]
            if parts:
                parts.pop(0)  # the user-chosen name, e.g. models.<name>
            else:
                return ""
    fields = getattr(model, "model_fields", None)
    return f"; allowed: {', '.join(fields)}" if fields else ""


def parse_params(data: Any, source: str = "params") -> Params:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing params file: {path}")
    return parse_params(read_yaml(path), str(path))


def read_yaml(path: Path) -> Any:
    """A YAML file parsed as DVC parses params and dvc.yaml (ruamel.yaml, safe, YAML 1.2): a key given twice
    is an error here too, so `expertlab check` never accepts a file `dvc repro` refuses."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return YAML(typ="safe").load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(err.problem or err.context or "invalid YAML").split())
        if isinstance(err, DuplicateKeyError):
            key = re.search(r'duplicate key "(.*?)"', problem)
            problem = f"the key {key.group(1) if key else ''!r} is given twice in one mapping"
        elif err.context and err.context_mark is not None and err.problem:
            problem += f" ({err.context} begun on line {err.context_mark.line + 1})"
        raise ParamsError(f"{where}: not valid YAML as DVC reads it: {problem}") from None
    except YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None

"""Summary outputs and their reference summaries -> BERTScore F1 and the study's unstemmed ROUGE-L, one value per sample."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expertlab.metrics import Row, batch_metric, metric
from expertlab.params import BERTScore, default

if TYPE_CHECKING:
    from bert_score import BERTScorer


@dataclass(frozen=True)
class BERTScoreConfig:
    """The encoder behind `bertscore`, from options["bertscore"]; the defaults are the study's (HF evaluate, lang="en")."""

    model: str = default(BERTScore, "model")
    num_layers: int | None = None  # None: bert_score's tuned layer for a known model (roberta-large: 17)
    batch_size: int = default(BERTScore, "batch_size")
    idf: bool = False  # idf weights from the task's references, as bert_score.score computes them
    device: str | None = None  # None: cuda when available, else cpu

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BERTScoreConfig:
        """The config in options["bertscore"]; an unknown key or an unknown model without num_layers is an error."""
        values = dict(options.get("bertscore") or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"options.bertscore: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        config = cls(**values)
        if config.num_layers is None:
            from bert_score.utils import model2layers

            if config.model not in model2layers:
                raise ValueError(f"options.bertscore: num_layers is required for model {config.model!r}")
            config = dataclasses.replace(config, num_layers=model2layers[config.model])
        return config


# Loading the encoder dominates scoring time: once per process and configuration.
@functools.cache
def _scorer(config: BERTScoreConfig) -> BERTScorer:
    from bert_score import BERTScorer

    return BERTScorer(model_type=config.model, num_layers=config.num_layers, idf=config.idf, device=config.device)


@batch_metric("bertscore")
def bertscore(outputs: Sequence[str], rows: Sequence[Row], options: Mapping[str, Any]) -> list[float]:
    """BERTScore F1 of each output against its target (Zhang et al., 2020), without baseline rescaling; 0 for empty text."""
    config = BERTScoreConfig.from_options(options)
    targets = [row["target"] for row in rows]
    # bert_score scores an empty side as 0 but, under transformers 5, crashes encoding it: score only the others.
    scored = [index for index, (output, target) in enumerate(zip(outputs, targets)) if output.strip() and target.strip()]
    values = [0.0] * len(outputs)
    if not scored:
        return values
    scorer = _scorer(config)
    if config.idf:
        with warnings.catch_warnings():  # the cached scorer warns that it replaces the previous task's weights
            warnings.simplefilter("ignore")
            scorer.compute_idf(targets)
    _, _, f1 = scorer.score([outputs[i] for i in scored], [targets[i] for i in scored], batch_size=config.batch_size)
    for index, value in zip(scored, f1.tolist()):
        values[index] = float(value)
    return values


@functools.cache
def _unstemmed_rouge_l_scorer():  # noqa: ANN202
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


@metric("rouge_l_unstemmed")
def rouge_l_unstemmed(output: str, item: Row) -> float:
    """ROUGE-L F-measure without stemming: the study's summary ROUGE-L (HF evaluate's `rouge` defaults)."""
    return float(_unstemmed_rouge_l_scorer().score(item["target"], output)["rougeL"].fmeasure)

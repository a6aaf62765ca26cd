"""A variant's identity: the typed record of a model as evaluated, created where the grid is expanded.

A variant is the source model, one pruned variant of it (calibration, seed, criterion, ratio), a pruned
variant quantized by a scheme, or a variant fine-tuned by a strategy at a seed (the second study's: its base is
the source model; a pruned base is expressible, and so prune-then-finetune). Its id and its place in the layout are computed here and nowhere else;
every artifact after the grid refers to a variant by this id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from expertlab.errors import UnknownName

if TYPE_CHECKING:
    from expertlab.params import Finetune, Study

Kind = Literal["source", "pruned", "quantized", "finetuned"]
PRUNING_FIELDS = ("calibration", "seed", "criterion", "ratio")
FINETUNING_FIELDS = ("finetune", "finetune_seed")
SOURCE_TAG = "source"  # the source model's place among its variants: `<model>/source`


class Variant(BaseModel):
    """Who a model is: its fields fix its kind, its id and its paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    calibration: str | None = None
    seed: int | None = Field(default=None, ge=0)
    criterion: str | None = None
    ratio: float | None = Field(default=None, gt=0, lt=1)
    quantization: str | None = None
    finetune: str | None = None  # the fine-tuning strategy (finetune.strategies)
    finetune_seed: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Variant:
        given = [name for name in PRUNING_FIELDS if getattr(self, name) is not None]
        if given and len(given) != len(PRUNING_FIELDS):
            missing = [name for name in PRUNING_FIELDS if name not in given]
            raise ValueError(f"a pruned variant needs {', '.join(PRUNING_FIELDS)}; missing {', '.join(missing)}")
        if self.quantization is not None and not given:
            raise ValueError("only a pruned variant is quantized: give its calibration, seed, criterion and ratio")
        if (self.finetune is None) != (self.finetune_seed is None):
            raise ValueError("a fine-tuned variant needs finetune and finetune_seed")
        if self.finetune is not None and self.quantization is not None:
            raise ValueError("a quantized variant is not fine-tuned (quantize after fine-tuning is not built)")
        return self

    @property
    def kind(self) -> Kind:
        if self.finetune is not None:
            return "finetuned"
        if self.criterion is None:
            return "source"
        return "pruned" if self.quantization is None else "quantized"

    def _parts(self) -> list[str]:
        """What the id and the path are made of: the model, then `source` or the pruning fields."""
        if self.criterion is None:
            return [self.model, SOURCE_TAG]
        return [self.model, str(self.calibration), str(self.seed), str(self.criterion), str(float(self.ratio))]  # type: ignore[arg-type]

    def _suffix(self) -> str | None:
        """What follows the base: the scheme of a quantized variant, `ft-<strategy>-<seed>` of a fine-tuned one."""
        if self.finetune is not None:
            return f"ft-{self.finetune}-{self.finetune_seed}"
        return self.quantization

    @property
    def id(self) -> str:
        """`model:source`, `model:calibration:seed:criterion:ratio`, or either followed by `:scheme` (quantized) or
        `:ft-strategy-seed` (fine-tuned)."""
        base, suffix = ":".join(self._parts()), self._suffix()
        return base if suffix is None else f"{base}:{suffix}"

    @property
    def path(self) -> str:
        """Its place below an artifact root: `model/source`, `model/calibration/seed/criterion/ratio`, or either
        followed by `-scheme` or `-ft-strategy-seed` (a sibling of its base's directory, never inside it)."""
        base, suffix = "/".join(self._parts()), self._suffix()
        return base if suffix is None else f"{base}-{suffix}"

    @property
    def source(self) -> Variant:
        """The unpruned model this variant came from."""
        return Variant(model=self.model)

    @property
    def base(self) -> Variant:
        """The variant a fine-tuned one was fine-tuned from (itself when it is not fine-tuned)."""
        return self.model_copy(update={"finetune": None, "finetune_seed": None})

    @property
    def pruned(self) -> Variant:
        """The pruned variant a quantized one was quantized from (itself when it is not quantized)."""
        return self.model_copy(update={"quantization": None})

    def record(self, kept_per_layer: int | None, top_k: int | None) -> dict[str, Any]:
        """The variant as artifacts carry it: its id, its fields and the expert counts it routes with."""
        record: dict[str, Any] = {
            "variant_id": self.id,
            "model": self.model,
            **{name: getattr(self, name) for name in PRUNING_FIELDS},
            "kept_per_layer": kept_per_layer,
            "top_k": top_k,
            "quantization": self.quantization,
            "finetune": self.finetune,
            "finetune_seed": self.finetune_seed,
        }
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], where: object) -> Variant:
        """The variant a record names, failing (naming `where`) when its id does not match its fields."""
        try:
            return cls.of_record(record)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> Variant:
        """The variant a record names; a ValueError when it names none or its id does not match its fields."""
        fields = {name: record.get(name) for name in ("model", *PRUNING_FIELDS, "quantization", *FINETUNING_FIELDS)}
        try:
            variant = cls(**fields)
        except ValueError as err:
            raise ValueError(f"not a variant record ({' '.join(str(err).split())})") from None
        if record.get("variant_id") != variant.id:
            raise ValueError(f"variant_id {record.get('variant_id')!r} does not match its fields ({variant.id!r})")
        return variant


def study_variants(study: Study) -> list[Variant]:
    """The grid expanded: every source model, every pruned variant (the grid's, then study.compare's), every
    quantized one, in that order."""
    sources = [Variant(model=model) for model in study.models]
    runs = [(model, cal, seed) for model in study.models for cal in study.calibrations for seed in study.seeds]
    pruned = [
        Variant(model=model, calibration=cal, seed=seed, criterion=criterion, ratio=ratio)
        for model, cal, seed in runs
        for criterion in study.criteria
        for ratio in study.ratios
    ]
    compare = study.compare
    compared = [
        Variant(model=model, calibration=cal, seed=seed, criterion=criterion, ratio=ratio)
        for model in compare.models
        for cal in compare.calibrations
        for seed in study.seeds
        for criterion in compare.criteria
        for ratio in compare.ratios
    ]
    grid = study.quantize
    quantized = [
        Variant(model=model, calibration=cal, seed=seed, criterion=criterion, ratio=ratio, quantization=scheme)
        for model, cal, seed in runs
        if model in grid.models
        for criterion in grid.criteria
        for ratio in grid.ratios
        for scheme in grid.schemes
    ]
    return sources + pruned + compared + quantized


def finetuned_variants(finetune: Finetune) -> list[Variant]:
    """The second study's fine-tuned variants: each model of finetune.models by each strategy at each seed."""
    return [
        Variant(model=model, finetune=strategy, finetune_seed=seed)
        for model in finetune.models
        for strategy in finetune.strategies
        for seed in finetune.seeds
    ]


def find_variant(study: Study, variant_id: str) -> Variant:
    """The grid's variant of this id; an unknown id fails listing close ones."""
    import difflib

    variants = {variant.id: variant for variant in study_variants(study)}
    if variant_id in variants:
        return variants[variant_id]
    close = difflib.get_close_matches(variant_id, variants, n=3)
    hint = f"; close: {', '.join(close)}" if close else ""
    raise UnknownName(f"variant {variant_id!r} is not in the study's grid (study in params){hint}")

"""The files stages write for the store, declared once: a column map per data file, a pydantic model per meta.json.

A column map names each column's type in the store (`integer`, `double`, `varchar[]`, an enum such as
`criterion`). Writers build their parquet schemas from it, ingest checks a file's columns against it and
inserts by column name, and schema/expertlab.sql takes the same columns through `{{ columns: <name> }}`,
so a column is typed in one place, as sqlite-utils' single type map drives all its DDL. A meta.json is
validated by its model (`extra="forbid"`), so a misspelt or missing key fails naming the file and the key.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from expertlab.errors import validation_problems
from expertlab.registry import Registry
from expertlab.variants import Variant

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

# --- column maps ---------------------------------------------------------------------------------

_ARROW_TYPES = {"integer": "int32", "bigint": "int64", "double": "float64", "boolean": "bool_"}


@dataclass(frozen=True)
class Columns:
    """One data file's columns in order, each with its store type; `nullable` may hold nulls."""

    columns: dict[str, str]
    nullable: frozenset[str] = frozenset()

    def names(self) -> list[str]:
        return list(self.columns)

    def arrow_schema(self) -> pa.Schema:
        """The parquet schema writers use: enums and JSON as strings, `x[]` as a list of x."""
        import pyarrow as pa

        def arrow(sql_type: str) -> pa.DataType:
            if sql_type.endswith("[]"):
                return pa.list_(arrow(sql_type[:-2]))
            return getattr(pa, _ARROW_TYPES.get(sql_type, "string"))()

        return pa.schema([pa.field(name, arrow(kind), nullable=name in self.nullable) for name, kind in self.columns.items()])

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows (dicts holding exactly these columns) as an arrow table of this schema."""
        import pyarrow as pa

        for number, row in enumerate(rows):
            if set(row) != set(self.columns):
                raise ValueError(f"row {number}: columns {sorted(row)}, expected {sorted(self.columns)}")
        return pa.Table.from_pylist(rows, schema=self.arrow_schema())

    def write(self, path: str | Path, rows: Any) -> pa.Table:
        """Rows (a list of dicts, or a pandas frame holding exactly these columns) as a parquet file; returns
        the table written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(rows, list):
            table = self.table(rows)
        else:
            if sorted(rows.columns) != sorted(self.columns):
                raise ValueError(f"columns {sorted(rows.columns)}, expected {sorted(self.columns)}")
            table = pa.Table.from_pandas(rows[self.names()], schema=self.arrow_schema(), preserve_index=False)
        pq.write_table(table, path)
        return table

    def read(self, path: str | Path) -> Any:
        """A parquet file of exactly these columns as a pandas frame, or an error naming the file."""
        import pandas as pd
        import pyarrow

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"missing file: {path}")
        try:
            frame = pd.read_parquet(path)
        except (OSError, pyarrow.ArrowException) as err:
            raise ValueError(f"{path}: not a readable parquet file ({err})") from None
        if sorted(frame.columns) != sorted(self.columns):
            raise ValueError(f"{path}: expected columns {sorted(self.columns)}, found {sorted(frame.columns)}")
        return frame[self.names()]

    def ddl(self) -> str:
        """The columns as lines of a `create table` (for schema/expertlab.sql)."""
        return ",\n    ".join(
            f"{name} {kind}" + ("" if name in self.nullable else " not null") for name, kind in self.columns.items()
        )

    def casts(self) -> str:
        """A select list casting each column to its store type, by name."""
        return ", ".join(f"cast({name} as {kind}) as {name}" for name, kind in self.columns.items())

    def check_parquet(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        """Fail naming the file unless its columns are exactly these."""
        import duckdb

        if not path.is_file():
            raise FileNotFoundError(f"missing file: {path}")
        try:
            found = [row[0] for row in con.execute("describe select * from read_parquet(?)", [str(path)]).fetchall()]
        except duckdb.Error as err:
            raise ValueError(f"{path}: not a readable parquet file ({err})") from None
        if sorted(found) != sorted(self.columns):
            raise ValueError(f"{path}: expected columns {sorted(self.columns)}, found {sorted(found)}")


# Every column map the store reads, by the name schema/expertlab.sql gives it in `{{ columns: <name> }}`.
COLUMNS: Registry[Columns] = Registry("column map")

EXPERT_STATS = COLUMNS.add(
    "expert_stats",
    Columns({
        "layer": "integer",
        "expert": "integer",
        "tokens": "bigint",
        "routed_count": "bigint",
        "gate_sum": "double",
        "ean_sum": "double",
        "weighted_norm_sum": "double",
        "easy_ep_sum": "double",
    }),
)  # fmt: skip
EXPERT_SCORES = COLUMNS.add(
    "expert_scores", Columns({"criterion": "criterion", "layer": "integer", "expert": "integer", "score": "double"})
)
PART_SCORES = COLUMNS.add(  # a combined calibration's selection: each part's own scores, which expert_scores averages
    "part_scores", Columns({"part": "varchar", **EXPERT_SCORES.columns})
)
SAMPLE_SCORES = COLUMNS.add(
    "sample_scores", Columns({"task": "varchar", "sample_id": "varchar", "metric": "varchar", "value": "double"})
)
CORPUS_SCORES = COLUMNS.add(
    "corpus_scores", Columns({"task": "varchar", "metric": "varchar", "value": "double", "n": "bigint"})
)
GENERATIONS = COLUMNS.add(
    "generations",
    Columns(
        {"task": "varchar", "sample_id": "varchar", "prompt": "varchar", "output": "varchar", "target": "varchar",
         "choices": "varchar[]"},
        nullable=frozenset({"choices"}),
    ),
)  # fmt: skip
# judgments.parquet: every column of the judgments table but judgment_set (the artifact's name)
JUDGMENTS = COLUMNS.add(
    "judgments",
    Columns(
        {
            "judge": "varchar",
            "judge_kind": "judge_kind",
            "protocol": "protocol",
            "question": "judgment_question",
            "task": "varchar",
            "sample_id": "varchar",
            "variant_id": "varchar",
            "output": "judged_output",
            "label": "judgment_label",
            "status": "judgment_status",
            "raw": "json",
        },
        nullable=frozenset({"label"}),
    ),
)

# --- meta.json records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """A field's store type where the default for its Python type is not the one (e.g. bigint for an int)."""

    type: str


_SQL_TYPES: dict[Any, str] = {int: "integer", str: "varchar", float: "double", bool: "boolean"}


def _sql_type(annotation: Any, metadata: list[Any]) -> str:
    for item in metadata:
        if isinstance(item, Sql):
            return item.type
    if typing.get_origin(annotation) is list:
        return _sql_type(typing.get_args(annotation)[0], []) + "[]"
    return _SQL_TYPES[annotation]


class Record(BaseModel):
    """A meta.json: every key declared, none other accepted; a bool is no int and a string no number."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def columns_of(model: type[BaseModel], names: list[str]) -> Columns:
    """The named fields of a record as store columns (an optional field may hold nulls)."""
    columns, nullable = {}, set()
    for name in names:
        field = model.model_fields[name]
        annotation = field.annotation
        if typing.get_origin(annotation) in (Union, types.UnionType):
            nullable.add(name)
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        columns[name] = _sql_type(annotation, field.metadata)
    return Columns(columns, frozenset(nullable))


class VariantRecord(Record):
    """A variant as artifacts carry it: its id, its fields and the expert counts it routes with."""

    variant_id: str
    model: str
    calibration: str | None
    seed: int | None
    criterion: str | None
    ratio: float | None
    kept_per_layer: int | None
    top_k: int | None
    quantization: str | None = None  # absent from records written before quantized variants
    finetune: str | None = None  # absent from records written before fine-tuned variants
    finetune_seed: int | None = None

    @model_validator(mode="after")
    def _id_matches(self) -> VariantRecord:
        Variant.of_record(self.model_dump())
        return self

    @property
    def identity(self) -> Variant:
        return Variant.of_record(self.model_dump())

    @classmethod
    def of(cls, variant: Variant, kept_per_layer: int | None, top_k: int | None) -> VariantRecord:
        return cls(**variant.record(kept_per_layer, top_k))


class CheckpointRecord(VariantRecord):
    """expertlab_variant.json in a pruned or quantized checkpoint: the variant and where its weights came from."""

    source_model_dir: str
    source_num_experts: int
    dropped_tensors: int
    quantized_from: str | None = None  # the pruned checkpoint a quantized one was made from
    finetuned_from: str | None = None  # the model directory a fine-tuned one was trained from

    def variant_record(self) -> VariantRecord:
        return VariantRecord(**self.model_dump(include=set(VariantRecord.model_fields)))


ORIGINS = ("expertlab", "imported")  # who selected a variant's experts (selection meta.json `origin`)
Origin = Literal["expertlab", "imported"]


class SelectedVariant(VariantRecord):
    """A variant record that says who chose its kept experts (a selection's, an import's)."""

    origin: Origin


class ObservationMeta(Record):
    """observations/<model>/<calibration>/<seed>/meta.json: the run, the model's routing, what was observed."""

    kind: Literal["observation"] = "observation"
    model: str
    calibration: str
    seed: int
    model_type: str
    num_experts: int
    top_k: int
    n_group: int = 1
    moe_layers: list[int]
    samples: int
    tokens: Annotated[int, Sql("bigint")]
    batch_size: int | None = None
    max_length: int | None = None


OBSERVATIONS = COLUMNS.add(
    "observations",
    columns_of(ObservationMeta, ["model", "calibration", "seed", "model_type", "num_experts", "top_k", "n_group",
                                 "moe_layers", "samples", "tokens"]),
)  # fmt: skip


class MaskEntry(Record):
    """One mask of a selection: which criterion and ratio, its file, the counts the pruned model keeps."""

    criterion: str
    ratio: float
    file: str
    kept_per_layer: int
    top_k: int | None  # None: imported masks do not know the model's top-k
    expected_kept_per_layer: int | None = None  # imported: what round((1 - ratio) * E) gives
    source: str | None = None  # imported: the file the mask came from


class SelectionMeta(Record):
    """masks/<model>/<calibration>/<seed>/meta.json: the observation's routing and every mask's entry."""

    kind: Literal["selection"] = "selection"
    origin: Origin = "expertlab"
    model: str
    calibration: str
    parts: list[str] = []  # a combined calibration's parts (their scores in part_scores.parquet); empty for one set
    seed: int
    random_seed: int | None = None
    moe_layers: list[int]
    num_experts: int
    top_k: int | None
    masks: list[MaskEntry]

    def variant_records(self) -> list[SelectedVariant]:
        return [
            SelectedVariant(
                **Variant(model=self.model, calibration=self.calibration, seed=self.seed, criterion=mask.criterion,
                          ratio=mask.ratio).record(mask.kept_per_layer, mask.top_k),
                origin=self.origin,
            )
            for mask in self.masks
        ]  # fmt: skip


class EvaluationMeta(Record):
    """What an evaluation artifact is about: one variant, and one task group of it (all its tasks without)."""

    variant: VariantRecord
    group: str = ""
    tasks: list[str] | None = None

    @model_validator(mode="after")
    def _group_lists_tasks(self) -> EvaluationMeta:
        if self.group and self.tasks is None:
            raise ValueError(f"an artifact of task group {self.group!r} must list its tasks")
        return self

    @property
    def identity(self) -> str:
        """variant_id, or variant_id/group for the artifact of one task group."""
        vid = self.variant.variant_id
        return f"{vid}/{self.group}" if self.group else vid

    @property
    def covered_tasks(self) -> list[str] | None:
        """The tasks the artifact covers; None: every task of its variant."""
        return list(self.tasks or []) if self.group else None


class GenerationsMeta(EvaluationMeta):
    """generations/<variant path>/<group>/meta.json."""

    kind: Literal["generations"] = "generations"
    backend: str | None = None
    max_new_tokens: dict[str, int] = Field(default_factory=dict)  # each task's budget as generated
    max_model_len: dict[str, int] = Field(default_factory=dict)  # each task's context (prompt + output) as generated
    options: dict[str, Any] = Field(default_factory=dict)


class ScoresMeta(EvaluationMeta):
    """scores/<variant path>/<group>/meta.json."""

    kind: Literal["scores"] = "scores"


class JudgmentsMeta(Record):
    """judgments/<variant path>/<group>/meta.json (the judge stage) or imported/judgments/<name>/meta.json."""

    kind: Literal["judgments"] = "judgments"
    name: str
    format: str | None = None
    source: str | None = None  # imported: the file the verdicts came from
    variants: list[SelectedVariant | VariantRecord]  # every variant a row judges (imported ones: origin imported)
    group: str = ""
    tasks: list[str] | None = None
    items: int | None = None
    judges: list[str] | None = None
    protocols: list[str] | None = None
    costs: dict[str, dict[str, Any]] | None = None

    @field_validator("name")
    @classmethod
    def _named(cls, name: str) -> str:
        if not name:
            raise ValueError("must not be empty")
        return name


class TaskItemsMeta(Record):
    """data/tasks/<group>/meta.json: a task group's item counts, where they came from, each task's resolved options."""

    kind: Literal["task_items"] = "task_items"
    group: str
    items: dict[str, int]
    sources: dict[str, str]  # task -> the local copy of its official files (toy tasks: none)
    options: dict[str, dict[str, Any]]
    # task -> its generation budget and context as the registry declares them: they travel with the items, so a
    # change to either in a task's code re-runs that group's generate stages (which depend on these files)
    max_new_tokens: dict[str, int] = {}
    max_model_len: dict[str, int] = {}


# --- the second study (paper 001): activation records and expert samples --------------------------


class ActivationsMeta(Record):
    """monosemanticity/<model>/top_k/<native|K>/activations/meta.json: the corpus read, the windows cut, the routing recorded."""

    kind: Literal["activations"] = "activations"
    model: str
    seed: int  # the corpus calibration sets' seed
    corpus: dict[str, str]  # domain -> calibration set
    window_tokens: int  # tokens per window (monosemanticity.window)
    model_type: str
    num_experts: int
    top_k: int  # experts each token was routed to in this pass
    native_top_k: int  # the model's own; top_k differs when the pass re-observed it with top-k changed
    moe_layers: list[int]
    documents: int
    windows: Annotated[int, Sql("bigint")]
    tokens: dict[str, int]  # domain -> tokens read (every window's tokens)
    batch_size: int
    max_length: int


ACTIVATION_RUNS = COLUMNS.add(
    "activation_runs",
    columns_of(ActivationsMeta, ["model", "top_k", "native_top_k", "seed", "window_tokens", "model_type", "num_experts",
                                 "moe_layers", "documents", "windows"]),
)  # fmt: skip
ACTIVATION_WINDOWS = COLUMNS.add(
    "activation_windows",
    Columns({
        "window_id": "bigint",
        "domain": "varchar",
        "document": "integer",
        "start": "integer",
        "tokens": "integer",
        "token_texts": "varchar[]",
    }),
)  # fmt: skip
ACTIVATIONS = COLUMNS.add(
    "activations",
    Columns({
        "layer": "integer",
        "expert": "integer",
        "window_id": "bigint",
        "routed_tokens": "integer",
        "max_weight": "double",
        "positions": "integer[]",
    }),
)  # fmt: skip


class ExpertSamplesMeta(Record):
    """monosemanticity/<model>/top_k/<native|K>/samples/meta.json: what was sampled from which activation records, and how."""

    kind: Literal["expert_samples"] = "expert_samples"
    model: str
    top_k: int  # the activation records' experts per token
    seed: int
    scopes: list[str]  # `all` and the target domains
    explain_examples: int
    test_examples: int
    negatives: int
    test_sampling: str
    quantiles: int
    experts_short: int  # (scope, layer, expert) rows whose counts fell short of what was asked


EXPERT_SAMPLES = COLUMNS.add(
    "expert_samples",
    Columns({
        "scope": "varchar",
        "layer": "integer",
        "expert": "integer",
        "role": "varchar",
        "window_id": "bigint",
        "routed": "boolean",
        "activation": "double",
        "rank": "integer",
    }),
)  # fmt: skip
SAMPLE_COUNTS = COLUMNS.add(
    "sample_counts",
    Columns(
        {
            "scope": "varchar",
            "layer": "integer",
            "expert": "integer",
            "routed_windows": "bigint",
            "unrouted_windows": "bigint",
            "explain": "integer",
            "test_positives": "integer",
            "test_negatives": "integer",
            "shortfall": "varchar",
        },
        nullable=frozenset({"shortfall"}),
    ),
)


class AskedMeta(Record):
    """What asking an explainer or predictor cost: prompts, answers from the cache, calls billed, invalid answers."""

    prompts: int
    cache_hits: int
    billed: int
    requests: int
    invalid: int
    prompt_tokens: Annotated[int, Sql("bigint")]
    completion_tokens: Annotated[int, Sql("bigint")]


class ExplanationsMeta(Record):
    """monosemanticity/<model>/top_k/<native|K>/explanations/<explainer>/meta.json: who explained, with which domain
    prompts, at what cost."""

    kind: Literal["explanations"] = "explanations"
    model: str
    top_k: int  # the activation records' experts per token
    explainer: str  # `offline` or a judge name
    explainer_model: str | None  # provider:model of an LLM explainer
    domain_prompts: dict[str, str]
    asked: AskedMeta


EXPLANATIONS = COLUMNS.add(
    "explanations",
    Columns(
        {"scope": "varchar", "layer": "integer", "expert": "integer", "explanation": "varchar", "status": "varchar",
         "raw": "varchar"},
        nullable=frozenset({"explanation", "raw"}),
    ),
)  # fmt: skip


class PredictionsMeta(Record):
    """monosemanticity/<model>/top_k/<native|K>/predictions/<explainer>/meta.json: who predicted from which
    explanations, at what cost."""

    kind: Literal["predictions"] = "predictions"
    model: str
    top_k: int  # the activation records' experts per token
    explainer: str
    predictor: str
    predictor_model: str | None
    examples_per_prompt: int
    asked: AskedMeta


PREDICTIONS = COLUMNS.add(
    "predictions",
    Columns(
        {"scope": "varchar", "layer": "integer", "expert": "integer", "window_id": "bigint", "part": "integer",
         "predicted": "boolean", "status": "varchar"},
        nullable=frozenset({"predicted"}),
    ),
)  # fmt: skip



class ExpertSelectionsMeta(Record):
    """monosemanticity/<model>/selection/meta.json: the experts the selective strategies train, from whose scores."""

    kind: Literal["expert_selections"] = "expert_selections"
    model: str
    explainer: str  # whose explanations and predictions gave EDMS
    predictor: str
    domain: str  # the target domain d of AF^(d) and EDMRS^(d)
    layers: str  # all, or best_lds
    experts_per_layer: int  # m
    chosen_layers: list[int]  # the layers whose experts train
    short: int  # (strategy, layer) pairs with fewer than m scored experts


EXPERT_SELECTION_RUNS = COLUMNS.add(
    "expert_selection_runs",
    columns_of(ExpertSelectionsMeta, ["model", "explainer", "predictor", "domain", "layers", "experts_per_layer",
                                      "chosen_layers", "short"]),
)  # fmt: skip
EXPERT_SELECTIONS = COLUMNS.add(
    "expert_selections",
    Columns({"strategy": "varchar", "layer": "integer", "rank": "integer", "expert": "integer", "score": "double"}),
)


M = TypeVar("M", bound=Record)


def format_error(err: ValidationError, where: object) -> str:
    """`where: key.path: problem; ...` for the problems of a record, each bad value shown."""
    return f"{where}: " + "; ".join(validation_problems(err, missing_key="missing key", show_input=True))


def parse_meta(data: Any, model: type[M], where: object) -> M:
    """A meta.json's parsed contents as its record, or an error naming `where` and every bad key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValueError(format_error(err, where)) from None


def read_meta(directory: str | Path, model: type[M]) -> M:
    """An artifact's meta.json as its record: of the model's kind, every key declared."""
    from expertlab.io import read_json

    path = Path(directory) / "meta.json"
    data = read_json(path)
    kind = model.model_fields["kind"].default
    if isinstance(data, dict) and data.get("kind") != kind:
        raise ValueError(f"{path}: kind is {data.get('kind')!r}, expected {kind!r} (is {directory} the right directory?)")
    return parse_meta(data, model, path)

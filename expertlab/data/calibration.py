"""A calibration's source + seed -> its calibration set: `samples` records drawn deterministically by seed.

Sources (params `calibrations.<name>.source`, one registry entry each):
- `toy`: the toy world's pools of the named domains (data/toy/pools), drawn with random.Random(seed);
- `medinst`: MedINST32's training split from a local copy of the hub dataset aialt/MedINST32, the
  paper's 128 random training demonstrations (§4): the files of config `unseen_train_100k` shuffled by
  `datasets` with the seed and the first `samples` taken, as the study's calibration.py loads them;
- `dolci`: Dolci-Instruct-SFT-No-Tools (the paper's general-domain calibration, §6 footnote 4) from a
  local copy of allenai/Dolci-Instruct-SFT-No-Tools: its parquet shards streamed, shuffled by `datasets`
  with the seed in a buffer of 10,000 and the first `samples` taken, as the study's calibration.py does;
- `jsonl`: any JSONL file of {"text": ...} or {"messages": [...]} lines, drawn with random.Random(seed).

A record of a set is {"text": ...} (text as it is fed to the model) or {"messages": [...]} (a chat, rendered
by the observed model's own chat template when it is observed, as the study's format_chat_with_tokenizer
renders it: no generation prompt, thinking off, GPT-OSS at low reasoning effort). MedINST records become
the study's chat: the instruction (with "\\n\\nInput: " and the input when there is one) as the user turn
and the output as the assistant turn; the study's formatter does not use a record's `history`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from expertlab.registry import Registry
from expertlab.tasks import DOMAINS

if TYPE_CHECKING:
    from expertlab.params import Evaluation

Record = dict[str, Any]
MEDINST_TRAIN = "unseen_train_100k"  # the hub config the study's calibration.py loads
DOLCI_BUFFER = 10_000  # the study's streaming shuffle buffer


class CalibrationError(ValueError):
    """A calibration source is missing or malformed; the message names the calibration, the path and the format."""


class SourceMissing(CalibrationError):
    """A calibration source's files are not there (yet)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: int = Field(gt=0)


class ToyCalibration(_Spec):
    source: Literal["toy"]
    domains: list[str] = Field(min_length=1)

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if domain not in DOMAINS:
                raise ValueError(f"unknown domain {domain!r}; allowed: {', '.join(DOMAINS)}")
        for position, domain in enumerate(value):
            if domain in value[:position]:
                raise ValueError(f"{domain!r} is listed twice; every entry must be distinct")
        return value


class MedinstCalibration(_Spec):
    source: Literal["medinst"]
    subset: str = MEDINST_TRAIN  # the directory of the local copy holding the split's files


class DolciCalibration(_Spec):
    source: Literal["dolci"]
    buffer_size: int = Field(default=DOLCI_BUFFER, gt=0)


class JsonlCalibration(_Spec):
    source: Literal["jsonl"]
    path: str  # relative to evaluation.data_dir (tracked by DVC there), or absolute


@dataclass(frozen=True)
class Source:
    spec: type[_Spec]
    files: Callable[[Any, Path], list[Path]]  # (spec, location) -> the files it reads, or CalibrationError
    draw: Callable[[Any, list[Path], int], list[Record]]  # (spec, files, seed) -> records
    expected: str  # what a user must put where, for error messages (formatted with the spec's fields)
    local_copy: bool = False  # found as tasks find theirs: evaluation.sources.<source>, or <evaluation.data_dir>/<source>
    first: Callable[[list[Path]], Any] | None = None  # reads one record cheaply, for `expertlab check`


SOURCES: Registry[Source] = Registry("calibration source")


def location(spec: Any, evaluation: Evaluation, toy_pools: Path) -> Path:
    """Where a calibration's source lives: the toy pools, a source's local copy (as tasks find theirs), or a file."""
    if SOURCES[spec.source].local_copy:
        return evaluation.source_dir(spec.source)
    if spec.source == "jsonl":
        path = Path(spec.path)
        return path if path.is_absolute() else Path(evaluation.data_dir) / path
    return toy_pools


def local_copies() -> list[str]:
    """The sources read from a local copy of their official files."""
    return [name for name, entry in SOURCES.items() if entry.local_copy]


def check_source(name: str, spec: Any, where: Path) -> None:
    """The source's files are there and their first record has the expected format (cheap: `expertlab check`)."""
    entry = SOURCES[spec.source]
    files = source_files(name, spec, where)
    if entry.first is not None:
        try:
            entry.first(files)
        except (ValueError, KeyError, TypeError, OSError) as err:
            raise CalibrationError(
                f"calibration {name!r} (source {spec.source}): {files[0]}: {' '.join(str(err).split())}; "
                f"expected {entry.expected.format(**spec.model_dump())}"
            ) from None


def source_files(name: str, spec: Any, where: Path) -> list[Path]:
    """The files calibration `name` reads, or a CalibrationError naming it, the path and the expected format."""
    entry = SOURCES[spec.source]
    files = entry.files(spec, where)
    if not files:
        expected = entry.expected.format(**spec.model_dump())
        raise SourceMissing(f"calibration {name!r} (source {spec.source}): nothing at {where}; expected {expected}")
    return files


def draw(name: str, spec: Any, where: Path, seed: int) -> list[Record]:
    """Calibration `name`'s set under `seed`: exactly `samples` records, or a CalibrationError."""
    records = SOURCES[spec.source].draw(spec, source_files(name, spec, where), seed)
    if len(records) < spec.samples:
        raise CalibrationError(
            f"calibration {name!r}: {spec.samples} samples requested, its source at {where} holds {len(records)}"
        )
    return [as_record(record, f"calibration {name!r} (source {spec.source}), record {i}") for i, record in enumerate(records)]


def as_record(row: Any, where: str) -> Record:
    """A line as a set's record: {"text": non-empty string} or {"messages": [{role, content}, ...]}; other keys are dropped."""
    if isinstance(row, dict) and isinstance(row.get("text"), str) and "messages" not in row:
        if not row["text"].strip():
            raise CalibrationError(f'{where}: the "text" is empty; a calibration sample must hold tokens')
        return {"text": row["text"]}
    messages = row.get("messages") if isinstance(row, dict) and "text" not in row else None
    if (
        isinstance(messages, list) and messages
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages)
    ):  # fmt: skip
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    raise CalibrationError(
        f'{where}: expected {{"text": string}} or {{"messages": [{{"role", "content"}}, ...]}}, got {str(row)[:200]}'
    )


def render(record: Record, tokenizer: Any, model_type: str) -> str:
    """A set's record as the text the model reads: a chat through the model's own chat template."""
    if "text" in record:
        return record["text"]
    from expertlab.generate import template_kwargs

    return tokenizer.apply_chat_template(
        record["messages"], tokenize=False, add_generation_prompt=False, **template_kwargs(model_type)
    )


# --- toy -----------------------------------------------------------------------------------------


def _toy_files(spec: ToyCalibration, where: Path) -> list[Path]:
    files = [where / f"{domain}.jsonl" for domain in spec.domains]
    return files if all(path.is_file() for path in files) else []


def _toy_draw(spec: ToyCalibration, files: list[Path], seed: int) -> list[Record]:
    from expertlab.io import read_jsonl

    union = [row["text"] for path in files for row in read_jsonl(path)]
    if spec.samples > len(union):
        return [{"text": text} for text in union]  # `draw` names the shortfall
    return [{"text": text} for text in random.Random(seed).sample(union, spec.samples)]


SOURCES.add("toy", Source(ToyCalibration, _toy_files, _toy_draw, "the toy pools of {domains} (built by the prepare stage)"))


# --- MedINST32 -----------------------------------------------------------------------------------


def _json_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.suffix in (".json", ".jsonl")) if directory.is_dir() else []


def _medinst_files(spec: MedinstCalibration, where: Path) -> list[Path]:
    return _json_files(where / spec.subset)


def medinst_messages(record: Record, where: str) -> list[dict[str, str]]:
    """One MedINST32 record as the study's calibration chat (format_chat_with_tokenizer, instruction style)."""
    instruction, given, output = (record.get(key) for key in ("instruction", "input", "output"))
    if not all(isinstance(value, (str, type(None))) for value in (instruction, given, output)) or not (instruction or output):
        raise CalibrationError(f"{where}: expected a MedINST32 record with string instruction, input and output")
    messages = []
    if instruction:
        messages.append({"role": "user", "content": f"{instruction}\n\nInput: {given}" if given else instruction})
    if output:
        messages.append({"role": "assistant", "content": output})
    return messages


def _medinst_draw(spec: MedinstCalibration, files: list[Path], seed: int) -> list[Record]:
    from datasets import Dataset

    from expertlab.tasks.medinst import read_records

    records = [record for path in files for record in read_records(path)]
    # datasets' own shuffle (the permutation depends only on the length and the seed), over the positions
    positions = Dataset.from_dict({"position": range(len(records))}).shuffle(seed=seed)["position"]
    chosen = positions[: spec.samples]
    return [{"messages": medinst_messages(records[i], f"{files[0].parent}: record {i}")} for i in chosen]


def _medinst_first(files: list[Path]) -> None:
    from expertlab.tasks.medinst import read_records

    records = read_records(files[0])
    if not records:
        raise ValueError("no records")
    medinst_messages(records[0], "record 0")


SOURCES.add(
    "medinst",
    Source(
        MedinstCalibration, _medinst_files, _medinst_draw,
        "MedINST32's training files as released ({subset}/*.json or *.jsonl: JSON arrays or lines of records "
        "with instruction, input and output)",
        local_copy=True, first=_medinst_first,
    ),
)  # fmt: skip


# --- Dolci-Instruct-SFT-No-Tools -----------------------------------------------------------------


def _dolci_files(spec: DolciCalibration, where: Path) -> list[Path]:
    directory = where / "data"
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


def _dolci_draw(spec: DolciCalibration, files: list[Path], seed: int) -> list[Record]:
    from datasets import load_dataset

    stream = load_dataset("parquet", data_files={"train": [str(p) for p in files]}, split="train", streaming=True)
    chosen = []
    for row in stream.shuffle(seed=seed, buffer_size=spec.buffer_size).take(spec.samples):
        messages = row.get("messages")
        if not isinstance(messages, list):
            raise CalibrationError(f"{files[0].parent}: a row without a messages list (id {row.get('id')!r})")
        chosen.append({"messages": messages})
    return chosen


def _dolci_first(files: list[Path]) -> None:
    import pyarrow.parquet as pq

    names = pq.read_schema(files[0]).names
    if "messages" not in names:
        raise ValueError(f"no messages column (columns: {', '.join(names)})")


SOURCES.add(
    "dolci",
    Source(
        DolciCalibration, _dolci_files, _dolci_draw,
        "the parquet shards of allenai/Dolci-Instruct-SFT-No-Tools as released (data/*.parquet, rows with messages)",
        local_copy=True, first=_dolci_first,
    ),
)  # fmt: skip


# --- any JSONL -----------------------------------------------------------------------------------


def _jsonl_files(spec: JsonlCalibration, where: Path) -> list[Path]:
    return [where] if where.is_file() else []


def _jsonl_draw(spec: JsonlCalibration, files: list[Path], seed: int) -> list[Record]:
    from expertlab.io import read_jsonl

    records = [as_record(row, f"{files[0]}:{number}") for number, row in enumerate(read_jsonl(files[0]), start=1)]
    if spec.samples > len(records):
        return records
    return random.Random(seed).sample(records, spec.samples)


def _jsonl_first(files: list[Path]) -> None:
    import json

    with files[0].open(encoding="utf-8") as fh:
        row = json.loads(fh.readline())
    if not isinstance(row, dict) or not ({"text", "messages"} & set(row)):
        raise ValueError('the first line has neither "text" nor "messages"')


SOURCES.add(
    "jsonl",
    Source(JsonlCalibration, _jsonl_files, _jsonl_draw, 'a JSONL file of {"text": ...} or {"messages": [...]} lines',
           first=_jsonl_first),
)  # fmt: skip


def write_sets(name: str, spec: Any, where: Path, seeds: list[int], out: Path) -> dict[int, int]:
    """OUT/seed<s>.jsonl for every seed, atomically; returns seed -> records written."""
    from expertlab.io import atomic_dir, write_jsonl
    from expertlab.layout import calibration_set_name

    counts = {}
    with atomic_dir(out, owner="calibrate", inputs=[where]) as tmp:
        for seed in seeds:
            records = draw(name, spec, where, seed)
            write_jsonl(tmp / calibration_set_name(seed), records)
            counts[seed] = len(records)
    return counts


def read_set(path: str | Path) -> list[Record]:
    """A calibration set file's records, each checked; a file of {"text"} lines (a JSONL of texts) is one too."""
    from expertlab.io import read_jsonl

    rows = read_jsonl(path)
    if not rows:
        raise CalibrationError(f"{path}: no calibration texts in it")
    return [as_record(row, f"{path}:{number}") for number, row in enumerate(rows, start=1)]


def rendered_texts(path: str | Path, tokenizer: Any, model_type: str) -> list[str]:
    """A calibration set file as the texts a model reads (chats through its chat template)."""
    return [render(record, tokenizer, model_type) for record in read_set(path)]

"""Bad inputs a user can hand the CLI, each with the culprit its error must name: the test runs them all,
and so does benchmarks/reliability.py, which counts them.

Each case runs in a fresh directory holding `model/` (a tiny Qwen3-MoE), `calib.jsonl`, `params.yaml`
(the project's), an observation `obs/` and its masks `masks/` made by the real stages, a generations
artifact `gen/`, and the files the case writes or damages.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expertlab.records import GenerationsMeta, ObservationMeta, VariantRecord
from expertlab.variants import Variant

ROOT = Path(__file__).resolve().parents[1]
PARAMS = (ROOT / "params.yaml").read_text()


@dataclass(frozen=True)
class BadInput:
    name: str
    argv: list[str]
    culprit: str  # the error line must contain it: a file, key path, line or name
    files: dict[str, str | bytes] = field(default_factory=dict)  # written before the run
    damage: Callable[[Path], None] | None = None  # done to the prepared directory before the run


def _truncate(path: str, keep: float | int) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        data = (root / path).read_bytes()
        (root / path).write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])

    return damage


def _params(old: str, new: str) -> str:
    assert old in PARAMS, old
    return PARAMS.replace(old, new, 1)


def _symlink(link: str, target: str) -> Callable[[Path], None]:
    return lambda root: (root / link).symlink_to(root / target)


OBSERVE = ["observe", "model", "--data", "calib.jsonl", "--out", "obs2"]
PRUNE = ["prune", "model", "--mask", "mask.json", "--out", "pruned"]
SELECT = ["select", "bad-obs", "--ratios", "0.5", "--out", "masks2"]
CHECK = ["check", "--params", "bad.yaml", "--queries", str(ROOT / "queries")]
GOOD_META = json.dumps(
    ObservationMeta(model="model", calibration="toy", seed=0, model_type="qwen3_moe", num_experts=4, top_k=2,
                    moe_layers=[0, 1], samples=1, tokens=8).dump()
)  # fmt: skip

CASES: list[BadInput] = [
    # observe: weights, config, calibration texts, output
    BadInput("truncated weights", OBSERVE, "model/model.safetensors", damage=_truncate("model/model.safetensors", 0.5)),
    BadInput("weights header cut", OBSERVE, "model/model.safetensors", damage=_truncate("model/model.safetensors", 100)),
    BadInput("weights not safetensors", OBSERVE, "model/model.safetensors", files={"model/model.safetensors": b"\x01" * 8}),
    BadInput("config not JSON", OBSERVE, "model/config.json", files={"model/config.json": "{bad"}),
    BadInput("no model", ["observe", "nowhere", "--data", "calib.jsonl", "--out", "o"], "nowhere"),
    BadInput("missing calibration", ["observe", "model", "--data", "missing.jsonl", "--out", "o"], "missing.jsonl"),
    BadInput("empty calibration file", OBSERVE, "calib.jsonl: no calibration texts", files={"calib.jsonl": ""}),
    BadInput("empty calibration text", OBSERVE, "calib.jsonl:2", files={"calib.jsonl": '{"text": "fever"}\n{"text": " "}\n'}),
    BadInput("non-UTF-8 calibration", OBSERVE, "calib.jsonl:1: not UTF-8", files={"calib.jsonl": b'{"text": "caf\xe9"}\n'}),
    BadInput("calibration line not JSON", OBSERVE, "calib.jsonl:2", files={"calib.jsonl": '{"text": "a"}\nnope\n'}),
    BadInput("calibration line an array", OBSERVE, "calib.jsonl:1", files={"calib.jsonl": "[1, 2]\n"}),
    BadInput("calibration without text", OBSERVE, "calib.jsonl:1", files={"calib.jsonl": '{"txt": "a"}\n'}),
    BadInput("observe into the working directory", [*OBSERVE[:-1], "."], "output .: is the working directory"),
    BadInput("observe over the model", [*OBSERVE[:-1], "model"], "output model: is the input model"),
    # select: the observation artifact
    BadInput("observation missing", ["select", "nowhere", "--ratios", "0.5", "--out", "m"], "nowhere/meta.json"),
    BadInput("observation meta not JSON", SELECT, "bad-obs/meta.json", files={"bad-obs/meta.json": "{"}),
    BadInput("observation meta an array", SELECT, "bad-obs/meta.json: expected a JSON object", files={"bad-obs/meta.json": "[]"}),
    BadInput("observation of another kind", SELECT, "bad-obs/meta.json: kind is 'generations'",
             files={"bad-obs/meta.json": '{"kind": "generations"}'}),
    BadInput("observation meta lacks top_k", SELECT, "top_k: missing key", files={"bad-obs/meta.json": '{"kind": "observation"}'}),
    BadInput("statistics missing", SELECT, "bad-obs/expert_stats.parquet", files={"bad-obs/meta.json": GOOD_META}),
    BadInput("statistics not parquet", SELECT, "bad-obs/expert_stats.parquet",
             files={"bad-obs/meta.json": GOOD_META, "bad-obs/expert_stats.parquet": b"PAR1garbage"}),
    BadInput("unknown criterion", ["select", "obs", "--criteria", "reapp", "--ratios", "0.5", "--out", "m"], "'reapp'"),
    BadInput("select over its observation", ["select", "obs", "--ratios", "0.5", "--out", "obs"], "is the input obs"),
    BadInput("select of a run without its seed", ["select", "--study-observations", ".", "--run", "model/biomed",
             "--params", "params.yaml", "--out", "m"], "--study-observations takes --run MODEL/CALIBRATION/SEED"),
    BadInput("select of a calibration the study does not define", ["select", "--study-observations", ".", "--run",
             "model/triple/0", "--params", "params.yaml", "--out", "m"], "'triple' is no calibration of the params"),
    BadInput("select of a study run without the params", ["select", "--study-observations", ".", "--run",
             "model/biomed/0", "--out", "m"], "a calibration named without its files needs --params"),
    BadInput("select of several observations unnamed", ["select", "obs", "obs", "--ratios", "0.5", "--out", "m"],
             "several observations make a combined calibration: name it"),
    # calibrate: the source of a calibration set
    BadInput("calibrate an undefined set", ["calibrate", "--calibration", "medinst", "--out", "c"],
             "calibrations: no calibration set 'medinst' (defined: biomed, general, tool)"),
    BadInput("calibrate from a missing local copy", ["calibrate", "--params", "medinst.yaml", "--calibration", "biomed",
             "--out", "c"], "calibration 'biomed' (source medinst): nothing at data/sources/medinst; expected MedINST32's training "
             "files as released (unseen_train_100k/*.json",
             files={"medinst.yaml": _params("    source: toy\n    domains: [biomedical]\n", "    source: medinst\n")}),
    # prune: the mask and the output
    BadInput("mask an object", PRUNE, "mask.json: a mask is a JSON list", files={"mask.json": '{"layers": [[0, 1]]}'}),
    BadInput("mask not JSON", PRUNE, "mask.json: not valid JSON", files={"mask.json": "[[0, 1],"}),
    BadInput("mask empty", PRUNE, "mask.json: a mask is a JSON list", files={"mask.json": "[]"}),
    BadInput("mask of numbers", PRUNE, "mask.json: a mask is a JSON list", files={"mask.json": "[0, 1]"}),
    BadInput("mask with too few layers", PRUNE, "mask.json: mask has 1 layers", files={"mask.json": "[[0, 1]]"}),
    BadInput("mask index out of range", PRUNE, "mask.json: mask layer 0", files={"mask.json": "[[0, 9], [0, 1]]"}),
    BadInput("mask of names", PRUNE, "mask.json: mask layer 0", files={"mask.json": '[["a", "b"], [0, 1]]'}),
    BadInput("mask missing", ["prune", "model", "--mask", "nowhere.json", "--out", "p"], "nowhere.json"),
    BadInput("prune with half a variant identity", [*PRUNE, "--criterion", "reap", "--seed", "0"],
             "--criterion names a pruned variant, which also needs --calibration, --ratio"),
    BadInput("prune into the working directory", [*PRUNE[:-1], "."], "output .: is the working directory",
             files={"mask.json": "[[0, 1], [2, 3]]"}),
    BadInput("prune over the model", [*PRUNE[:-1], "model"], "output model: is the input model",
             files={"mask.json": "[[0, 1], [2, 3]]"}),
    BadInput("prune into the model", [*PRUNE[:-1], "model/pruned"], "lies inside the input model",
             files={"mask.json": "[[0, 1], [2, 3]]"}),
    BadInput("prune through a link to the model", [*PRUNE[:-1], "link"], "output link: is a symbolic link",
             files={"mask.json": "[[0, 1], [2, 3]]"}, damage=_symlink("link", "model")),
    BadInput("prune over another stage's output", [*PRUNE[:-1], "obs"], "written by `expertlab observe`",
             files={"mask.json": "[[0, 1], [2, 3]]"}),
    BadInput("prune over a foreign directory", [*PRUNE[:-1], "notes"], "output notes: exists, is not empty",
             files={"mask.json": "[[0, 1], [2, 3]]", "notes/todo.txt": "mine"}),
    # generate and score: task files and generations
    BadInput("task file not JSON", ["generate", "model", "--tasks-dir", "tasks", "--tasks", "bio_qa", "--out", "g"],
             "tasks/bio_qa.jsonl:1", files={"tasks/bio_qa.jsonl": "nope\n"}),
    BadInput("task file missing", ["generate", "model", "--tasks-dir", "tasks", "--tasks", "bio_qa", "--out", "g"],
             "tasks/bio_qa.jsonl", files={"tasks/other.jsonl": ""}),
    BadInput("unknown task", ["generate", "model", "--tasks-dir", "tasks", "--tasks", "bio_qaa", "--out", "g"], "'bio_qaa'"),
    BadInput("generations meta missing", ["score", "tasks", "--out", "s"], "tasks/meta.json", files={"tasks/x": ""}),
    BadInput("generations line not JSON", ["score", "gen", "--out", "s"], "gen/generations.jsonl:1",
             files={"gen/generations.jsonl": "{broken\n"}),
    # the store and the report
    BadInput("store not a DuckDB file", ["ingest", "--store", "fake.duckdb", "obs"], "fake.duckdb", files={"fake.duckdb": "not a db"}),
    BadInput("artifact directory missing", ["ingest", "--store", "s.duckdb", "nowhere"], "nowhere"),
    BadInput("report without a store", ["report", "--store", "none.duckdb", "--queries", str(ROOT / "queries"), "--out", "r"],
             "none.duckdb"),
    BadInput("sql without a store", ["sql", "select 1", "--store", "none.duckdb"], "none.duckdb"),
    # params
    BadInput("misspelt key", CHECK, "ratioz: unknown key", files={"bad.yaml": PARAMS + "ratioz: [0.5]\n"}),
    BadInput("key given twice", CHECK, "the key 'study' is given twice",
             files={"bad.yaml": PARAMS + "study:\n  models: [toy]\n"}),
    BadInput("params not UTF-8", CHECK, "bad.yaml: not UTF-8", files={"bad.yaml": b"study: \xff\n"}),
    BadInput("params not YAML", CHECK, "while parsing a flow sequence begun on line 2", files={"bad.yaml": "study:\n  models: [toy\n"}),
    BadInput("a model name DVC would split at its dot", CHECK, "models.toy.v2: a name dvc.yaml tracks as a params key cannot hold '.'",
             files={"bad.yaml": _params("models: [toy]", "models: [toy.v2]").replace("\n  toy:\n", "\n  toy.v2:\n", 1)}),
    BadInput("a model listed twice", CHECK, "study.models: 'toy' is listed twice",
             files={"bad.yaml": _params("models: [toy]", "models: [toy, toy]")}),
    BadInput("a judge listed twice", CHECK, "judge.judges: 'grounding' is listed twice",
             files={"bad.yaml": _params("judges: [grounding]", "judges: [grounding, grounding]")}),
    BadInput("an unknown report table", CHECK, "report.print: no query 'headlines'",
             files={"bad.yaml": _params("print: [headline, findings, calibration_comparison, layer_monosemanticity, finetune_comparison]", "print: [headlines, findings, calibration_comparison, layer_monosemanticity, finetune_comparison]")}),
    BadInput("more calibration samples than the pools hold", CHECK, "calibrations.biomed.samples: 4096 requested",
             files={"bad.yaml": _params("samples: 128", "samples: 4096")}),
    BadInput("the second study without the model's own routing", CHECK, "monosemanticity.top_k: list 'native'",
             files={"bad.yaml": _params("top_k: [native, 1, 4, 8]", "top_k: [1, 4, 8]")}),
    BadInput("a re-observed top-k that is the toy's own", CHECK, "monosemanticity.top_k: 2 is the model's own top-k, which is 'native' (model 'toy')",
             files={"bad.yaml": _params("top_k: [native, 1, 4, 8]", "top_k: [native, 2]")}),
    BadInput("a re-observed top-k beyond the experts", CHECK, "monosemanticity.top_k: 32 is outside 1..16, the model's routed experts (model 'toy')",
             files={"bad.yaml": _params("top_k: [native, 1, 4, 8]", "top_k: [native, 32]")}),
    BadInput("a top-k of neither native nor a count", ["record-activations", "model", "--corpus", "bio=calib.jsonl",
             "--out", "acts", "--top-k", "all"], "--top-k: 'all' is neither 'native' nor a positive number"),
    BadInput("params missing", ["check", "--params", "nowhere.yaml"], "nowhere.yaml"),
    BadInput("a calibration source without its local copy", CHECK,
             "calibrations.biomed: calibration 'biomed' (source medinst): nothing at data/sources/medinst; "
             "expected MedINST32's training files as released (unseen_train_100k/*.json",
             files={"bad.yaml": _params("    source: toy\n    domains: [biomedical]\n", "    source: medinst\n")}),
    BadInput("a calibration without a source", CHECK, "calibrations.biomed: source is missing; allowed: toy, medinst",
             files={"bad.yaml": _params("    source: toy\n", "")}),
    # imports
    BadInput("mask directory not the release's layout", ["import-masks", "released", "--out", "imported"],
             "directory name 'not-a-study-name'", files={"released/not-a-study-name/expert_mask.json": "[[0, 1]]"}),
    BadInput("verdict file of no known format", ["import-judgments", "verdicts.json", "--out", "imported"],
             "verdicts.json", files={"verdicts.json": '[{"what": 1}]'}),
]


def prepare_workspace(root: Path, model_dir: Path) -> Path:
    """The shared inputs every case starts from, built by the real stages (see the module docstring)."""
    from expertlab.cli import main

    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, root / "model")
    (root / "calib.jsonl").write_text('{"text": "aspirin fever"}\n{"text": "insulin diabetes"}\n')
    (root / "params.yaml").write_text(PARAMS)
    here = Path.cwd()
    os.chdir(root)
    try:
        assert main(["observe", "model", "--data", "calib.jsonl", "--out", "obs"]) == 0
        assert main(["select", "obs", "--ratios", "0.5", "--out", "masks"]) == 0
    finally:
        os.chdir(here)
    (root / "gen").mkdir()
    source = VariantRecord.of(Variant(model="model"), None, 2)
    (root / "gen" / "meta.json").write_text(json.dumps(GenerationsMeta(variant=source).dump()))
    return root


def stage_case(case: BadInput, template: Path, work: Path) -> Path:
    """A copy of the prepared inputs with the case's files and damage applied."""
    shutil.copytree(template, work, symlinks=True)
    for name, content in case.files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (work / name).write_bytes(content)
        else:
            (work / name).write_text(content)
    if case.damage is not None:
        case.damage(work)
    return work


def listing(root: Path) -> dict[str, bytes]:
    """Every file under `root` and its bytes (links by their target), to show a failed run wrote nothing."""
    return {
        str(p.relative_to(root)): (b"->" + str(p.readlink()).encode()) if p.is_symlink() else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }

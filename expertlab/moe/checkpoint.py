"""Safetensors checkpoint + kept-expert mask -> pruned checkpoint, by copying byte ranges.

Pruning experts only ever selects along the expert index: whole per-expert tensors
(`<experts>.<e>.<rest>`, renumbered 0..M-1) or dim-0 rows of stacked expert tensors and of
the router's weight and biases. Both are byte ranges of the source file, so the pruned
checkpoint is written without loading a model or torch: any dtype (bf16, fp8, MXFP4 blocks),
the source's tensor names and sharding, memory bounded by one copy buffer.

Safetensors layout: an 8-byte little-endian header size N, N bytes of JSON mapping each tensor
name to {dtype, shape, data_offsets: [begin, end)} relative to the data that follows.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from expertlab.moe.families.base import ExpertTensors

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors reference implementation's own limit
_COPY_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file, with absolute byte offsets into that file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass
class OutputTensor:
    """A tensor of the pruned file: its name, dtype, shape and the source byte ranges it concatenates."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    ranges: list[tuple[int, int]]

    @property
    def nbytes(self) -> int:
        return sum(end - begin for begin, end in self.ranges)


def read_safetensors_header(path: Path) -> tuple[list[TensorEntry], dict[str, str]]:
    """The tensors of a safetensors file in storage order, and its `__metadata__`."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise ValueError(f"{path}: not a safetensors file (header size {size} bytes)")
        blob = fh.read(size)
    if len(blob) != size:
        raise ValueError(f"{path}: truncated safetensors file (header cut short)")
    try:
        header = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a safetensors file (header is not JSON: {err})") from None
    metadata = header.pop("__metadata__", None) or {}
    start = 8 + size
    file_size = path.stat().st_size
    entries = []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end or start + end > file_size:
            raise ValueError(f"{path}: tensor {name!r} lies outside the file (truncated download?)")
        entries.append(TensorEntry(name, info["dtype"], tuple(info["shape"]), start + begin, start + end))
    entries.sort(key=lambda entry: entry.begin)
    return entries, metadata


def check_safetensors_files(model_dir: Path) -> None:
    """Every safetensors file of a model directory has a whole header and tensors within the file, or an
    error names the file (a truncated download fails here, not deep inside a loader)."""
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        read_safetensors_header(path)


def checkpoint_files(model_dir: Path) -> tuple[list[str], dict | None]:
    """The safetensors files of a model directory, and its index (None for a single file)."""
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        files = sorted(set(index.get("weight_map", {}).values()))
        missing = [name for name in files if not (model_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{index_path} names missing shards: {', '.join(missing)}")
        return files, index
    if (model_dir / SINGLE_FILE).is_file():
        return [SINGLE_FILE], None
    others = sorted(p.name for p in model_dir.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".gguf"})
    found = f" (found {', '.join(others)})" if others else ""
    raise FileNotFoundError(
        f"{model_dir}: no safetensors weights{found}; expertlab prunes safetensors checkpoints "
        "(re-save the model with save_pretrained, which writes safetensors)"
    )


def tensor_names(model_dir: Path) -> set[str]:
    """Every tensor name of a checkpoint (headers only)."""
    files, _ = checkpoint_files(model_dir)
    return {entry.name for name in files for entry in read_safetensors_header(model_dir / name)[0]}


def _row_ranges(entry: TensorEntry, rows: Sequence[int], num_experts: int, axis: int = 0) -> list[tuple[int, int]]:
    """Byte ranges selecting `rows` along the expert axis of a contiguous tensor, adjacent ranges merged."""
    if len(entry.shape) <= axis or entry.shape[axis] != num_experts:
        raise ValueError(
            f"tensor {entry.name!r} has shape {list(entry.shape)}; expected the expert count {num_experts} as dim {axis}"
        )
    outer = math.prod(entry.shape[:axis])
    if entry.nbytes % (outer * num_experts):
        raise ValueError(f"tensor {entry.name!r}: {entry.nbytes} bytes do not split into {num_experts} experts")
    block = entry.nbytes // (outer * num_experts)  # bytes of one expert's slice within one outer index
    ranges: list[tuple[int, int]] = []
    for o in range(outer):
        base = entry.begin + o * num_experts * block
        for index in rows:
            begin = base + index * block
            if ranges and ranges[-1][1] == begin:
                ranges[-1] = (ranges[-1][0], begin + block)
            else:
                ranges.append((begin, begin + block))
    return ranges


class PrunePlan:
    """Maps every source tensor to its pruned form (or drops it) and checks each layer was found."""

    def __init__(
        self,
        layers: Sequence[ExpertTensors],
        kept: Sequence[Sequence[int]],
        num_experts: int,
        dropped: Collection[str] = (),
    ) -> None:
        if len(layers) != len(kept):
            raise ValueError(f"mask has {len(kept)} layers, the model has {len(layers)} MoE layers")
        self.num_experts = num_experts
        self.dropped = set(dropped)
        self.layers = list(layers)
        self.kept = [list(k) for k in kept]
        self._renumbered = [{expert: new for new, expert in enumerate(k)} for k in self.kept]
        self._by_prefix = {layer.experts: position for position, layer in enumerate(self.layers)}
        self._rows: dict[str, int] = {}
        for position, layer in enumerate(self.layers):
            for name in (*layer.router_rows, *layer.optional_rows):
                self._rows[name] = position
        self._seen_rows: set[str] = set()
        self._seen_experts: dict[int, dict[int, set[str]]] = {}  # layer position -> kept expert -> tensor suffixes
        self._stacked: dict[int, int] = {}  # layer position -> stacked tensors seen

    def locate_expert_tensor(self, name: str) -> tuple[int, str] | None:
        """(layer position, rest of the name) when `name` lies under a pruned experts module."""
        prefix, dot, rest = name, "", ""
        while True:
            prefix, dot, tail = prefix.rpartition(".")
            if not dot:
                return None
            rest = f"{tail}.{rest}" if rest else tail
            if prefix in self._by_prefix:
                return self._by_prefix[prefix], rest

    def apply(self, entry: TensorEntry) -> OutputTensor | None:
        """The pruned form of one tensor; None when it belongs to a removed expert or is dropped."""
        if entry.name in self.dropped:
            return None
        if entry.name in self._rows:
            self._seen_rows.add(entry.name)
            return self._sliced(entry, self._rows[entry.name])
        located = self.locate_expert_tensor(entry.name)
        if located is None:
            return OutputTensor(entry.name, entry.dtype, entry.shape, [(entry.begin, entry.end)])
        position, rest = located
        prefix = self.layers[position].experts
        head, _, suffix = rest.partition(".")
        if head.isdigit() and suffix:
            expert = int(head)
            if expert >= self.num_experts:
                raise ValueError(f"tensor {entry.name!r}: expert {expert} beyond the expert count {self.num_experts}")
            new_index = self._renumbered[position].get(expert)
            if new_index is None:
                return None
            self._seen_experts.setdefault(position, {}).setdefault(new_index, set()).add(suffix)
            return OutputTensor(f"{prefix}.{new_index}.{suffix}", entry.dtype, entry.shape, [(entry.begin, entry.end)])
        self._stacked[position] = self._stacked.get(position, 0) + 1
        return self._sliced(entry, position)

    def _sliced(self, entry: TensorEntry, position: int) -> OutputTensor:
        """A tensor indexed by expert along one axis, keeping the layer's kept experts."""
        axis = self.layers[position].axis_of(entry.name)
        kept = self.kept[position]
        shape = (*entry.shape[:axis], len(kept), *entry.shape[axis + 1 :])
        return OutputTensor(entry.name, entry.dtype, shape, _row_ranges(entry, kept, self.num_experts, axis))

    def check_complete(self) -> None:
        """Every MoE layer's router rows and experts were found, each kept expert with the same tensors."""
        for position, layer in enumerate(self.layers):
            missing = [name for name in layer.router_rows if name not in self._seen_rows]
            if missing:
                raise ValueError(f"checkpoint has no tensor {missing[0]!r} (router of MoE layer {layer.layer})")
            per_expert = self._seen_experts.get(position, {})
            if not per_expert and not self._stacked.get(position):
                raise ValueError(f"checkpoint has no expert tensors under {layer.experts!r} (MoE layer {layer.layer})")
            if per_expert:
                suffixes = {frozenset(s) for s in per_expert.values()}
                if len(per_expert) != len(self.kept[position]) or len(suffixes) != 1:
                    raise ValueError(f"{layer.experts}: kept experts do not all have the same tensors in the checkpoint")


def write_safetensors(path: Path, source: Path, tensors: Sequence[OutputTensor], metadata: dict[str, str]) -> None:
    """Write `tensors` (byte ranges of `source`) as a safetensors file, streaming in bounded chunks."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for tensor in tensors:
        header[tensor.name] = {"dtype": tensor.dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # align the data start to 8 bytes, as the reference writer does
    with source.open("rb") as src, path.open("wb") as dst:
        dst.write(struct.pack("<Q", len(blob)))
        dst.write(blob)
        for begin, end in _all_ranges(tensors):
            src.seek(begin)
            remaining = end - begin
            while remaining:
                chunk = src.read(min(remaining, _COPY_CHUNK))
                if not chunk:
                    raise ValueError(f"{source}: ended early while copying (file changed or truncated)")
                dst.write(chunk)
                remaining -= len(chunk)


def _all_ranges(tensors: Sequence[OutputTensor]) -> Iterator[tuple[int, int]]:
    for tensor in tensors:
        yield from tensor.ranges


def prune_safetensors(
    model_dir: Path,
    out_dir: Path,
    layers: Sequence[ExpertTensors],
    kept: Sequence[Sequence[int]],
    num_experts: int,
    dropped: Collection[str] = (),
    progress: bool = False,
) -> dict[str, int]:
    """Write the pruned shards (and index) of `model_dir` into `out_dir`; returns tensor counts."""
    from tqdm import tqdm

    files, index = checkpoint_files(model_dir)
    plan = PrunePlan(layers, kept, num_experts, dropped)
    headers = {name: read_safetensors_header(model_dir / name) for name in files}
    total = sum(entry.nbytes for entries, _ in headers.values() for entry in entries)
    weight_map: dict[str, str] = {}
    counts = {"source_tensors": 0, "pruned_tensors": 0}
    written = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="prune", disable=not progress) as bar:
        for name in files:
            entries, metadata = headers[name]
            outputs = [out for out in map(plan.apply, entries) if out is not None]
            counts["source_tensors"] += len(entries)
            counts["pruned_tensors"] += len(outputs)
            if outputs:  # a shard holding only removed experts disappears
                write_safetensors(out_dir / name, model_dir / name, outputs, metadata)
            weight_map.update((tensor.name, name) for tensor in outputs)
            written += sum(tensor.nbytes for tensor in outputs)
            bar.update(sum(entry.nbytes for entry in entries))
    plan.check_complete()
    if index is not None:
        pruned_index = dict(index)
        pruned_index["metadata"] = {**(index.get("metadata") or {}), "total_size": written}
        pruned_index["weight_map"] = dict(sorted(weight_map.items()))
        (out_dir / INDEX_FILE).write_text(json.dumps(pruned_index, indent=2) + "\n")
    counts["bytes"] = written
    return counts


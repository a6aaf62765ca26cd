"""Domain-labelled texts + model -> activation records: per (layer, expert, window of W tokens) on which the
router selected the expert, the number of its tokens routed there, its strongest combine weight there and
the routed positions (paper 001, section 3.1; the windows of EleutherAI's Delphi, 32 tokens by default).

Recorded by the wrapper observe puts on each experts module (FamilyAdapter.observed_forward), so the
router is never re-run and "routed" means what observe counts: a combine weight g > 0 on a non-padding
token. A text is cut into consecutive windows of W tokens, the last one shorter, so every token lies in
exactly one window and AF_i^(d) = routed tokens / tokens of domain d (paper 001, eq. 7) computed from
the records equals observe's routed_count / tokens over the same texts. Only routed entries are kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from expertlab.moe.families import adapter_for
from expertlab.moe.observe import length_order, observed_experts, tokenized_batches

if TYPE_CHECKING:
    from expertlab.params import Observe
    from expertlab.records import ActivationsMeta


@dataclass(frozen=True)
class Document:
    text: str
    domain: str


def window_table(lengths: Sequence[int], domains: Sequence[str], window: int) -> pd.DataFrame:
    """One row per window, in document order: window id, domain, document, start token, tokens."""
    if window <= 0:
        raise ValueError(f"window length must be positive, got {window}")
    rows = []
    for document, (length, domain) in enumerate(zip(lengths, domains, strict=True)):
        for start in range(0, length, window):
            rows.append({"domain": domain, "document": document, "start": start, "tokens": min(window, length - start)})
    frame = pd.DataFrame(rows, columns=["domain", "document", "start", "tokens"])
    frame.insert(0, "window_id", np.arange(len(frame), dtype=np.int64))
    return frame


def first_windows(windows: pd.DataFrame) -> pd.Series:
    """document -> the id of its first window."""
    return windows.groupby("document")["window_id"].min()


ENTRY_COLUMNS = ("layer", "expert", "window_id", "routed_tokens", "max_weight", "positions")


class ActivationRecorder:
    """Wraps every experts module of a model so its forwards collect the routed (token, expert) pairs."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.adapter = adapter_for(model)
        self.layers = self.adapter.moe_layers(model)
        if not self.layers:
            raise ValueError(f"model of type {model.config.model_type!r} has no MoE layers")
        self.pairs: dict[int, list[np.ndarray]] = {layer.index: [] for layer in self.layers}
        self.entries: list[pd.DataFrame] = []  # routed entries of the batches flushed
        self._document: torch.Tensor | None = None  # per flattened token of the batch: its document (-1: padding)
        self._position: torch.Tensor | None = None  # its position in the document

    def batch(self, documents: Sequence[int], attention_mask: torch.Tensor) -> None:
        """Say which documents the next forward holds (its rows, in order) and where their padding is."""
        mask = attention_mask.bool()
        position = mask.long().cumsum(dim=1) - 1
        document = torch.as_tensor(list(documents), dtype=torch.long).unsqueeze(1).expand_as(position)
        self._document = torch.where(mask, document, -1).reshape(-1)
        self._position = torch.where(mask, position, -1).reshape(-1)

    @contextlib.contextmanager
    def installed(self) -> Iterator[ActivationRecorder]:
        with observed_experts(self.adapter, [(layer, self._recorder(layer.index)) for layer in self.layers]):
            yield self

    def _recorder(self, index: int):  # noqa: ANN202
        def record(hidden, top_k_index, top_k_weights, outputs, combined) -> None:  # noqa: ANN001, ARG001
            document, position = self._document, self._position
            if document is None or document.numel() != top_k_index.shape[0]:
                raise ValueError(f"layer {index}: the batch's token map does not match the {top_k_index.shape[0]} tokens routed")
            weights = top_k_weights.detach().to(torch.float64)
            routed = (weights > 0) & (document >= 0).unsqueeze(-1)
            token = torch.arange(top_k_index.shape[0]).unsqueeze(-1).expand_as(top_k_index)[routed]
            self.pairs[index].append(
                np.stack(
                    [
                        top_k_index[routed].cpu().numpy().astype(np.float64),
                        document[token].numpy().astype(np.float64),
                        position[token].numpy().astype(np.float64),
                        weights[routed].cpu().numpy(),
                    ],
                    axis=1,
                )
            )

        return record

    def flush(self, first_window: pd.Series, window: int) -> None:
        """Fold the pairs collected so far into routed entries (a batch holds whole texts, so its windows are
        complete), keeping memory to the entries rather than every routed token. `first_window`: each
        document's first window id (first_windows)."""
        frames = []
        for index, chunks in self.pairs.items():
            if not chunks:
                continue
            pairs = np.concatenate(chunks)
            chunks.clear()
            position = pairs[:, 2].astype(np.int64)
            frames.append(pd.DataFrame({
                "layer": index,
                "expert": pairs[:, 0].astype(np.int64),
                "window_id": first_window.reindex(pairs[:, 1].astype(np.int64)).to_numpy() + position // window,
                "position": position % window,
                "weight": pairs[:, 3],
            }))  # fmt: skip
        if not frames:
            return
        pairs = pd.concat(frames, ignore_index=True).sort_values(["layer", "expert", "window_id", "position"])
        grouped = pairs.groupby(["layer", "expert", "window_id"], sort=True)
        out = grouped.agg(routed_tokens=("position", "size"), max_weight=("weight", "max")).reset_index()
        out["positions"] = grouped["position"].agg(list).to_numpy()
        self.entries.append(out[list(ENTRY_COLUMNS)])

    def records(self, windows: pd.DataFrame, window: int) -> pd.DataFrame:
        """The routed entries, one row per (layer, expert, window_id): routed_tokens, max_weight, positions (in the window)."""
        self.flush(first_windows(windows), window)
        if not self.entries:
            return pd.DataFrame(columns=list(ENTRY_COLUMNS))
        out = pd.concat(self.entries, ignore_index=True).sort_values(["layer", "expert", "window_id"], ignore_index=True)
        return out.astype({"layer": "int32", "expert": "int32", "window_id": "int64", "routed_tokens": "int32"})


def record_activations(
    model: nn.Module,
    tokenizer,  # noqa: ANN001
    documents: Sequence[Document],
    window: int,
    batch_size: int,
    max_length: int,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(windows, records) of one pass over the documents, in observe's batches (the same rows, padding
    and truncation, so the same routing as observe on the same texts)."""
    from tqdm.auto import tqdm

    if not documents:
        raise ValueError("the activation corpus is empty")
    texts = [document.text for document in documents]
    batches = tokenized_batches(tokenizer, texts, batch_size, max_length)
    order = length_order(texts)
    rows = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    token_ids: dict[int, list[int]] = {}
    for (input_ids, attention_mask), chunk in zip(batches, rows, strict=True):
        for row, document in enumerate(chunk):
            token_ids[document] = input_ids[row][attention_mask[row].bool()].tolist()
    windows = window_table([len(token_ids[i]) for i in range(len(documents))], [d.domain for d in documents], window)
    windows["token_texts"] = [
        [tokenizer.decode([token]) for token in token_ids[row.document][row.start : row.start + row.tokens]]
        for row in windows.itertuples()
    ]
    recorder = ActivationRecorder(model)
    starts = first_windows(windows)
    model.eval()
    with recorder.installed(), torch.inference_mode():
        for (input_ids, attention_mask), chunk in tqdm(
            list(zip(batches, rows)), desc="record activations", unit="batch", disable=not progress
        ):
            recorder.batch(chunk, attention_mask)
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            recorder.flush(starts, window)
    return windows, recorder.records(windows, window)


def record_checkpoint(
    model_dir: str | Path,
    corpus: dict[str, Path],
    out: str | Path,
    run: dict[str, Any],
    window: int,
    settings: Observe,
    top_k: int | None = None,
) -> ActivationsMeta:
    """One pass of a model directory over a domain-labelled corpus (domain -> calibration set file, texts or chats
    its chat template renders, as observe renders them) -> OUT/windows.parquet, OUT/activations.parquet, OUT/meta.json.

    `top_k`: None routes each token as the model does; a number re-observes the model with that many experts per
    token in every MoE layer (paper 001, Fig. 2a), set where pruning sets a new top-k (FamilyAdapter.set_counts)."""
    from transformers import AutoTokenizer

    from expertlab.data.calibration import read_set, render
    from expertlab.io import OutputDir, write_json
    from expertlab.moe.observe import loaded_model
    from expertlab.params import top_k_problem
    from expertlab.records import ACTIVATION_WINDOWS, ACTIVATIONS, ActivationsMeta

    if not corpus:
        raise ValueError("the activation corpus names no domain")
    output = OutputDir(out, "record-activations", inputs=[model_dir, *corpus.values()])
    output.check()
    with loaded_model(model_dir, settings.max_memory) as model:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        documents = [
            Document(render(record, tokenizer, model.config.model_type), domain)
            for domain, path in corpus.items()
            for record in read_set(path)
        ]
        adapter = adapter_for(model)
        native = adapter.routing(model.config)
        if top_k is not None:
            problem = top_k_problem(top_k, native.num_experts, native.top_k)
            if problem:
                raise ValueError(f"top-k {problem}")
            adapter.set_counts(model, native.num_experts, top_k)
        routing = adapter.routing(model.config)
        windows, records = record_activations(
            model, tokenizer, documents, window, batch_size=settings.batch_size, max_length=settings.max_length
        )
    meta = ActivationsMeta(
        **run,
        window_tokens=window,
        model_type=model.config.model_type,
        num_experts=routing.num_experts,
        top_k=routing.top_k,
        native_top_k=native.top_k,
        moe_layers=sorted(layer.index for layer in adapter.moe_layers(model)),
        documents=len(documents),
        windows=len(windows),
        tokens={domain: int(windows.loc[windows["domain"] == domain, "tokens"].sum()) for domain in corpus},
        batch_size=settings.batch_size,
        max_length=settings.max_length,
    )
    with output.writing() as tmp:
        ACTIVATION_WINDOWS.write(tmp / "windows.parquet", windows)
        ACTIVATIONS.write(tmp / "activations.parquet", records)
        write_json(tmp / "meta.json", meta.dump())
    return meta

"""Prompts -> greedy completions with a Hugging Face causal LM on CPU (chat template, left-padded batches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_model(model_dir: str | Path) -> tuple[Any, Any]:
    """A float32 CPU model in eval mode and its tokenizer, left-padded, pad token defaulting to eos."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to("cpu").eval()
    return model, tokenizer


def render_prompt(tokenizer: Any, prompt: str) -> str:
    """The prompt as one user turn of the chat template, thinking off; the raw prompt without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,  # the study decodes with thinking off (DESIGN: decoding)
    )


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(i) for i in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    progress: bool = True,
) -> list[str]:
    """Greedy completions (new tokens only, special tokens dropped, stripped), in the order of `prompts`."""
    from tqdm import tqdm
    from transformers import GenerationConfig

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be positive, got {batch_size}, {max_new_tokens}")
    templated = getattr(tokenizer, "chat_template", None) is not None
    texts = [render_prompt(tokenizer, prompt) for prompt in prompts]
    # The template already carries its own special tokens.
    encoded = tokenizer(texts, add_special_tokens=not templated)["input_ids"]
    # Longest first: similar lengths share a batch (little padding), and a too-long prompt fails early.
    order = sorted(range(len(texts)), key=lambda i: (-len(encoded[i]), i))

    stop_ids = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop_ids or [0])[0]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=stop_ids or None,
        pad_token_id=pad_id,
    )
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow every prompt's last token directly
    outputs: list[str] = [""] * len(texts)
    try:
        with torch.inference_mode(), tqdm(total=len(texts), desc="generate", unit="prompt", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = tokenizer(
                    [texts[i] for i in batch],
                    add_special_tokens=not templated,
                    padding=True,
                    return_tensors="pt",
                )
                sequences = model.generate(
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    generation_config=config,
                )
                new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()
                for i, tokens in zip(batch, new_tokens):
                    outputs[i] = tokenizer.decode(_until_stop(tokens, stop_ids), skip_special_tokens=True).strip()
                bar.update(len(batch))
    finally:
        tokenizer.padding_side = padding_side
    return outputs


def _until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    """Tokens before the first stop token (a finished row is padded after it, maybe with a non-special pad)."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:position]
    return tokens

"""The `hf` backend: greedy completions with a transformers causal LM (chat template, left-padded batches)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expertlab.generate import (
    BACKENDS,
    Prompt,
    cut_at_stop,
    lm_eval_chat_options,
    messages,
    output_budgets,
    strip_reasoning,
    template_kwargs,
)
from expertlab.params import Generate, default


def load_model(model_dir: str | Path) -> tuple[Any, Any]:
    """A float32 CPU model in eval mode and its tokenizer, left-padded, pad token defaulting to eos."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertlab.moe.checkpoint import check_safetensors_files

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    check_safetensors_files(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to("cpu").eval()
    return model, tokenizer


def render_prompt(tokenizer: Any, prompt: Prompt, model_type: str = "") -> str:
    """The prompt through the chat template, thinking off (DESIGN: decoding); without a template, the
    turns' contents joined by blank lines."""
    turns = messages(prompt)
    if not getattr(tokenizer, "chat_template", None):
        return "\n\n".join(turn["content"] for turn in turns)
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True, **template_kwargs(model_type))


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt], model_type: str = "") -> tuple[list[str], list[list[int]]]:
    """The rendered prompts and their token ids, as the model reads them (the template carries its own
    special tokens; without a template the tokenizer adds them)."""
    texts = [render_prompt(tokenizer, prompt, model_type) for prompt in prompts]
    templated = getattr(tokenizer, "chat_template", None) is not None
    return texts, tokenizer(texts, add_special_tokens=not templated)["input_ids"]


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
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    batch_size: int,
    progress: bool = True,
    stop: Sequence[str] = (),
    model_type: str = "",
    max_model_len: int | None = None,
) -> list[str]:
    """Greedy completions in the order of `prompts`: new tokens only, reasoning and special tokens
    dropped, cut at the first stop string, stripped. With a context `max_model_len`, each prompt gets the
    budget vLLM would grant it (expertlab.generate.output_budgets: cut to the room its tokens leave, a
    prompt that leaves none refused); None: max_new_tokens for every prompt."""
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be positive, got {batch_size}, {max_new_tokens}")
    texts, encoded = encode_prompts(tokenizer, prompts, model_type)
    # GPT-OSS marks its answer with special tokens: keep them until the reasoning is cut away.
    keep_special = model_type == "gpt_oss"
    if max_model_len is None:
        budgets = [max_new_tokens] * len(texts)
    else:
        budgets = output_budgets([len(ids) for ids in encoded], max_new_tokens, max_model_len)
    # Longest first: similar lengths share a batch (little padding), and a too-long prompt fails early.
    order = sorted(range(len(texts)), key=lambda i: (-len(encoded[i]), i))

    stop_ids = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop_ids or [0])[0]
    decoding = {"do_sample": False, "num_beams": 1, "eos_token_id": stop_ids or None, "pad_token_id": pad_id}
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow every prompt's last token directly
    outputs: list[str] = [""] * len(texts)
    try:
        with torch.inference_mode(), tqdm(total=len(texts), desc="generate", unit="prompt", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                # The batch decodes to its largest budget; each row is then cut to its own (greedy rows are
                # independent, so a row cut at n tokens is the row a budget of n would have produced).
                sequences = model.generate(
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    generation_config=GenerationConfig(max_new_tokens=max(budgets[i] for i in batch), **decoding),
                )
                new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()
                for i, tokens in zip(batch, new_tokens):
                    tokens = _until_stop(tokens[: budgets[i]], stop_ids)
                    text = tokenizer.decode(tokens, skip_special_tokens=not keep_special)
                    text = strip_reasoning(text)
                    if keep_special:
                        text = tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
                    outputs[i] = cut_at_stop(text, stop)
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


@BACKENDS.register("hf")
class HFBackend:
    """transformers on this machine; `device` "cpu" (float32) or a CUDA device (bfloat16)."""

    name = "hf"

    def __init__(
        self,
        model_dir: Path,
        batch_size: int = default(Generate, "batch_size"),
        device: str = default(Generate, "device"),
        progress: bool = True,
    ) -> None:
        self.model_dir = model_dir
        self.model, self.tokenizer = load_model(model_dir)
        if device != "cpu":
            import torch

            self.model = self.model.to(device=device, dtype=torch.bfloat16)
        self.model_type = str(getattr(self.model.config, "model_type", ""))
        self.batch_size = batch_size
        self.progress = progress

    def generate(
        self, prompts: Sequence[Prompt], max_new_tokens: int, max_model_len: int, stop: Sequence[str] = ()
    ) -> list[str]:
        return generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens,
            self.batch_size,
            progress=self.progress,
            stop=stop,
            model_type=self.model_type,
            max_model_len=max_model_len,
        )

    def lm_eval_model(self, max_model_len: int) -> Any:
        """lm-eval's HFLM over the in-memory model and tokenizer objects (no second load), its context
        (max_length) the task's."""
        from lm_eval.models.huggingface import HFLM

        return HFLM(
            pretrained=self.model,
            tokenizer=self.tokenizer,
            batch_size=self.batch_size,
            max_length=max_model_len,
            **lm_eval_chat_options(self.model_type),
        )

    def close(self) -> None:
        del self.model

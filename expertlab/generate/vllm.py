"""The `vllm` backend: the vLLM engine on a GPU, loading the (pruned) checkpoint directory itself.

vLLM is a GPU extra: it is imported when the backend is constructed, never at module import, so
everything else runs without it. One engine serves a task group, built with the largest context of
the group's tasks; a task with a smaller context gets, per prompt, the budget an engine of its own
context would grant (expertlab.generate.output_budgets).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expertlab.generate import (
    BACKENDS,
    Prompt,
    cut_at_stop,
    lm_eval_chat_options,
    output_budgets,
    strip_reasoning,
)
from expertlab.io import read_json
from expertlab.params import Generate, default


@BACKENDS.register("vllm")
class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model_dir: Path,
        max_model_len: int,
        batch_size: int = default(Generate, "batch_size"),
        gpu_memory_utilization: float = 0.9,
        dtype: str = "bfloat16",
        progress: bool = True,
        **_: Any,
    ) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as err:
            raise ValueError("generate.backend is 'vllm' but vLLM is not installed (a GPU extra: pip install vllm)") from err
        self.model_dir = model_dir
        self.model_type = str(read_json(model_dir / "config.json").get("model_type", ""))
        self.max_model_len = max_model_len
        self.options = {"gpu_memory_utilization": gpu_memory_utilization, "dtype": dtype}
        self.progress = progress
        self.llm: Any = None
        self._start()

    def _start(self) -> Any:
        """The engine, started again if an lm-eval task freed it."""
        from vllm import LLM

        if self.llm is None:
            self.llm = LLM(
                model=str(self.model_dir), trust_remote_code=False, max_model_len=self.max_model_len, **self.options
            )
        return self.llm

    def generate(
        self, prompts: Sequence[Prompt], max_new_tokens: int, max_model_len: int, stop: Sequence[str] = ()
    ) -> list[str]:
        """Prompts rendered and tokenized as the hf backend does them (expertlab.generate.hf.encode_prompts), so
        that their lengths, and with them each prompt's budget, are those the engine sees."""
        from vllm import SamplingParams

        from expertlab.generate.hf import encode_prompts

        if max_model_len > self.max_model_len:
            raise ValueError(f"a task's context of {max_model_len} tokens exceeds the engine's ({self.max_model_len})")
        llm = self._start()
        _, encoded = encode_prompts(llm.get_tokenizer(), prompts, self.model_type)
        budgets = output_budgets([len(ids) for ids in encoded], max_new_tokens, max_model_len)
        keep_special = self.model_type == "gpt_oss"
        sampling = [SamplingParams(temperature=0.0, max_tokens=n, skip_special_tokens=not keep_special) for n in budgets]
        results = llm.generate([{"prompt_token_ids": ids} for ids in encoded], sampling, use_tqdm=self.progress)
        return [cut_at_stop(strip_reasoning(result.outputs[0].text), stop) for result in results]

    def lm_eval_model(self, max_model_len: int) -> Any:
        """lm-eval's vLLM model with the task's context; the engine above is freed first so that both never hold
        the GPU."""
        from lm_eval.models.vllm_causallms import VLLM

        self.close()
        return VLLM(
            pretrained=str(self.model_dir), max_model_len=max_model_len, **self.options,
            **lm_eval_chat_options(self.model_type),
        )  # fmt: skip

    def close(self) -> None:
        self.llm = None  # the engine's last reference: vLLM frees the GPU when it is collected

"""The `vllm` backend: the vLLM engine on a GPU, loading the (pruned) checkpoint directory itself.

vLLM is a GPU extra: it is imported when the backend is constructed, never at module import, so
everything else runs without it.
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
    messages,
    strip_reasoning,
    template_kwargs,
)
from expertlab.io import read_json
from expertlab.params import Generate, default


@BACKENDS.register("vllm")
class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model_dir: Path,
        batch_size: int = default(Generate, "batch_size"),
        max_model_len: int = default(Generate, "max_model_len"),
        gpu_memory_utilization: float = 0.9,
        dtype: str = "bfloat16",
        progress: bool = True,
        **_: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise ValueError("generate.backend is 'vllm' but vLLM is not installed (a GPU extra: pip install vllm)") from err
        self.model_dir = model_dir
        self.model_type = str(read_json(model_dir / "config.json").get("model_type", ""))
        self.options = {"max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization, "dtype": dtype}
        self.progress = progress
        self.llm = LLM(model=str(model_dir), trust_remote_code=False, **self.options)

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        from vllm import SamplingParams

        sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=self.model_type != "gpt_oss")
        results = self.llm.chat(
            [messages(prompt) for prompt in prompts],
            sampling,
            use_tqdm=self.progress,
            chat_template_kwargs=template_kwargs(self.model_type),
        )
        return [cut_at_stop(strip_reasoning(result.outputs[0].text), stop) for result in results]

    def lm_eval_model(self) -> Any:
        """lm-eval's vLLM model; the engine above is freed first so that both never hold the GPU."""
        from lm_eval.models.vllm_causallms import VLLM

        self.close()
        return VLLM(pretrained=str(self.model_dir), **self.options, **lm_eval_chat_options(self.model_type))

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            del self.llm
            self.llm = None

"""Shared fixtures: a tiny random Qwen3-MoE saved as a normal model directory with a word-level chat tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
WORDS = (
    "user assistant what is the dose of for a an and or with without in on to from by "
    "aspirin ibuprofen metformin insulin fever pain diabetes asthma trial patients outcome improved "
    "mg ml one two three four five six seven eight nine ten plus minus equals answer "
    "yes no none above A B C D"
).split()
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def build_tokenizer():  # noqa: ANN201
    """A ~60-token word-level tokenizer with a ChatML-like template; eos is <|im_end|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_moe(vocab_size: int, eos_id: int, pad_id: int, seed: int = 0):  # noqa: ANN201
    """Hidden 32, 2 layers, 4 experts, top-2; routers scaled so routing is decisive."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        max_position_embeddings=256,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = Qwen3MoeForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0, 1.0)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    return model.eval()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end studies (marked slow: minutes each, a few tests) first, so that with `make test`'s two
    workers (--dist loadfile, files in this order) each starts on one and the short files fill in beside."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Qwen3-MoE model directory (config, safetensors, tokenizer with chat template)."""
    tokenizer = build_tokenizer()
    model = build_tiny_moe(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("models") / "tiny-moe"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays a judge client asked for, recorded instead of slept."""
    return []


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start scripted loopback judge servers (tests/openai_server.py) accepting the test module's SECRET;
    every one is stopped after the test."""
    from tests.openai_server import OpenAIServer

    servers: list[OpenAIServer] = []

    def start(script: dict[str, list[Any]] | None = None, **options: Any) -> OpenAIServer:
        servers.append(OpenAIServer(request.module.SECRET, script, **options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()

"""Corpus texts + ToyModelConfig + TrainConfig -> a tiny Qwen3-MoE trained from scratch on CPU, saved as a HF directory.

The directory holds the model, its word-level chat tokenizer and `train_log.json` (the loss
curve); `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load it like
any downloaded checkpoint. Training is deterministic under `TrainConfig.seed` for a given thread count.

Why a domain-routed warm-up: trained from scratch for a few CPU minutes with a load-balancing
loss, a 16-expert router spreads both domains evenly over all experts (measured on this world:
the bio calibration's 8 most used experts also carried ~60% of general-domain routing, even with
disjoint vocabularies or 3x longer training). For the first `domain_routed_fraction` of the
steps each domain therefore routes within its own block of the experts (`DomainRouting`, after
DEMix / Branch-Train-MiX) and the router is taught that split; routing is then free, and the
saved model is an ordinary Qwen3-MoE whose experts are specialised by domain but not labelled
so: the pruning criteria must find them from calibration statistics alone.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from expertlab.io import OutputDir, write_json


class ToyModelConfig(BaseModel):
    """Architecture of the toy Qwen3-MoE (every layer sparse, no shared expert)."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(default=96, gt=0)
    num_layers: int = Field(default=4, gt=0)
    num_heads: int = Field(default=4, gt=0)
    num_kv_heads: int = Field(default=2, gt=0)
    head_dim: int = Field(default=24, gt=0)
    intermediate_size: int = Field(default=192, gt=0)  # dense MLP width (unused while every layer is MoE)
    moe_intermediate_size: int = Field(default=64, gt=0)
    num_experts: int = Field(default=16, ge=2)
    top_k: int = Field(default=2, ge=1)
    router_aux_loss_coef: float = Field(default=0.01, ge=0)
    norm_topk_prob: bool = False  # True renormalises the top-k weights; False keeps softmax probabilities
    max_position_embeddings: int = Field(default=512, gt=0)

    @model_validator(mode="after")
    def _shapes(self) -> ToyModelConfig:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k={self.top_k} exceeds num_experts={self.num_experts}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        return self


class TrainConfig(BaseModel):
    """Optimisation of the toy model: AdamW, linear warm-up then cosine decay to 10% of `lr`."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=3000, gt=0)
    batch_size: int = Field(default=32, gt=0)
    seq_len: int = Field(default=128, gt=8)  # longer texts are truncated
    lr: float = Field(default=3e-3, gt=0)
    warmup: int = Field(default=50, ge=0)
    seed: int = 0
    threads: int = Field(default=1, gt=0)  # 1: tiny matrices gain little from more, and lose a lot when cores are shared
    # Fraction of steps (from the start) in which each domain may route only to its own block of the
    # experts, DEMix-style; free top-k routing afterwards. 0 trains an ordinary MoE throughout.
    domain_routed_fraction: float = Field(default=0.5, ge=0, le=1)
    # Weight of -log(router probability mass on the text's own block) during that warm-up, so the
    # router, not only the experts, has learnt the split when routing is freed.
    domain_router_loss_coef: float = Field(default=0.1, ge=0)
    log_every: int = Field(default=100, gt=0)


# A model and schedule that train in seconds: for tests of the plumbing, not of the findings.
MICRO_MODEL = ToyModelConfig(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    head_dim=16,
    intermediate_size=64,
    moe_intermediate_size=16,
    num_experts=8,
    top_k=2,
    max_position_embeddings=256,
)
MICRO_TRAIN = TrainConfig(steps=60, batch_size=16, seq_len=96, lr=1e-2, warmup=5, threads=1, log_every=20)


def build_model(model_cfg: ToyModelConfig, tokenizer: Any, seed: int) -> Any:
    """A freshly initialised Qwen3MoeForCausalLM sized for the tokenizer's vocabulary."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_cfg.hidden_size,
        intermediate_size=model_cfg.intermediate_size,
        moe_intermediate_size=model_cfg.moe_intermediate_size,
        num_hidden_layers=model_cfg.num_layers,
        num_attention_heads=model_cfg.num_heads,
        num_key_value_heads=model_cfg.num_kv_heads,
        head_dim=model_cfg.head_dim,
        num_experts=model_cfg.num_experts,
        num_experts_per_tok=model_cfg.top_k,
        norm_topk_prob=model_cfg.norm_topk_prob,
        router_aux_loss_coef=model_cfg.router_aux_loss_coef,
        max_position_embeddings=model_cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = Qwen3MoeForCausalLM(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random):  # noqa: ANN202
    """Endless batches of indices: shuffled epochs, similar lengths grouped to limit padding."""
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        group = batch_size * 16
        batches = []
        for start in range(0, len(order), group):
            chunk = sorted(order[start : start + group], key=lambda i: lengths[i])
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        rng.shuffle(batches)
        yield from batches


def _learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def domain_blocks(num_experts: int, num_domains: int, top_k: int) -> list[int]:
    """Experts per domain block: as equal as possible, the first num_experts mod num_domains blocks one larger."""
    if num_domains < 1:
        raise ValueError("domain-routed warm-up needs at least one domain")
    base, extra = divmod(num_experts, num_domains)
    if base < top_k:
        raise ValueError(f"{num_experts} experts cannot be split into {num_domains} domain blocks of >= top-k={top_k}")
    return [base + (domain < extra) for domain in range(num_domains)]


class DomainRouting:
    """Restricts each sequence's routing to its domain's block of experts while installed (DEMix layers).

    With D domains, the N experts are cut into D contiguous blocks as equal as possible (the first N mod D
    blocks one expert larger), each at least top-k wide; domain d may use block d. Gururangan et al. 2022
    (DEMix) and Sukhbaatar et al. 2024 (Branch-Train-MiX) train domain experts this way; here it
    only warms up training, so the saved model routes freely but starts from domain-specialised experts.
    """

    def __init__(self, model: Any, num_domains: int) -> None:
        import torch

        from expertlab.moe.families import adapter_for

        self.routers = [layer.router for layer in adapter_for(model).moe_layers(model)]
        self.num_experts = model.config.num_experts
        self.sizes = domain_blocks(self.num_experts, num_domains, model.config.num_experts_per_tok)
        self.owner = torch.repeat_interleave(torch.arange(num_domains), torch.tensor(self.sizes))  # [experts]: block
        self.bias: Any = None  # [tokens, experts]: 0 where allowed, -inf elsewhere
        self.allowed: Any = None  # [tokens, experts] bool

    def set_domains(self, domain_ids: Any, seq_len: int) -> None:
        """Domain index per sequence [batch] -> the routing bias for every token of the batch."""
        import torch

        allowed = self.owner.unsqueeze(0) == domain_ids.unsqueeze(1)  # [batch, experts]
        self.allowed = allowed.repeat_interleave(seq_len, dim=0)
        self.bias = torch.zeros(self.allowed.shape).masked_fill(~self.allowed, float("-inf"))

    def router_loss(self, router_logits: Sequence[Any], attention_mask: Any) -> Any:
        """Mean over layers and real tokens of -log(probability mass on the token's own expert block)."""
        import torch

        real = attention_mask.reshape(-1).bool()
        losses = []
        for logits in router_logits:
            probs = torch.softmax(logits.float(), dim=-1)
            own = (probs * self.allowed).sum(dim=-1).clamp(min=1e-9)
            losses.append(-own.log()[real].mean())
        return torch.stack(losses).mean()

    def install(self) -> None:
        for router in self.routers:
            router.forward = self._forward(router)

    def remove(self) -> None:
        for router in self.routers:
            if "forward" in router.__dict__:
                del router.forward

    def _forward(self, router: Any):  # noqa: ANN202
        import torch
        from torch.nn import functional

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            hidden_states = hidden_states.reshape(-1, router.hidden_dim)
            logits = functional.linear(hidden_states, router.weight)
            # Selection is restricted, probabilities are not: the router learns to prefer its domain's block.
            probs = torch.softmax(logits, dtype=torch.float, dim=-1)
            top_index = torch.topk(probs + self.bias, router.top_k, dim=-1).indices
            top_value = probs.gather(1, top_index)
            if router.norm_topk_prob:
                top_value = top_value / top_value.sum(dim=-1, keepdim=True)
            return logits, top_value.to(logits.dtype), top_index

        return forward


def train_toy_model(
    corpus_texts: Sequence[str],
    model_cfg: ToyModelConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    domains: Sequence[str] | None = None,
    progress: bool = True,
    inputs: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Build the tokenizer and model, train on the corpus, save both (atomically) with train_log.json.

    `domains` names each text's domain; it is needed when `train_cfg.domain_routed_fraction` > 0.
    `inputs` (the corpus file, the params) are what `out_dir` must never replace; it is checked first.
    """
    import torch
    from tqdm.auto import tqdm

    from expertlab.data.tokenizer import build_tokenizer

    output = OutputDir(out_dir, "train-toy", inputs=inputs)
    output.check()
    if not corpus_texts:
        raise ValueError("the training corpus is empty")
    domain_steps = round(train_cfg.domain_routed_fraction * train_cfg.steps)
    if domain_steps and (domains is None or len(domains) != len(corpus_texts)):
        raise ValueError("domain-routed warm-up needs one domain per training text (toy.train.domain_routed_fraction)")
    threads = torch.get_num_threads()
    torch.set_num_threads(train_cfg.threads)
    try:
        tokenizer = build_tokenizer(corpus_texts)
        encoded = tokenizer(list(corpus_texts), truncation=True, max_length=train_cfg.seq_len)["input_ids"]
        model = build_model(model_cfg, tokenizer, train_cfg.seed)
        model.train()
        domain_names = sorted(set(domains)) if domain_steps else []
        domain_ids = torch.tensor([domain_names.index(d) for d in domains]) if domain_steps else None
        routing = DomainRouting(model, len(domain_names)) if domain_steps else None
        if routing:
            routing.install()
        optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
        batches = _batches([len(ids) for ids in encoded], train_cfg.batch_size, random.Random(train_cfg.seed))
        pad = tokenizer.pad_token_id
        curve: list[dict[str, float]] = []
        window: list[tuple[float, float]] = []
        started = time.perf_counter()
        bar = tqdm(range(train_cfg.steps), desc="train-toy", unit="step", disable=not progress)
        for step in bar:
            batch = next(batches)
            rows = [encoded[i] for i in batch]
            width = max(len(ids) for ids in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for row, ids in enumerate(rows):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            labels = input_ids.masked_fill(attention_mask == 0, -100)
            if routing and step == domain_steps:
                routing.remove()
                routing = None
            if routing:
                routing.set_domains(domain_ids[batch], width)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, train_cfg)
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                labels=labels,
                output_router_logits=True,
                use_cache=False,
            )
            loss = out.loss
            if routing and train_cfg.domain_router_loss_coef:
                loss = loss + train_cfg.domain_router_loss_coef * routing.router_loss(out.router_logits, attention_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            aux = float(out.aux_loss.detach())
            window.append((float(out.loss.detach()) - model_cfg.router_aux_loss_coef * aux, aux))
            if (step + 1) % train_cfg.log_every == 0 or step + 1 == train_cfg.steps:
                lm = sum(w[0] for w in window) / len(window)
                balance = sum(w[1] for w in window) / len(window)
                lr = _learning_rate(step, train_cfg)
                curve.append({"step": step + 1, "lm_loss": lm, "aux_loss": balance, "lr": lr})
                window.clear()
                bar.set_postfix(loss=f"{lm:.3f}")
                message = f"step {step + 1}/{train_cfg.steps}  lm_loss {lm:.4f}  aux_loss {balance:.4f}"
                (bar.write if progress else print)(message)
        seconds = time.perf_counter() - started
        if routing:
            routing.remove()
        model.eval()
        log = {
            "curve": curve,
            "texts": len(encoded),
            "domain_routed_steps": domain_steps,
            "domains": domain_names,
            "tokens_per_epoch": sum(len(ids) for ids in encoded),
            "vocab_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "model": model_cfg.model_dump(),
            "train": train_cfg.model_dump(),
        }
        with output.writing() as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "train_log.json", log)
    finally:
        torch.set_num_threads(threads)
    # the wall time is returned, not saved: the same params and code must give the same directory (DVC's hash)
    return log | {"seconds": seconds}

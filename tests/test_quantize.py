"""Weight quantization: GPTQ against hand-computed compensation, the grid, whole-model GPTQ on tiny
models of every fused-SwiGLU family, the pack-quantized checkpoint transformers loads, and the quantize stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import TINY, build

from expertlab.quantize.gptq import Grid, gptq, output_error, round_to_nearest
from expertlab.quantize.model import Hessian, Scheme, decoder_layers, quantize_model

F64 = torch.float64

# --- one matrix ------------------------------------------------------------------------------------


def test_symmetric_grid_by_hand() -> None:
    """4 bits, symmetric: integers -8..7, scale = max|w| / 7.5. Row [0.75, -0.3, 0.1, 0.0]: scale 0.1,
    so -0.3 -> -3 and 0.1 -> 1 exactly, 0.75 -> round(7.5) = 8 (half to even) clamped to 7 -> 0.7."""
    w = torch.tensor([[0.75, -0.3, 0.1, 0.0]], dtype=F64)
    q = round_to_nearest(w, Grid(bits=4, group_size=None, symmetric=True))
    assert q.codes.tolist() == [[7, -3, 1, 0]] and q.zeros.tolist() == [[0]]
    assert q.scales[0].tolist() == pytest.approx([0.1])
    assert q.dequantize()[0].tolist() == pytest.approx([0.7, -0.3, 0.1, 0.0])


def test_asymmetric_grid_by_hand() -> None:
    """4 bits, asymmetric: integers -8..7 spanning [min, max] (0 always inside): [-0.5, 1.0] -> scale 0.1,
    zero point -8 - round(-0.5 / 0.1) = -3; 0.33 -> 3 - 3 = 0 -> 0.3; 0.0 -> -3, exactly 0 again."""
    w = torch.tensor([[-0.5, 1.0, 0.33, 0.0]], dtype=F64)
    q = round_to_nearest(w, Grid(bits=4, group_size=None, symmetric=False))
    assert q.codes.tolist() == [[-8, 7, 0, -3]] and q.zeros.tolist() == [[-3]]
    assert q.dequantize()[0].tolist() == pytest.approx([-0.5, 1.0, 0.3, 0.0])


def test_groups_have_their_own_scales() -> None:
    """Groups of 2 columns: [1.5, 0.2 | 0.03, 0.011] -> scales 0.2 and 0.004 (1.5 and 0.03 hit the clamp at 7,
    0.011 / 0.004 = 2.75 -> 3): the small group keeps its detail."""
    w = torch.tensor([[1.5, 0.2, 0.03, 0.011]], dtype=F64)
    grouped = round_to_nearest(w, Grid(bits=4, group_size=2))
    assert grouped.scales[0].tolist() == pytest.approx([0.2, 0.004]) and grouped.codes.tolist() == [[7, 1, 7, 3]]
    assert grouped.dequantize()[0].tolist() == pytest.approx([1.4, 0.2, 0.028, 0.012])
    per_row = round_to_nearest(w, Grid(bits=4, group_size=None)).dequantize()
    assert per_row[0, 2:].tolist() == [0.0, 0.0]  # scale 0.2: both round to 0


def test_gptq_compensates_the_next_column_by_the_hessian() -> None:
    """Two inputs with H = [[2, 1], [1, 2]]: after rounding w1 with error e1 = w1 - q1, the error
    sum (W - Q) x x^T (W - Q)^T is least when w2 moves by e1 * H21 / H22 = e1 / 2 before it is rounded.
    W = [0.72, 0.31], scale 0.72 / 7.5 = 0.096: q1 = 7 * 0.096 = 0.672, e1 = 0.048, w2 + e1/2 = 0.334
    -> round(3.479) = 3 -> q2 = 0.288 (plain rounding gives the same q2 here: 0.31 / 0.096 = 3.23)."""
    w = torch.tensor([[0.72, 0.31]], dtype=F64)
    h = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=F64)
    grid = Grid(bits=4, group_size=None)
    assert gptq(w, h, grid, damp=0).dequantize()[0].tolist() == pytest.approx([0.672, 0.288])
    # a larger error moves q2 one step: W = [0.72, 0.33] -> w2 + 0.024 = 0.354 -> 3.6875 -> 4 -> 0.384,
    # where plain rounding gives 0.33 / 0.096 = 3.44 -> 3 -> 0.288
    w = torch.tensor([[0.72, 0.33]], dtype=F64)
    assert gptq(w, h, grid, damp=0).dequantize()[0].tolist() == pytest.approx([0.672, 0.384])
    assert round_to_nearest(w, grid).dequantize()[0].tolist() == pytest.approx([0.672, 0.288])
    assert output_error(w, gptq(w, h, grid, damp=0).dequantize(), h) < output_error(w, round_to_nearest(w, grid).dequantize(), h)


def test_gptq_without_correlation_is_round_to_nearest() -> None:
    """H proportional to the identity (uncorrelated inputs) leaves nothing to compensate; so does no Hessian."""
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    grid = Grid(bits=4, group_size=8)
    assert torch.equal(gptq(w, 3 * torch.eye(32), grid).dequantize(), round_to_nearest(w, grid).dequantize())
    assert torch.equal(gptq(w, None, grid).dequantize(), round_to_nearest(w, grid).dequantize())


def test_gptq_lowers_the_output_error_on_correlated_inputs_and_block_size_does_not_matter() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 64, generator=g) @ torch.randn(64, 64, generator=g)
    w = torch.randn(16, 64, generator=g)
    h = x.T @ x
    for grid in (Grid(4, 16), Grid(4, None), Grid(3, 32, symmetric=False)):
        q = gptq(w, h, grid).dequantize()
        assert output_error(w, q, h) < 0.7 * output_error(w, round_to_nearest(w, grid).dequantize(), h)
        # the lazy block updates are exact: any block size gives the same weights
        assert torch.allclose(gptq(w, h, grid, block_size=16).dequantize(), q, atol=1e-6)
        # every (row, group) holds at most 2^bits levels
        size = grid.group_size or 64
        for start in range(0, 64, size):
            assert max(len(set(row.tolist())) for row in q[:, start : start + size]) <= 2**grid.bits


def test_unseen_inputs_and_bad_hessians() -> None:
    """An input never seen (zero Hessian row) leaves its column to plain rounding; a wrong shape is refused."""
    w = torch.tensor([[0.72, 0.33]], dtype=F64)
    h = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=F64)
    assert torch.equal(gptq(w, h, Grid(4, None)).dequantize(), round_to_nearest(w, Grid(4, None)).dequantize())
    with pytest.raises(ValueError, match="does not fit a weight with 2 input columns"):
        gptq(w, torch.eye(3), Grid())
    with pytest.raises(ValueError, match="bits must lie in"):
        Grid(bits=1)


# --- whole models ------------------------------------------------------------------------------------

FUSED = sorted(name for name in TINY if name not in {"gpt_oss", "llama4", "nemotron_h"})


def _batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # right padding
    return [(ids, mask)]


@pytest.mark.parametrize("family", FUSED)
def test_every_fused_family_quantizes_its_layers_and_experts(family: str) -> None:
    model = build(family)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    done = quantize_model(model, _batches(), Scheme(grid=Grid(4, 8), ignore=(r".*shared_expert_gate",)), progress=False)
    targets = {record.name.split("[")[0] for record in done}
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    # every quantized tensor changed, and nothing else did: embeddings, norms, lm_head and routers keep their weights
    assert changed == targets
    assert {name.rsplit(".", 1)[-1] for name in changed} >= {"gate_up_proj", "down_proj"}
    assert not [name for name in changed if "embed" in name or "norm" in name or name.startswith("lm_head")]
    routers = ("mlp.gate.weight", "router.weight", "shared_expert_gate.weight")
    assert not [name for name in changed if name.endswith(routers)]
    for name in changed:  # at most 16 levels per row and group of 8 input columns
        p = dict(model.named_parameters())[name].detach()
        rows = p.reshape(-1, p.shape[-1])
        assert max(len(set(r[s : s + 8].tolist())) for r in rows for s in range(0, rows.shape[1], 8)) <= 16
    with torch.no_grad():
        logits = model(input_ids=_batches()[0][0]).logits
    assert torch.isfinite(logits).all()


def test_expert_hessians_sum_over_the_tokens_routed_to_each_expert() -> None:
    """Expert e's gate/up Hessian is sum x x^T over the (unpadded) tokens routed to e, x the experts'
    input; its down Hessian the same over act(x Wg^T) * (x Wu^T). Checked against a loop over tokens."""
    from expertlab.moe.families import adapter_for
    from expertlab.quantize.model import LayerQuantizer

    model = build("qwen3_moe")
    (ids, mask), = _batches()
    layer = adapter_for(model).moe_layers(model)[0]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = layer.router.forward

    def router(hidden: torch.Tensor):  # noqa: ANN202
        out = original(hidden)
        seen.append((hidden.reshape(-1, hidden.shape[-1]).detach().clone(), out[2].detach().clone()))
        return out

    layer.router.forward = router
    quantizer = LayerQuantizer(model, Scheme(method="rtn"))
    expert_hessians: dict[str, list[Hessian]] = {}
    original_quantize = quantizer._quantize_experts

    def capture(moe):  # noqa: ANN001, ANN202
        expert_hessians["inputs"] = quantizer.expert_hessians.inputs
        expert_hessians["activations"] = quantizer.expert_hessians.activations
        experts = moe.experts
        expert_hessians["weights"] = (experts.gate_up_proj.detach().clone(), experts.act_fn)
        return original_quantize(moe)

    quantizer._quantize_experts = capture
    with torch.no_grad():
        quantizer.quantize_layer(layer.index, [(ids, mask)])
    (hidden, top_k), = seen
    gate_up, act = expert_hessians["weights"]
    keep = mask.reshape(-1).bool()
    for expert in range(gate_up.shape[0]):
        h_in = torch.zeros(hidden.shape[1], hidden.shape[1], dtype=F64)
        h_act = torch.zeros(gate_up.shape[1] // 2, gate_up.shape[1] // 2, dtype=F64)
        rows = 0
        for t in range(hidden.shape[0]):
            if keep[t] and expert in top_k[t].tolist():
                x = hidden[t].to(F64)
                gate, up = (gate_up[expert].to(F64) @ x).chunk(2)
                a = act(gate) * up
                h_in += torch.outer(x, x)
                h_act += torch.outer(a, a)
                rows += 1
        assert expert_hessians["inputs"][expert].rows == rows
        assert torch.allclose(expert_hessians["inputs"][expert].sum, h_in, atol=1e-5)
        assert torch.allclose(expert_hessians["activations"][expert].sum, h_act, atol=1e-5)


def test_each_layer_is_calibrated_on_the_outputs_of_the_quantized_layers_before_it() -> None:
    """Calibrating layer 0 stops before layer 1 runs; layer 0 is then quantized in place, so what layer 1
    is calibrated on next is what the quantized layer 0 computes."""
    from expertlab.quantize.model import LayerQuantizer

    model, fresh = build("qwen3_moe"), build("qwen3_moe")
    batches = _batches()
    quantizer = LayerQuantizer(model, Scheme())
    calls: list[torch.Tensor] = []
    decoder_layers(model)[1].register_forward_hook(lambda module, args, out: calls.append(args[0].clone()))
    with torch.no_grad():
        quantizer.quantize_layer(0, batches)
        assert calls == []  # layer 1 never ran while layer 0 was calibrated
        quantizer.quantize_layer(1, batches)
        (seen,) = calls  # layer 1's own calibration pass
        unquantized: list[torch.Tensor] = []
        decoder_layers(fresh)[1].register_forward_hook(lambda module, args, out: unquantized.append(args[0].clone()))
        fresh(input_ids=batches[0][0], attention_mask=batches[0][1])
    assert not torch.allclose(seen, unquantized[0])


@pytest.mark.parametrize("family", ["gpt_oss", "llama4", "nemotron_h"])
def test_other_expert_layouts_are_refused_by_name(family: str) -> None:
    model = build(family)
    with pytest.raises(ValueError, match="quantizing them is not supported"):
        quantize_model(model, _batches(), Scheme(), progress=False)


# --- the packed checkpoint ------------------------------------------------------------------------------


def test_group_strategy_is_what_the_scales_are() -> None:
    """A layer no wider than group_size has one scale per row: the config says channel, not group 128."""
    from expertlab.quantize.packed import group_strategy

    widths = {"a.weight": 32, "b.gate_up_proj": 16}
    assert group_strategy(Grid(4, 128), widths) == ("channel", None)
    assert group_strategy(Grid(4, None), widths) == ("channel", None)
    assert group_strategy(Grid(4, 16), widths) == ("group", 16)
    with pytest.raises(ValueError, match="group_size 12: a.weight has 32 input columns, not a multiple of it"):
        group_strategy(Grid(4, 12), widths)
    with pytest.raises(ValueError, match=r"asymmetric grid \(symmetric: false\) is not supported"):
        group_strategy(Grid(4, 16, symmetric=False), widths)


def test_scales_are_values_of_the_weights_dtype() -> None:
    """A bfloat16 weight's scales are bfloat16 numbers, so integer x stored scale is the dequantized weight."""
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    q = round_to_nearest(w, Grid(4, 8))
    assert torch.equal(q.scales.to(torch.bfloat16).to(F64), q.scales)
    assert torch.equal(q.dequantize(), (q.codes.to(F64) * q.scales.repeat_interleave(8, dim=1)).to(torch.bfloat16))


def _packed(model, directory: Path, scheme: Scheme, **save) -> list:  # noqa: ANN001, ANN003
    """`model` quantized in place, saved and packed as the quantize stage does; its records."""
    from expertlab.quantize.packed import pack_checkpoint

    done = quantize_model(model, _batches(), scheme, progress=False)
    model.save_pretrained(directory, **save)
    pack_checkpoint(model, done, scheme.grid, directory)
    return done


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


@pytest.mark.parametrize(("family", "dtype"), [(family, torch.float32) for family in FUSED] + [("qwen3_moe", torch.bfloat16)])
def test_transformers_loads_the_packed_checkpoint_as_the_dequantized_model(
    family: str, dtype: torch.dtype, tmp_path: Path
) -> None:
    """Every fused family: the checkpoint holds int32-packed experts in the source's per-expert key format,
    and transformers (its compressed-tensors loader) reads it back as the very weights the quantizer left in
    memory: every parameter equal bit for bit, logits within 1e-5 (observed: equal)."""
    from transformers import AutoModelForCausalLM

    build(family).save_pretrained(tmp_path / "source")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "source", dtype=dtype).eval()  # as the stage loads it
    scheme = Scheme(grid=Grid(4, 8), ignore=(r".*shared_expert_gate",))
    done = _packed(model, tmp_path / "packed", scheme)
    tensors = _tensors(tmp_path / "packed")
    experts = [key for key in tensors if ".experts." in key]
    assert experts and not [key for key in experts if key.endswith(".weight")]
    for key in experts:
        if key.endswith("weight_packed"):
            base = key.removesuffix("packed")
            rows, columns = tensors[base + "shape"].tolist()
            assert tensors[key].dtype == torch.int32 and tuple(tensors[key].shape) == (rows, columns // 8)
            assert tensors[base + "scale"].dtype == dtype and tuple(tensors[base + "scale"].shape) == (rows, columns // 8)
    # every routed expert's gate, up and down projection, one by one
    count = sum(record.expert is not None for record in done)
    assert sum(key.endswith("weight_packed") for key in experts) == count * 3 // 2

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "packed").eval()
    ids = _batches()[0][0]
    with torch.no_grad():
        expected, got = model(input_ids=ids).logits, loaded(input_ids=ids).logits  # the first forward decompresses
    assert (got - expected).abs().max() <= 1e-5
    ours, theirs = dict(model.named_parameters()), dict(loaded.named_parameters())
    # compressed-tensors keeps each decompressed Linear's scale and shape beside its weight
    assert ours.keys() <= theirs.keys()
    assert {name.rsplit(".", 1)[1] for name in theirs.keys() - ours.keys()} == {"weight_scale", "weight_shape"}
    assert not [name for name in ours if not torch.equal(ours[name], theirs[name])]


def test_a_sharded_checkpoint_is_packed_shard_by_shard(tmp_path: Path) -> None:
    """Each packed tensor lands in its weight's shard and the index names it; transformers loads the result."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    model = build("qwen3_moe")
    _packed(model, tmp_path, Scheme(grid=Grid(4, 8)), max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1
    for shard in shards:
        with safe_open(tmp_path / shard, "pt") as fh:
            assert {key for key, name in index["weight_map"].items() if name == shard} == set(fh.keys())
    assert "model.layers.1.mlp.experts.7.up_proj.weight_packed" in index["weight_map"]
    assert not [key for key in index["weight_map"] if ".experts." in key and key.endswith(".weight")]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = _batches()[0][0]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_the_config_describes_the_checkpoint_and_the_ignore_list_is_kept_in_full_precision(tmp_path: Path) -> None:
    """qwen2_moe (shared expert, shared-expert gate, a dense layer): the quantization_config vLLM reads, and
    every module it ignores (lm_head, routers, the shared-expert gates the scheme ignores) stored as plain weights."""
    model = build("qwen2_moe")
    source = {name: p.detach().clone() for name, p in model.named_parameters()}
    _packed(model, tmp_path, Scheme(grid=Grid(4, 8), ignore=(r".*shared_expert_gate",)))
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    (group,) = config["config_groups"].values()
    assert {key: config[key] for key in ("quant_method", "format", "quantization_status")} == {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed"}
    assert group["targets"] == ["Linear"] and group["format"] == "pack-quantized"
    assert {key: group["weights"][key] for key in ("num_bits", "type", "symmetric", "strategy", "group_size")} == {
        "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 8}
    moe_layers = [0, 2, 3]  # layer 1 is dense (mlp_only_layers)
    assert config["ignore"] == ["lm_head"] + [
        f"model.layers.{i}.mlp.{name}" for i in moe_layers for name in ("gate", "shared_expert_gate")]
    tensors = _tensors(tmp_path)
    for module in config["ignore"]:
        assert torch.equal(tensors[f"{module}.weight"], source[f"{module}.weight"])
        assert f"{module}.weight_packed" not in tensors
    for name in ("model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight"):
        assert torch.equal(tensors[name], source[name])
    # everything else that is a matrix of a decoder layer is packed: attention, shared expert, dense MLP
    for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.shared_expert.down_proj"):
        assert tensors[f"model.layers.0.{name}.weight_packed"].dtype == torch.int32
    assert "model.layers.1.mlp.down_proj.weight_packed" in tensors


# --- the stage -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory: pytest.TempPathFactory, tiny_moe_dir: Path) -> Path:
    from expertlab.cli import main

    root = tmp_path_factory.mktemp("quantize")
    (root / "mask.json").write_text(json.dumps([[0, 2, 3], [1, 2, 3]]))
    args = ["prune", str(tiny_moe_dir), "--mask", str(root / "mask.json"), "--out", str(root / "pruned"),
            "--model", "tiny", "--calibration", "biomed", "--seed", "0", "--criterion", "reap", "--ratio", "0.25"]
    assert main(args) == 0
    words = "what is the dose of aspirin for fever in patients with diabetes and asthma".split()
    with (root / "calib.jsonl").open("w") as fh:
        for i in range(12):
            fh.write(json.dumps({"text": " ".join(words[i % 5 : i % 5 + 4 + i])}) + "\n")
    return root


def test_quantize_stage_writes_a_packed_quantized_variant_that_loads(pruned_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from expertlab.cli import main
    from expertlab.moe.prune import load_variant

    out = tmp_path / "q"
    data = str(pruned_dir / "calib.jsonl")
    assert main(["quantize", str(pruned_dir / "pruned"), "--data", data, "--out", str(out)]) == 0
    variant = load_variant(out)
    assert variant.variant_id == "tiny:biomed:0:reap:0.25:gptq-w4a16" and variant.quantization == "gptq-w4a16"
    assert variant.kept_per_layer == 3 and variant.quantized_from == str(pruned_dir / "pruned")
    record = json.loads((out / "expertlab_quantization.json").read_text())
    assert record["spec"]["bits"] == 4 and record["samples"] == 12
    # 2 layers x (q, k, v, o + 3 experts x (gate_up, down))
    assert len(record["tensors"]) == 2 * (4 + 3 * 2)
    assert 0 < record["median_relative_error"] < 0.1
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    # group_size 128 on layers 32 and 16 columns wide: one scale per row, and the config says so
    weights = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]["weights"]
    assert (weights["strategy"], weights["group_size"]) == ("channel", None)
    tensors = _tensors(out)
    assert tensors["model.layers.1.mlp.experts.2.down_proj.weight_packed"].shape == (32, 2)
    assert tensors["model.layers.1.mlp.experts.2.down_proj.weight_scale"].shape == (32, 1)
    assert "model.layers.1.mlp.experts.3.down_proj.weight_packed" not in tensors  # 3 experts kept
    source = AutoModelForCausalLM.from_pretrained(pruned_dir / "pruned")
    quantized = AutoModelForCausalLM.from_pretrained(out)
    assert quantized.config.num_experts == 3
    with torch.no_grad():
        quantized(input_ids=torch.tensor([[1, 2, 3]]))  # the first forward decompresses
    source_params, quantized_params = dict(source.named_parameters()), dict(quantized.named_parameters())
    assert source_params.keys() <= quantized_params.keys()
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.gate.weight"):
        assert torch.equal(source_params[name], quantized_params[name])
    assert not torch.equal(source_params["model.layers.0.mlp.experts.down_proj"],
                           quantized_params["model.layers.0.mlp.experts.down_proj"])


def test_quantize_stage_refuses_bad_inputs_and_leaves_nothing(pruned_dir: Path, tmp_path: Path) -> None:
    from expertlab.cli import main

    out = tmp_path / "q"
    data = str(pruned_dir / "calib.jsonl")
    assert main(["quantize", str(tmp_path / "missing"), "--data", data, "--out", str(out)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"prompt": "no text"}\n')
    assert main(["quantize", str(pruned_dir / "pruned"), "--data", str(bad), "--out", str(out)]) == 2
    params = tmp_path / "params.yaml"
    params.write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    args = ["quantize", str(pruned_dir / "pruned"), "--data", data, "--out", str(out), "--params", str(params)]
    assert main([*args, "--scheme", "w3"]) == 2
    assert not out.exists() and not list(tmp_path.glob(".q.*"))
    assert main([*args, "--scheme", "gptq-w4a16"]) == 0
    assert main(["quantize", str(out), "--data", data, "--out", str(tmp_path / "twice")]) == 2  # already quantized


def test_quantize_stage_errors_name_the_problem(
    pruned_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from expertlab.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"prompt": "no text"}\n')
    main(["quantize", str(pruned_dir / "pruned"), "--data", str(bad), "--out", str(tmp_path / "q")])
    assert f'{bad}:2: expected {{"text": string}} or {{"messages": [{{"role", "content"}}, ...]}}' in capsys.readouterr().err

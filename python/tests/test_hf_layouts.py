"""Hugging Face checkpoint layouts packed into the layer's layout
(moe_compiler.hf.pack_experts), checked on fresh random float64 weights: the
float64 oracle on the packed tensors against a per-token forward written
from each checkpoint's own tensors (its per-expert matrices, or GPT-OSS's
interleaved gate/up columns and biases)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moe_compiler import configs, hf, reference

rng = np.random.default_rng()
H, I = 48, 16


def scaled(config):
    return dataclasses.replace(config, hidden=H, intermediate=I)


CASES = {
    "mixtral": scaled(configs.MIXTRAL_8X7B),
    "qwen3_moe": dataclasses.replace(scaled(configs.QWEN3_30B_A3B), num_experts=16, k=4),
    "deepseek_v3": scaled(configs.DEEPSEEK_V3),
    "gpt_oss": dataclasses.replace(scaled(configs.GPT_OSS_120B), num_experts=8, k=2),
    "gpt_oss_biased": dataclasses.replace(scaled(configs.GPT_OSS_20B), num_experts=8, k=2),
    # A shared expert twice the routed width: two slices.
    "deepseek_v3_shared": dataclasses.replace(scaled(configs.DEEPSEEK_V3_SHARED),
                                              num_shared_experts=2),
    "qwen2_moe": dataclasses.replace(scaled(configs.QWEN1_5_MOE_A2_7B), num_experts=12),
}
# Each case's checkpoint layout.
LAYOUT_OF = {name: "gpt_oss" if name.startswith("gpt_oss") else
             "deepseek_v3" if name.startswith("deepseek_v3") else name for name in CASES}
PREFIX = "model.layers.3.mlp."


def checkpoint(layout: str, config) -> dict[str, np.ndarray]:
    e = config.num_experts
    tensors = {}
    router = "router" if layout == "gpt_oss" else "gate"
    tensors[f"{PREFIX}{router}.weight"] = rng.standard_normal((e, H)) / np.sqrt(H)
    if layout == "gpt_oss":
        # Zero expert biases where the config has none (GPT-OSS-120B here).
        bias_scale = 1.0 if config.has_expert_biases else 0.0
        tensors[f"{PREFIX}router.bias"] = rng.standard_normal(e) * 0.1
        tensors[f"{PREFIX}experts.gate_up_proj"] = rng.standard_normal((e, H, 2 * I)) / np.sqrt(H)
        tensors[f"{PREFIX}experts.gate_up_proj_bias"] = rng.standard_normal((e, 2 * I)) * bias_scale
        tensors[f"{PREFIX}experts.down_proj"] = rng.standard_normal((e, I, H)) / np.sqrt(I)
        tensors[f"{PREFIX}experts.down_proj_bias"] = rng.standard_normal((e, H)) * bias_scale
        return tensors
    names = ("w1", "w3", "w2") if layout == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    for expert in range(e):
        for name, shape, fan_in in zip(names, ((I, H), (I, H), (H, I)), (H, H, I)):
            tensors[f"{PREFIX}experts.{expert}.{name}.weight"] = (
                rng.standard_normal(shape) / np.sqrt(fan_in))
    if layout == "deepseek_v3":
        tensors[f"{PREFIX}gate.e_score_correction_bias"] = rng.standard_normal(e) * 0.1
    if config.num_shared_experts:
        width = config.num_shared_experts * I
        name = "shared_experts." if layout == "deepseek_v3" else "shared_expert."
        for part, shape, fan_in in (("gate_proj", (width, H), H), ("up_proj", (width, H), H),
                                    ("down_proj", (H, width), width)):
            tensors[f"{PREFIX}{name}{part}.weight"] = rng.standard_normal(shape) / np.sqrt(fan_in)
        if config.shared_expert_gate:
            tensors[f"{PREFIX}shared_expert_gate.weight"] = rng.standard_normal((1, H)) / np.sqrt(H)
    return tensors


def shared_expert_mlp(layout: str, tensors, token, config):
    """The whole shared expert (not sliced) on one token, gated where the
    layout gates it."""
    name = f"{PREFIX}shared_experts." if layout == "deepseek_v3" else f"{PREFIX}shared_expert."
    gate = tensors[name + "gate_proj.weight"] @ token
    up = tensors[name + "up_proj.weight"] @ token
    hidden = reference.activation(np.concatenate([gate, up])[None], config.activation)[0]
    out = tensors[name + "down_proj.weight"] @ hidden
    if config.shared_expert_gate:
        logit = tensors[f"{PREFIX}shared_expert_gate.weight"][0] @ token
        out = out / (1.0 + np.exp(-logit))
    return out


def expert_mlp(layout: str, tensors, expert: int, token, config):
    """One expert on one token, from the checkpoint's own tensors."""
    if layout == "gpt_oss":
        gate_up = (token @ tensors[f"{PREFIX}experts.gate_up_proj"][expert]
                   + tensors[f"{PREFIX}experts.gate_up_proj_bias"][expert])
        gate, up = gate_up[0::2], gate_up[1::2]
        down = tensors[f"{PREFIX}experts.down_proj"][expert].T
    else:
        names = ("w1", "w3", "w2") if layout == "mixtral" else ("gate_proj", "up_proj",
                                                                 "down_proj")
        weight = [tensors[f"{PREFIX}experts.{expert}.{name}.weight"] for name in names]
        gate, up, down = weight[0] @ token, weight[1] @ token, weight[2]
    hidden = reference.activation(np.concatenate([gate, up])[None], config.activation,
                                  config.swiglu_alpha, config.swiglu_limit)[0]
    if layout == "gpt_oss":
        return down @ hidden + tensors[f"{PREFIX}experts.down_proj_bias"][expert]
    return down @ hidden


def checkpoint_forward(layout: str, tensors, x, config):
    router = "router" if layout == "gpt_oss" else "gate"
    logits = x @ tensors[f"{PREFIX}{router}.weight"].T
    if layout == "gpt_oss":
        logits = logits + tensors[f"{PREFIX}router.bias"]
    weights, ids = reference.topk(
        logits, config.k, config.scoring,
        bias=tensors.get(f"{PREFIX}gate.e_score_correction_bias"),
        num_groups=config.num_groups, topk_groups=config.topk_groups,
        renormalize=config.renormalize, routed_scaling_factor=config.routed_scaling_factor)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(config.k):
            out[t] += weights[t, j] * expert_mlp(layout, tensors, int(ids[t, j]), x[t], config)
        if config.num_shared_experts:
            out[t] += shared_expert_mlp(layout, tensors, x[t], config)
    return out


@pytest.mark.parametrize("case", CASES)
def test_packed_layer_matches_the_checkpoint(case):
    config, layout = CASES[case], LAYOUT_OF[case]
    tensors = checkpoint(layout, config)
    packed = hf.pack_experts(tensors, layout, config, prefix=PREFIX)
    experts = config.num_experts + config.num_shared_experts
    assert packed["w13"].shape == (experts, 2 * I, H)
    assert packed["w2"].shape == (experts, H, I)
    x = rng.standard_normal((int(rng.integers(1, 9)), H))
    got = reference.moe_layer(x, packed["w_gate"], packed["w13"], packed["w2"], config,
                              gate_bias=packed.get("gate_bias"),
                              score_bias=packed.get("score_bias"),
                              b13=packed.get("b13"), b2=packed.get("b2"),
                              shared_gate_weight=packed.get("w_shared_gate"))
    assert ("b13" in packed) == config.has_expert_biases
    expected = checkpoint_forward(layout, tensors, x, config)
    assert np.linalg.norm(got - expected) <= 1e-12 * np.linalg.norm(expected)


def test_unread_keys_are_an_error_unless_ignored():
    config = CASES["deepseek_v3"]
    tensors = checkpoint("deepseek_v3", config)
    with pytest.raises(ValueError, match="the mixtral layout has no shared experts"):
        hf.pack_experts(checkpoint("mixtral", CASES["mixtral"]), "mixtral",
                        dataclasses.replace(CASES["mixtral"], num_shared_experts=1),
                        prefix=PREFIX)
    tensors[f"{PREFIX}shared_experts.gate_proj.weight"] = np.zeros((2 * I, H))
    with pytest.raises(ValueError, match=r"does not read \['model.layers.3.mlp.shared_experts"):
        hf.pack_experts(tensors, "deepseek_v3", config, prefix=PREFIX)
    packed = hf.pack_experts(tensors, "deepseek_v3", config, prefix=PREFIX,
                             ignore=("shared_experts.",))
    assert set(packed) == {"w_gate", "w13", "w2", "score_bias"}


def test_bad_checkpoints():
    config = CASES["mixtral"]
    tensors = checkpoint("mixtral", config)
    with pytest.raises(ValueError, match="unknown layout 'llama'"):
        hf.pack_experts(tensors, "llama", config, prefix=PREFIX)
    missing = dict(tensors)
    del missing[f"{PREFIX}experts.5.w3.weight"]
    with pytest.raises(KeyError, match="experts.5.w3.weight"):
        hf.pack_experts(missing, "mixtral", config, prefix=PREFIX)
    wrong = dict(tensors)
    wrong[f"{PREFIX}experts.2.w2.weight"] = np.zeros((I, H))
    with pytest.raises(ValueError, match=rf"experts.2.w2.weight must have shape \({H}, {I}\)"):
        hf.pack_experts(wrong, "mixtral", config, prefix=PREFIX)


def test_expert_biases_need_a_config_with_them():
    config = CASES["gpt_oss"]
    tensors = checkpoint("gpt_oss", config)
    tensors[f"{PREFIX}experts.down_proj_bias"][3, 7] = 0.5
    with pytest.raises(ValueError, match="nonzero expert biases need a config with "
                       "has_expert_biases"):
        hf.pack_experts(tensors, "gpt_oss", config, prefix=PREFIX)
    biased = CASES["gpt_oss_biased"]
    missing = checkpoint("gpt_oss", biased)
    del missing[f"{PREFIX}experts.gate_up_proj_bias"]
    with pytest.raises(KeyError, match="gate_up_proj_bias"):
        hf.pack_experts(missing, "gpt_oss", biased, prefix=PREFIX)
    with pytest.raises(ValueError, match="the mixtral layout has no expert biases"):
        hf.pack_experts(checkpoint("mixtral", CASES["mixtral"]), "mixtral",
                        dataclasses.replace(CASES["mixtral"], has_expert_biases=True),
                        prefix=PREFIX)


def test_module_buffers_take_the_packed_weights():
    torch = pytest.importorskip("torch")
    config = CASES["qwen3_moe"]
    tensors = checkpoint("qwen3_moe", config)
    block = hf.MoEBlock.from_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()},
                                        "qwen3_moe", config, prefix=PREFIX)
    packed = hf.pack_experts(tensors, "qwen3_moe", config, prefix=PREFIX)
    assert block.w13.dtype == torch.bfloat16
    np.testing.assert_allclose(block.w13.float().numpy(), packed["w13"], rtol=1e-2, atol=1e-2)
    assert "moe.router" in block.layer_ir()

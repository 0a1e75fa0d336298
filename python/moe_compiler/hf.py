"""Hugging Face MoE checkpoints as moe layers: expert weights packed once into
the layer's layout, and a `torch.nn.Module` that runs the compiled layer.

    from moe_compiler import configs, hf
    block = hf.MoEBlock.from_state_dict(state_dict, "qwen3_moe", configs.QWEN3_30B_A3B,
                                        prefix="model.layers.0.mlp.")
    out = block(hidden_states)            # bf16 [..., H] on the GPU

The layer's layout: router weight `w_gate` [E, H]; `w13` [E, 2I, H], the gate
rows then the up rows; `w2` [E, H, I]; the router's bias (`gate_bias`, GPT-OSS)
and the score correction bias (`score_bias`, DeepSeek-V3) as f32 [E]; the
experts' biases (`b13` [E, 2I], gate then up, and `b2` [E, H]; GPT-OSS) as
f32. A shared expert of width S·I (`config.num_shared_experts` = S) is cut
into S slices of width I, appended to `w13` and `w2` as experts E .. E+S-1
(every token picks them; see moe.add_shared_experts), with its gate
`w_shared_gate` [1, H] where the config has one.

Layouts read (HF parameter names under `prefix`):
- `mixtral`: `gate.weight`, `experts.{e}.w1.weight` (gate), `w3.weight`
  (up), `w2.weight` (down);
- `qwen3_moe`: `gate.weight`, `experts.{e}.{gate,up,down}_proj.weight`;
- `deepseek_v3`: as qwen3_moe, and `gate.e_score_correction_bias`; with
  shared experts, `shared_experts.{gate,up,down}_proj.weight`;
- `qwen2_moe` (Qwen1.5-MoE, Qwen2-MoE): as qwen3_moe, and
  `shared_expert.{gate,up,down}_proj.weight` and `shared_expert_gate.weight`;
- `gpt_oss`: `router.weight`, `router.bias`, `experts.gate_up_proj`
  [E, H, 2I] with gate and up columns interleaved, `experts.down_proj`
  [E, I, H], and their biases `experts.gate_up_proj_bias` (interleaved as
  well) and `experts.down_proj_bias`, which need a config with
  `has_expert_biases` (`configs.GPT_OSS_20B`) unless they are zero.

A key under `prefix` that the layout does not read (DeepSeek-V3's shared
experts with a config without them, say) is an error unless `ignore` names
its prefix, so that nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from . import configs

__all__ = ["LAYOUTS", "MoEBlock", "layer_ir", "pack_experts"]

LAYOUTS = ("mixtral", "qwen3_moe", "qwen2_moe", "deepseek_v3", "gpt_oss")
# Where a layout keeps its shared expert: the expert's prefix, and its gate.
SHARED_EXPERT_NAMES = {"deepseek_v3": ("shared_experts.", None),
                       "qwen2_moe": ("shared_expert.", "shared_expert_gate.weight")}


def _stack(arrays, axis: int = 0):
    """Stacks (or with `concatenate`, joins) NumPy arrays or torch tensors
    alike, so that packing runs on either."""
    if type(arrays[0]).__module__.startswith("torch"):
        import torch

        return torch.stack(list(arrays), dim=axis)
    import numpy as np

    return np.stack(arrays, axis=axis)


def _concatenate(arrays, axis: int):
    if type(arrays[0]).__module__.startswith("torch"):
        import torch

        return torch.cat(list(arrays), dim=axis)
    import numpy as np

    return np.concatenate(arrays, axis=axis)


def _take(state_dict: Mapping[str, object], key: str, used: set[str]):
    if key not in state_dict:
        raise KeyError(f"the checkpoint has no {key!r}")
    used.add(key)
    return state_dict[key]


def _check_shape(name: str, tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def _per_expert(state_dict, prefix: str, names: Sequence[str], config, used):
    """[E, 2I, H] from per-expert gate and up matrices [I, H], and [E, H, I]
    from the down matrices."""
    e, h, i = config.num_experts, config.hidden, config.intermediate
    gate, up, down = [], [], []
    for expert in range(e):
        matrices = [_take(state_dict, f"{prefix}experts.{expert}.{name}.weight", used)
                    for name in names]
        for name, matrix, shape in zip(names, matrices, ((i, h), (i, h), (h, i))):
            _check_shape(f"{prefix}experts.{expert}.{name}.weight", matrix, shape)
        gate.append(matrices[0])
        up.append(matrices[1])
        down.append(matrices[2])
    return _concatenate([_stack(gate), _stack(up)], axis=1), _stack(down)


def _deinterleave(gate_up):
    """Gate and up columns interleaved along the last axis (gate at even
    columns) → the gate columns, then the up columns."""
    return _concatenate([gate_up[..., 0::2], gate_up[..., 1::2]], axis=-1)


def _gpt_oss_experts(state_dict, prefix: str, config, used) -> dict[str, object]:
    """GPT-OSS keeps all experts in one tensor, gate and up columns
    interleaved (gate at even columns): kept so for a config with
    `gate_up_interleaved` (its activation pairs them), else de-interleaved
    into gate rows, then up rows; its expert biases likewise, when the
    config has them."""
    reorder = (lambda t: t) if config.gate_up_interleaved else _deinterleave
    e, h, i = config.num_experts, config.hidden, config.intermediate
    gate_up = _take(state_dict, f"{prefix}experts.gate_up_proj", used)
    down = _take(state_dict, f"{prefix}experts.down_proj", used)
    _check_shape(f"{prefix}experts.gate_up_proj", gate_up, (e, h, 2 * i))
    _check_shape(f"{prefix}experts.down_proj", down, (e, i, h))
    packed = {"w13": reorder(gate_up).swapaxes(1, 2), "w2": down.swapaxes(1, 2)}
    for name, label, shape in (("gate_up_proj_bias", "b13", (e, 2 * i)),
                               ("down_proj_bias", "b2", (e, h))):
        key = f"{prefix}experts.{name}"
        if config.has_expert_biases:
            bias = _take(state_dict, key, used)
            _check_shape(key, bias, shape)
            packed[label] = reorder(bias) if label == "b13" else bias
        elif key in state_dict:
            bias = _take(state_dict, key, used)
            _check_shape(key, bias, shape)
            if bool(abs(bias).max() != 0):
                raise ValueError(f"{key}: nonzero expert biases need a config with "
                                 "has_expert_biases (e.g. configs.GPT_OSS_20B)")
    return packed


def _shared_expert(state_dict, prefix: str, layout: str, config, used):
    """The shared expert cut into S slices of the routed width: ([S, 2I, H],
    [S, H, I]) to append to w13 and w2, and its gate ([1, H]) or None."""
    if layout not in SHARED_EXPERT_NAMES:
        raise ValueError(f"the {layout} layout has no shared experts, but the config "
                         "asks for them (num_shared_experts)")
    name, gate_name = SHARED_EXPERT_NAMES[layout]
    s, h, i = config.num_shared_experts, config.hidden, config.intermediate
    matrices = {}
    for part, shape in (("gate_proj", (s * i, h)), ("up_proj", (s * i, h)),
                        ("down_proj", (h, s * i))):
        key = f"{prefix}{name}{part}.weight"
        matrices[part] = _take(state_dict, key, used)
        _check_shape(key, matrices[part], shape)
    slices = [slice(j * i, (j + 1) * i) for j in range(s)]
    w13 = _stack([_concatenate([matrices["gate_proj"][rows], matrices["up_proj"][rows]], axis=0)
                  for rows in slices])
    w2 = _stack([matrices["down_proj"][:, rows] for rows in slices])
    gate = None
    if config.shared_expert_gate:
        if gate_name is None:
            raise ValueError(f"the {layout} layout's shared expert has no gate, but the "
                             "config asks for one (shared_expert_gate)")
        gate = _take(state_dict, f"{prefix}{gate_name}", used)
        _check_shape(f"{prefix}{gate_name}", gate, (1, h))
    return w13, w2, gate


def pack_experts(state_dict: Mapping[str, object], layout: str, config: configs.LayerConfig,
                 prefix: str = "", ignore: Sequence[str] = ()) -> dict[str, object]:
    """The layer's tensors (`w_gate`, `w13`, `w2`, and `gate_bias`,
    `score_bias`, `w_shared_gate`, `b13` and `b2` where the config has them)
    from a checkpoint's tensors (NumPy arrays or torch tensors, kept in their dtype
    and device)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    used: set[str] = set()
    e, h = config.num_experts, config.hidden
    router = "router" if layout == "gpt_oss" else "gate"
    packed = {"w_gate": _take(state_dict, f"{prefix}{router}.weight", used)}
    _check_shape(f"{prefix}{router}.weight", packed["w_gate"], (e, h))
    if config.has_expert_biases and layout != "gpt_oss":
        raise ValueError(f"the {layout} layout has no expert biases, but the config "
                         "asks for them (has_expert_biases)")
    if layout == "gpt_oss":
        packed.update(_gpt_oss_experts(state_dict, prefix, config, used))
    elif layout == "mixtral":
        packed["w13"], packed["w2"] = _per_expert(state_dict, prefix, ("w1", "w3", "w2"),
                                                  config, used)
    else:
        packed["w13"], packed["w2"] = _per_expert(
            state_dict, prefix, ("gate_proj", "up_proj", "down_proj"), config, used)
    if config.has_gate_bias:
        packed["gate_bias"] = _take(state_dict, f"{prefix}{router}.bias", used)
    if config.has_score_bias:
        packed["score_bias"] = _take(state_dict, f"{prefix}gate.e_score_correction_bias", used)
    for name in ("gate_bias", "score_bias"):
        if name in packed:
            _check_shape(name, packed[name], (e,))
    if config.num_shared_experts:
        w13, w2, gate = _shared_expert(state_dict, prefix, layout, config, used)
        packed["w13"] = _concatenate([packed["w13"], w13], axis=0)
        packed["w2"] = _concatenate([packed["w2"], w2], axis=0)
        if gate is not None:
            packed["w_shared_gate"] = gate
    left = sorted(key for key in state_dict if key.startswith(prefix) and key not in used
                  and not any(key.startswith(prefix + skip) for skip in ignore))
    if left:
        raise ValueError(f"the {layout} layout does not read {left[:4]}"
                         f"{' ...' if len(left) > 4 else ''}; pass ignore= to leave them out")
    return packed


def layer_ir(config: configs.LayerConfig) -> str:
    """The IR MoEBlock compiles for `config`: the routed layer, its function
    named `moe_block` (inputs x, w_gate, the config's router biases, the
    shared expert's gate, w13, w2, and the experts' biases b13 and b2, each
    where it has them)."""
    return configs.layer_mlir(dataclasses.replace(config, name="moe_block"))


def _module():
    import torch

    from . import gpu

    class MoEBlock(torch.nn.Module):
        """A routed MoE block (router, top-k, experts, weighted sum) run by a
        compiled moe layer. The weights are packed once, into buffers; the
        layer compiles once per module, into one library for every token
        count (a variant per bucket of `gpu.TOKEN_BUCKETS`)."""

        def __init__(self, config: configs.LayerConfig, *, moe_compile=None, cache_dir=None):
            super().__init__()
            self.config = config
            self._compile_options = {"moe_compile": moe_compile, "cache_dir": cache_dir}
            self._layer: gpu.Layer | None = None
            e, h, i = config.num_experts, config.hidden, config.intermediate
            self.register_buffer("w_gate", torch.zeros(e, h, dtype=torch.bfloat16))
            if config.has_gate_bias:
                self.register_buffer("gate_bias", torch.zeros(e))
            if config.has_score_bias:
                self.register_buffer("score_bias", torch.zeros(e))
            if config.shared_expert_gate:
                self.register_buffer("w_shared_gate", torch.zeros(1, h, dtype=torch.bfloat16))
            # The shared expert's slices follow the routed experts.
            experts = e + config.num_shared_experts
            self.register_buffer("w13", torch.zeros(experts, 2 * i, h, dtype=torch.bfloat16))
            self.register_buffer("w2", torch.zeros(experts, h, i, dtype=torch.bfloat16))
            if config.has_expert_biases:
                self.register_buffer("b13", torch.zeros(experts, 2 * i))
                self.register_buffer("b2", torch.zeros(experts, h))

        @classmethod
        def from_state_dict(cls, state_dict, layout: str, config: configs.LayerConfig,
                            prefix: str = "", ignore: Sequence[str] = (), **options):
            block = cls(config, **options)
            block.load_experts(state_dict, layout, prefix, ignore)
            return block

        def load_experts(self, state_dict, layout: str, prefix: str = "",
                         ignore: Sequence[str] = ()) -> None:
            """Packs a checkpoint's router and expert tensors into the
            buffers (bf16, biases f32; see `pack_experts`)."""
            for name, tensor in pack_experts(state_dict, layout, self.config, prefix,
                                             ignore).items():
                getattr(self, name).copy_(torch.as_tensor(tensor))

        def layer_ir(self) -> str:
            return layer_ir(self.config)

        def forward(self, hidden_states):
            shape = hidden_states.shape
            x = hidden_states.reshape(-1, shape[-1]).contiguous()
            if self._layer is None:
                self._layer = gpu.compile(self.layer_ir(), name="moe_block",
                                          token_buckets=gpu.TOKEN_BUCKETS,
                                          **self._compile_options)
            inputs = [x, self.w_gate]
            inputs += [getattr(self, name) for name in ("gate_bias", "score_bias",
                                                        "w_shared_gate")
                       if hasattr(self, name)]
            inputs += [self.w13, self.w2]
            inputs += [getattr(self, name) for name in ("b13", "b2") if hasattr(self, name)]
            return self._layer(*inputs).reshape(shape)

    return MoEBlock


def __getattr__(name: str):
    # The module class needs torch; the packing functions run without a GPU.
    if name == "MoEBlock":
        cls = _module()
        globals()["MoEBlock"] = cls
        return cls
    raise AttributeError(name)

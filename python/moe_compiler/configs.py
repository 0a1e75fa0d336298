"""The example layers: real model configurations, and the IR that states them.

`examples/*.mlir` is generated from these configurations (see
`python -m moe_compiler.configs --write-examples`), and a test keeps the two
in sync, so the IR and the oracle never disagree about a layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """One MoE layer: E experts, k per token, hidden H, intermediate I.
    `has_expert_biases`: each expert's GEMMs add f32 biases (`%b13` [E, 2I],
    `%b2` [E, H], the block's last arguments; E + S rows with shared
    experts), as GPT-OSS's do.
    `num_shared_experts`: S more experts of width I that every token picks
    (a shared expert of width S·I, split), after the E routed ones in the
    expert weights; `shared_expert_gate`: their weight is the sigmoid of
    x · `%w_shared_gate`ᵀ ([1, H]), as Qwen2-MoE's, instead of 1."""

    def __post_init__(self):
        if self.num_shared_experts < 0:
            raise ValueError(f"num_shared_experts must be >= 0, got {self.num_shared_experts}")
        if self.shared_expert_gate and not self.num_shared_experts:
            raise ValueError("shared_expert_gate needs shared experts (num_shared_experts > 0)")

    name: str
    num_experts: int
    k: int
    hidden: int
    intermediate: int
    scoring: str = "softmax"
    renormalize: bool = False
    activation: str = "silu_and_mul"
    # GEMM1's gate and up weight rows alternate (GPT-OSS's checkpoint layout)
    # instead of forming [gate | up] halves.
    gate_up_interleaved: bool = False
    num_groups: int | None = None
    topk_groups: int | None = None
    routed_scaling_factor: float | None = None
    has_score_bias: bool = False
    has_gate_bias: bool = False
    has_expert_biases: bool = False
    num_shared_experts: int = 0
    shared_expert_gate: bool = False
    swiglu_alpha: float | None = None
    swiglu_limit: float | None = None
    dtype: str = "bf16"

    def scaled(self, hidden: int, intermediate: int) -> "LayerConfig":
        """Same routing and activation at a smaller H and I."""
        return dataclasses.replace(self, hidden=hidden, intermediate=intermediate)


MIXTRAL_8X7B = LayerConfig(
    "mixtral_8x7b", num_experts=8, k=2, hidden=4096, intermediate=14336,
    scoring="softmax", renormalize=True)
QWEN3_30B_A3B = LayerConfig(
    "qwen3_30b_a3b", num_experts=128, k=8, hidden=2048, intermediate=768,
    scoring="softmax", renormalize=True)
DEEPSEEK_V3 = LayerConfig(
    "deepseek_v3", num_experts=256, k=8, hidden=7168, intermediate=2048,
    scoring="sigmoid", renormalize=True, num_groups=8, topk_groups=4,
    routed_scaling_factor=2.5, has_score_bias=True)
# The routed block of GPT-OSS-120B as the benchmarks time it, without the
# expert biases its checkpoint has (GPT_OSS_20B states them; a 120B config
# with them is dataclasses.replace(GPT_OSS_120B, has_expert_biases=True)).
GPT_OSS_120B = LayerConfig(
    "gpt_oss_120b", num_experts=128, k=4, hidden=2880, intermediate=2880,
    scoring="topk_softmax", activation="swiglu", swiglu_alpha=1.702,
    swiglu_limit=7.0, has_gate_bias=True)

# GPT-OSS-20B as its checkpoint stores it: expert biases, and gate and up
# rows interleaved.
GPT_OSS_20B = LayerConfig(
    "gpt_oss_20b", num_experts=32, k=4, hidden=2880, intermediate=2880,
    scoring="topk_softmax", activation="swiglu", swiglu_alpha=1.702,
    swiglu_limit=7.0, has_gate_bias=True, has_expert_biases=True,
    gate_up_interleaved=True)

# DeepSeek-V3 with its shared expert (one, of the routed width).
DEEPSEEK_V3_SHARED = LayerConfig(
    "deepseek_v3_shared", num_experts=256, k=8, hidden=7168, intermediate=2048,
    scoring="sigmoid", renormalize=True, num_groups=8, topk_groups=4,
    routed_scaling_factor=2.5, has_score_bias=True, num_shared_experts=1)
# Qwen1.5-MoE-A2.7B: 60 experts, top-4 without renormalization, and a
# sigmoid-gated shared expert 4 times the routed width (5632 = 4 · 1408).
QWEN1_5_MOE_A2_7B = LayerConfig(
    "qwen1_5_moe_a2_7b", num_experts=60, k=4, hidden=2048, intermediate=1408,
    scoring="softmax", renormalize=False, num_shared_experts=4, shared_expert_gate=True)

EXAMPLE_LAYERS = (MIXTRAL_8X7B, QWEN3_30B_A3B, DEEPSEEK_V3, GPT_OSS_120B, GPT_OSS_20B,
                  DEEPSEEK_V3_SHARED, QWEN1_5_MOE_A2_7B)

# The scaled examples (examples/scaled/) keep E, k, routing and activation,
# and shrink H and I so that the CPU runs them in a moment.
SCALED_HIDDEN = 256
SCALED_INTERMEDIATE = 128


def scaled_example(config: LayerConfig) -> LayerConfig:
    return config.scaled(SCALED_HIDDEN, SCALED_INTERMEDIATE)


def _f32(value: float) -> str:
    return f"{float(value)!r} : f32"


def _activation_line(config: LayerConfig, gate_up_type: str, act_type: str) -> str:
    attrs = ""
    if config.activation == "swiglu":
        attrs = (f" {{alpha = {_f32(config.swiglu_alpha)}, "
                 f"limit = {_f32(config.swiglu_limit)}}}")
    layout = " interleaved" if config.gate_up_interleaved else ""
    return (f"  %act = moe.activation {config.activation}{layout} %gate_up{attrs}"
            f" : {gate_up_type} -> {act_type}")


def _block_tail(config: LayerConfig) -> list[str]:
    """GEMM2's f32 rows → unpermute → combine → return, given %down."""
    k, h, t = config.k, config.hidden, config.dtype
    x_type = f"tensor<?x{h}x{t}>"
    return [
        f"  %expert_out = moe.unpermute %down, %source : tensor<?x{h}xf32>, tensor<?xi32>"
        f" -> tensor<?x{k}x{h}xf32>",
        f"  %out = moe.combine %expert_out, %weights : tensor<?x{k}x{h}xf32>, tensor<?x{k}xf32> -> {x_type}",
        f"  return %out : {x_type}",
        "}",
    ]


def _expert_biases(config: LayerConfig) -> tuple[list[str], dict[str, str]]:
    """The expert biases' arguments, and per GEMM (`w13`, `w2`) the operand
    text that adds them (empty without biases)."""
    if not config.has_expert_biases:
        return [], {"w13": "", "w2": ""}
    e, h, i = config.num_experts, config.hidden, config.intermediate
    types = {"w13": f"tensor<{e}x{2 * i}xf32>", "w2": f"tensor<{e}x{h}xf32>"}
    args = [f"%b13: {types['w13']}", f"%b2: {types['w2']}"]
    return args, {"w13": f" bias(%b13 : {types['w13']})", "w2": f" bias(%b2 : {types['w2']})"}


def _permute_line(config: LayerConfig) -> str:
    e, k, h, t = config.num_experts, config.k, config.hidden, config.dtype
    x_type = f"tensor<?x{h}x{t}>"
    return (f"  %rows, %offsets, %source = moe.permute %x, %ids : {x_type}, tensor<?x{k}xi32>"
            f" -> {x_type}, tensor<{e + 1}xi32>, tensor<?xi32>")


def _bf16_block(config: LayerConfig) -> tuple[list[str], list[str]]:
    """The expert weights' arguments and the block's ops (permute → GEMM1 →
    activation → GEMM2 → unpermute → combine), given %x, %ids, %weights."""
    e, h, i, t = config.num_experts, config.hidden, config.intermediate, config.dtype
    x_type = f"tensor<?x{h}x{t}>"
    w13_type = f"tensor<{e}x{2 * i}x{h}x{t}>"
    w2_type = f"tensor<{e}x{h}x{i}x{t}>"
    offsets_type = f"tensor<{e + 1}xi32>"
    bias_args, bias = _expert_biases(config)
    args = [f"%w13: {w13_type}", f"%w2: {w2_type}", *bias_args]
    lines = [
        _permute_line(config),
        f"  %gate_up = moe.grouped_matmul %rows, %w13, %offsets{bias['w13']}"
        f" : {x_type}, {w13_type}, {offsets_type} -> tensor<?x{2 * i}x{t}>",
        _activation_line(config, f"tensor<?x{2 * i}x{t}>", f"tensor<?x{i}x{t}>"),
        f"  %down = moe.grouped_matmul %act, %w2, %offsets{bias['w2']}"
        f" : tensor<?x{i}x{t}>, {w2_type}, {offsets_type} -> tensor<?x{h}xf32>",
        *_block_tail(config),
    ]
    return args, lines


@dataclasses.dataclass(frozen=True)
class QuantScheme:
    """A w8a8 format of an expert block: `format` (fp8 or int8) and the scale
    layout of `#moe.quant` (per_tensor, per_token_channel or block)."""

    name: str
    format: str
    scales: str

    @property
    def code_type(self) -> str:
        return "f8E4M3FN" if self.format == "fp8" else "i8"

    def activation_scale_type(self, k: int) -> str:
        if self.scales == "per_tensor":
            return "tensor<1xf32>"
        return f"tensor<?x{k // 128}xf32>" if self.scales == "block" else "tensor<?xf32>"

    def weight_scale_type(self, e: int, n: int, k: int) -> str:
        if self.scales == "per_tensor":
            return f"tensor<{e}xf32>"
        if self.scales == "block":
            return f"tensor<{e}x{n // 128}x{k // 128}xf32>"
        return f"tensor<{e}x{n}xf32>"


FP8_BLOCK = QuantScheme("fp8_block", "fp8", "block")
FP8_CHANNEL = QuantScheme("fp8_channel", "fp8", "per_token_channel")
INT8_CHANNEL = QuantScheme("int8_channel", "int8", "per_token_channel")
FP8_TENSOR = QuantScheme("fp8_tensor", "fp8", "per_tensor")

# The quantized expert blocks the GPU suite checks and times: DeepSeek-V3's
# fp8 checkpoint format (1x128 activation, 128x128 weight blocks), Qwen3 fp8
# per token x per channel, int8 w8a8 and fp8 with per-tensor scales (the
# scheme of the first fp8 checkpoints, one scale per weight matrix and a
# dynamic one for the activations) on the same shape.
QUANTIZED_BLOCKS = ((DEEPSEEK_V3, FP8_BLOCK), (QWEN3_30B_A3B, FP8_CHANNEL),
                    (QWEN3_30B_A3B, INT8_CHANNEL), (QWEN3_30B_A3B, FP8_TENSOR))


@dataclasses.dataclass(frozen=True)
class WeightOnlyScheme:
    """A weight-only format of an expert block: `format` (int4_weight,
    int8_weight or mxfp4), the group along K, zero points, and whether the
    4-bit codes are stored prepacked (moe.prepack's wgmma_a_4bit order)."""

    name: str
    format: str
    group: int = 32
    zero_point: bool = False
    packed: bool = False

    @property
    def attribute(self) -> str:
        packed = ", packed = wgmma_a_4bit" if self.packed else ""
        if self.format == "mxfp4":
            return f"#moe.quant<mxfp4{packed}>"
        zero = ", zero_point = true" if self.zero_point else ""
        return f"#moe.quant<{self.format}, group = {self.group}{zero}{packed}>"

    def stored_type(self, e: int, n: int, k: int) -> str:
        if self.format == "int8_weight":
            return f"tensor<{e}x{n}x{k}x{'ui8' if self.zero_point else 'i8'}>"
        return f"tensor<{e}x{n}x{k // 2}xui8>"

    def scale_type(self, e: int, n: int, k: int) -> str:
        element = "ui8" if self.format == "mxfp4" else "f32"
        return f"tensor<{e}x{n}x{k // self.group}x{element}>"

    def zeros_type(self, e: int, n: int, k: int) -> str | None:
        return f"tensor<{e}x{n}x{k // self.group}xui8>" if self.zero_point else None


INT4_G128 = WeightOnlyScheme("int4_g128", "int4_weight", 128)
INT4_G32_ZP = WeightOnlyScheme("int4_g32_zp", "int4_weight", 32, True)
INT8_G64 = WeightOnlyScheme("int8w_g64", "int8_weight", 64)
MXFP4 = WeightOnlyScheme("mxfp4", "mxfp4", 32)
# The int4 formats with their codes prepacked at load time for the GPU's
# register-operand kernels.
INT4_G128_PACKED = WeightOnlyScheme("int4_g128_packed", "int4_weight", 128, packed=True)
INT4_G32_ZP_PACKED = WeightOnlyScheme("int4_g32_zp_packed", "int4_weight", 32, True, packed=True)

# The weight-only expert blocks: Mixtral in GPTQ-style int4 (groups of 128),
# GPT-OSS in its checkpoints' mxfp4, and Qwen3 with AWQ-style zero points
# and with int8 groups.
WEIGHT_ONLY_BLOCKS = ((MIXTRAL_8X7B, INT4_G128), (GPT_OSS_120B, MXFP4),
                      (QWEN3_30B_A3B, INT4_G32_ZP), (QWEN3_30B_A3B, INT8_G64),
                      (GPT_OSS_20B, MXFP4), (MIXTRAL_8X7B, INT4_G128_PACKED),
                      (QWEN3_30B_A3B, INT4_G32_ZP_PACKED))


def _w8a8_block(config: LayerConfig, scheme: QuantScheme) -> tuple[list[str], list[str]]:
    """The block with w8a8 weights: both GEMMs' activations are quantized
    dynamically (moe.quantize), the weights come as codes and scales
    (%w13, %w13_scales, %w2, %w2_scales). GEMM1's f32 product is activated
    into bf16 rows, which GEMM2's quantization reads."""
    e, h, i, t = config.num_experts, config.hidden, config.intermediate, config.dtype
    q, c = f"#moe.quant<{scheme.format}, scales = {scheme.scales}>", scheme.code_type
    x_type = f"tensor<?x{h}x{t}>"
    w13_type = f"tensor<{e}x{2 * i}x{h}x{c}>"
    w2_type = f"tensor<{e}x{h}x{i}x{c}>"
    w13_scales = scheme.weight_scale_type(e, 2 * i, h)
    w2_scales = scheme.weight_scale_type(e, h, i)
    x_scales, act_scales = scheme.activation_scale_type(h), scheme.activation_scale_type(i)
    offsets_type = f"tensor<{e + 1}xi32>"
    bias_args, bias = _expert_biases(config)
    args = [f"%w13: {w13_type}", f"%w13_scales: {w13_scales}", f"%w2: {w2_type}",
            f"%w2_scales: {w2_scales}", *bias_args]
    lines = [
        _permute_line(config),
        f"  %codes, %scales = moe.quantize %rows {{quantization = {q}}}"
        f" : {x_type} -> tensor<?x{h}x{c}>, {x_scales}",
        f"  %gate_up = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : {x_scales})"
        f" weight_scales(%w13_scales : {w13_scales}){bias['w13']} {{quantization = {q}}}"
        f" : tensor<?x{h}x{c}>, {w13_type}, {offsets_type} -> tensor<?x{2 * i}xf32>",
        _activation_line(config, f"tensor<?x{2 * i}xf32>", f"tensor<?x{i}x{t}>"),
        f"  %act_codes, %act_scales = moe.quantize %act {{quantization = {q}}}"
        f" : tensor<?x{i}x{t}> -> tensor<?x{i}x{c}>, {act_scales}",
        f"  %down = moe.grouped_matmul %act_codes, %w2, %offsets input_scales(%act_scales : {act_scales})"
        f" weight_scales(%w2_scales : {w2_scales}){bias['w2']} {{quantization = {q}}}"
        f" : tensor<?x{i}x{c}>, {w2_type}, {offsets_type} -> tensor<?x{h}xf32>",
        *_block_tail(config),
    ]
    return args, lines


def _weight_only_block(config: LayerConfig,
                       scheme: WeightOnlyScheme) -> tuple[list[str], list[str]]:
    """The block with weight-only quantized weights: bf16 activations, stored
    codes with group scales and zeros (%w13, %w13_scales[, %w13_zeros], %w2,
    %w2_scales[, %w2_zeros])."""
    e, h, i, t = config.num_experts, config.hidden, config.intermediate, config.dtype
    q = scheme.attribute
    x_type = f"tensor<?x{h}x{t}>"
    offsets_type = f"tensor<{e + 1}xi32>"
    args, uses = [], {}
    for label, n, kk in (("w13", 2 * i, h), ("w2", h, i)):
        stored, scales = scheme.stored_type(e, n, kk), scheme.scale_type(e, n, kk)
        zeros = scheme.zeros_type(e, n, kk)
        args += [f"%{label}: {stored}", f"%{label}_scales: {scales}"]
        use = f"weight_scales(%{label}_scales : {scales})"
        if zeros:
            args.append(f"%{label}_zeros: {zeros}")
            use += f" weight_zeros(%{label}_zeros : {zeros})"
        uses[label] = (stored, use)
    bias_args, bias = _expert_biases(config)
    args += bias_args
    lines = [
        _permute_line(config),
        f"  %gate_up = moe.grouped_matmul %rows, %w13, %offsets {uses['w13'][1]}{bias['w13']}"
        f" {{quantization = {q}}} : {x_type}, {uses['w13'][0]}, {offsets_type}"
        f" -> tensor<?x{2 * i}xf32>",
        _activation_line(config, f"tensor<?x{2 * i}xf32>", f"tensor<?x{i}x{t}>"),
        f"  %down = moe.grouped_matmul %act, %w2, %offsets {uses['w2'][1]}{bias['w2']}"
        f" {{quantization = {q}}} : tensor<?x{i}x{t}>, {uses['w2'][0]}, {offsets_type}"
        f" -> tensor<?x{h}xf32>",
        *_block_tail(config),
    ]
    return args, lines


def _shared_lines(config: LayerConfig, x: str) -> tuple[list[str], list[str]]:
    """With shared experts: the shared gate's argument, and the ops that turn
    the routed %routed_weights, %routed_ids into the block's %weights, %ids
    (every token also picks the shared experts). Without: nothing."""
    if not config.num_shared_experts:
        return [], []
    e, k, h, t = config.num_experts, config.k, config.hidden, config.dtype
    s = config.num_shared_experts
    args, lines, gate = [], [], ""
    if config.shared_expert_gate:
        args.append(f"%w_shared_gate: tensor<1x{h}x{t}>")
        lines.append(f"  %shared_logits = moe.router {x}, %w_shared_gate : tensor<?x{h}x{t}>,"
                     f" tensor<1x{h}x{t}> -> tensor<?x1xf32>")
        gate = " gate(%shared_logits : tensor<?x1xf32>)"
    lines.append(
        f"  %weights, %ids = moe.add_shared_experts %routed_weights, %routed_ids{gate}"
        f" {{num_experts = {e} : i64, num_shared = {s} : i64}}"
        f" : tensor<?x{k}xf32>, tensor<?x{k}xi32> -> tensor<?x{k + s}xf32>, tensor<?x{k + s}xi32>")
    return args, lines


def _expert_view(config: LayerConfig) -> LayerConfig:
    """The block's view of the layer: the shared experts are experts every
    token picks, after the routed ones."""
    s = config.num_shared_experts
    return dataclasses.replace(config, num_experts=config.num_experts + s, k=config.k + s)


def _block(config: LayerConfig, scheme=None) -> tuple[list[str], list[str]]:
    config = _expert_view(config)
    if scheme is None:
        return _bf16_block(config)
    if isinstance(scheme, QuantScheme):
        return _w8a8_block(config, scheme)
    return _weight_only_block(config, scheme)


def _describe(config: LayerConfig, scheme) -> str:
    weights = f", {scheme.name} weights" if scheme is not None else ""
    biases = ", expert biases" if config.has_expert_biases else ""
    shared = ""
    if config.num_shared_experts:
        gated = "gated " if config.shared_expert_gate else ""
        shared = (f", a {gated}shared expert of {config.num_shared_experts} x I"
                  if config.num_shared_experts > 1 else f", a {gated}shared expert")
    return (f"E={config.num_experts}, k={config.k}, H={config.hidden}, I={config.intermediate}, "
            f"{config.scoring} routing, {config.activation}{weights}{biases}{shared}")


def _topk_line(config: LayerConfig, logits: str) -> str:
    """moe.topk of `logits` ([M, E] f32) into %weights and %ids (with shared
    experts: %routed_weights and %routed_ids)."""
    e, k = config.num_experts, config.k
    bias_type = f"tensor<{e}xf32>"
    topk_bias = f" bias(%score_bias : {bias_type})" if config.has_score_bias else ""
    topk_attrs = [f"k = {k} : i64"]
    if config.num_groups is not None:
        topk_attrs += [f"num_groups = {config.num_groups} : i64",
                       f"topk_groups = {config.topk_groups} : i64"]
    if config.renormalize:
        topk_attrs.append("renormalize")
    if config.routed_scaling_factor is not None:
        topk_attrs.append(f"routed_scaling_factor = {_f32(config.routed_scaling_factor)}")
    results = "%routed_weights, %routed_ids" if config.num_shared_experts else "%weights, %ids"
    return (f"  {results} = moe.topk {config.scoring} {logits}{topk_bias}"
            f" {{{', '.join(topk_attrs)}}}"
            f" : tensor<?x{e}xf32> -> tensor<?x{k}xf32>, tensor<?x{k}xi32>")


def layer_mlir(config: LayerConfig, scheme=None, name: str | None = None) -> str:
    """The layer as a `func.func` of `moe` ops, one function per module;
    `scheme` (a QuantScheme or WeightOnlyScheme) quantizes its experts."""
    e, k, h, t = config.num_experts, config.k, config.hidden, config.dtype
    x_type = f"tensor<?x{h}x{t}>"
    gate_type = f"tensor<{e}x{h}x{t}>"
    bias_type = f"tensor<{e}xf32>"
    args = [f"%x: {x_type}", f"%w_gate: {gate_type}"]
    if config.has_gate_bias:
        args.append(f"%gate_bias: {bias_type}")
    if config.has_score_bias:
        args.append(f"%score_bias: {bias_type}")
    shared_args, shared_lines = _shared_lines(config, "%x")
    block_args, block_lines = _block(config, scheme)
    args += shared_args + block_args

    router_bias = f" bias(%gate_bias : {bias_type})" if config.has_gate_bias else ""

    name = name or (config.name if scheme is None else f"{config.name}_{scheme.name}")
    lines = [
        f"// {config.name}: {_describe(config, scheme)}.",
        f"// Generated by python/moe_compiler/configs.py; do not edit.",
        f"func.func @{name}({', '.join(args)}) -> {x_type} {{",
        f"  %logits = moe.router %x, %w_gate{router_bias} : {x_type}, {gate_type} -> tensor<?x{e}xf32>",
        _topk_line(config, "%logits"),
        *shared_lines,
        *block_lines,
    ]
    return "\n".join(lines) + "\n"


def logits_layer_mlir(config: LayerConfig, name: str | None = None) -> str:
    """The layer on given router logits %logits [M, E] (the inputs of vLLM's
    fused_moe): top-k, then the expert block."""
    e, h, t = config.num_experts, config.hidden, config.dtype
    x_type = f"tensor<?x{h}x{t}>"
    args = [f"%x: {x_type}", f"%logits: tensor<?x{e}xf32>"]
    if config.has_score_bias:
        args.append(f"%score_bias: tensor<{e}xf32>")
    shared_args, shared_lines = _shared_lines(config, "%x")
    block_args, block_lines = _block(config)
    lines = [
        f"// {config.name} on given router logits: {_describe(config, None)}.",
        f"func.func @{name or config.name}({', '.join(args + shared_args + block_args)})"
        f" -> {x_type} {{",
        _topk_line(config, "%logits"),
        *shared_lines,
        *block_lines,
    ]
    return "\n".join(lines) + "\n"


def expert_block_mlir(config: LayerConfig, scheme=None, name: str | None = None) -> str:
    """The layer after routing: top-k ids and weights are arguments. The span
    the GPU benchmark times (align, GEMM1, activation, GEMM2, combine). With
    shared experts the arguments are the routed choices (%routed_ids,
    %routed_weights), to which the block adds the shared experts."""
    k, h, t = config.k, config.hidden, config.dtype
    x_type = f"tensor<?x{h}x{t}>"
    shared_args, shared_lines = _shared_lines(config, "%x")
    block_args, block_lines = _block(config, scheme)
    name = name or (f"{config.name}_block" if scheme is None
                    else f"{config.name}_{scheme.name}_block")
    prefix = "routed_" if config.num_shared_experts else ""
    args = [f"%x: {x_type}", f"%{prefix}ids: tensor<?x{k}xi32>",
            f"%{prefix}weights: tensor<?x{k}xf32>", *shared_args, *block_args]
    lines = [
        f"// {config.name} expert block: {_describe(config, scheme)}.",
        f"func.func @{name}({', '.join(args)}) -> {x_type} {{",
        *shared_lines,
        *block_lines,
    ]
    return "\n".join(lines) + "\n"


# The quantized example layers (examples/quantized/): the formats the
# benchmark covers, one per checkpoint family, and Mixtral with fp8
# per-tensor scales (the scheme of the first fp8 checkpoints).
QUANTIZED_EXAMPLES = ((DEEPSEEK_V3, FP8_BLOCK), (QWEN3_30B_A3B, FP8_CHANNEL),
                      (GPT_OSS_120B, MXFP4), (MIXTRAL_8X7B, INT4_G128),
                      (MIXTRAL_8X7B, FP8_TENSOR), (GPT_OSS_20B, MXFP4))


def example_path(root: pathlib.Path, config: LayerConfig, scaled: bool = False,
                 scheme=None) -> pathlib.Path:
    folder = root / "examples"
    if scheme is not None:
        folder = folder / "quantized"
    if scaled:
        folder = folder / "scaled"
    name = config.name if scheme is None else f"{config.name}_{scheme.name}"
    return folder / f"{name}.mlir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-examples", type=pathlib.Path, metavar="REPO_ROOT",
                        help="rewrite REPO_ROOT/examples/ (bf16 and quantized/) from the configurations")
    parser.add_argument("--write-gpu-blocks", type=pathlib.Path, metavar="DIR",
                        help="write DIR/<layer>.mlir (the example), "
                        "DIR/<layer>[_<format>]_block.mlir (after routing, full size, bf16 "
                        "or quantized), DIR/<layer>[_<format>]_small_block.mlir (scaled) "
                        "and DIR/layers.json")
    args = parser.parse_args()
    if args.write_gpu_blocks:
        import json
        args.write_gpu_blocks.mkdir(parents=True, exist_ok=True)
        manifest = {}
        blocks = [(config, None) for config in EXAMPLE_LAYERS] + \
            list(QUANTIZED_BLOCKS) + list(WEIGHT_ONLY_BLOCKS)
        for config, scheme in blocks:
            prefix = config.name if scheme is None else f"{config.name}_{scheme.name}"
            for variant, layer in (("block", config), ("small_block", scaled_example(config))):
                name = f"{prefix}_{variant}"
                (args.write_gpu_blocks / f"{name}.mlir").write_text(
                    expert_block_mlir(layer, scheme, name))
                manifest[name] = dataclasses.asdict(layer)
                if isinstance(scheme, QuantScheme):
                    manifest[name]["quant"] = dataclasses.asdict(scheme)
                elif scheme is not None:
                    manifest[name]["weight_only"] = dataclasses.asdict(scheme)
        for config in EXAMPLE_LAYERS:
            if config.num_shared_experts:
                # Its routed experts alone, for bench/gpu_shared_expert_bench.py
                # (against the fused block plus a dense MLP).
                routed = dataclasses.replace(config, num_shared_experts=0,
                                             shared_expert_gate=False)
                name = f"{config.name}_routed_block"
                (args.write_gpu_blocks / f"{name}.mlir").write_text(
                    expert_block_mlir(routed, None, name))
            # The whole layer, routing included: the example itself.
            (args.write_gpu_blocks / f"{config.name}.mlir").write_text(layer_mlir(config))
            manifest[config.name] = dataclasses.asdict(config)
        (args.write_gpu_blocks / "layers.json").write_text(json.dumps(manifest, indent=1))
    elif args.write_examples:
        for config, scheme in [(c, None) for c in EXAMPLE_LAYERS] + list(QUANTIZED_EXAMPLES):
            for scaled, layer in ((False, config), (True, scaled_example(config))):
                path = example_path(args.write_examples, config, scaled, scheme)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(layer_mlir(layer, scheme))
    else:
        for config in EXAMPLE_LAYERS:
            print(layer_mlir(config))


if __name__ == "__main__":
    main()

"""w8a8 expert blocks (moe.quantize → GEMM1 → activation → moe.quantize →
GEMM2 → combine, as configs.expert_block_mlir writes them) on the
CPU, as written and fused (moe-optimize: the first quantization moves before
the gather, the quantized grouped matmuls become quantized
moe.expert_matmul ops, which the CPU lowering dequantizes); both must give
the same result, since GEMM1's f32 product is activated into bf16 rows
either way. Fresh random
inputs and routing on every run, against the float64 oracle
(quant.w8a8_expert_block_rows).

Tolerance 1e-2 relative L2 (the bf16 layers' bound): the output is bf16
(2^-9 relative per element), and the oracle quantizes the same bf16
intermediate, so a difference beyond rounding appears only where the f32
and float64 GEMM1 round the intermediate to different bf16 neighbours and
that moves an fp8/int8 code by one step (rare). Measured: 1.7e-3. The
bound matters: rounding GEMM1's product to bf16 before the activation
(a different program) is 1.3e-2 away, because code steps amplify it."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from moe_compiler import configs, quant, reference
from moe_run import relative_l2, run_program

rng = np.random.default_rng()
TOLERANCE = 1e-2
SMALL = dataclasses.replace(configs.QWEN3_30B_A3B, name="small", num_experts=8, k=2,
                            hidden=256, intermediate=128)


def quantize_weights(w, scheme):
    """Codes and scales of weights [E, N, K] for `scheme`."""
    if scheme.format == "fp8":
        return quant.quantize_fp8(w, scheme.scales, "weight")
    return quant.quantize_int8(w)


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused"])
@pytest.mark.parametrize("scheme", [configs.FP8_BLOCK, configs.FP8_CHANNEL, configs.INT8_CHANNEL,
                                    configs.FP8_TENSOR], ids=lambda s: s.name)
def test_w8a8_expert_block(tmp_path, scheme, fuse):
    config = SMALL
    e, k, h, i = config.num_experts, config.k, config.hidden, config.intermediate
    m = int(rng.integers(5, 40))
    x = rng.standard_normal((m, h)).astype(ml_dtypes.bfloat16)
    ids = np.stack([rng.choice(e, size=k, replace=False) for _ in range(m)]).astype(np.int32)
    weights = rng.random((m, k)).astype(np.float32)
    w13, w13_s = quantize_weights(rng.standard_normal((e, 2 * i, h)) / np.sqrt(h), scheme)
    w2, w2_s = quantize_weights(rng.standard_normal((e, h, i)) / np.sqrt(i), scheme)
    ir = configs.expert_block_mlir(config, scheme, "block")
    result = run_program(tmp_path, ir, "block", [x, ids, weights, w13, w13_s, w2, w2_s], 1,
                         extra_args=["--fuse"] if fuse else [], output_dtypes=["bf16"])
    assert result.returncode == 0, result.stderr

    w13_f = quant.dequantize(w13, w13_s, scheme.format, scheme.scales, "weight")
    w2_f = quant.dequantize(w2, w2_s, scheme.format, scheme.scales, "weight")
    expected = quant.w8a8_expert_block_rows(
        x.astype(np.float64), ids, weights,
        lambda ex: w13_f[ex] if 0 <= ex < e else None, lambda ex: w2_f[ex], h,
        scheme.format, scheme.scales, lambda v: reference.activation(v, config.activation,
                                                        gate_up_interleaved=config.gate_up_interleaved))
    error = relative_l2(result.outputs[0].astype(np.float64), expected)
    assert error < TOLERANCE, error


def test_unquantized_rows_into_a_w8a8_matmul_are_refused(tmp_path):
    ir = configs.expert_block_mlir(SMALL, configs.FP8_BLOCK, "block").replace(
        "input_scales(%scales : tensor<?x2xf32>) ", "")
    result = run_program(tmp_path, ir, "block", [], 1, extra_args=["--random"])
    assert result.returncode == 1
    assert "expects input and weight scales" in result.stderr


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused"])
@pytest.mark.parametrize("scheme", [configs.INT4_G128, configs.INT4_G32_ZP, configs.INT8_G64,
                                    configs.MXFP4, configs.INT4_G128_PACKED,
                                    configs.INT4_G32_ZP_PACKED], ids=lambda s: s.name)
def test_weight_only_expert_block(tmp_path, scheme, fuse):
    """Weight-only blocks: bf16 rows, stored codes dequantized on the fly.
    Same oracle as the bf16 layers with the dequantized weights and the bf16
    intermediate the IR states; tolerance 1e-2 as for bf16 (no code steps
    amplify anything here: the weights are exact after dequantization)."""
    config = dataclasses.replace(SMALL, activation="swiglu", swiglu_alpha=1.702, swiglu_limit=7.0) \
        if scheme is configs.MXFP4 else SMALL
    e, k, h, i = config.num_experts, config.k, config.hidden, config.intermediate
    m = int(rng.integers(5, 40))
    x = rng.standard_normal((m, h)).astype(ml_dtypes.bfloat16)
    ids = np.stack([rng.choice(e, size=k, replace=False) for _ in range(m)]).astype(np.int32)
    weights = rng.random((m, k)).astype(np.float32)
    inputs, dequantized = [x, ids, weights], []
    for n, kk in ((2 * i, h), (h, i)):
        stored, scales, zeros = quant.quantize_weight_only(
            rng.standard_normal((e, n, kk)) / np.sqrt(kk), scheme.format, scheme.group,
            scheme.zero_point)
        # Packed schemes take the codes prepacked (moe.prepack's order), the
        # oracle the codes in rows.
        passed = (quant.prepack_wgmma_a_4bit(stored).reshape(stored.shape) if scheme.packed
                  else stored)
        inputs += [passed, scales] + ([zeros] if zeros is not None else [])
        dequantized.append(quant.dequantize_weight_only(stored, scales, zeros, scheme.format,
                                                        scheme.group))
    ir = configs.expert_block_mlir(config, scheme, "block")
    result = run_program(tmp_path, ir, "block", inputs, 1,
                         extra_args=["--fuse"] if fuse else [], output_dtypes=["bf16"])
    assert result.returncode == 0, result.stderr
    w13_f, w2_f = dequantized
    expected = quant.expert_block_rows(
        x.astype(np.float64), ids, weights, lambda ex: w13_f[ex], lambda ex: w2_f[ex], h,
        lambda v: reference.activation(v, config.activation, config.swiglu_alpha,
                                       config.swiglu_limit, config.gate_up_interleaved))
    error = relative_l2(result.outputs[0].astype(np.float64), expected)
    assert error < TOLERANCE, error


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused"])
@pytest.mark.parametrize("config,scheme", configs.QUANTIZED_EXAMPLES,
                         ids=lambda v: getattr(v, "name", None))
def test_quantized_example_layer_checks(tmp_path, config, scheme, fuse):
    """The scaled quantized example layers, routing included, on random
    inputs through `moe-run --check`, which evaluates them op by op with the
    float64 oracles (check.py with quant.py)."""
    layer = configs.scaled_example(config)
    check_layer(tmp_path, configs.layer_mlir(layer, scheme), f"{config.name}_{scheme.name}", fuse)


def check_layer(tmp_path, ir: str, name: str, fuse: bool) -> None:
    """Runs layer `name` of `ir` on 48 random tokens through `moe-run
    --check` (as written, or fused) and requires it to pass."""
    result = run_program(tmp_path, ir, name, [], 1,
                         extra_args=["--random", f"--seed={int(rng.integers(1 << 30))}",
                                     "--num-tokens=48", "--check"] + (["--fuse"] if fuse else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check: PASS" in result.stdout


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused"])
@pytest.mark.parametrize("scheme", [configs.INT4_G128_PACKED, configs.INT4_G32_ZP_PACKED],
                         ids=lambda v: v.name)
def test_packed_weight_only_layer_checks(tmp_path, scheme, fuse):
    """A layer whose int4 codes are stored prepacked (packed =
    wgmma_a_4bit), on random codes through `moe-run --check`: check.py puts
    them back in rows with quant.unpack_wgmma_a_4bit (NumPy indexing),
    independently of the CPU lowering's transpose."""
    layer = configs.scaled_example(configs.MIXTRAL_8X7B)
    check_layer(tmp_path, configs.layer_mlir(layer, scheme), f"{layer.name}_{scheme.name}", fuse)


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused"])
@pytest.mark.parametrize("scheme", [configs.FP8_CHANNEL, configs.FP8_TENSOR, configs.MXFP4],
                         ids=lambda v: v.name)
def test_quantized_layer_with_expert_biases_checks(tmp_path, scheme, fuse):
    """Expert biases on quantized GEMMs (GPT-OSS-20B, scaled): the bias is
    added to the dequantized product, before the activation and the routed
    weight; `moe-run --check` evaluates the layer op by op with the float64
    oracles, as written and fused."""
    layer = configs.scaled_example(configs.GPT_OSS_20B)
    ir = configs.layer_mlir(layer, scheme)
    assert "bias(%b13" in ir and "bias(%b2" in ir
    check_layer(tmp_path, ir, f"{layer.name}_{scheme.name}", fuse)

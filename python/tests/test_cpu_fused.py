"""The fused, tiled and aligned programs (moe-optimize) give the results of
the unfused ones on the CPU, on the same inputs, for every example layer and
for edge routings."""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

from moe_compiler import configs
from moe_compiler import reference as ref
from moe_run import TOLERANCE, moe_run_path, relative_l2, run_program
from test_cpu_layers import layer_inputs, reference_layer, routed_experts_ir

rng = np.random.default_rng()


@pytest.mark.parametrize("tile_tokens", [1, 4096])
@pytest.mark.parametrize("base", configs.EXAMPLE_LAYERS, ids=lambda c: c.name)
def test_fused_equals_unfused(tmp_path, base, tile_tokens):
    """f32 layers, so that the comparison is at the f32 tolerance: the fused
    program differs only in summation order and in skipping the rounding of
    intermediates to their declared type."""
    config = dataclasses.replace(base.scaled(int(rng.integers(8, 40)) * 2,
                                             int(rng.integers(4, 30))), dtype="f32")
    m = int(rng.integers(1, 40))
    inputs = layer_inputs(config, m)
    ir = configs.layer_mlir(config)
    unfused = run_program(tmp_path / "unfused", ir, config.name, inputs, 1)
    fused = run_program(tmp_path / "fused", ir, config.name, inputs, 1,
                        extra_args=["--fuse", f"--num-tokens={tile_tokens}"])
    assert unfused.returncode == 0, unfused.stderr
    assert fused.returncode == 0, fused.stderr
    expected, ambiguous = reference_layer(config, inputs)
    keep = ~ambiguous
    assert relative_l2(fused.outputs[0][keep], unfused.outputs[0][keep]) < TOLERANCE["f32"]
    assert relative_l2(fused.outputs[0][keep], expected[keep]) < TOLERANCE["f32"]


@pytest.mark.parametrize("base", [configs.DEEPSEEK_V3, configs.GPT_OSS_120B], ids=lambda c: c.name)
def test_fused_bf16_layer(tmp_path, base):
    config = base.scaled(64, 32)
    m = int(rng.integers(1, 40))
    inputs = layer_inputs(config, m)
    result = run_program(tmp_path, configs.layer_mlir(config), config.name, inputs, 1,
                         output_dtypes=["bf16"], extra_args=["--fuse", "--num-tokens=64"])
    assert result.returncode == 0, result.stderr
    expected, ambiguous = reference_layer(config, inputs)
    assert relative_l2(result.outputs[0][~ambiguous], expected[~ambiguous]) < TOLERANCE["bf16"]


def run_fused_experts(tmp_path, ids, e, block_tokens):
    m, k = ids.shape
    h, i = 24, 12
    x = rng.standard_normal((m, h)).astype(np.float32)
    weights = rng.random((m, k)).astype(np.float32)
    w13 = (rng.standard_normal((e, 2 * i, h)) / np.sqrt(h)).astype(np.float32)
    w2 = (rng.standard_normal((e, h, i)) / np.sqrt(i)).astype(np.float32)
    result = run_program(tmp_path, routed_experts_ir(h, i, e, k), "experts",
                         [x, ids.astype(np.int32), weights, w13, w2], 1,
                         extra_args=["--fuse", f"--num-tokens={block_tokens}"])
    rows, offsets, source = ref.permute(x, ids, e)
    hidden = ref.activation(ref.grouped_matmul(rows, w13, offsets), "silu_and_mul")
    expected = ref.combine(ref.unpermute(ref.grouped_matmul(hidden, w2, offsets), source, k),
                           weights)
    return result, expected


@pytest.mark.parametrize("block_tokens", [1, 4096])
def test_fused_hot_expert(tmp_path, block_tokens):
    result, expected = run_fused_experts(tmp_path, np.full((33, 2), 6), 8, block_tokens)
    assert result.returncode == 0, result.stderr
    assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]


@pytest.mark.parametrize("block_tokens", [1, 4096])
def test_fused_empty_experts_and_one_token(tmp_path, block_tokens):
    for ids in (rng.choice([0, 5], size=(17, 2)), np.array([[3, 1]]), np.zeros((0, 2), int)):
        result, expected = run_fused_experts(tmp_path, ids, 8, block_tokens)
        assert result.returncode == 0, result.stderr
        assert result.outputs[0].shape == expected.shape
        if ids.size:
            assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]


def test_fused_out_of_range_id(tmp_path):
    ids = rng.integers(0, 8, size=(5, 2))
    ids[2, 0] = 9
    result = run_program(
        tmp_path, routed_experts_ir(8, 4, 8, 2), "experts",
        [np.ones((5, 8), np.float32), ids.astype(np.int32), np.ones((5, 2), np.float32),
         np.ones((8, 8, 8), np.float32), np.ones((8, 8, 4), np.float32)], 1,
        extra_args=["--fuse"])
    assert result.returncode == 1
    assert "expert id 9 is outside" in result.stderr


def test_aligned_schedule_skips_remote_experts(tmp_path):
    """Expert parallelism: ids of -1 belong to another device; the aligned
    schedule skips them and the combine adds nothing for them."""
    e, k, m, h, n = 4, 2, 9, 8, 6
    ids = rng.integers(-1, e, size=(m, k)).astype(np.int32)
    ir = f"""
func.func @f(%x: tensor<?x{h}xf32>, %ids: tensor<?x{k}xi32>, %rw: tensor<?x{k}xf32>, %w: tensor<{e}x{n}x{h}xf32>) -> tensor<?x{n}xf32> {{
  %s, %b, %p = moe.align %ids {{block_m = 4 : i64, num_experts = {e} : i64}} : tensor<?x{k}xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) blocks(%b, %p : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x{k}xf32>) {{gather, k = {k} : i64, block_m = 4 : i64}} : tensor<?x{h}xf32>, tensor<{e}x{n}x{h}xf32> -> tensor<?x{n}xf32>
  return %0 : tensor<?x{n}xf32>
}}"""
    x = rng.standard_normal((m, h)).astype(np.float32)
    rw = rng.random((m, k)).astype(np.float32)
    w = rng.standard_normal((e, n, h)).astype(np.float32)
    result = run_program(tmp_path, ir, "f", [x, ids, rw, w], 1)
    assert result.returncode == 0, result.stderr
    expected = np.zeros((m, n))
    for t in range(m):
        for j in range(k):
            if ids[t, j] >= 0:
                expected[t] += rw[t, j] * (x[t].astype(np.float64) @ w[ids[t, j]].T)
    sorted_ids, blocks, padded = ref.align(ids, e, 4)
    # Two float64 sums in different orders: an output that cancels to near
    # zero differs by a few ulps of its terms, not of itself (a 3.4e-5 entry
    # was 1.1e-16 off once), so the bound is 1e-12 of the outputs' scale too.
    np.testing.assert_allclose(
        ref.expert_matmul(x, w, k=k, slots=sorted_ids, block_experts=blocks, num_padded=padded,
                          routing_weights=rw, gather=True, block_m=4), expected, rtol=1e-12,
        atol=1e-12 * np.abs(expected).max())
    assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]


def test_aligned_rows_with_bias_keep_padding_zero(tmp_path):
    """A biased aligned matmul writing rows: every slot's row is its
    assignment's biased (and activated) product, and a padding slot's row
    stays 0 as the op states (its A row is zero, but the bias is not)."""
    e, k, m, h, n = 4, 2, 7, 8, 12
    ids = rng.integers(-1, e, size=(m, k)).astype(np.int32)
    ir = f"""
func.func @f(%x: tensor<?x{h}xf32>, %ids: tensor<?x{k}xi32>, %w: tensor<{e}x{n}x{h}xf32>, %b: tensor<{e}x{n}xf32>) -> tensor<?x{n // 2}xf32> {{
  %s, %blocks, %p = moe.align %ids {{block_m = 4 : i64, num_experts = {e} : i64}} : tensor<?x{k}xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) blocks(%blocks, %p : tensor<?xi32>, tensor<1xi32>) bias(%b : tensor<{e}x{n}xf32>) {{gather, k = {k} : i64, block_m = 4 : i64, activation = #moe.activation<silu_and_mul>}} : tensor<?x{h}xf32>, tensor<{e}x{n}x{h}xf32> -> tensor<?x{n // 2}xf32>
  return %0 : tensor<?x{n // 2}xf32>
}}"""
    x = rng.standard_normal((m, h)).astype(np.float32)
    w = rng.standard_normal((e, n, h)).astype(np.float32)
    bias = rng.standard_normal((e, n)).astype(np.float32)
    result = run_program(tmp_path, ir, "f", [x, ids, w, bias], 1)
    assert result.returncode == 0, result.stderr
    sorted_ids, blocks, padded = ref.align(ids, e, 4)
    expected = ref.expert_matmul(x, w, k=k, slots=sorted_ids, block_experts=blocks,
                                 num_padded=padded, gather=True, block_m=4,
                                 activation_kind="silu_and_mul", bias=bias)
    padding = sorted_ids >= m * k
    assert padding.any() and np.all(expected[padding] == 0)
    assert np.all(result.outputs[0][padding] == 0)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused"])
def test_interleaved_gate_up_equals_halves(tmp_path, fuse):
    """GPT-OSS-20B with its gate and up rows interleaved (as the checkpoint
    stores them) gives the layer with the same weights and biases
    de-interleaved into [gate | up] halves: the layout is a pairing of
    columns, not a different function."""
    interleaved = dataclasses.replace(configs.GPT_OSS_20B.scaled(64, int(rng.integers(4, 30))),
                                      dtype="f32")
    assert interleaved.gate_up_interleaved
    halves = dataclasses.replace(interleaved, gate_up_interleaved=False)
    m = int(rng.integers(1, 40))
    inputs = layer_inputs(interleaved, m)
    # x, gate, gate bias, w13, w2, b13, b2: reorder w13's rows and b13.
    deinterleaved = list(inputs)
    deinterleaved[3] = np.concatenate([inputs[3][:, 0::2], inputs[3][:, 1::2]], axis=1)
    deinterleaved[5] = np.concatenate([inputs[5][:, 0::2], inputs[5][:, 1::2]], axis=1)
    extra = ["--fuse"] if fuse else []
    got = run_program(tmp_path / "interleaved", configs.layer_mlir(interleaved),
                      interleaved.name, inputs, 1, extra_args=extra)
    want = run_program(tmp_path / "halves", configs.layer_mlir(halves), halves.name,
                       deinterleaved, 1, extra_args=extra)
    assert got.returncode == 0, got.stderr
    assert want.returncode == 0, want.stderr
    assert "moe.activation swiglu interleaved" in configs.layer_mlir(interleaved)
    assert relative_l2(got.outputs[0], want.outputs[0]) < TOLERANCE["f32"]


@pytest.mark.parametrize("policy", ["split", "fused"])
@pytest.mark.parametrize("base", [configs.DEEPSEEK_V3_SHARED, configs.QWEN1_5_MOE_A2_7B],
                         ids=lambda c: c.name)
def test_shared_experts_schedule(tmp_path, base, policy):
    """moe-split-shared-experts: the shared experts in a schedule of their
    own (their GEMM2 accumulating into the routed experts' f32 sums) or
    among the routed ones give the layer's float64 result."""
    config = dataclasses.replace(base.scaled(int(rng.integers(8, 40)) * 2,
                                             int(rng.integers(4, 30))), dtype="f32")
    m = int(rng.integers(1, 40))
    inputs = layer_inputs(config, m)
    # The policy took effect: the shared experts have their own routing
    # exactly when split.
    rewritten = subprocess.run(
        [str(moe_run_path().parent / "moe-opt"), "-moe-fuse-routing", "-moe-fuse-experts",
         f"-moe-split-shared-experts=policy={policy}"],
        input=configs.layer_mlir(config), capture_output=True, text=True, check=True).stdout
    assert ("moe.shared_expert_routing" in rewritten) == (policy == "split")
    result = run_program(tmp_path, configs.layer_mlir(config), config.name, inputs, 1,
                         extra_args=["--fuse", f"--shared-experts={policy}"])
    assert result.returncode == 0, result.stderr
    expected, ambiguous = reference_layer(config, inputs)
    keep = ~ambiguous
    assert relative_l2(result.outputs[0][keep], expected[keep]) < TOLERANCE["f32"]


def test_combine_accumulates_after_scaling(tmp_path):
    """accumulate(%partial) adds the partial sums after routed_scaling_factor
    scales this op's own sum."""
    e, k, m, h, n = 3, 2, 5, 8, 6
    ids = rng.integers(0, e, size=(m, k)).astype(np.int32)
    ir = f"""
func.func @f(%x: tensor<?x{h}xf32>, %ids: tensor<?x{k}xi32>, %rw: tensor<?x{k}xf32>, %w: tensor<{e}x{n}x{h}xf32>, %partial: tensor<?x{n}xf32>) -> tensor<?x{n}xf32> {{
  %offsets, %source = moe.sort %ids : tensor<?x{k}xi32> -> tensor<{e + 1}xi32>, tensor<?xi32>
  %0 = moe.expert_matmul %x, %w slots(%source : tensor<?xi32>) offsets(%offsets : tensor<{e + 1}xi32>) combine(%rw : tensor<?x{k}xf32>) accumulate(%partial : tensor<?x{n}xf32>) {{gather, k = {k} : i64, routed_scaling_factor = 2.5 : f32}} : tensor<?x{h}xf32>, tensor<{e}x{n}x{h}xf32> -> tensor<?x{n}xf32>
  return %0 : tensor<?x{n}xf32>
}}"""
    x = rng.standard_normal((m, h)).astype(np.float32)
    rw = rng.random((m, k)).astype(np.float32)
    w = rng.standard_normal((e, n, h)).astype(np.float32)
    partial = rng.standard_normal((m, n)).astype(np.float32)
    result = run_program(tmp_path, ir, "f", [x, ids, rw, w, partial], 1)
    assert result.returncode == 0, result.stderr
    expected = partial.astype(np.float64).copy()
    for t in range(m):
        for j in range(k):
            expected[t] += 2.5 * rw[t, j] * (x[t].astype(np.float64) @ w[ids[t, j]].T)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]

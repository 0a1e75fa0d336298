"""The example layers, scaled down (same E, k, routing and activation, smaller
H and I), run on the CPU by moe-run against the float64 reference; edge
routings; bad input."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from moe_compiler import check, configs
from moe_compiler import reference as ref
from moe_run import IR_DTYPES, TOLERANCE, moe_run_path, relative_l2, run_program

rng = np.random.default_rng()


def layer_inputs(config, m):
    dtype = IR_DTYPES[config.dtype]
    e, h, i = config.num_experts, config.hidden, config.intermediate
    inputs = [rng.standard_normal((m, h)), rng.standard_normal((e, h)) / np.sqrt(h)]
    if config.has_gate_bias:
        inputs.append(rng.standard_normal(e) * 0.1)
    if config.has_score_bias:
        inputs.append(rng.standard_normal(e) * 0.1)
    if config.shared_expert_gate:
        inputs.append(rng.standard_normal((1, h)) / np.sqrt(h))
    # The shared experts' weights follow the routed ones.
    experts = e + config.num_shared_experts
    inputs += [rng.standard_normal((experts, 2 * i, h)) / np.sqrt(h),
               rng.standard_normal((experts, h, i)) / np.sqrt(i)]
    inputs = [a.astype(np.float32) if a.ndim == 1 else a.astype(dtype) for a in inputs]
    if config.has_expert_biases:
        # f32 whatever the layer's dtype, of the products' magnitude.
        inputs += [rng.standard_normal((experts, 2 * i)).astype(np.float32),
                   rng.standard_normal((experts, h)).astype(np.float32)]
    return inputs


def reference_layer(config, inputs):
    values = [a.astype(np.float64) for a in inputs]
    x, gate = values[0], values[1]
    rest = values[2:]
    gate_bias = rest.pop(0) if config.has_gate_bias else None
    score_bias = rest.pop(0) if config.has_score_bias else None
    shared_gate = rest.pop(0) if config.shared_expert_gate else None
    w13, w2, *biases = rest
    b13, b2 = biases if config.has_expert_biases else (None, None)
    out = ref.moe_layer(x, gate, w13, w2, config, gate_bias=gate_bias, score_bias=score_bias,
                        b13=b13, b2=b2, shared_gate_weight=shared_gate)
    logits = ref.router(x, gate, gate_bias)
    attrs = dict(k=config.k, scoring=config.scoring, num_groups=config.num_groups,
                 topk_groups=config.topk_groups)
    return out, check.ambiguous_tokens(logits, attrs, score_bias)


def unambiguous_layer_inputs(config, m, attempts=50):
    """Fresh inputs whose routing has no near tie, so that every token can be
    compared exactly (a near tie may pick either expert on either side)."""
    for _ in range(attempts):
        inputs = layer_inputs(config, m)
        if not reference_layer(config, inputs)[1].any():
            return inputs
    raise AssertionError(f"{attempts} draws of {m} tokens all had a near tie in their routing")


def run_layer(tmp_path, config, m, inputs=None):
    inputs = layer_inputs(config, m) if inputs is None else inputs
    result = run_program(tmp_path, configs.layer_mlir(config), config.name, inputs, 1,
                         output_dtypes=[config.dtype])
    assert result.returncode == 0, result.stderr
    expected, ambiguous = reference_layer(config, inputs)
    assert result.outputs[0].shape == (m, config.hidden)
    return result.outputs[0].astype(np.float64), expected, ambiguous


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("base", configs.EXAMPLE_LAYERS, ids=lambda c: c.name)
def test_example_layer_scaled(tmp_path, base, dtype):
    hidden = int(rng.integers(8, 48)) * 2
    intermediate = int(rng.integers(4, 40))
    config = dataclasses.replace(base.scaled(hidden, intermediate), dtype=dtype)
    m = int(rng.integers(1, 48))
    ours, expected, ambiguous = run_layer(tmp_path, config, m)
    assert ambiguous.sum() <= max(2, m // 10)
    assert relative_l2(ours[~ambiguous], expected[~ambiguous]) < TOLERANCE[dtype]


@pytest.mark.parametrize("m", [0, 1])
@pytest.mark.parametrize("base", [configs.MIXTRAL_8X7B, configs.DEEPSEEK_V3], ids=lambda c: c.name)
def test_layer_with_zero_or_one_token(tmp_path, base, m):
    config = dataclasses.replace(base.scaled(32, 16), dtype="f32")
    ours, expected, ambiguous = run_layer(tmp_path, config, m, unambiguous_layer_inputs(config, m))
    if m:
        assert not ambiguous.any()
        assert relative_l2(ours, expected) < TOLERANCE["f32"]


def routed_experts_ir(h, i, e, k):
    """The expert block after routing: ids and weights come in as data."""
    return f"""
func.func @experts(%x: tensor<?x{h}xf32>, %ids: tensor<?x{k}xi32>, %weights: tensor<?x{k}xf32>,
                   %w13: tensor<{e}x{2 * i}x{h}xf32>, %w2: tensor<{e}x{h}x{i}xf32>) -> tensor<?x{h}xf32> {{
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x{h}xf32>, tensor<?x{k}xi32> -> tensor<?x{h}xf32>, tensor<{e + 1}xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x{h}xf32>, tensor<{e}x{2 * i}x{h}xf32>, tensor<{e + 1}xi32> -> tensor<?x{2 * i}xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x{2 * i}xf32> -> tensor<?x{i}xf32>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x{i}xf32>, tensor<{e}x{h}x{i}xf32>, tensor<{e + 1}xi32> -> tensor<?x{h}xf32>
  %y = moe.unpermute %down, %source : tensor<?x{h}xf32>, tensor<?xi32> -> tensor<?x{k}x{h}xf32>
  %out = moe.combine %y, %weights : tensor<?x{k}x{h}xf32>, tensor<?x{k}xf32> -> tensor<?x{h}xf32>
  return %out : tensor<?x{h}xf32>
}}"""


def run_experts(tmp_path, ids, e, h=24, i=12):
    m, k = ids.shape
    x = rng.standard_normal((m, h)).astype(np.float32)
    weights = rng.random((m, k)).astype(np.float32)
    w13 = (rng.standard_normal((e, 2 * i, h)) / np.sqrt(h)).astype(np.float32)
    w2 = (rng.standard_normal((e, h, i)) / np.sqrt(i)).astype(np.float32)
    result = run_program(tmp_path, routed_experts_ir(h, i, e, k), "experts",
                         [x, ids.astype(np.int32), weights, w13, w2], 1)
    assert result.returncode == 0, result.stderr
    rows, offsets, source = ref.permute(x, ids, e)
    hidden = ref.activation(ref.grouped_matmul(rows, w13, offsets), "silu_and_mul")
    expected = ref.combine(ref.unpermute(ref.grouped_matmul(hidden, w2, offsets), source, k), weights)
    return result.outputs[0], expected, offsets


def test_hot_expert(tmp_path):
    ids = np.full((40, 2), 5)
    ids[:, 1] = 5  # every assignment, both slots, to expert 5
    ours, expected, offsets = run_experts(tmp_path, ids, e=8)
    np.testing.assert_array_equal(np.diff(offsets), [0, 0, 0, 0, 0, 80, 0, 0])
    assert relative_l2(ours, expected) < TOLERANCE["f32"]


def test_experts_without_tokens(tmp_path):
    ids = rng.choice([1, 4, 6], size=(30, 2))
    ours, expected, offsets = run_experts(tmp_path, ids, e=8)
    assert np.diff(offsets)[[0, 2, 3, 5, 7]].sum() == 0
    assert relative_l2(ours, expected) < TOLERANCE["f32"]


#===------------------------------------------------------------------------===#
# Bad input
#===------------------------------------------------------------------------===#

SMALL = dataclasses.replace(configs.MIXTRAL_8X7B.scaled(16, 8), dtype="f32")


def write_program(tmp_path, ir):
    path = tmp_path / "program.mlir"
    path.write_text(ir)
    return path


def run_raw(args):
    import subprocess
    return subprocess.run([str(moe_run_path())] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=120)


def test_wrong_shape_input(tmp_path):
    inputs = layer_inputs(SMALL, 4)
    inputs[3] = inputs[3][:, :-1]  # w13 with 2I - 1 rows
    result = run_program(tmp_path, configs.layer_mlir(SMALL), SMALL.name, inputs, 1)
    assert result.returncode == 1
    assert "argument #3" in result.stderr and "dimension 1 must be 16" in result.stderr


def test_wrong_dtype_input(tmp_path):
    inputs = layer_inputs(SMALL, 4)
    inputs[0] = inputs[0].astype(np.float64)
    result = run_program(tmp_path, configs.layer_mlir(SMALL), SMALL.name, inputs, 1)
    assert result.returncode == 1
    assert "argument #0" in result.stderr and "wrong element type" in result.stderr


def test_bf16_file_for_f32_argument(tmp_path):
    inputs = layer_inputs(SMALL, 4)
    inputs[0] = inputs[0].astype(ml_dtypes.bfloat16)
    result = run_program(tmp_path, configs.layer_mlir(SMALL), SMALL.name, inputs, 1)
    assert result.returncode == 1 and "wrong element type" in result.stderr


def test_mismatched_token_counts(tmp_path):
    ir = routed_experts_ir(8, 4, 4, 2)
    x = np.zeros((3, 8), np.float32)
    ids = np.zeros((4, 2), np.int32)
    result = run_program(tmp_path, ir, "experts",
                         [x, ids, np.zeros((4, 2), np.float32), np.zeros((4, 8, 8), np.float32),
                          np.zeros((4, 8, 4), np.float32)], 1)
    assert result.returncode == 1 and "rows but an earlier dynamic argument has" in result.stderr


def test_missing_input_file(tmp_path):
    program = write_program(tmp_path, configs.layer_mlir(SMALL))
    result = run_raw([program, f"--entry={SMALL.name}"] +
                     [f"--input={tmp_path / 'nope.npy'}"] * 4)
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "nope.npy" in result.stderr


def test_missing_program_file(tmp_path):
    result = run_raw([tmp_path / "missing.mlir", "--entry=f", "--random"])
    assert result.returncode == 1 and "cannot open" in result.stderr


def test_not_an_npy_file(tmp_path):
    program = write_program(tmp_path, configs.layer_mlir(SMALL))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"definitely not numpy")
    result = run_raw([program, f"--entry={SMALL.name}"] + [f"--input={junk}"] * 4)
    assert result.returncode == 1 and "not a valid .npy file" in result.stderr


def test_unknown_entry_function(tmp_path):
    program = write_program(tmp_path, configs.layer_mlir(SMALL))
    result = run_raw([program, "--entry=no_such_layer", "--random"])
    assert result.returncode == 1
    assert "no function 'no_such_layer'" in result.stderr and SMALL.name in result.stderr


def test_invalid_program(tmp_path):
    program = write_program(tmp_path, configs.layer_mlir(SMALL).replace("tensor<9xi32>", "tensor<7xi32>", 1))
    result = run_raw([program, f"--entry={SMALL.name}", "--random"])
    assert result.returncode == 1 and "error:" in result.stderr and "program.mlir:" in result.stderr


@pytest.mark.parametrize("bad_id", [8, 1000, -1])
def test_out_of_range_expert_id(tmp_path, bad_id):
    ids = rng.integers(0, 8, size=(6, 2))
    ids[3, 1] = bad_id
    ir = routed_experts_ir(8, 4, 8, 2)
    result = run_program(tmp_path, ir, "experts",
                         [np.ones((6, 8), np.float32), ids.astype(np.int32),
                          np.ones((6, 2), np.float32), np.ones((8, 8, 8), np.float32),
                          np.ones((8, 8, 4), np.float32)], 1)
    assert result.returncode == 1
    assert f"moe.permute: expert id {bad_id} is outside [0, 8)" in result.stderr


def test_repeated_unpermute_source(tmp_path):
    ir = """
func.func @f(%rows: tensor<?x4xf32>, %s: tensor<?xi32>) -> tensor<?x2x4xf32> {
  %0 = moe.unpermute %rows, %s : tensor<?x4xf32>, tensor<?xi32> -> tensor<?x2x4xf32>
  return %0 : tensor<?x2x4xf32>
}"""
    result = run_program(tmp_path, ir, "f", [np.ones((4, 4), np.float32),
                                             np.array([0, 1, 1, 3], np.int32)], 1)
    assert result.returncode == 1 and "moe.unpermute: source index 1" in result.stderr


def test_bad_grouped_matmul_offsets(tmp_path):
    ir = """
func.func @f(%rows: tensor<?x4xf32>, %w: tensor<2x3x4xf32>, %o: tensor<3xi32>) -> tensor<?x3xf32> {
  %0 = moe.grouped_matmul %rows, %w, %o : tensor<?x4xf32>, tensor<2x3x4xf32>, tensor<3xi32> -> tensor<?x3xf32>
  return %0 : tensor<?x3xf32>
}"""
    result = run_program(tmp_path, ir, "f", [np.ones((5, 4), np.float32), np.ones((2, 3, 4), np.float32),
                                             np.array([0, 9, 5], np.int32)], 1)
    assert result.returncode == 1 and "moe.grouped_matmul: the offsets of expert 0" in result.stderr


def test_check_flag_passes_on_a_layer(tmp_path):
    config = configs.QWEN3_30B_A3B.scaled(32, 16)
    program = write_program(tmp_path, configs.layer_mlir(config))
    result = run_raw([program, f"--entry={config.name}", "--random", "--num-tokens=5",
                      f"--seed={rng.integers(1 << 30)}", "--check", "--repeat=3"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check: PASS" in result.stdout and "median time:" in result.stdout

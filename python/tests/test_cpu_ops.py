"""Every moe op, lowered and run on the CPU by moe-run, against the float64
reference on fresh random shapes and data."""

from __future__ import annotations

import numpy as np
import pytest

from moe_compiler import check
from moe_compiler import reference as ref
from moe_run import IR_DTYPES, TOLERANCE, relative_l2, run_program

rng = np.random.default_rng()
DTYPES = ["f32", "bf16"]


def rand(shape, dtype="f32", scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(IR_DTYPES[dtype])


def dims(*sizes):
    return "x".join(str(s) for s in sizes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_router(tmp_path, dtype, with_bias):
    m, e, h = rng.integers(1, 20), rng.integers(2, 17), rng.integers(1, 70)
    bias_arg = f", %b: tensor<{e}xf32>" if with_bias else ""
    bias_use = f" bias(%b : tensor<{e}xf32>)" if with_bias else ""
    ir = f"""
func.func @f(%x: tensor<?x{h}x{dtype}>, %w: tensor<{e}x{h}x{dtype}>{bias_arg}) -> tensor<?x{e}xf32> {{
  %0 = moe.router %x, %w{bias_use} : tensor<?x{h}x{dtype}>, tensor<{e}x{h}x{dtype}> -> tensor<?x{e}xf32>
  return %0 : tensor<?x{e}xf32>
}}"""
    inputs = [rand((m, h), dtype), rand((e, h), dtype)]
    if with_bias:
        inputs.append(rand((e,)))
    result = run_program(tmp_path, ir, "f", inputs, 1)
    assert result.returncode == 0, result.stderr
    expected = ref.router(*[a.astype(np.float64) for a in inputs])
    assert result.outputs[0].shape == (m, e)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]


TOPK_VARIANTS = {
    "softmax": dict(scoring="softmax"),
    "softmax_renormalize": dict(scoring="softmax", renormalize=True),
    "topk_softmax": dict(scoring="topk_softmax"),
    "sigmoid_bias_groups": dict(scoring="sigmoid", bias=True, groups=True, renormalize=True,
                                routed_scaling_factor=2.5),
    "sigmoid_bias": dict(scoring="sigmoid", bias=True),
}


def topk_ir(e, k, variant, num_groups=None, topk_groups=None):
    attrs = [f"k = {k} : i64"]
    if num_groups:
        attrs += [f"num_groups = {num_groups} : i64", f"topk_groups = {topk_groups} : i64"]
    if variant.get("renormalize"):
        attrs.append("renormalize")
    if variant.get("routed_scaling_factor"):
        attrs.append(f"routed_scaling_factor = {variant['routed_scaling_factor']} : f32")
    bias_arg = f", %b: tensor<{e}xf32>" if variant.get("bias") else ""
    bias_use = f" bias(%b : tensor<{e}xf32>)" if variant.get("bias") else ""
    return f"""
func.func @f(%l: tensor<?x{e}xf32>{bias_arg}) -> (tensor<?x{k}xf32>, tensor<?x{k}xi32>) {{
  %w, %i = moe.topk {variant['scoring']} %l{bias_use} {{{', '.join(attrs)}}} : tensor<?x{e}xf32> -> tensor<?x{k}xf32>, tensor<?x{k}xi32>
  return %w, %i : tensor<?x{k}xf32>, tensor<?x{k}xi32>
}}"""


def run_topk(tmp_path, logits, k, variant, bias=None, num_groups=None, topk_groups=None):
    e = logits.shape[1]
    ir = topk_ir(e, k, variant, num_groups, topk_groups)
    inputs = [logits.astype(np.float32)] + ([bias.astype(np.float32)] if bias is not None else [])
    result = run_program(tmp_path, ir, "f", inputs, 2)
    assert result.returncode == 0, result.stderr
    expected = ref.topk(logits.astype(np.float32).astype(np.float64), k, variant["scoring"],
                        bias=None if bias is None else bias.astype(np.float32),
                        num_groups=num_groups, topk_groups=topk_groups,
                        renormalize=variant.get("renormalize", False),
                        routed_scaling_factor=variant.get("routed_scaling_factor"))
    return result.outputs, expected


@pytest.mark.parametrize("name", TOPK_VARIANTS)
def test_topk_variants(tmp_path, name):
    variant = TOPK_VARIANTS[name]
    num_groups = topk_groups = None
    if variant.get("groups"):
        num_groups = int(rng.choice([2, 4, 8]))
        e = num_groups * int(rng.integers(2, 5))
        topk_groups = int(rng.integers(1, num_groups + 1))
        k = int(rng.integers(1, topk_groups * (e // num_groups) + 1))
    else:
        e = int(rng.integers(2, 40))
        k = int(rng.integers(1, e + 1))
    m = int(rng.integers(1, 40))
    logits = rng.standard_normal((m, e)) * 2
    bias = rng.standard_normal(e) * 0.1 if variant.get("bias") else None
    (weights, ids), (ref_weights, ref_ids) = run_topk(
        tmp_path, logits, k, variant, bias, num_groups, topk_groups)
    # Near-ties may legitimately resolve either way in float32.
    attrs = dict(k=k, scoring=variant["scoring"], num_groups=num_groups, topk_groups=topk_groups)
    keep = ~check.ambiguous_tokens(logits.astype(np.float32).astype(np.float64), attrs,
                                   None if bias is None else bias.astype(np.float32))
    assert keep.sum() >= 0.9 * m
    np.testing.assert_array_equal(ids[keep], ref_ids[keep])
    assert ids.min() >= 0 and ids.max() < e
    assert relative_l2(weights[keep], ref_weights[keep]) < TOLERANCE["f32"]


def test_topk_k_equals_e(tmp_path):
    e = int(rng.integers(2, 12))
    logits = rng.permutation(e)[None, :].astype(np.float64) + rng.standard_normal((5, e)) * 0.01
    (weights, ids), (ref_weights, ref_ids) = run_topk(tmp_path, logits, e, TOPK_VARIANTS["softmax"])
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.tile(np.arange(e), (5, 1)))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["softmax", "topk_softmax", "sigmoid_bias_groups"])
def test_topk_ties_go_to_lower_index(tmp_path, name):
    variant = TOPK_VARIANTS[name]
    logits = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                       [0.0, 2.0, 0.0, 2.0, 0.0, 2.0, 0.0, 2.0],
                       [3.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 1.0]])
    bias = np.zeros(8) if variant.get("bias") else None
    groups = (4, 2) if variant.get("groups") else (None, None)
    (weights, ids), (ref_weights, ref_ids) = run_topk(tmp_path, logits, 3, variant, bias, *groups)
    np.testing.assert_array_equal(ids, ref_ids)
    if name == "softmax":
        np.testing.assert_array_equal(ids, [[0, 1, 2], [1, 3, 5], [0, 2, 4]])
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-6)


@pytest.mark.parametrize("name", ["softmax", "topk_softmax", "sigmoid_bias_groups"])
def test_topk_nan_keeps_ids_in_range(tmp_path, name):
    variant = TOPK_VARIANTS[name]
    logits = rng.standard_normal((4, 8))
    logits[0, 3] = np.nan
    logits[1, :] = np.nan
    logits[2, ::2] = np.nan
    bias = np.zeros(8) if variant.get("bias") else None
    groups = (4, 2) if variant.get("groups") else (None, None)
    (weights, ids), (ref_weights, ref_ids) = run_topk(tmp_path, logits, 3, variant, bias, *groups)
    assert ids.min() >= 0 and ids.max() < 8
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(np.isnan(weights), np.isnan(ref_weights))
    finite = ~np.isnan(ref_weights)
    np.testing.assert_allclose(weights[finite], ref_weights[finite], rtol=1e-6)


def permute_ir(h, k, e, dtype):
    return f"""
func.func @f(%x: tensor<?x{h}x{dtype}>, %ids: tensor<?x{k}xi32>) -> (tensor<?x{h}x{dtype}>, tensor<{e + 1}xi32>, tensor<?xi32>) {{
  %r, %o, %s = moe.permute %x, %ids : tensor<?x{h}x{dtype}>, tensor<?x{k}xi32> -> tensor<?x{h}x{dtype}>, tensor<{e + 1}xi32>, tensor<?xi32>
  return %r, %o, %s : tensor<?x{h}x{dtype}>, tensor<{e + 1}xi32>, tensor<?xi32>
}}"""


@pytest.mark.parametrize("dtype", DTYPES)
def test_permute(tmp_path, dtype):
    m, k, e, h = rng.integers(0, 30), rng.integers(1, 5), rng.integers(1, 10), rng.integers(1, 20)
    x = rand((m, h), dtype)
    ids = rng.integers(0, e, size=(m, k)).astype(np.int32)
    result = run_program(tmp_path, permute_ir(h, k, e, dtype), "f", [x, ids], 3,
                         output_dtypes=[dtype, "i32", "i32"])
    assert result.returncode == 0, result.stderr
    rows, offsets, source = result.outputs
    ref_rows, ref_offsets, ref_source = ref.permute(x.astype(np.float64), ids, e)
    np.testing.assert_array_equal(offsets, ref_offsets)
    np.testing.assert_array_equal(source, ref_source)
    np.testing.assert_array_equal(rows.astype(np.float64), ref_rows)


def gmm_ir(r_dtype, out_dtype, e, n, kdim):
    return f"""
func.func @f(%rows: tensor<?x{kdim}x{r_dtype}>, %w: tensor<{e}x{n}x{kdim}x{r_dtype}>, %o: tensor<{e + 1}xi32>) -> tensor<?x{n}x{out_dtype}> {{
  %0 = moe.grouped_matmul %rows, %w, %o : tensor<?x{kdim}x{r_dtype}>, tensor<{e}x{n}x{kdim}x{r_dtype}>, tensor<{e + 1}xi32> -> tensor<?x{n}x{out_dtype}>
  return %0 : tensor<?x{n}x{out_dtype}>
}}"""


def random_offsets(rows, e):
    cuts = np.sort(rng.integers(0, rows + 1, size=e - 1))
    return np.concatenate([[0], cuts, [rows]]).astype(np.int32)


@pytest.mark.parametrize("dtype,out_dtype", [("f32", "f32"), ("bf16", "f32"), ("bf16", "bf16")])
def test_grouped_matmul(tmp_path, dtype, out_dtype):
    e, n, kdim = rng.integers(1, 7), rng.integers(1, 40), rng.integers(1, 50)
    rows_count = int(rng.integers(0, 60))
    rows = rand((rows_count, kdim), dtype)
    w = rand((e, n, kdim), dtype)
    offsets = random_offsets(rows_count, e)
    result = run_program(tmp_path, gmm_ir(dtype, out_dtype, e, n, kdim), "f", [rows, w, offsets], 1,
                         output_dtypes=[out_dtype])
    assert result.returncode == 0, result.stderr
    expected = ref.grouped_matmul(rows.astype(np.float64), w.astype(np.float64), offsets)
    assert result.outputs[0].shape == (rows_count, n)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE[out_dtype]


def test_grouped_matmul_empty_and_hot_experts(tmp_path):
    e, n, kdim, rows_count = 4, 24, 16, 37
    rows, w = rand((rows_count, kdim)), rand((e, n, kdim))
    for offsets in ([0, 0, rows_count, rows_count, rows_count], [0, 0, 0, 0, rows_count],
                    [0, 1, 2, 3, rows_count]):
        offsets = np.array(offsets, dtype=np.int32)
        result = run_program(tmp_path, gmm_ir("f32", "f32", e, n, kdim), "f", [rows, w, offsets], 1)
        assert result.returncode == 0, result.stderr
        expected = ref.grouped_matmul(rows, w, offsets)
        assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]


@pytest.mark.parametrize("interleaved", [False, True], ids=["halves", "interleaved"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["silu_and_mul", "gelu_and_mul", "swiglu"])
def test_activation(tmp_path, dtype, kind, interleaved):
    r, width = rng.integers(0, 30), rng.integers(1, 40)
    attrs = " {alpha = 1.702 : f32, limit = 7.0 : f32}" if kind == "swiglu" else ""
    layout = " interleaved" if interleaved else ""
    ir = f"""
func.func @f(%h: tensor<?x{2 * width}x{dtype}>) -> tensor<?x{width}x{dtype}> {{
  %0 = moe.activation {kind}{layout} %h{attrs} : tensor<?x{2 * width}x{dtype}> -> tensor<?x{width}x{dtype}>
  return %0 : tensor<?x{width}x{dtype}>
}}"""
    h = rand((r, 2 * width), dtype, scale=4.0)  # reaches swiglu's clamps
    result = run_program(tmp_path, ir, "f", [h], 1, output_dtypes=[dtype])
    assert result.returncode == 0, result.stderr
    # The oracle of the interleaved form: the same activation over the
    # de-interleaved [gate | up] halves.
    halves = (np.concatenate([h[:, 0::2], h[:, 1::2]], axis=1) if interleaved else h)
    expected = ref.activation(halves.astype(np.float64), kind,
                              1.702 if kind == "swiglu" else None,
                              7.0 if kind == "swiglu" else None)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE[dtype]


@pytest.mark.parametrize("gated", [False, True])
def test_add_shared_experts(tmp_path, gated):
    m, k = int(rng.integers(0, 30)), int(rng.integers(1, 9))
    e, s = int(rng.integers(1, 300)), int(rng.integers(1, 5))
    gate_arg = ", %g: tensor<?x1xf32>" if gated else ""
    gate_use = " gate(%g : tensor<?x1xf32>)" if gated else ""
    ir = f"""
func.func @f(%w: tensor<?x{k}xf32>, %ids: tensor<?x{k}xi32>{gate_arg}) -> (tensor<?x{k + s}xf32>, tensor<?x{k + s}xi32>) {{
  %0:2 = moe.add_shared_experts %w, %ids{gate_use} {{num_experts = {e} : i64, num_shared = {s} : i64}} : tensor<?x{k}xf32>, tensor<?x{k}xi32> -> tensor<?x{k + s}xf32>, tensor<?x{k + s}xi32>
  return %0#0, %0#1 : tensor<?x{k + s}xf32>, tensor<?x{k + s}xi32>
}}"""
    weights = rand((m, k))
    # Routed ids are copied whatever they are: another device's (-1) too.
    ids = rng.integers(-1, e, size=(m, k)).astype(np.int32)
    inputs = [weights, ids]
    if gated:
        inputs.append(rand((m, 1), scale=3.0))
    result = run_program(tmp_path, ir, "f", inputs, 2, output_dtypes=["f32", "i32"])
    assert result.returncode == 0, result.stderr
    expected_weights, expected_ids = ref.add_shared_experts(
        weights, ids, e, s, inputs[2] if gated else None)
    np.testing.assert_array_equal(result.outputs[1], expected_ids)
    assert relative_l2(result.outputs[0], expected_weights) < TOLERANCE["f32"]


def test_gelu_keeps_relative_accuracy_for_negative_gates(tmp_path):
    # 1 + erf(x/√2) cancels in f32 below x ≈ -5; the lowering must not.
    ir = """
func.func @f(%h: tensor<?x2xf32>) -> tensor<?x1xf32> {
  %0 = moe.activation gelu_and_mul %h : tensor<?x2xf32> -> tensor<?x1xf32>
  return %0 : tensor<?x1xf32>
}"""
    gate = -rng.uniform(4.0, 9.0, size=40)
    h = np.stack([gate, np.ones_like(gate)], axis=1).astype(np.float32)
    result = run_program(tmp_path, ir, "f", [h], 1, output_dtypes=["f32"])
    assert result.returncode == 0, result.stderr
    expected = ref.activation(h.astype(np.float64), "gelu_and_mul")
    assert np.all(np.abs(result.outputs[0] - expected) <= 1e-5 * np.abs(expected))


@pytest.mark.parametrize("dtype", DTYPES)
def test_unpermute(tmp_path, dtype):
    m, k, n = rng.integers(0, 20), rng.integers(1, 5), rng.integers(1, 30)
    rows = rand((m * k, n), dtype)
    source = rng.permutation(m * k).astype(np.int32)
    ir = f"""
func.func @f(%rows: tensor<?x{n}x{dtype}>, %s: tensor<?xi32>) -> tensor<?x{k}x{n}x{dtype}> {{
  %0 = moe.unpermute %rows, %s : tensor<?x{n}x{dtype}>, tensor<?xi32> -> tensor<?x{k}x{n}x{dtype}>
  return %0 : tensor<?x{k}x{n}x{dtype}>
}}"""
    result = run_program(tmp_path, ir, "f", [rows, source], 1, output_dtypes=[dtype])
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(result.outputs[0].astype(np.float64),
                                  ref.unpermute(rows.astype(np.float64), source, k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [None, 2.5])
def test_combine(tmp_path, dtype, scale):
    m, k, h = rng.integers(0, 20), rng.integers(1, 9), rng.integers(1, 40)
    attrs = f" {{routed_scaling_factor = {scale} : f32}}" if scale else ""
    ir = f"""
func.func @f(%y: tensor<?x{k}x{h}xf32>, %w: tensor<?x{k}xf32>) -> tensor<?x{h}x{dtype}> {{
  %0 = moe.combine %y, %w{attrs} : tensor<?x{k}x{h}xf32>, tensor<?x{k}xf32> -> tensor<?x{h}x{dtype}>
  return %0 : tensor<?x{h}x{dtype}>
}}"""
    y, w = rand((m, k, h)), rng.random((m, k)).astype(np.float32)
    result = run_program(tmp_path, ir, "f", [y, w], 1, output_dtypes=[dtype])
    assert result.returncode == 0, result.stderr
    expected = ref.combine(y, w, scale)
    assert result.outputs[0].shape == (m, h)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE[dtype]


def test_permute_then_unpermute_round_trips(tmp_path):
    """Property: over random routings, unpermute(permute(x)) repeats each
    token's row k times, exactly."""
    for trial in range(6):
        m, k, e, h = rng.integers(0, 25), rng.integers(1, 5), rng.integers(1, 9), rng.integers(1, 9)
        ir = f"""
func.func @f(%x: tensor<?x{h}xf32>, %ids: tensor<?x{k}xi32>) -> tensor<?x{k}x{h}xf32> {{
  %r, %o, %s = moe.permute %x, %ids : tensor<?x{h}xf32>, tensor<?x{k}xi32> -> tensor<?x{h}xf32>, tensor<{e + 1}xi32>, tensor<?xi32>
  %u = moe.unpermute %r, %s : tensor<?x{h}xf32>, tensor<?xi32> -> tensor<?x{k}x{h}xf32>
  return %u : tensor<?x{k}x{h}xf32>
}}"""
        x = rand((m, h))
        ids = rng.integers(0, e, size=(m, k)).astype(np.int32)
        result = run_program(tmp_path, ir, "f", [x, ids], 1)
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(result.outputs[0], np.repeat(x[:, None, :], k, axis=1))


@pytest.mark.parametrize("kdim,n", [(18, 10), (24, 40), (9, 5), (64, 96)])
def test_grouped_matmul_bf16_lane_counts(tmp_path, kdim, n):
    """bf16 shapes whose tiles cannot all be whole 8-lane vectors once
    crashed the x86 backend; they must compile and match."""
    e, rows_count = 3, 21
    rows, w = rand((rows_count, kdim), "bf16"), rand((e, n, kdim), "bf16")
    offsets = random_offsets(rows_count, e)
    result = run_program(tmp_path, gmm_ir("bf16", "bf16", e, n, kdim), "f", [rows, w, offsets], 1,
                         output_dtypes=["bf16"])
    assert result.returncode == 0, result.stderr
    expected = ref.grouped_matmul(rows.astype(np.float64), w.astype(np.float64), offsets)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE["bf16"]

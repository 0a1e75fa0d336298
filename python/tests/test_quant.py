"""The quantized formats' oracle (moe_compiler.quant) on cases worked out by
hand, and round-trip error bounds that follow from each format's step size."""

import ml_dtypes
import numpy as np
import pytest

from moe_compiler import quant


def test_fp8_per_tensor_scale_rounding_and_saturation():
    x = np.array([[0.3, -448.0], [1.0, 0.0]]) * 2.0  # amax 896 -> scale 2
    codes, scales = quant.quantize_fp8(x, "per_tensor", "activation")
    assert scales.tolist() == [2.0]
    # 0.3 = 1.2 * 2^-2; e4m3 keeps 3 mantissa bits: 1.2 -> 1.25, so 0.3125.
    np.testing.assert_array_equal(codes.astype(np.float64), [[0.3125, -448.0], [1.0, 0.0]])
    np.testing.assert_array_equal(
        quant.dequantize_fp8(codes, scales, "per_tensor", "activation"),
        [[0.625, -896.0], [2.0, 0.0]])


def test_fp8_saturates_instead_of_nan():
    # ml_dtypes turns 500 into NaN; the format saturates (cvt .satfinite).
    assert np.isnan(np.float64(500.0).astype(ml_dtypes.float8_e4m3fn).astype(np.float64))
    codes = quant._to_fp8(np.array([500.0, -1e9]))
    np.testing.assert_array_equal(codes.astype(np.float64), [448.0, -448.0])


def test_fp8_per_token_channel_scales():
    x = np.array([[4.48, 0.0], [0.0, 0.0]])  # row 1 all zero: scale 1
    codes, scales = quant.quantize_fp8(x, "per_token_channel", "activation")
    np.testing.assert_allclose(scales, [0.01, 1.0], rtol=1e-7)
    np.testing.assert_array_equal(codes.astype(np.float64), [[448.0, 0.0], [0.0, 0.0]])
    w = np.zeros((2, 3, 4))
    w[1, 2, 3] = -8.96
    _, w_scales = quant.quantize_fp8(w, "per_token_channel", "weight")
    assert w_scales.shape == (2, 3)
    np.testing.assert_allclose(w_scales[1, 2], 0.02, rtol=1e-7)
    assert w_scales[0, 0] == 1.0


def test_fp8_block_scales_cover_128_tiles():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 256, 384))
    w[1, 130, 200] = 100.0  # tile (n 1, k 1) of expert 1
    codes, scales = quant.quantize_fp8(w, "block", "weight")
    assert scales.shape == (2, 2, 3)
    np.testing.assert_allclose(scales[1, 1, 1], 100.0 / 448.0, rtol=1e-7)
    x = rng.standard_normal((5, 384))
    _, x_scales = quant.quantize_fp8(x, "block", "activation")
    assert x_scales.shape == (5, 3)
    np.testing.assert_allclose(x_scales[2, 1], np.abs(x[2, 128:256]).max() / 448, rtol=1e-6)
    with pytest.raises(ValueError, match="does not tile"):
        quant.quantize_fp8(np.zeros((1, 100, 128)), "block", "weight")


@pytest.mark.parametrize("layout", ["per_tensor", "per_token_channel", "block"])
def test_fp8_round_trip_within_half_a_step(layout):
    # e4m3 has 3 mantissa bits: relative rounding error at most 2^-4 for
    # normal values; values under the scaled minimum normal lose more, so
    # the bound is on the error relative to each group's amax.
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 128, 256))
    codes, scales = quant.quantize_fp8(w, layout, "weight")
    back = quant.dequantize_fp8(codes, scales, layout, "weight")
    assert np.max(np.abs(back - w)) <= 2.0 ** -4 * np.max(np.abs(w)) + 1e-12


def test_int8_symmetric_per_row():
    codes, scales = quant.quantize_int8(np.array([[1.27, -0.635, 0.005]]))
    np.testing.assert_allclose(scales, [0.01], rtol=1e-7)
    # 0.005 / 0.01 = 0.5 rounds to even: 0.
    np.testing.assert_array_equal(codes, [[127, -64, 0]])
    np.testing.assert_allclose(quant.dequantize_int8(codes, scales), [[1.27, -0.64, 0.0]])


def test_int4_groups_symmetric_and_with_zero_points():
    w = np.zeros((1, 1, 64))
    w[0, 0, :32] = np.linspace(-7.0, 7.0, 32)
    w[0, 0, 32:] = np.linspace(0.0, 3.0, 32)
    codes, scales, zeros = quant.quantize_grouped(w, bits=4, group=32, zero_point=False)
    assert zeros is None
    np.testing.assert_allclose(scales[0, 0], [1.0, 3.0 / 7.0], rtol=1e-7)
    assert codes.min() >= -7 and codes.max() <= 7 and codes[0, 0, 0] == -7
    codes, scales, zeros = quant.quantize_grouped(w, bits=4, group=32, zero_point=True)
    # Group 0 spans [-7, 7]: scale 14/15, zero round(7.5) = 8 (even).
    np.testing.assert_allclose(scales[0, 0, 0], 14.0 / 15.0, rtol=1e-7)
    assert zeros[0, 0, 0] == 8 and zeros[0, 0, 1] == 0
    back = quant.dequantize_grouped(codes, scales, zeros, 32)
    # Within half a step of each group's (f32) scale, up to the rounding of
    # that scale: 7 / s = 7.5 rounds (to even) to 8, clipped to the top
    # code 15 - 8 = 7, which is again half a step off.
    for group, columns in ((0, slice(0, 32)), (1, slice(32, 64))):
        half_step = float(scales[0, 0, group]) / 2 * (1 + 1e-6)
        assert np.max(np.abs(back - w)[0, 0, columns]) <= half_step


def test_nibble_packing_order():
    codes = np.array([1, 2, -1, 7], dtype=np.int8)
    packed = quant.pack_nibbles(codes)
    # Element 0 in the low nibble: 0x21; -1 is 0xF in the low nibble of 0x7F.
    np.testing.assert_array_equal(packed, [0x21, 0x7F])
    np.testing.assert_array_equal(quant.unpack_nibbles(packed, signed=True), codes)
    np.testing.assert_array_equal(quant.unpack_nibbles([0xF0], signed=False), [0, 15])


def test_mxfp4_shared_exponent_and_e2m1_rounding():
    w = np.zeros((1, 1, 64))
    w[0, 0, :4] = [6.0, 0.25, 0.75, 5.0]  # amax 6: exponent floor(log2 6) - 2 = 0
    w[0, 0, 32:34] = [96.0, 20.0]  # amax 96: 2^(6 - 2) = 16
    codes, scale_bytes = quant.quantize_mxfp4(w)
    np.testing.assert_array_equal(scale_bytes[0, 0], [127, 131])
    # e2m1 nearest even: 0.25 -> 0, 0.75 -> 1, 5 -> 4; 20/16 = 1.25 -> 1.
    np.testing.assert_array_equal(codes[0, 0, :4].astype(np.float64), [6.0, 0.0, 1.0, 4.0])
    np.testing.assert_array_equal(
        quant.dequantize_mxfp4(codes, scale_bytes)[0, 0, 32:34], [96.0, 16.0])
    # amax just under 8 saturates at 6 in the top binade.
    codes, scale_bytes = quant.quantize_mxfp4(np.full((1, 1, 32), 7.9))
    assert scale_bytes[0, 0, 0] == 127 and codes.astype(np.float64).max() == 6.0


def test_quantized_grouped_matmul_is_the_dequantized_product():
    rng = np.random.default_rng(2)
    rows = rng.standard_normal((5, 128))
    weights = rng.standard_normal((2, 128, 128))
    offsets = [0, 3, 5]
    a_codes, a_scales = quant.quantize_fp8(rows, "block", "activation")
    w_codes, w_scales = quant.quantize_fp8(weights, "block", "weight")
    a = quant.dequantize_fp8(a_codes, a_scales, "block", "activation")
    w = quant.dequantize_fp8(w_codes, w_scales, "block", "weight")
    out = quant.grouped_matmul_dequantized(a, w, offsets)
    np.testing.assert_allclose(out[:3], a[:3] @ w[0].T, rtol=1e-12)
    np.testing.assert_allclose(out[3:], a[3:] @ w[1].T, rtol=1e-12)
    # Against the unquantized product: each operand off by at most 2^-4
    # relative per element, so well under 10% in L2.
    exact = quant.grouped_matmul_dequantized(rows, weights, offsets)
    assert np.linalg.norm(out - exact) / np.linalg.norm(exact) < 0.1


@pytest.mark.parametrize("layout", ["per_tensor", "per_token_channel", "block"])
def test_w8a8_block_oracle_of_some_rows(layout):
    """The GPU suite compares sampled rows: the oracle's `rows` must give those
    rows of the whole block, with per-tensor scales still taken over every
    token and every scheduled assignment (ids -1 skipped), not over the
    sample."""
    rng = np.random.default_rng()
    m, h, i, e, k = 24, 256, 128, 8, 2
    x = rng.standard_normal((m, h)).astype(ml_dtypes.bfloat16).astype(np.float64)
    x[m - 1] *= 8.0  # the largest values sit outside the sample
    ids = np.stack([rng.choice(e, size=k, replace=False) for _ in range(m)]).astype(np.int32)
    ids[3, 1] = -1
    weights = rng.random((m, k))
    w13 = rng.standard_normal((e, 2 * i, h)) / np.sqrt(h)
    w2 = rng.standard_normal((e, h, i)) / np.sqrt(i)

    def w13_of(expert):
        return w13[expert] if 0 <= expert < e else None

    def silu_and_mul(values):
        gate, up = values[:, :i], values[:, i:]
        return gate / (1.0 + np.exp(-gate)) * up

    def oracle(x_rows, ids_rows, weights_rows, rows=None):
        return quant.w8a8_expert_block_rows(x_rows, ids_rows, weights_rows, w13_of,
                                            lambda expert: w2[expert], h, "fp8", layout,
                                            silu_and_mul, rows)

    sample = [0, 3, 7]
    whole = oracle(x, ids, weights)
    np.testing.assert_array_equal(oracle(x, ids, weights, sample), whole[sample])
    alone = oracle(x[sample], ids[sample], weights[sample])
    if layout == "per_tensor":
        assert not np.array_equal(alone, whole[sample])
    else:
        np.testing.assert_array_equal(alone, whole[sample])

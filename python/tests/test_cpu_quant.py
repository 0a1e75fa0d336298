"""The w8a8 grouped matmuls (fp8 e4m3 with per-tensor, per-token × per-channel
and 128×128 block scales; int8 per token × per channel), lowered and run on
the CPU, against the float64 oracle of the dequantized math
(moe_compiler.quant), on fresh random shapes and data.

Tolerance 1e-5 relative L2: the dequantized operands are products of an
exactly representable code and an f32 scale (one f32 rounding, 6e-8), and
the f32 accumulation over K ≤ 384 adds at most ~K·6e-8 in the worst case and
far less on random data."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from moe_compiler import quant
from moe_run import relative_l2, run_program

rng = np.random.default_rng()
TOLERANCE = 1e-5


def program(fmt, layout, rows_type, m_dim, k, n, e, a_scale_type, w_scale_type):
    return f"""
func.func @f(%a: tensor<?x{k}x{rows_type}>, %w: tensor<{e}x{n}x{k}x{rows_type}>, %o: tensor<{e + 1}xi32>,
             %as: {a_scale_type}, %ws: {w_scale_type}) -> tensor<?x{n}xf32> {{
  %0 = moe.grouped_matmul %a, %w, %o input_scales(%as : {a_scale_type}) weight_scales(%ws : {w_scale_type})
      {{quantization = #moe.quant<{fmt}, scales = {layout}>}}
      : tensor<?x{k}x{rows_type}>, tensor<{e}x{n}x{k}x{rows_type}>, tensor<{e + 1}xi32> -> tensor<?x{n}xf32>
  return %0 : tensor<?x{n}xf32>
}}"""


def random_offsets(m, e):
    cuts = np.sort(rng.integers(0, m + 1, size=e - 1))
    return np.concatenate([[0], cuts, [m]]).astype(np.int32)


@pytest.mark.parametrize("layout", ["per_tensor", "per_token_channel", "block"])
def test_fp8_grouped_matmul(tmp_path, layout):
    m, e = int(rng.integers(1, 12)), int(rng.integers(1, 5))
    k = 128 * int(rng.integers(1, 4)) if layout == "block" else int(rng.integers(1, 80))
    n = 128 * int(rng.integers(1, 3)) if layout == "block" else int(rng.integers(1, 60))
    rows = rng.standard_normal((m, k)) * 3.0
    weights = rng.standard_normal((e, n, k)) / np.sqrt(k)
    a_codes, a_scales = quant.quantize_fp8(rows, layout, "activation")
    w_codes, w_scales = quant.quantize_fp8(weights, layout, "weight")
    offsets = random_offsets(m, e)
    a_type = {"per_tensor": "tensor<1xf32>", "per_token_channel": "tensor<?xf32>",
              "block": f"tensor<?x{k // 128}xf32>"}[layout]
    w_type = {"per_tensor": f"tensor<{e}xf32>", "per_token_channel": f"tensor<{e}x{n}xf32>",
              "block": f"tensor<{e}x{n // 128}x{k // 128}xf32>"}[layout]
    ir = program("fp8", layout, "f8E4M3FN", m, k, n, e, a_type, w_type)
    result = run_program(tmp_path, ir, "f", [a_codes, w_codes, offsets, a_scales, w_scales], 1)
    assert result.returncode == 0, result.stderr
    expected = quant.grouped_matmul_dequantized(
        quant.dequantize_fp8(a_codes, a_scales, layout, "activation"),
        quant.dequantize_fp8(w_codes, w_scales, layout, "weight"), offsets)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE
    # And the format itself is close to the unquantized product (e4m3: 3
    # mantissa bits, so a few percent of the products' magnitudes; an
    # inverted scale would be off by orders of magnitude). The error is
    # measured against the sums of |a|·|w|, on which the rounding acts: an
    # output whose terms cancel (m = n = 1 draws one) can be off by more
    # than 10% of itself. Worst over 9000 random draws: 0.042.
    exact = quant.grouped_matmul_dequantized(rows, weights, offsets)
    magnitudes = quant.grouped_matmul_dequantized(np.abs(rows), np.abs(weights), offsets)
    error = np.linalg.norm(result.outputs[0].astype(np.float64) - exact)
    assert error <= 0.1 * np.linalg.norm(magnitudes)


def test_int8_grouped_matmul(tmp_path):
    m, e, k, n = int(rng.integers(1, 12)), int(rng.integers(1, 5)), int(rng.integers(1, 80)), int(rng.integers(1, 60))
    rows = rng.standard_normal((m, k))
    weights = rng.standard_normal((e, n, k))
    a_codes, a_scales = quant.quantize_int8(rows)
    w_codes, w_scales = quant.quantize_int8(weights)
    offsets = random_offsets(m, e)
    ir = program("int8", "per_token_channel", "i8", m, k, n, e, "tensor<?xf32>", f"tensor<{e}x{n}xf32>")
    result = run_program(tmp_path, ir, "f", [a_codes, w_codes, offsets, a_scales, w_scales], 1)
    assert result.returncode == 0, result.stderr
    expected = quant.grouped_matmul_dequantized(
        quant.dequantize_int8(a_codes, a_scales), quant.dequantize_int8(w_codes, w_scales), offsets)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE


def test_scales_of_the_wrong_shape_are_refused(tmp_path):
    m, e, k, n = 4, 2, 16, 8
    a_codes, a_scales = quant.quantize_int8(rng.standard_normal((m, k)))
    w_codes, w_scales = quant.quantize_int8(rng.standard_normal((e, n, k)))
    ir = program("int8", "per_token_channel", "i8", m, k, n, e, "tensor<?xf32>", f"tensor<{e}x{n}xf32>")
    # Weight scales transposed: [n, e] instead of [e, n].
    result = run_program(tmp_path, ir, "f", [a_codes, w_codes, np.array([0, 2, 4], np.int32),
                                             a_scales, w_scales.T.copy()], 1)
    assert result.returncode == 1
    assert "argument #4" in result.stderr and "does not fit" in result.stderr


def quantize_program(fmt, layout, k, code_type, scale_type):
    return f"""
func.func @f(%x: tensor<?x{k}xbf16>) -> (tensor<?x{k}x{code_type}>, {scale_type}) {{
  %c, %s = moe.quantize %x {{quantization = #moe.quant<{fmt}, scales = {layout}>}}
      : tensor<?x{k}xbf16> -> tensor<?x{k}x{code_type}>, {scale_type}
  return %c, %s : tensor<?x{k}x{code_type}>, {scale_type}
}}"""


@pytest.mark.parametrize("layout", ["per_tensor", "per_token_channel", "block"])
def test_fp8_quantize_is_bit_exact(tmp_path, layout):
    m = int(rng.integers(2, 9))
    k = 128 * int(rng.integers(1, 3)) if layout == "block" else int(rng.integers(2, 300))
    x = rng.standard_normal((m, k)) * np.exp2(rng.integers(-12, 12, size=(m, 1)))
    x[0] = 0.0  # an all-zero group: scale 1, codes 0
    x[1, : k // 2] *= 1e-4  # values down in e4m3's subnormals
    x = x.astype(ml_dtypes.bfloat16)
    scale_type = {"per_tensor": "tensor<1xf32>", "per_token_channel": "tensor<?xf32>",
                  "block": f"tensor<?x{k // 128}xf32>"}[layout]
    result = run_program(tmp_path, quantize_program("fp8", layout, k, "f8E4M3FN", scale_type),
                         "f", [x], 2)
    assert result.returncode == 0, result.stderr
    codes, scales = quant.quantize_fp8(x.astype(np.float64), layout, "activation")
    got_codes = np.asarray(result.outputs[0]).view(np.uint8)
    np.testing.assert_array_equal(got_codes, codes.view(np.uint8))
    np.testing.assert_array_equal(np.asarray(result.outputs[1]), scales)


def test_int8_quantize_is_bit_exact(tmp_path):
    m, k = int(rng.integers(2, 9)), int(rng.integers(2, 300))
    x = (rng.standard_normal((m, k)) * 5).astype(ml_dtypes.bfloat16)
    x[0] = 0
    result = run_program(tmp_path, quantize_program("int8", "per_token_channel", k, "i8",
                                                    "tensor<?xf32>"), "f", [x], 2)
    assert result.returncode == 0, result.stderr
    codes, scales = quant.quantize_int8(x.astype(np.float64))
    np.testing.assert_array_equal(result.outputs[0], codes)
    np.testing.assert_array_equal(result.outputs[1], scales)


def weight_only_program(quant_attr, k, n, e, rows_type, stored_type, stored_k, scale_type, zeros_type):
    zeros_arg = f", %z: {zeros_type}" if zeros_type else ""
    zeros_use = f" weight_zeros(%z : {zeros_type})" if zeros_type else ""
    return f"""
func.func @f(%a: tensor<?x{k}x{rows_type}>, %w: tensor<{e}x{n}x{stored_k}x{stored_type}>, %o: tensor<{e + 1}xi32>,
             %ws: {scale_type}{zeros_arg}) -> tensor<?x{n}xf32> {{
  %0 = moe.grouped_matmul %a, %w, %o weight_scales(%ws : {scale_type}){zeros_use}
      {{quantization = {quant_attr}}}
      : tensor<?x{k}x{rows_type}>, tensor<{e}x{n}x{stored_k}x{stored_type}>, tensor<{e + 1}xi32> -> tensor<?x{n}xf32>
  return %0 : tensor<?x{n}xf32>
}}"""


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("zero_point", [False, True])
def test_weight_only_int_grouped_matmul(tmp_path, bits, group, zero_point):
    m, e = int(rng.integers(1, 10)), int(rng.integers(1, 4))
    k, n = group * int(rng.integers(1, 4)), int(rng.integers(1, 40))
    rows = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    weights = rng.standard_normal((e, n, k)) / np.sqrt(k)
    codes, scales, zeros = quant.quantize_grouped(weights, bits, group, zero_point)
    stored = quant.pack_nibbles(codes) if bits == 4 else codes
    stored_type = "ui8" if (bits == 4 or zero_point) else "i8"
    stored_k = k // 2 if bits == 4 else k
    offsets = random_offsets(m, e)
    zp = ", zero_point = true" if zero_point else ""
    attr = f"#moe.quant<int{bits}_weight, group = {group}{zp}>"
    scale_type = f"tensor<{e}x{n}x{k // group}xf32>"
    zeros_type = f"tensor<{e}x{n}x{k // group}xui8>" if zero_point else None
    ir = weight_only_program(attr, k, n, e, "bf16", stored_type, stored_k, scale_type, zeros_type)
    inputs = [rows, stored, offsets, scales] + ([zeros] if zero_point else [])
    result = run_program(tmp_path, ir, "f", inputs, 1)
    assert result.returncode == 0, result.stderr
    expected = quant.grouped_matmul_dequantized(
        rows.astype(np.float64), quant.dequantize_grouped(codes, scales, zeros, group), offsets)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE


def test_mxfp4_grouped_matmul(tmp_path):
    m, e = int(rng.integers(1, 10)), int(rng.integers(1, 4))
    k, n = 32 * int(rng.integers(1, 5)), int(rng.integers(1, 40))
    rows = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    weights = rng.standard_normal((e, n, k)) / np.sqrt(k)
    codes, scale_bytes = quant.quantize_mxfp4(weights)
    packed = quant.pack_nibbles(codes.view(np.uint8) & 0xF)
    offsets = random_offsets(m, e)
    ir = weight_only_program("#moe.quant<mxfp4>", k, n, e, "bf16", "ui8", k // 2,
                             f"tensor<{e}x{n}x{k // 32}xui8>", None)
    result = run_program(tmp_path, ir, "f", [rows, packed, offsets, scale_bytes], 1)
    assert result.returncode == 0, result.stderr
    expected = quant.grouped_matmul_dequantized(
        rows.astype(np.float64), quant.dequantize_mxfp4(codes, scale_bytes), offsets)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE


@pytest.mark.parametrize("trial", range(3))
def test_prepack_wgmma_a_4bit(tmp_path, trial):
    """moe.prepack, lowered and run on the CPU, moves every byte where the
    wgmma A-fragment reference puts it (exact), on fresh random codes."""
    e = int(rng.integers(1, 4))
    n, k = 64 * int(rng.integers(1, 5)), 64 * int(rng.integers(1, 5))
    codes = rng.integers(0, 256, size=(e, n, k // 2)).astype(np.uint8)
    packed_type = f"tensor<{e}x{n // 64}x{k // 64}x2048xui8>"
    ir = f"""
func.func @f(%w: tensor<{e}x{n}x{k // 2}xui8>) -> {packed_type} {{
  %0 = moe.prepack wgmma_a_4bit %w : tensor<{e}x{n}x{k // 2}xui8> -> {packed_type}
  return %0 : {packed_type}
}}"""
    result = run_program(tmp_path, ir, "f", [codes], 1)
    assert result.returncode == 0, result.stderr
    (packed,) = result.outputs
    assert packed.dtype == np.uint8 and packed.shape == (e, n // 64, k // 64, 2048)
    np.testing.assert_array_equal(packed, quant.prepack_wgmma_a_4bit(codes))


@pytest.mark.parametrize("fmt", ["int4", "int4_zero_point", "mxfp4"])
def test_packed_weight_only_grouped_matmul(tmp_path, fmt):
    """A grouped matmul whose codes are stored in moe.prepack's wgmma_a_4bit
    order (`packed = wgmma_a_4bit`), prepacked here by the NumPy reference,
    against the float64 oracle of the same codes in rows."""
    m, e = int(rng.integers(1, 10)), int(rng.integers(1, 4))
    n, k = 64 * int(rng.integers(1, 4)), 64 * int(rng.integers(1, 4))
    rows = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    weights = rng.standard_normal((e, n, k)) / np.sqrt(k)
    offsets = random_offsets(m, e)
    zeros = None
    if fmt == "mxfp4":
        codes, scales = quant.quantize_mxfp4(weights)
        stored = quant.pack_nibbles(codes.view(np.uint8) & 0xF)
        dequantized = quant.dequantize_mxfp4(codes, scales)
        attr = "#moe.quant<mxfp4, packed = wgmma_a_4bit>"
        scale_type = f"tensor<{e}x{n}x{k // 32}xui8>"
    else:
        zero_point = fmt == "int4_zero_point"
        group = 32 if zero_point else 64
        codes, scales, zeros = quant.quantize_grouped(weights, 4, group, zero_point)
        stored = quant.pack_nibbles(codes)
        dequantized = quant.dequantize_grouped(codes, scales, zeros, group)
        zp = ", zero_point = true" if zero_point else ""
        attr = f"#moe.quant<int4_weight, group = {group}{zp}, packed = wgmma_a_4bit>"
        scale_type = f"tensor<{e}x{n}x{k // group}xf32>"
    # The prepacked tiles' bytes, row-major, in the [E, N, K/2] operand.
    packed = quant.prepack_wgmma_a_4bit(stored).reshape(e, n, k // 2)
    zeros_type = f"tensor<{e}x{n}x{zeros.shape[2]}xui8>" if zeros is not None else None
    ir = weight_only_program(attr, k, n, e, "bf16", "ui8", k // 2, scale_type, zeros_type)
    inputs = [rows, packed, offsets, scales] + ([zeros] if zeros is not None else [])
    result = run_program(tmp_path, ir, "f", inputs, 1)
    assert result.returncode == 0, result.stderr
    expected = quant.grouped_matmul_dequantized(rows.astype(np.float64), dequantized, offsets)
    assert relative_l2(result.outputs[0], expected) < TOLERANCE


def test_unpack_inverts_prepack():
    """quant.unpack_wgmma_a_4bit (what moe-run --check uses for packed
    matmuls) puts prepacked codes back in rows, on fresh random codes."""
    e = int(rng.integers(1, 4))
    n, k = 64 * int(rng.integers(1, 5)), 64 * int(rng.integers(1, 5))
    codes = rng.integers(0, 256, size=(e, n, k // 2)).astype(np.uint8)
    packed = quant.prepack_wgmma_a_4bit(codes).reshape(e, n, k // 2)
    np.testing.assert_array_equal(quant.unpack_wgmma_a_4bit(packed), codes)


def test_prepack_reference_is_a_permutation():
    """Every code byte lands in exactly one packed byte, and thread 0's first
    register is row 0's first pair, thread 5 (warp 0, lane 5: r = 1, q = 1)
    byte 7 (s = 1, a3: row + 8, column + 8) is row 9, columns 26..27."""
    sources = quant.wgmma_a_4bit_sources(128, 64)
    assert np.array_equal(np.sort(sources.ravel()), np.arange(128 * 64))
    assert sources[0, 0, 0] == 0
    assert sources[0, 0, 16 * 5 + 7] == 9 * 64 + 13

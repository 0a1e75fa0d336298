"""The float64 oracle of the quantized formats (issue 6).

Each format is defined here once, as NumPy/ml_dtypes code that the CPU
lowering and the GPU kernels must match: how a tensor is quantized (the
scale rule, rounding and saturation), how the values are stored (element
type, packing), and what the grouped matmul computes — always the float64
product of the *dequantized* operands, so scale application order does not
matter to the oracle.

Formats (K is the reduction dimension, N the output columns of a weight
[E, N, K], M the rows of an activation [M, K]):

- ``fp8`` w8a8, e4m3 (OCP ``float8_e4m3fn``: max 448, no infinities) for
  both operands, f32 scales, three layouts:
  ``per_tensor`` (activation scale [1], weight scale [E]),
  ``per_token_channel`` (activation [M], weight [E, N]),
  ``block`` (DeepSeek-V3: activation [M, K/128] per 1×128, weight
  [E, N/128, K/128] per 128×128).
- ``int8`` w8a8, symmetric in [-127, 127], per token × per channel.
- ``int4`` / ``int8`` weight-only with group-wise scales along K (groups of
  32, 64 or 128), optional zero points (asymmetric, unsigned codes); int4
  codes packed two per byte along K, element 2j in the low nibble.
- ``mxfp4``: e2m1 codes (``float4_e2m1fn``: ±{0, .5, 1, 1.5, 2, 3, 4, 6})
  packed two per byte like int4, with an e8m0 scale (a power of two, stored
  as the biased exponent byte) per 32 along K, as in GPT-OSS checkpoints.

Scale rules (symmetric formats): scale = amax / qmax over the scaled group,
with amax = 0 giving scale 1 (the codes are then all 0); values are divided
by the scale, rounded to nearest even in the target type, and saturated to
±qmax. The scale and the quotient are computed in f32, as the compiled code
and the GPU do, so that the codes are bit-exact. The dynamic activation
quantization op (`moe.quantize`) uses the same rule.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

FP8_MAX = 448.0
INT8_MAX = 127.0
E2M1_MAX = 6.0
# The largest e2m1 exponent (6 = 1.5 · 2²): MX scales put the group's amax
# in the top binade of the element type.
E2M1_EMAX = 2
MX_GROUP = 32
FP8_BLOCK = 128


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _scale(amax: np.ndarray, qmax: float) -> np.ndarray:
    """scale = amax / qmax in f32 (1 where amax is 0), returned as float64."""
    amax = np.asarray(amax, dtype=np.float32)
    quotient = (amax / np.float32(qmax)).astype(np.float32)
    return np.where(amax > 0, quotient, np.float32(1.0)).astype(np.float64)


def _divide_f32(x, scales) -> np.ndarray:
    """x / scale in f32 (the values and scales are exact in f32)."""
    return (np.asarray(x, dtype=np.float32) / np.asarray(scales, dtype=np.float32)).astype(np.float64)


def _to_fp8(values: np.ndarray) -> np.ndarray:
    """Round to nearest even in e4m3, saturating at ±448 (a NaN stays NaN)."""
    return np.clip(_f64(values), -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)


def _group_amax(x: np.ndarray, group: int, axis: int = -1) -> np.ndarray:
    """amax over consecutive groups of `group` along the last axis."""
    x = _f64(x)
    if x.shape[axis] % group:
        raise ValueError(f"dimension {x.shape[axis]} is not a multiple of the group {group}")
    grouped = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)
    return np.max(np.abs(grouped), axis=-1)


def _expand(scales: np.ndarray, group: int) -> np.ndarray:
    """Repeats each scale over its group along the last axis."""
    return np.repeat(_f64(scales), group, axis=-1)


# fp8 -----------------------------------------------------------------------

def quantize_fp8(x, layout: str, role: str):
    """Quantizes x ([M, K] activation or [E, N, K] weight) to e4m3.

    Returns (codes as float8_e4m3fn, f32 scales) with the scale shapes of the
    module docstring. `role` is "activation" or "weight"."""
    x = _f64(x)
    if role not in ("activation", "weight"):
        raise ValueError(f"quantize_fp8: unknown role {role!r}")
    if layout == "per_tensor":
        axes = (0, 1) if role == "activation" else (1, 2)
        scales = _scale(np.max(np.abs(x), axis=axes), FP8_MAX)
        scales = scales.reshape(1) if role == "activation" else scales
        full = scales.reshape(-1, 1, 1) if role == "weight" else scales.reshape(1, 1)
    elif layout == "per_token_channel":
        scales = _scale(np.max(np.abs(x), axis=-1), FP8_MAX)  # [M] or [E, N]
        full = scales[..., None]
    elif layout == "block":
        if role == "activation":
            scales = _scale(_group_amax(x, FP8_BLOCK), FP8_MAX)  # [M, K/128]
            full = _expand(scales, FP8_BLOCK)
        else:
            e, n, k = x.shape
            if n % FP8_BLOCK or k % FP8_BLOCK:
                raise ValueError(f"quantize_fp8: weight [{e}, {n}, {k}] does not tile by 128x128")
            tiles = x.reshape(e, n // FP8_BLOCK, FP8_BLOCK, k // FP8_BLOCK, FP8_BLOCK)
            scales = _scale(np.max(np.abs(tiles), axis=(2, 4)), FP8_MAX)  # [E, N/128, K/128]
            full = np.repeat(np.repeat(scales, FP8_BLOCK, axis=1), FP8_BLOCK, axis=2)
    else:
        raise ValueError(f"quantize_fp8: unknown layout {layout!r}")
    return _to_fp8(_divide_f32(x, full)), scales.astype(np.float32)


def dequantize_fp8(codes, scales, layout: str, role: str) -> np.ndarray:
    values = np.asarray(codes).astype(np.float64)
    scales = _f64(scales)
    if layout == "per_tensor":
        full = scales.reshape(-1, 1, 1) if role == "weight" else scales.reshape(1, 1)
    elif layout == "per_token_channel":
        full = scales[..., None]
    elif layout == "block":
        if role == "activation":
            full = _expand(scales, FP8_BLOCK)
        else:
            full = np.repeat(np.repeat(scales, FP8_BLOCK, axis=1), FP8_BLOCK, axis=2)
    else:
        raise ValueError(f"dequantize_fp8: unknown layout {layout!r}")
    return values * full


# int8 w8a8 -----------------------------------------------------------------

def quantize_int8(x):
    """Symmetric int8 per row of the last axis (per token for [M, K], per
    channel for [E, N, K]): codes in [-127, 127], f32 scales [M] / [E, N]."""
    x = _f64(x)
    scales = _scale(np.max(np.abs(x), axis=-1), INT8_MAX)
    codes = np.clip(np.rint(_divide_f32(x, scales[..., None])), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scales.astype(np.float32)


def dequantize_int8(codes, scales) -> np.ndarray:
    return np.asarray(codes).astype(np.float64) * _f64(scales)[..., None]


# weight-only int4 / int8 with groups ----------------------------------------

def quantize_grouped(w, bits: int, group: int, zero_point: bool):
    """Group-wise weight quantization along K of w [E, N, K].

    Symmetric (no zero point): signed codes in [-(2^(b-1) - 1), 2^(b-1) - 1],
    scale = amax / that bound. Asymmetric: unsigned codes in [0, 2^b - 1],
    scale = (max - min) / (2^b - 1), zero = round(-min / scale) clipped to the
    code range; value = (code - zero) · scale. Returns (codes as int8 or
    uint8, f32 scales [E, N, K/group], zeros [E, N, K/group] uint8 or None)."""
    if bits not in (4, 8) or group not in (32, 64, 128):
        raise ValueError(f"quantize_grouped: unsupported bits={bits} group={group}")
    w = _f64(w)
    if w.shape[-1] % group:
        raise ValueError(f"quantize_grouped: K={w.shape[-1]} is not a multiple of {group}")
    grouped = w.reshape(*w.shape[:-1], w.shape[-1] // group, group)
    if not zero_point:
        bound = 2.0 ** (bits - 1) - 1
        scales = _scale(np.max(np.abs(grouped), axis=-1), bound)
        codes = np.clip(np.rint(grouped / scales[..., None]), -bound, bound)
        return codes.reshape(w.shape).astype(np.int8), scales.astype(np.float32), None
    top = 2.0 ** bits - 1
    low, high = np.min(grouped, axis=-1), np.max(grouped, axis=-1)
    low, high = np.minimum(low, 0.0), np.maximum(high, 0.0)  # zero is representable
    scales = np.where(high > low, (high - low) / top, 1.0)
    zeros = np.clip(np.rint(-low / scales), 0, top)
    codes = np.clip(np.rint(grouped / scales[..., None]) + zeros[..., None], 0, top)
    return (codes.reshape(w.shape).astype(np.uint8), scales.astype(np.float32),
            zeros.astype(np.uint8))


def dequantize_grouped(codes, scales, zeros, group: int) -> np.ndarray:
    values = np.asarray(codes).astype(np.float64)
    if zeros is not None:
        values = values - _expand(zeros, group)
    return values * _expand(scales, group)


def pack_nibbles(codes) -> np.ndarray:
    """Two 4-bit codes per byte along the last axis: element 2j in the low
    nibble of byte j, 2j + 1 in the high nibble (signed codes as two's
    complement nibbles)."""
    codes = np.asarray(codes)
    if codes.shape[-1] % 2:
        raise ValueError("pack_nibbles: odd last dimension")
    nibbles = codes.astype(np.int64) & 0xF
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed, signed: bool) -> np.ndarray:
    packed = np.asarray(packed, dtype=np.uint8).astype(np.int64)
    low, high = packed & 0xF, packed >> 4
    out = np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
    if signed:
        out = np.where(out >= 8, out - 16, out)
    return out.astype(np.int8 if signed else np.uint8)


def _wgmma_a_4bit_tile() -> tuple[np.ndarray, np.ndarray]:
    """The tile row and code pair [128 threads, 16 bytes] that each byte of a
    moe.prepack wgmma_a_4bit tile holds, from the register fragment of
    wgmma's A operand (m64 x k16, bf16, from registers): thread t = 32 w +
    4 r + q of a warpgroup holds, per k16 step s of a 64-column tile,
    registers a0..a3 of rows 16 w + r (+ 8 for a1 and a3) and columns
    16 s + 2 q and + 1 (+ 8 for a2 and a3), each one byte of code pairs."""
    thread = np.arange(128)[:, None]
    byte = np.arange(16)[None, :]
    warp, lane = thread // 32, thread % 32
    step, register = byte // 4, byte % 4
    tile_row = 16 * warp + lane // 4 + 8 * (register % 2)
    tile_pair = (16 * step + 2 * (lane % 4) + 8 * (register // 2)) // 2
    return tile_row, tile_pair


def _check_wgmma_a_4bit(rows: int, pairs: int) -> None:
    if rows % 64 or pairs % 32:
        raise ValueError(f"wgmma_a_4bit: rows ({rows}) must be a multiple of 64 and "
                         f"pairs ({pairs}) of 32")


def _wgmma_a_4bit_codes(codes) -> np.ndarray:
    """`codes` as a uint8 [E, N, K/2] array with N, K/2 in whole tiles."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 3:
        raise ValueError(f"wgmma_a_4bit: expects uint8 codes [E, N, K/2], got "
                         f"{codes.dtype} {codes.shape}")
    _check_wgmma_a_4bit(codes.shape[1], codes.shape[2])
    return codes


def wgmma_a_4bit_sources(rows: int, pairs: int) -> np.ndarray:
    """For moe.prepack wgmma_a_4bit of codes [E, rows, pairs]: the flat index
    (row * pairs + pair) of the code byte that each byte of an expert's
    packed [rows/64, pairs/32, 2048] tiles holds (int64, 8 bytes per code
    byte: for tests of the permutation, not for full-size weights)."""
    _check_wgmma_a_4bit(rows, pairs)
    tile_row, tile_pair = _wgmma_a_4bit_tile()
    row = 64 * np.arange(rows // 64)[:, None, None, None] + tile_row
    pair = 32 * np.arange(pairs // 32)[None, :, None, None] + tile_pair
    return (row * pairs + pair).reshape(rows // 64, pairs // 32, 2048)


def prepack_wgmma_a_4bit(codes) -> np.ndarray:
    """moe.prepack wgmma_a_4bit: codes [E, N, K/2] (uint8 pairs of 4-bit
    codes) -> [E, N/64, K/64, 2048], each byte moved, none changed; only
    the result is allocated. The runtime's moe_rt_prepack_wgmma_a_4bit
    does the same without Python."""
    codes = _wgmma_a_4bit_codes(codes)
    experts, rows, pairs = codes.shape
    tile_row, tile_pair = _wgmma_a_4bit_tile()
    tiles = codes.reshape(experts, rows // 64, 64, pairs // 32, 32)
    # Advanced indices on axes 2 and 4 come first: [128, 16, E, N/64, K/64].
    picked = tiles[:, :, tile_row, :, tile_pair]
    return np.ascontiguousarray(np.moveaxis(picked, (0, 1), (3, 4))).reshape(
        experts, rows // 64, pairs // 32, 2048)


def unpack_wgmma_a_4bit(stored) -> np.ndarray:
    """Codes a matmul with `packed = wgmma_a_4bit` takes ([E, N, K/2]
    holding each expert's prepacked [N/64, K/64, 2048] tiles in row-major
    order) back in rows: the inverse of prepack_wgmma_a_4bit."""
    stored = _wgmma_a_4bit_codes(stored)
    experts, rows, pairs = stored.shape
    tile_row, tile_pair = _wgmma_a_4bit_tile()
    tiles = stored.reshape(experts, rows // 64, pairs // 32, 128, 16)
    codes = np.empty((experts, rows // 64, 64, pairs // 32, 32), dtype=np.uint8)
    codes[:, :, tile_row, :, tile_pair] = np.moveaxis(tiles, (3, 4), (0, 1))
    return codes.reshape(experts, rows, pairs)


# mxfp4 ----------------------------------------------------------------------

def quantize_mxfp4(w):
    """OCP MX fp4 along K of w [E, N, K]: per 32 values a shared scale
    2^(floor(log2(amax)) - 2) (amax = 0: 2^0), stored as the e8m0 byte
    (exponent + 127); codes = e2m1(value / scale), nearest even, saturating
    at ±6. Returns (e2m1 codes as float4_e2m1fn, e8m0 bytes uint8)."""
    w = _f64(w)
    amax = _group_amax(w, MX_GROUP)
    exponent = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - E2M1_EMAX, 0)
    exponent = np.clip(exponent, -127, 127)
    scales = np.exp2(exponent)
    codes = np.clip(w / _expand(scales, MX_GROUP), -E2M1_MAX, E2M1_MAX)
    return codes.astype(ml_dtypes.float4_e2m1fn), (exponent + 127).astype(np.uint8)


def dequantize_mxfp4(codes, scale_bytes) -> np.ndarray:
    scales = np.exp2(np.asarray(scale_bytes).astype(np.float64) - 127)
    return np.asarray(codes).astype(np.float64) * _expand(scales, MX_GROUP)


# the quantized grouped matmul --------------------------------------------------

def grouped_matmul_dequantized(rows, weights, offsets) -> np.ndarray:
    """The oracle of every quantized `moe.grouped_matmul`: the float64 product
    of the dequantized rows [S, K] and weights [E, N, K] over each expert's
    row range [offsets[e], offsets[e+1])."""
    rows, weights = _f64(rows), _f64(weights)
    offsets = np.asarray(offsets, dtype=np.int64)
    out = np.zeros((rows.shape[0], weights.shape[1]))
    for expert in range(weights.shape[0]):
        lo, hi = offsets[expert], offsets[expert + 1]
        out[lo:hi] = rows[lo:hi] @ weights[expert].T
    return out


# the w8a8 expert block -----------------------------------------------------------

def quantize_activation(x, fmt: str, layout: str):
    """`moe.quantize` of activations [M, K]: codes and f32 scales."""
    if fmt == "fp8":
        return quantize_fp8(x, layout, "activation")
    if fmt == "int8" and layout == "per_token_channel":
        return quantize_int8(x)
    raise ValueError(f"quantize_activation: no {fmt} with {layout} scales")


def dequantize(codes, scales, fmt: str, layout: str, role: str) -> np.ndarray:
    """float64 values of w8a8 codes of an activation or a weight."""
    if fmt == "fp8":
        return dequantize_fp8(codes, scales, layout, role)
    return dequantize_int8(codes, scales)


def w8a8_expert_block_rows(x, ids, weights, w13_of, w2_of, hidden: int, fmt: str,
                           layout: str, activation_fn, rows=None) -> np.ndarray:
    """The float64 oracle of a w8a8 expert block for the token rows `x`
    [T, H] (their ids and routing weights [T, k]): the activations are
    quantized as the IR's two `moe.quantize` state, GEMM1's per token (or
    1×128 group) or over the whole of `x`, GEMM2's per row (or group) of
    the bf16 intermediate or over every scheduled assignment's row.
    `w13_of(e)` and `w2_of(e)` return expert e's dequantized float64
    weights, or None for an id outside [0, E), which is skipped.
    `activation_fn` maps [R, 2I] to [R, I]. Returns the rows `rows` of the
    output (all by default); per-tensor scales still come from all of `x`
    and `ids`."""
    x = _f64(x)
    ids, weights = np.asarray(ids), np.asarray(weights)
    if rows is None:
        rows = np.arange(x.shape[0])

    def requantize(values):
        codes, scales = quantize_activation(values, fmt, layout)
        return dequantize(codes, scales, fmt, layout, "activation")

    if layout != "per_tensor":
        return expert_block_rows(requantize(x[rows]), ids[rows], weights[rows], w13_of,
                                 w2_of, hidden, activation_fn, requantize)
    x_values = requantize(x)
    # The intermediate's one scale: the amax over every scheduled
    # assignment's bf16 row, one expert at a time.
    amax = 0.0
    for expert in np.unique(ids):
        w13 = w13_of(int(expert))
        if w13 is None:
            continue
        tokens = np.nonzero((ids == expert).any(axis=1))[0]
        act = activation_fn(x_values[tokens] @ w13.T)
        amax = max(amax, float(np.max(np.abs(act.astype(ml_dtypes.bfloat16).astype(np.float64)))))
    scale = _scale(amax, FP8_MAX)

    def requantize_intermediate(values):
        return _to_fp8(_divide_f32(values, scale)).astype(np.float64) * scale

    return expert_block_rows(x_values[rows], ids[rows], weights[rows], w13_of, w2_of,
                             hidden, activation_fn, requantize_intermediate)


# the weight-only expert block ----------------------------------------------------

def quantize_weight_only(w, fmt: str, group: int, zero_point: bool):
    """Stored weights of w [E, N, K] as `moe.grouped_matmul` takes them:
    (codes: packed uint8 for int4 and mxfp4, int8/uint8 for int8_weight;
    scales: f32, or e8m0 bytes for mxfp4; zeros or None)."""
    if fmt == "mxfp4":
        codes, scale_bytes = quantize_mxfp4(w)
        return pack_nibbles(codes.view(np.uint8)), scale_bytes, None
    bits = 4 if fmt == "int4_weight" else 8
    codes, scales, zeros = quantize_grouped(w, bits, group, zero_point)
    return (pack_nibbles(codes) if bits == 4 else codes), scales, zeros


def dequantize_weight_only(stored, scales, zeros, fmt: str, group: int) -> np.ndarray:
    """float64 [E, N, K] of stored weight-only codes."""
    if fmt == "mxfp4":
        codes = unpack_nibbles(stored, signed=False).view(ml_dtypes.float4_e2m1fn)
        return dequantize_mxfp4(codes, scales)
    if fmt == "int4_weight":
        stored = unpack_nibbles(stored, signed=zeros is None)
    return dequantize_grouped(stored, scales, zeros, group)


def expert_block_rows(x, ids, weights, w13_of, w2_of, hidden: int, activation_fn,
                      requantize=None, biases=None) -> np.ndarray:
    """The float64 oracle of an expert block with (dequantized) weights: per
    token row of `x`, the routed sum of w2 · bf16(activation(w13 · x));
    `w13_of(e)` returns None for an id outside [0, E), which is skipped;
    `requantize` (w8a8) maps the bf16 intermediate [1, I] to the values of
    its codes; `biases` (b13 [E, 2I], b2 [E, H]) are added to the products."""
    x = _f64(x)
    out = np.zeros((x.shape[0], hidden))
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            expert = int(ids[t, j])
            w13 = w13_of(expert)
            if w13 is None:
                continue
            product = w13 @ x[t]
            if biases is not None:
                product = product + _f64(biases[0][expert])
            act = activation_fn(product[None, :])
            act = act.astype(ml_dtypes.bfloat16).astype(np.float64)
            if requantize is not None:
                act = requantize(act)
            down = w2_of(expert) @ act[0]
            if biases is not None:
                down = down + _f64(biases[1][expert])
            out[t] += float(weights[t, j]) * down
    return out

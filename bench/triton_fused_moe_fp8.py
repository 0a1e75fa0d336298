"""A Triton baseline of the fused_moe design (vLLM's) for fp8 w8a8 expert
blocks: the bf16 baseline's structure (triton_fused_moe.py) with e4m3
operands and their scales, for the two layouts of issue 14's anchors:

- `per_token_channel`: each activation row (token for GEMM1, slot for
  GEMM2) quantized with one scale (amax / 448), weights with one scale per
  output channel [E, N]; tl.dot of e4m3 tiles into f32, the product of the
  two scales applied in the epilogue.
- `block`: activations in 1x128 groups along K, weights in 128x128 blocks
  [E, N/128, K/128] (DeepSeek-V3's checkpoints); every K tile's dot is
  scaled by its group's activation scales and its block's weight scales
  before it is added (BLOCK_K divides 128).

Written for this project from the design's published facts; no code is
taken from vLLM or SGLang. Timed, as ours is: the dynamic quantization of
the input rows, GEMM1 (gathered rows), silu_and_mul, the quantization of
the intermediate rows in use, GEMM2 (routed weight in the epilogue) and the
sum over k. Not timed: the alignment (as in the bf16 baseline). The sweep
is over 48 configs (BLOCK_M 16/32/64/128 x BLOCK_N 64/128/256 x BLOCK_K
64/128 x 4/8 warps) and checks its winner against the caller's float64
oracle.

Standalone check on a GPU:
    python3 bench/triton_fused_moe_fp8.py --selftest
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import triton
import triton.language as tl

import triton_fused_moe as bf16_baseline

E4M3_MAX = 448.0
SCALE_BLOCK = 128
LAYOUTS = ("per_token_channel", "block")


def _stages(block_m: int, block_n: int, block_k: int) -> int:
    """As the bf16 baseline's, for one-byte operands."""
    per_stage = (block_m + block_n) * block_k
    for stages in (4, 3):
        if stages * per_stage <= bf16_baseline.SHARED_LIMIT:
            return stages
    return 2


CONFIGS = [dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=_stages(bm, bn, bk))
           for bm in (16, 32, 64, 128) for bn in (64, 128, 256) for bk in (64, 128)
           for w in (4, 8)]


@triton.jit
def _quantize_rows(x_ptr, codes_ptr, scales_ptr, count_ptr, K, stride_x, stride_codes,
                   stride_scales, GROUP: tl.constexpr, BLOCK: tl.constexpr,
                   COUNTED: tl.constexpr):
    """Row `program_id(0)`, group `program_id(1)` of GROUP columns (the
    whole row for per-token scales): codes = x / s in e4m3 with s = amax /
    448 (1 for an all-zero group), s stored at scales[row, group]. COUNTED:
    rows at or past count_ptr[0] (the slots in use) are skipped."""
    row = tl.program_id(0)
    if COUNTED:
        if row >= tl.load(count_ptr):
            return
    group = tl.program_id(1)
    offsets = tl.arange(0, BLOCK)
    cols = group * GROUP + offsets
    mask = (offsets < GROUP) & (cols < K)
    x = tl.load(x_ptr + row.to(tl.int64) * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    amax = tl.max(tl.abs(x), axis=0)
    scale = tl.where(amax > 0, amax / 448.0, 1.0)
    codes = (x / scale).to(codes_ptr.dtype.element_ty)
    tl.store(codes_ptr + row.to(tl.int64) * stride_codes + cols, codes, mask=mask)
    tl.store(scales_ptr + row.to(tl.int64) * stride_scales + group, scale)


@triton.jit(do_not_specialize=["num_valid"])
def _moe_gemm_fp8(a_ptr, a_scale_ptr, b_ptr, b_scale_ptr, c_ptr, weights_ptr, sorted_ids_ptr,
                  expert_ids_ptr, post_padded_ptr, N, K, EM, num_valid, top_k, stride_am,
                  stride_a_scale, stride_be, stride_bn, stride_b_scale_e, stride_b_scale_n,
                  stride_cm, GATHER: tl.constexpr, BLOCK_SCALES: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  GROUP_M: tl.constexpr):
    """C = (A . B[expert]^T) with scales, over one M-block of slots and one
    N tile; rows, rasterization and epilogues as the bf16 baseline's
    _moe_gemm. A [*, K] e4m3 with scales [*] (per token) or [*, K/128]
    (BLOCK_SCALES); B [E, N, K] e4m3 with scales [E, N] or [E, N/128,
    K/128]. K is a multiple of BLOCK_K (and of 128 with block scales)."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(EM, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    in_group = GROUP_M * num_pid_n
    first_m = (pid // in_group) * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_m
    pid_n = (pid % in_group) // group_m
    if pid_m * BLOCK_M >= tl.load(post_padded_ptr):
        return
    slots = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ids = tl.load(sorted_ids_ptr + slots)
    valid = ids < num_valid
    expert = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
    cols = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    ks = tl.arange(0, BLOCK_K)
    if GATHER:
        rows = tl.where(valid, ids // top_k, 0).to(tl.int64)
    else:
        rows = slots.to(tl.int64)
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :]
    b_ptrs = b_ptr + expert * stride_be + cols[None, :].to(tl.int64) * stride_bn + ks[:, None]
    a_scale_row = a_scale_ptr + rows * stride_a_scale
    b_scale_base = b_scale_ptr + expert * stride_b_scale_e
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if GATHER:
            a = tl.load(a_ptrs, mask=valid[:, None], other=0.0)
        else:
            a = tl.load(a_ptrs)
        b = tl.load(b_ptrs)
        if BLOCK_SCALES:
            group = k0 // 128
            a_scale = tl.load(a_scale_row + group)
            b_scale = tl.load(b_scale_base + (cols // 128) * stride_b_scale_n + group)
            acc += tl.dot(a, b) * a_scale[:, None] * b_scale[None, :]
        else:
            acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    if not BLOCK_SCALES:
        a_scale = tl.load(a_scale_row)
        b_scale = tl.load(b_scale_base + cols * stride_b_scale_n)
        acc = acc * a_scale[:, None] * b_scale[None, :]
    out_cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if GATHER:
        c_ptrs = c_ptr + slots[:, None].to(tl.int64) * stride_cm + out_cols[None, :]
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=out_cols[None, :] < N)
    else:
        routed = tl.load(weights_ptr + ids, mask=valid, other=0.0)
        acc = acc * routed[:, None]
        c_ptrs = c_ptr + ids[:, None].to(tl.int64) * stride_cm + out_cols[None, :]
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty),
                 mask=valid[:, None] & (out_cols[None, :] < N))


class FusedMoEFp8:
    """The fp8 expert block of one (shape, M): bf16 x, routing (ids,
    weights), e4m3 weights w13 [E, 2I, H] and w2 [E, H, I] with their
    scales in `layout`. `runner(config)` launches the quantization of x,
    GEMM1, silu_and_mul, the quantization of the intermediate, GEMM2 and the
    sum over k into `out` (graph-capturable)."""

    def __init__(self, x, ids, weights, w13, w13_scales, w2, w2_scales, layout: str):
        if layout not in LAYOUTS:
            raise ValueError(f"FusedMoEFp8: layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.x, self.ids = x, ids
        self.w13, self.w13_scales, self.w2, self.w2_scales = w13, w13_scales, w2, w2_scales
        self.m, self.k = ids.shape
        self.e, two_i, self.h = w13.shape
        self.i = two_i // 2
        if w2.shape != (self.e, self.h, self.i):
            raise ValueError(f"FusedMoEFp8: w2 {tuple(w2.shape)} does not match w13 "
                             f"{tuple(w13.shape)}")
        if self.h % SCALE_BLOCK or self.i % SCALE_BLOCK:
            raise ValueError("FusedMoEFp8: H and I must be multiples of 128")
        self.weights = weights.reshape(-1).float().contiguous()
        self.numel = self.m * self.k
        slots = max(bf16_baseline.max_blocks(self.numel, self.e, c["BLOCK_M"]) * c["BLOCK_M"]
                    for c in CONFIGS)
        dev, fp8 = x.device, torch.float8_e4m3fn
        groups = SCALE_BLOCK if layout == "block" else None
        self.x_codes = torch.empty(self.m, self.h, dtype=fp8, device=dev)
        self.x_scales = torch.empty(self.m, self.h // groups if groups else 1, device=dev)
        self.cache1 = torch.empty(slots, 2 * self.i, dtype=torch.bfloat16, device=dev)
        self.cache2 = torch.empty(slots, self.i, dtype=torch.bfloat16, device=dev)
        self.cache2_codes = torch.empty(slots, self.i, dtype=fp8, device=dev)
        self.cache2_scales = torch.empty(slots, self.i // groups if groups else 1, device=dev)
        self.cache3 = torch.empty(self.numel, self.h, dtype=torch.bfloat16, device=dev)
        self.out = torch.empty(self.m, self.h, dtype=torch.bfloat16, device=dev)
        self.aligned = {}

    def alignment(self, block_m):
        if block_m not in self.aligned:
            self.aligned[block_m] = bf16_baseline.align(self.ids, self.e, block_m)
        return self.aligned[block_m]

    def _quantize(self, rows, source, codes, scales, count, counted):
        """Launch arguments of _quantize_rows over `rows` rows of `source`."""
        k = source.shape[1]
        block = self.layout == "block"
        group = SCALE_BLOCK if block else k
        grid = (rows, k // SCALE_BLOCK if block else 1)
        return grid, (source, codes, scales, count, k, source.stride(0), codes.stride(0),
                      scales.stride(0)), dict(GROUP=group, BLOCK=triton.next_power_of_2(group),
                                              COUNTED=counted, num_warps=4)

    def _scale_strides(self, scales):
        """(expert, column) strides of weight scales: [E, N] per channel,
        [E, N/128, K/128] in blocks (the column stride is a row of blocks)."""
        return scales.stride(0), scales.stride(1)

    def runner(self, c):
        bm, bn, bk = c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"]
        sorted_ids, expert_ids, post = self.alignment(bm)
        em = sorted_ids.numel()
        m, k, h, i = self.m, self.k, self.h, self.i
        blocked = self.layout == "block"
        opts = dict(GROUP_M=bf16_baseline.GROUP_SIZE_M, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                    BLOCK_SCALES=blocked, num_warps=c["num_warps"], num_stages=c["num_stages"])
        grid1 = (triton.cdiv(em, bm) * triton.cdiv(2 * i, bn),)
        grid_act = (em, triton.cdiv(i, bf16_baseline.SILU_BLOCK))
        grid2 = (triton.cdiv(em, bm) * triton.cdiv(h, bn),)
        quantize_x = self._quantize(m, self.x, self.x_codes, self.x_scales, post, False)
        quantize_act = self._quantize(em, self.cache2, self.cache2_codes, self.cache2_scales,
                                      post, True)
        w13s_e, w13s_n = self._scale_strides(self.w13_scales)
        w2s_e, w2s_n = self._scale_strides(self.w2_scales)
        x_scale_stride = self.x_scales.stride(0) if blocked else 1
        act_scale_stride = self.cache2_scales.stride(0) if blocked else 1
        numel, weights = self.numel, self.weights
        w13, w2, cache1, cache2, cache3, out = (self.w13, self.w2, self.cache1, self.cache2,
                                                self.cache3, self.out)

        def run():
            grid, args, kw = quantize_x
            _quantize_rows[grid](*args, **kw)
            _moe_gemm_fp8[grid1](self.x_codes, self.x_scales, w13, self.w13_scales, cache1,
                                 weights, sorted_ids, expert_ids, post, 2 * i, h, em, numel, k,
                                 self.x_codes.stride(0), x_scale_stride, w13.stride(0),
                                 w13.stride(1), w13s_e, w13s_n, cache1.stride(0), GATHER=True,
                                 **opts)
            bf16_baseline._silu_and_mul[grid_act](cache1, cache2, post, i, cache1.stride(0),
                                                  cache2.stride(0),
                                                  BLOCK=bf16_baseline.SILU_BLOCK, num_warps=4)
            grid, args, kw = quantize_act
            _quantize_rows[grid](*args, **kw)
            _moe_gemm_fp8[grid2](self.cache2_codes, self.cache2_scales, w2, self.w2_scales,
                                 cache3, weights, sorted_ids, expert_ids, post, h, i, em, numel,
                                 1, self.cache2_codes.stride(0), act_scale_stride, w2.stride(0),
                                 w2.stride(1), w2s_e, w2s_n, cache3.stride(0), GATHER=False,
                                 **opts)
            torch.sum(cache3.view(m, k, h), dim=1, out=out)
        return run


def quantize_weights(w, layout: str):
    """e4m3 codes and f32 scales of w [E, N, K] (std ~ 1/sqrt(K)), amax /
    448 per output channel [E, N] or per 128x128 block [E, N/128, K/128]."""
    e, n, k = w.shape
    if layout == "block":
        blocks = w.float().view(e, n // SCALE_BLOCK, SCALE_BLOCK, k // SCALE_BLOCK, SCALE_BLOCK)
        amax = blocks.abs().amax(dim=(2, 4))
        scales = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
        codes = (blocks / scales[:, :, None, :, None]).view(e, n, k).to(torch.float8_e4m3fn)
        return codes, scales.contiguous()
    amax = w.float().abs().amax(dim=2)
    scales = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    return (w.float() / scales[:, :, None]).to(torch.float8_e4m3fn), scales.contiguous()


def dequantize_weights(codes, scales, layout: str):
    e, n, k = codes.shape
    values = codes.float()
    if layout == "block":
        return (values.view(e, n // SCALE_BLOCK, SCALE_BLOCK, k // SCALE_BLOCK, SCALE_BLOCK)
                * scales[:, :, None, :, None]).view(e, n, k)
    return values * scales[:, :, None]


def reference_rows(block: FusedMoEFp8, rows):
    """float64 expert block of token rows from the dequantized weights and
    the activations quantized as the kernels do (per row, or per 1x128
    group, amax / 448, e4m3 round to nearest even): a check of this
    baseline on its own; gpu_moe_suite.py checks it with the project's
    oracle."""
    group = SCALE_BLOCK if block.layout == "block" else None

    def requantize(v):
        shaped = v.view(v.shape[0], -1, group) if group else v.view(v.shape[0], 1, -1)
        amax = shaped.abs().amax(-1, keepdim=True)
        scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
        codes = (shaped / scale).float().to(torch.float8_e4m3fn)
        return (codes.double() * scale).view_as(v)

    w13 = dequantize_weights(block.w13, block.w13_scales, block.layout)
    w2 = dequantize_weights(block.w2, block.w2_scales, block.layout)
    weights = block.weights.view(block.m, block.k)
    out = []
    for t in rows:
        xt = requantize(block.x[t:t + 1].double())[0]
        acc = torch.zeros(block.h, dtype=torch.float64, device=block.x.device)
        for j in range(block.k):
            e = int(block.ids[t, j])
            gate_up = w13[e].double() @ xt
            gate, up = gate_up[:block.i], gate_up[block.i:]
            act = (gate * torch.sigmoid(gate) * up).to(torch.bfloat16).double()
            acc += float(weights[t, j]) * (w2[e].double() @ requantize(act[None])[0])
        out.append(acc)
    return torch.stack(out)


def selftest() -> int:
    """On a GPU: every config of both layouts against reference_rows on a
    Qwen3-sized and a DeepSeek-sized case, then the sweep's best at M = 1
    and 4096 of each."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from gpu_moe_suite import time_graph

    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"triton {triton.__version__}", flush=True)
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    failures = 0
    for shape, layout, m in (("qwen3_30b_a3b", "per_token_channel", 64),
                             ("deepseek_v3", "block", 16)):
        x, ids, weights, w13, w2 = bf16_baseline.make_case(shape, m, generator)
        w13_codes, w13_scales = quantize_weights(w13, layout)
        w2_codes, w2_scales = quantize_weights(w2, layout)
        block = FusedMoEFp8(x, ids, weights, w13_codes, w13_scales, w2_codes, w2_scales, layout)
        rows = bf16_baseline.sample_rows(m, 6, torch.Generator().manual_seed(2))
        expected = reference_rows(block, rows)
        start = time.perf_counter()
        errors, broken = [], []
        for c in CONFIGS:
            try:
                errors.append(bf16_baseline.check(block, c, rows, expected))
            except Exception as error:  # noqa: BLE001 - out of resources, compile errors
                broken.append(f"{bf16_baseline.config_name(c)}: {type(error).__name__}: "
                              f"{str(error)[:100]}")
                torch.cuda.synchronize()
        bad = sum(err >= 2e-2 for err in errors)
        failures += bad + (not errors)
        print(f"{'ok' if errors and not bad else 'FAIL'}: {shape} {layout} M={m}: "
              f"{len(errors)} configs ran, {len(broken)} did not, {bad} at or above 2e-2; "
              f"rel L2 max {max(errors) if errors else float('nan'):.2e}; "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        for line in broken:
            print(f"  not run: {line}")
        for m_timed in (1, 4096):
            x, ids, weights, _, _ = bf16_baseline.make_case(shape, m_timed, generator,
                                                            weights=(w13, w2))
            timed = FusedMoEFp8(x, ids, weights, w13_codes, w13_scales, w2_codes, w2_scales,
                                layout)
            result = bf16_baseline.sweep(timed, time_graph, configs=CONFIGS,
                                         reference=lambda r, b=timed: reference_rows(b, r),
                                         tolerance=2e-2, log=print)
            e, h, i, k = bf16_baseline.SHAPES[shape]
            flops = 2 * m_timed * k * 3 * h * i
            print(f"{shape} {layout} M={m_timed}: best {result['us']:.1f} us "
                  f"({result['name']}), {result['ran']} ran, rel L2 {result['error']:.2e}, "
                  f"{flops / (result['us'] * 1e-6) / 1e12:.0f} TFLOP/s", flush=True)
        del block, w13, w2
        torch.cuda.empty_cache()
    print(f"selftest: {'FAIL' if failures else 'ok'}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("triton_fused_moe_fp8: error: no CUDA GPU", file=sys.stderr)
        return 1
    if args.selftest:
        return selftest()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

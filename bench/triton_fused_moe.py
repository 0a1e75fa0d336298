"""A Triton baseline of the fused_moe design (vLLM's), for the expert block.

Written for this project from the design's published facts; no code is
taken from vLLM or SGLang. What is timed and what is not:

- alignment (`align`, torch ops on the device, NOT timed, precomputed per
  BLOCK_M as the reference page ../shared/reference/moe-anchor-times.md
  does): the M*k assignments sorted by expert (stable), each expert's group
  padded to a multiple of BLOCK_M. `sorted_ids[slot]` is an assignment id
  (token * k + j) or the sentinel M*k in padding slots; `expert_ids[b]` is
  the expert of M-block b; `post_padded[0]` is the number of slots in use.
  The slot buffer is sized for the bound floor(M*k / BLOCK_M) + min(E, M*k)
  blocks, and the grids are launched for that bound; blocks past
  `post_padded` exit at once (the host does not read the count).
- GEMM1 (`_moe_gemm`, GATHER=True): one program per (M-block, N tile) with
  grouped rasterization (GROUP_SIZE_M M-blocks walk the N tiles together,
  for L2 reuse of the weight tiles and A rows); A rows are gathered through
  the sorted ids (token = id // k, padding rows masked to 0); the expert's
  [BLOCK_K, BLOCK_N] weight tile is read from w13 [E, 2I, H]; a K loop of
  tl.dot with f32 accumulation; bf16 rows written in slot order to
  [slots, 2I].
- silu_and_mul: a separate small Triton kernel (`_silu_and_mul`) over the
  slot rows in use: silu(gate) * up in f32, one bf16 rounding.
- GEMM2 (`_moe_gemm`, GATHER=False): A rows are the activated rows in slot
  order (contiguous, no gather); the epilogue multiplies each row by the
  routed weight of its assignment and writes bf16 row `id` of [M*k, H]
  (padding slots masked); then torch sums over k to [M, H].

Both GEMMs use one config (BLOCK_M/N/K, warps, stages), as vLLM's tables
do; `sweep` times CONFIGS (48: BLOCK_M 16/32/64/128 x BLOCK_N 64/128/256 x
BLOCK_K 64/128 x 4/8 warps; 4 stages where they fit in shared memory, else
3, else 2) with CUDA-graph replay medians and keeps the best, after
checking it against a float64 reference on sampled rows. On an H200
(2026-12-01) the 96 GEMM kernels compile in ~7 s (in parallel), and the
sweeps of all 18 (shape, M) rows of gpu_moe_suite.py bench take ~42 s
(0.1-11 s a row; DeepSeek M=4096 the longest).

Standalone check on a GPU (no compiled layers needed):
    python3 bench/triton_fused_moe.py --selftest [--full]
Kernel check on the CPU (Triton's interpreter, tiny shape):
    TRITON_INTERPRET=1 python3 bench/triton_fused_moe.py --interpret
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import triton
import triton.language as tl

# (E, H, I, k) of the benchmarked example layers.
SHAPES = {"mixtral_8x7b": (8, 4096, 14336, 2), "qwen3_30b_a3b": (128, 2048, 768, 8),
          "deepseek_v3": (256, 7168, 2048, 8)}
TOKEN_COUNTS = (1, 16, 64, 256, 1024, 4096)
GROUP_SIZE_M = 8
# Hopper's shared memory per block (227 KiB).
SHARED_LIMIT = 232448


def _stages(block_m: int, block_n: int, block_k: int) -> int:
    """4 stages where 4 A and B tile buffers fit in shared memory, else 3,
    else 2. (Triton 3.6 for sm_90 allocates exactly that many buffers for
    the wgmma tiles, BLOCK_M >= 64, and one fewer below.)"""
    per_stage = (block_m + block_n) * block_k * 2
    for stages in (4, 3):
        if stages * per_stage <= SHARED_LIMIT:
            return stages
    return 2


CONFIGS = [dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=_stages(bm, bn, bk))
           for bm in (16, 32, 64, 128) for bn in (64, 128, 256) for bk in (64, 128)
           for w in (4, 8)]


def config_name(c) -> str:
    return f"{c['BLOCK_M']}x{c['BLOCK_N']}x{c['BLOCK_K']} w{c['num_warps']} s{c['num_stages']}"


@triton.jit(do_not_specialize=["num_valid"])
def _moe_gemm(a_ptr, b_ptr, c_ptr, weights_ptr, sorted_ids_ptr, expert_ids_ptr, post_padded_ptr,
              N, K, EM, num_valid, top_k, stride_am, stride_be, stride_bn, stride_cm,
              GATHER: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    """C = A . B[expert]^T over one M-block of slots and one N tile.
    GATHER: A row of slot s is token sorted_ids[s] // top_k, C row is s.
    else: A row is s, C row is sorted_ids[s], times weights[sorted_ids[s]].
    A [*, K], B [E, N, K], C row-major; K (and C's N) contiguous."""
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
    # Columns past N wrap around (their results are not stored).
    cols = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    ks = tl.arange(0, BLOCK_K)
    if GATHER:
        rows = (ids // top_k).to(tl.int64)
    else:
        rows = slots.to(tl.int64)
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :]
    b_ptrs = b_ptr + expert * stride_be + cols[None, :].to(tl.int64) * stride_bn + ks[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            if GATHER:
                a = tl.load(a_ptrs, mask=valid[:, None], other=0.0)
            else:
                a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            in_k = ks < K - k0
            if GATHER:
                a = tl.load(a_ptrs, mask=valid[:, None] & in_k[None, :], other=0.0)
            else:
                a = tl.load(a_ptrs, mask=in_k[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=in_k[:, None], other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
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


@triton.jit
def _silu_and_mul(h_ptr, out_ptr, post_padded_ptr, I, stride_h, stride_out,
                  BLOCK: tl.constexpr):
    """out[s, :] = silu(h[s, :I]) * h[s, I:] for the slots in use."""
    row = tl.program_id(0)
    if row >= tl.load(post_padded_ptr):
        return
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    base = h_ptr + row.to(tl.int64) * stride_h
    gate = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(base + I + cols, mask=mask, other=0.0).to(tl.float32)
    act = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + row.to(tl.int64) * stride_out + cols, act.to(out_ptr.dtype.element_ty),
             mask=mask)


SILU_BLOCK = 1024


def max_blocks(num_assignments: int, num_experts: int, block_m: int) -> int:
    """Upper bound of sum_e ceil(count_e / block_m) over any routing."""
    return num_assignments // block_m + min(num_experts, num_assignments)


def align(ids: torch.Tensor, num_experts: int, block_m: int):
    """The alignment step (torch ops, not timed): ids [M, k] in [0, E) ->
    (sorted_ids [slots] int32, sentinel M*k in padding; expert_ids [blocks]
    int32; post_padded [1] int32)."""
    flat = ids.reshape(-1).long()
    numel = flat.numel()
    if numel and (int(flat.min()) < 0 or int(flat.max()) >= num_experts):
        raise ValueError("align: expert ids must lie in [0, E)")
    counts = torch.bincount(flat, minlength=num_experts)
    blocks = (counts + block_m - 1) // block_m
    block_end = torch.cumsum(blocks, 0)
    slot_start = (block_end - blocks) * block_m
    order = torch.argsort(flat, stable=True)
    expert_of = flat[order]
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(numel, device=ids.device) - first[expert_of]
    bound = max_blocks(numel, num_experts, block_m)
    sorted_ids = torch.full((bound * block_m,), numel, dtype=torch.int32, device=ids.device)
    sorted_ids[slot_start[expert_of] + rank] = order.to(torch.int32)
    block = torch.arange(bound, device=ids.device)
    expert_ids = torch.searchsorted(block_end, block, right=True).clamp(max=num_experts - 1)
    post_padded = (block_end[-1:] * block_m).to(torch.int32)
    return sorted_ids, expert_ids.to(torch.int32).contiguous(), post_padded


class FusedMoE:
    """The expert block of one (shape, M) in the fused_moe design: buffers
    sized for the largest BLOCK_M, the alignment precomputed per BLOCK_M.
    `runner(config)` returns a callable that launches GEMM1, silu_and_mul,
    GEMM2 and the sum over k into `out` (graph-capturable)."""

    def __init__(self, x, ids, weights, w13, w2):
        self.x, self.ids, self.w13, self.w2 = x, ids, w13, w2
        self.m, self.k = ids.shape
        self.e, two_i, self.h = w13.shape
        self.i = two_i // 2
        assert w2.shape == (self.e, self.h, self.i)
        for t in (x, w13, w2):
            assert t.is_contiguous() and t.dtype == x.dtype
        self.weights = weights.reshape(-1).float().contiguous()
        self.numel = self.m * self.k
        slots = max(max_blocks(self.numel, self.e, c["BLOCK_M"]) * c["BLOCK_M"] for c in CONFIGS)
        dev = x.device
        self.cache1 = torch.empty(slots, 2 * self.i, dtype=x.dtype, device=dev)
        self.cache2 = torch.empty(slots, self.i, dtype=x.dtype, device=dev)
        self.cache3 = torch.empty(self.numel, self.h, dtype=x.dtype, device=dev)
        self.out = torch.empty(self.m, self.h, dtype=x.dtype, device=dev)
        self.aligned = {}

    def alignment(self, block_m):
        if block_m not in self.aligned:
            self.aligned[block_m] = align(self.ids, self.e, block_m)
        return self.aligned[block_m]

    def runner(self, c):
        bm, bn, bk = c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"]
        sorted_ids, expert_ids, post = self.alignment(bm)
        em = sorted_ids.numel()
        m, k, h, i = self.m, self.k, self.h, self.i
        opts = dict(GROUP_M=GROUP_SIZE_M, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                    num_warps=c["num_warps"], num_stages=c["num_stages"])
        grid1 = (triton.cdiv(em, bm) * triton.cdiv(2 * i, bn),)
        grid_act = (em, triton.cdiv(i, SILU_BLOCK))
        grid2 = (triton.cdiv(em, bm) * triton.cdiv(h, bn),)
        x, w13, w2, cache1, cache2, cache3, out, weights = (
            self.x, self.w13, self.w2, self.cache1, self.cache2, self.cache3, self.out,
            self.weights)
        numel = self.numel

        def run():
            _moe_gemm[grid1](x, w13, cache1, weights, sorted_ids, expert_ids, post,
                             2 * i, h, em, numel, k, x.stride(0), w13.stride(0), w13.stride(1),
                             cache1.stride(0), GATHER=True, EVEN_K=h % bk == 0, **opts)
            _silu_and_mul[grid_act](cache1, cache2, post, i, cache1.stride(0), cache2.stride(0),
                                    BLOCK=SILU_BLOCK, num_warps=4)
            _moe_gemm[grid2](cache2, w2, cache3, weights, sorted_ids, expert_ids, post,
                             h, i, em, numel, 1, cache2.stride(0), w2.stride(0), w2.stride(1),
                             cache3.stride(0), GATHER=False, EVEN_K=i % bk == 0, **opts)
            torch.sum(cache3.view(m, k, h), dim=1, out=out)
        return run


def reference_rows(x, ids, weights, w13, w2, rows):
    """float64 expert block (GEMMs through torch, silu_and_mul) of token rows."""
    out = []
    half = w13.shape[1] // 2
    for t in rows:
        acc = torch.zeros(w2.shape[1], dtype=torch.float64, device=x.device)
        xt = x[t].double()
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            gate_up = w13[e].double() @ xt
            gate, up = gate_up[:half], gate_up[half:]
            acc += float(weights[t, j]) * (w2[e].double() @ (gate * torch.sigmoid(gate) * up))
        out.append(acc)
    return torch.stack(out)


def sample_rows(m: int, count: int, generator) -> list[int]:
    drawn = torch.randint(0, m, (min(m, count),), generator=generator, device="cpu")
    return sorted(set(drawn.tolist()) | {0, m - 1})


def relative_l2(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float(torch.linalg.norm(got - expected) / max(float(torch.linalg.norm(expected)), 1e-30))


def check(block: FusedMoE, config, rows, expected) -> float:
    """Relative L2 of the block's output rows (poisoned first) under config."""
    block.out.fill_(float("nan"))
    block.runner(config)()
    if block.out.is_cuda:
        torch.cuda.synchronize()
    got = block.out[rows].double()
    if not bool(torch.isfinite(block.out).all()):
        return float("inf")
    return relative_l2(got, expected)


def compile_all(block: FusedMoE, configs, workers: int | None = None) -> float:
    """Compiles every config's kernels ahead, in parallel where this Triton
    has AsyncCompileMode (the compiled kernels land in the JIT cache that the
    launches use). Returns seconds; failures are left for the launch."""
    start = time.perf_counter()
    workers = workers or min(16, os.cpu_count() or 1)
    try:
        from concurrent.futures import ThreadPoolExecutor
        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:
        return 0.0
    x, w13, w2 = block.x, block.w13, block.w2
    h, i, k = block.h, block.i, block.k
    int32 = torch.int32
    with ThreadPoolExecutor(workers) as pool, AsyncCompileMode(pool, ignore_errors=True):
        for c in configs:
            opts = dict(GROUP_M=GROUP_SIZE_M, BLOCK_M=c["BLOCK_M"], BLOCK_N=c["BLOCK_N"],
                        BLOCK_K=c["BLOCK_K"], num_warps=c["num_warps"],
                        num_stages=c["num_stages"])
            for gather, a, b, c_rows, n, kk, top_k in (
                    (True, x, w13, block.cache1, 2 * i, h, k),
                    (False, block.cache2, w2, block.cache3, h, i, 1)):
                try:
                    _moe_gemm.warmup(a, b, c_rows, block.weights, int32, int32, int32,
                                     n, kk, 4096, block.numel, top_k, a.stride(0), b.stride(0),
                                     b.stride(1), c_rows.stride(0), GATHER=gather,
                                     EVEN_K=kk % c["BLOCK_K"] == 0, grid=(1,), **opts)
                except Exception:  # noqa: BLE001 - reported at launch
                    pass
    return time.perf_counter() - start


def sweep(block: FusedMoE, time_graph, replays=10, winner_replays=20, configs=None,
          generator=None, log=None, reference=None, tolerance=1e-2):
    """Times every config (median of `replays` CUDA-graph replays, by the
    caller's time_graph), re-times the fastest with `winner_replays`, and
    checks it against the float64 reference on sampled rows (rel L2 below
    `tolerance`; a failing config is dropped and the next fastest checked).
    `reference(rows)`: the expected rows (default: reference_rows of the
    block's bf16 weights). Returns a dict: us, config, ran, failed, error,
    rows, seconds."""
    configs = configs or CONFIGS
    start = time.perf_counter()
    times = []
    failed = []
    for c in configs:
        try:
            times.append((time_graph(block.runner(c), replays), c))
        except Exception as error:  # noqa: BLE001 - out of resources, compile errors
            failed.append((config_name(c), f"{type(error).__name__}: {str(error)[:120]}"))
            torch.cuda.synchronize()
    times.sort(key=lambda t: t[0])
    generator = generator or torch.Generator().manual_seed(1)
    rows = sample_rows(block.m, 6, generator)
    if reference is None:
        expected = reference_rows(block.x, block.ids, block.weights.view(block.m, block.k),
                                  block.w13, block.w2, rows)
    else:
        expected = reference(rows)
    result = dict(ran=len(times), failed=failed, rows=rows)
    for _, c in times:
        error = check(block, c, rows, expected)
        if error < tolerance:
            us = time_graph(block.runner(c), winner_replays)
            result.update(us=us, config=c, name=config_name(c), error=error)
            break
        if log:
            log(f"  config {config_name(c)} FAILED the check: rel L2 {error:.2e}; dropped")
        result.setdefault("wrong", []).append((config_name(c), error))
    result["seconds"] = time.perf_counter() - start
    if "us" not in result:
        result.update(us=float("nan"), config=None, name="none passed", error=float("nan"))
    return result


def make_case(shape, m, generator, weights=None):
    """Random bf16 weights (std 1/sqrt(fan-in)), x and a softmax top-k
    routing, renormalized (as gpu_moe_suite.py draws them)."""
    e, h, i, k = SHAPES[shape]
    if weights is None:
        w13 = torch.empty(e, 2 * i, h, dtype=torch.bfloat16, device="cuda")
        w2 = torch.empty(e, h, i, dtype=torch.bfloat16, device="cuda")
        for expert in range(e):
            w13[expert] = torch.randn(2 * i, h, device="cuda", generator=generator) / math.sqrt(h)
            w2[expert] = torch.randn(h, i, device="cuda", generator=generator) / math.sqrt(i)
    else:
        w13, w2 = weights
    x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
    logits = torch.randn(m, e, device="cuda", generator=generator)
    top, ids = torch.topk(torch.softmax(logits, dim=-1), k, dim=-1)
    weights_ = (top / top.sum(-1, keepdim=True)).float().contiguous()
    return x, ids.to(torch.int32).contiguous(), weights_, w13, w2


def interpret_check() -> int:
    """TRITON_INTERPRET=1 on the CPU: tiny shapes, two configs, against the
    float64 reference on every row. In float16: the interpreter's tl.dot
    mishandles bf16 operands (Triton 3.6), and the kernels take the element
    type from their pointers."""
    torch.manual_seed(0)
    failures = 0
    cases = ((4, 64, 96, 2, 5), (8, 128, 64, 3, 9), (16, 64, 64, 4, 1), (4, 80, 80, 2, 40))
    for e, h, i, k, m in cases:
        w13 = (torch.randn(e, 2 * i, h) / math.sqrt(h)).to(torch.float16)
        w2 = (torch.randn(e, h, i) / math.sqrt(i)).to(torch.float16)
        x = torch.randn(m, h).to(torch.float16)
        top, ids = torch.topk(torch.softmax(torch.randn(m, e), -1), k, -1)
        weights = (top / top.sum(-1, keepdim=True)).float()
        block = FusedMoE(x, ids.to(torch.int32), weights, w13, w2)
        expected = reference_rows(x, ids, weights, w13, w2, range(m))
        for c in (dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, num_warps=4, num_stages=2),
                  dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=2)):
            error = check(block, c, list(range(m)), expected)
            good = error < 1e-2
            failures += not good
            print(f"{'ok' if good else 'FAIL'}: interpreter E={e} H={h} I={i} k={k} M={m} "
                  f"{config_name(c)}: rel L2 {error:.2e}", flush=True)
    # the alignment itself: every assignment once, padding = sentinel,
    # blocks of one expert.
    ids = torch.randint(0, 8, (37, 3), dtype=torch.int32)
    sorted_ids, expert_ids, post = align(ids, 8, 16)
    used = sorted_ids[:int(post)]
    real = used[used < 111]
    good = sorted(real.tolist()) == list(range(111)) and int(post) % 16 == 0
    for b in range(int(post) // 16):
        chunk = sorted_ids[b * 16:(b + 1) * 16]
        chunk = chunk[chunk < 111].long()
        good &= bool((ids.view(-1)[chunk] == expert_ids[b]).all())
    failures += not good
    print(f"{'ok' if good else 'FAIL'}: alignment of 111 assignments, {int(post)} slots")
    print(f"interpreter: {2 * len(cases) + 1 - failures} passed, {failures} failed")
    return 1 if failures else 0


def selftest(full: bool, budget_s: float) -> int:
    """On a GPU: every config against the float64 reference on two shapes,
    the bandwidth kernels, then the sweep's wall time on (shape, M) rows:
    DeepSeek M=4096 and Mixtral M=1, or with `full` all 18 rows until
    `budget_s` seconds have passed."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from gpu_moe_suite import time_graph
    import triton_bandwidth

    begin = time.perf_counter()
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"triton {triton.__version__}", flush=True)
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    failures = 0
    summary = []
    for shape, m in (("qwen3_30b_a3b", 64), ("mixtral_8x7b", 16)):
        block = FusedMoE(*make_case(shape, m, generator))
        compile_s = compile_all(block, CONFIGS)
        t0 = time.perf_counter()
        rows = sample_rows(m, 6, torch.Generator().manual_seed(2))
        expected = reference_rows(block.x, block.ids, block.weights.view(m, block.k),
                                  block.w13, block.w2, rows)
        errors, broken = [], []
        for c in CONFIGS:
            try:
                errors.append(check(block, c, rows, expected))
            except Exception as error:  # noqa: BLE001
                broken.append(f"{config_name(c)}: {type(error).__name__}: {str(error)[:100]}")
                torch.cuda.synchronize()
        bad = sum(err >= 1e-2 for err in errors)
        failures += bad
        print(f"{'ok' if not bad else 'FAIL'}: {shape} M={m}: {len(errors)} configs ran, "
              f"{len(broken)} did not, {bad} above 1e-2; rel L2 max {max(errors):.2e}; "
              f"parallel compile {compile_s:.1f} s, first runs {time.perf_counter() - t0:.1f} s",
              flush=True)
        for line in broken:
            print(f"  not run: {line}")
        del block
    bandwidth = triton_bandwidth.measure(time_graph, log=print)
    summary.append(f"bandwidth TB/s: stream {bandwidth['stream']:.2f} "
                   f"({bandwidth['stream_config']}), copy {bandwidth['copy']:.2f}, "
                   f"sum {bandwidth['sum']:.2f}")
    print(summary[-1], flush=True)
    rows_to_time = ([(s, m) for s in SHAPES for m in TOKEN_COUNTS] if full else
                    [("deepseek_v3", 4096), ("mixtral_8x7b", 1)])
    weights_of = {}
    table = []
    for shape, m in rows_to_time:
        if time.perf_counter() - begin > budget_s:
            print(f"budget of {budget_s:.0f} s reached: stopping before {shape} M={m}")
            break
        if shape not in weights_of:
            weights_of.clear()
            torch.cuda.empty_cache()
            case = make_case(shape, 1, generator)
            weights_of[shape] = case[3:]
        block = FusedMoE(*make_case(shape, m, generator, weights_of[shape]))
        t0 = time.perf_counter()
        compile_s = compile_all(block, CONFIGS)
        result = sweep(block, time_graph, log=print)
        wall = time.perf_counter() - t0
        e, h, i, k = SHAPES[shape]
        flops = 2 * m * k * 3 * h * i
        table.append((shape, m, result["us"], result["name"], result["ran"], result["error"],
                      wall, compile_s, flops / (result["us"] * 1e-6) / 1e12))
        print(f"{shape} M={m}: best {result['us']:.1f} us ({result['name']}), "
              f"{result['ran']} configs ran, check rel L2 {result['error']:.2e}; sweep wall "
              f"{wall:.1f} s (compile {compile_s:.1f} s)", flush=True)
        for name, why in result["failed"]:
            print(f"  not run: {name}: {why}")
        del block
    print(f"\nselftest wall {time.perf_counter() - begin:.0f} s")
    print("| shape | M | Triton us | config | configs ran | rel L2 | sweep s | TFLOP/s |")
    for shape, m, us, name, ran, err, wall, _, tf in table:
        print(f"| {shape} | {m} | {us:.1f} | {name} | {ran} | {err:.1e} | {wall:.1f} | {tf:.0f} |")
    for line in summary:
        print(line)
    print(f"selftest: {'FAIL' if failures else 'ok'} ({failures} wrong configs)")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true")
    parser.add_argument("--full", action="store_true",
                        help="with --selftest: sweep all 18 (shape, M) rows")
    parser.add_argument("--budget", type=float, default=330.0,
                        help="with --selftest: stop starting new rows after this many seconds")
    parser.add_argument("--interpret", action="store_true",
                        help="tiny CPU check (set TRITON_INTERPRET=1)")
    args = parser.parse_args()
    if args.interpret:
        return interpret_check()
    if not torch.cuda.is_available():
        print("triton_fused_moe: error: no CUDA GPU", file=sys.stderr)
        return 1
    return selftest(args.full, args.budget)


if __name__ == "__main__":
    sys.exit(main())

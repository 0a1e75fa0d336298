"""Read bandwidth of the card, three ways, for the floor of the benchmarks.

- stream: a Triton kernel that reads a 4 GiB buffer (many times the L2)
  with wide loads: a persistent grid of a few programs per SM, each
  program summing BLOCK f32 elements per step into a register vector and
  writing one value at the end (so no load can be dropped). A few
  (BLOCK, programs per SM, warps) variants are timed and the best kept.
- copy: a 1 GiB device copy, read + write bytes counted.
- sum: torch's `sum` over a 1 GiB bf16 buffer (read only), the floor's
  figure before the stream kernel existed.

`measure(time_graph)` returns all three in TB/s (10^12 bytes/s) with the
best stream variant; the floor uses the max of them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

STREAM_BYTES = 4 << 30
# (BLOCK in f32 elements, programs per SM, warps)
STREAM_VARIANTS = ((8192, 2, 8), (8192, 4, 8), (16384, 2, 8), (16384, 4, 16), (8192, 8, 4))


@triton.jit
def _stream_read(src_ptr, out_ptr, num_blocks, BLOCK: tl.constexpr):
    """Sums blocks pid, pid + P, ... of src (f32, num_blocks * BLOCK
    elements) into out[pid]."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    ptrs = src_ptr + pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    step = programs.to(tl.int64) * BLOCK
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for _ in range(pid, num_blocks, programs):
        acc += tl.load(ptrs, eviction_policy="evict_first")
        ptrs += step
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


def measure_stream(time_graph, replays: int = 10, log=None):
    """TB/s of the best stream-kernel variant, its name, and every
    variant's reading; checks the kernel's total against torch's."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    src = torch.rand(STREAM_BYTES // 4, device="cuda")
    expected = float(src.double().sum())
    best, best_name = 0.0, ""
    readings = {}
    for block, per_sm, warps in STREAM_VARIANTS:
        programs = sms * per_sm
        out = torch.empty(programs, device="cuda")
        num_blocks = src.numel() // block

        def run():
            _stream_read[(programs,)](src, out, num_blocks, BLOCK=block, num_warps=warps)

        run()
        got = float(out.double().sum())
        if abs(got - expected) > 1e-4 * abs(expected):
            raise RuntimeError(f"stream kernel: sum {got} != {expected}")
        us = time_graph(run, replays)
        tbps = STREAM_BYTES / (us * 1e-6) / 1e12
        name = f"BLOCK {block}, {per_sm}/SM, {warps} warps"
        readings[name] = tbps
        if log:
            log(f"  stream read {name}: {us:.0f} us, {tbps:.2f} TB/s")
        if tbps > best:
            best, best_name = tbps, name
    del src
    torch.cuda.empty_cache()
    return best, best_name, readings


def measure(time_graph, replays: int = 10, log=None) -> dict:
    """TB/s of the stream kernel (best variant), the 1 GiB copy (read +
    write) and the 1 GiB bf16 sum, and their max as `bandwidth`."""
    stream, name, readings = measure_stream(time_graph, replays, log)
    big = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(big)
    copy = time_graph(lambda: dst.copy_(big), replays)
    total = time_graph(lambda: big.sum(dtype=torch.float32), replays)
    result = dict(stream=stream, stream_config=name, stream_variants=readings,
                  copy=2 * big.numel() * 2 / (copy * 1e-6) / 1e12,
                  sum=big.numel() * 2 / (total * 1e-6) / 1e12)
    del big, dst
    torch.cuda.empty_cache()
    result["bandwidth"] = max(result["stream"], result["copy"], result["sum"])
    return result

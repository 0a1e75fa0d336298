"""CPU throughput of moe.grouped_matmul, next to NumPy's matmul on the same
FLOPs in the same run. A benchmark, not a test.

    PYTHONPATH=python python3 bench/cpu_grouped_matmul.py [--markdown]

Each shape runs `moe-run --repeat` (median of the compiled function, JIT
time excluded) and times `np.matmul` of one [R, K] x [K, N] product in f32,
which is the same FLOP count without the grouping.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import ml_dtypes
import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MOE_RUN = pathlib.Path(os.environ.get("MOE_BUILD_DIR", REPO_ROOT / "build")) / "bin" / "moe-run"

# (name, experts, rows, N, K): rows = M * k assignments spread over experts.
SHAPES = [
    ("mixtral-like gate_up, 64 tokens", 8, 128, 2048, 1024),
    ("qwen3-like gate_up, 64 tokens", 128, 512, 384, 512),
    ("square, 512 rows, 1 expert", 1, 512, 1024, 1024),
]


def program(e, n, k, dtype):
    return f"""
func.func @gmm(%rows: tensor<?x{k}x{dtype}>, %w: tensor<{e}x{n}x{k}x{dtype}>, %o: tensor<{e + 1}xi32>) -> tensor<?x{n}xf32> {{
  %0 = moe.grouped_matmul %rows, %w, %o : tensor<?x{k}x{dtype}>, tensor<{e}x{n}x{k}x{dtype}>, tensor<{e + 1}xi32> -> tensor<?x{n}xf32>
  return %0 : tensor<?x{n}xf32>
}}"""


def time_moe(e, rows, n, k, dtype, repeat, workdir):
    rng = np.random.default_rng(0)
    np_dtype = ml_dtypes.bfloat16 if dtype == "bf16" else np.float32
    path = pathlib.Path(workdir)
    (path / "gmm.mlir").write_text(program(e, n, k, dtype))
    np.save(path / "rows.npy", rng.standard_normal((rows, k)).astype(np_dtype))
    np.save(path / "w.npy", rng.standard_normal((e, n, k)).astype(np_dtype))
    counts = np.full(e, rows // e)
    counts[: rows % e] += 1
    np.save(path / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    out = subprocess.run(
        [str(MOE_RUN), str(path / "gmm.mlir"), "--entry=gmm", f"--input={path / 'rows.npy'}",
         f"--input={path / 'w.npy'}", f"--input={path / 'offsets.npy'}", f"--repeat={repeat}"],
        capture_output=True, text=True, check=True).stdout
    return float(re.search(r"median time: ([0-9.]+) us", out).group(1)) * 1e-6


def time_numpy(rows, n, k, repeat, threads=None):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    if threads is not None:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=threads):
            return time_numpy(rows, n, k, repeat)
    np.matmul(a, b)  # warm up the BLAS thread pool
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if not MOE_RUN.exists():
        sys.exit(f"{MOE_RUN} is missing: build first")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; moe runs on one thread.")
    print()
    print("| shape | E | rows | N | K | dtype | moe median (ms) | moe GFLOP/s "
          "| numpy f32, all threads (GFLOP/s) | numpy f32, 1 thread (GFLOP/s) | moe / numpy 1 thread |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for name, e, rows, n, k in SHAPES:
            flops = 2.0 * rows * n * k
            t_numpy = time_numpy(rows, n, k, args.repeat)
            t_numpy_1 = time_numpy(rows, n, k, args.repeat, threads=1)
            for dtype in ("f32", "bf16"):
                t_moe = time_moe(e, rows, n, k, dtype, args.repeat, workdir)
                print(f"| {name} | {e} | {rows} | {n} | {k} | {dtype} | {t_moe * 1e3:.2f} | "
                      f"{flops / t_moe * 1e-9:.2f} | {flops / t_numpy * 1e-9:.1f} | "
                      f"{flops / t_numpy_1 * 1e-9:.1f} | {t_numpy_1 / t_moe:.2f} |", flush=True)


if __name__ == "__main__":
    main()

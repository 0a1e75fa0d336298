"""Per-kernel GPU times of compiled expert blocks (device only).

Runs each named block (`<shape>_<scheme>_block_m<M>.so`, or for scheme
`bf16` `<shape>_block_m<M>.so`, of a
scripts/gpu-layers.sh folder) on fresh inputs under torch.profiler, which
sees the driver-API launches of the compiled layer, and prints the median
time of each of its kernels over the profiled calls. What it is for: telling
which kernel of a block moves when a benchmark row does.

    python3 bench/gpu_kernel_times.py build/gpu-layers qwen3_30b_a3b fp8_channel 64 ...
    python3 bench/gpu_kernel_times.py build/gpu-layers qwen3_30b_a3b bf16 4096

With `--also DIR` (repeatable), the same blocks of other builds are timed in
the same process on the same inputs (fresh for each block and round), the
builds in turn, `--rounds` times, so that a variant's kernels are compared
with ours on one routing.

With programmatic dependent launch (moe-compile's default) a kernel starts
before the one ahead of it ends and waits inside, and that wait counts as its
time: the sum of a block's kernels then is not the block's time, and it can
rank two builds wrongly (docs/gpu-benchmark.md, thirty-first session). Build
the variants with `--dependent-launch=false` for per-kernel comparisons, and
decide on block times (`gpu_moe_suite.py bench --also`).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import random
import statistics
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gpu_moe_suite as suite  # noqa: E402


def kernel_times(layers: pathlib.Path, shape: str, scheme: str, m: int, calls: int,
                 routing: str = "softmax", seed: int | None = None):
    """{kernel name: median µs} of `calls` runs of one quantized block, on
    inputs drawn from `seed` (fresh ones without)."""
    configs = json.loads((layers / "layers.json").read_text())
    block = f"{shape}_block" if scheme == "bf16" else f"{shape}_{scheme}_block"
    config = configs[block]
    generator = torch.Generator(device="cuda")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    if scheme == "bf16":
        tensors = suite.make_weights(config, generator)
    elif "quant" in config:
        tensors = suite.make_quantized_weights(config, generator)
    else:
        # Codes in the order the layer reads (prepacked where the scheme is).
        tensors = suite.weight_only_inputs(
            suite.make_weight_only_weights(config, generator), config["weight_only"])
    # GPT-OSS's expert biases follow the weights (the layer's signature).
    biases = suite.make_biases(config, generator)
    name = f"{block}_m{m}"
    layer = suite.Layer(layers / f"{name}.so", name,
                        num_inputs=3 + len(tensors) + len(biases))
    x = torch.randn(m, config["hidden"], device="cuda", generator=generator).to(torch.bfloat16)
    ids, weights = suite.make_routing(config, m, routing, generator)
    out = torch.empty(m, config["hidden"], dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        layer(x, ids, weights, *tensors, *biases, out)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(calls):
            layer(x, ids, weights, *tensors, *biases, out)
        torch.cuda.synchronize()
    durations = collections.defaultdict(list)
    for event in profile.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            durations[event.name].append(event.time_range.elapsed_us())
    return {kernel: statistics.median(times) for kernel, times in durations.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layers", type=pathlib.Path)
    parser.add_argument("blocks", nargs="+",
                        help="shape scheme M triples, e.g. qwen3_30b_a3b fp8_channel 64")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--also", type=pathlib.Path, action="append", default=[],
                        help="another build's layer folder, its blocks timed in turn with "
                             "ours (repeatable)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="how many times each block is timed in every build")
    parser.add_argument("--routing", default="softmax",
                        choices=("softmax", "balanced", "hot", "empty"),
                        help="routing of the profiled calls (balanced: every "
                             "expert holds M·k/E rows)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_kernel_times: error: no CUDA GPU", file=sys.stderr)
        return 1
    if len(args.blocks) % 3:
        print("gpu_kernel_times: error: blocks come as shape scheme M triples",
              file=sys.stderr)
        return 1
    builds = [args.layers, *args.also]
    if len({build.name for build in builds}) != len(builds):
        print("gpu_kernel_times: error: builds are told apart by their folders' names, "
              f"got {[build.name for build in builds]}", file=sys.stderr)
        return 1
    if args.rounds < 1:
        print("gpu_kernel_times: error: --rounds must be at least 1", file=sys.stderr)
        return 1
    labelled = len(builds) > 1 or args.rounds > 1
    print(f"card: {torch.cuda.get_device_name()}")
    for round_index in range(args.rounds):
        for index in range(0, len(args.blocks), 3):
            shape, scheme, m = args.blocks[index:index + 3]
            seed = random.randrange(2**62)
            for build in builds:
                times = kernel_times(build, shape, scheme, int(m), args.calls, args.routing,
                                     seed)
                total = sum(times.values())
                label = f"[{build.name}, round {round_index + 1}] " if labelled else ""
                print(f"{label}{shape} {scheme} M={m} ({args.routing}): {total:.1f} us in kernels",
                      flush=True)
                for kernel, time in times.items():
                    print(f"  {kernel:32s} {time:9.1f} us")
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())

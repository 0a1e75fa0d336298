"""A shared expert fused into the expert GEMMs (moe.add_shared_experts: the
shared expert's slices are experts every token picks) against the routed
experts alone plus a separate dense MLP for the shared expert (cuBLAS
through torch), in one process on the GPU.

    python3 bench/gpu_shared_expert_bench.py LAYERS [--tokens 1,256,4096]
        [--split SPLIT]

LAYERS holds `<layer>_block_m<M>.so` (the fused block), and
`<layer>_routed_block_m<M>.so` (its routed experts alone) with layers.json,
as scripts/gpu-layers.sh writes them (`configs --write-gpu-blocks` writes the
routed blocks' IR). Both sides run the same weights and
routing; the outputs are compared too (they differ only by rounding).
With --split, SPLIT holds the same blocks built with
`moe-compile --shared-experts=split` (the shared experts as a schedule of
their own, moe-split-shared-experts), replayed in turn with the other two.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gpu_moe_suite as suite  # noqa: E402

LAYERS = ("deepseek_v3_shared", "qwen1_5_moe_a2_7b")


def dense_shared_expert(config, w13, w2):
    """The shared expert as one dense MLP: its S slices joined back into
    gate [S·I, H], up [S·I, H] and down [H, S·I] matrices."""
    e, s, i = config["num_experts"], config["num_shared_experts"], config["intermediate"]
    slices = range(e, e + s)
    gate = torch.cat([w13[x, :i] for x in slices]).contiguous()
    up = torch.cat([w13[x, i:] for x in slices]).contiguous()
    down = torch.cat([w2[x] for x in slices], dim=1).contiguous()
    return gate, up, down


def bench_layer(layers_dir: pathlib.Path, name: str, config, token_counts, generator,
                split_dir: pathlib.Path | None = None):
    e, h = config["num_experts"], config["hidden"]
    w13, w2 = suite.make_weights(config, generator)
    shared_gate = suite.make_shared_gate(config, generator)
    gate, up, down = dense_shared_expert(config, w13, w2)
    routed13, routed2 = w13[:e], w2[:e]
    rows = []
    for m in token_counts:
        fused = suite.Layer(layers_dir / f"{name}_block_m{m}.so", f"{name}_block_m{m}",
                            num_inputs=5 + len(shared_gate))
        routed = suite.Layer(layers_dir / f"{name}_routed_block_m{m}.so",
                             f"{name}_routed_block_m{m}")
        split = (suite.Layer(split_dir / f"{name}_block_m{m}.so", f"{name}_block_m{m}",
                             num_inputs=5 + len(shared_gate)) if split_dir else None)
        x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
        ids, weights = suite.make_routing(config, m, "softmax", generator)
        out_fused = torch.empty(m, h, dtype=torch.bfloat16, device="cuda")
        out_routed = torch.empty_like(out_fused)
        out_split = torch.empty_like(out_fused)
        result = torch.empty_like(out_fused)

        def run_fused():
            fused(x, ids, weights, *shared_gate, w13, w2, out_fused)

        def run_separate():
            routed(x, ids, weights, routed13, routed2, out_routed)
            mlp = (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T
            if shared_gate:
                mlp = mlp * torch.sigmoid((x @ shared_gate[0].T).float()).to(mlp.dtype)
            torch.add(out_routed, mlp, out=result)

        def run_split():
            split(x, ids, weights, *shared_gate, w13, w2, out_split)

        runs = [run_fused, run_separate] + ([run_split] if split else [])
        times = suite.time_graphs_interleaved(runs)
        fused_us, separate_us = times[0], times[1]
        for run in runs:
            run()
        torch.cuda.synchronize()
        expected = result.double().cpu().numpy()
        difference = suite.relative_l2(out_fused.double().cpu().numpy(), expected)
        rows.append((m, fused_us, separate_us, difference))
        print(f"{name} M={m}: fused {fused_us:.1f} µs, routed + dense MLP {separate_us:.1f} µs "
              f"(separate / fused {separate_us / fused_us:.2f}); outputs differ by rel L2 "
              f"{difference:.1e}", flush=True)
        if split:
            split_difference = suite.relative_l2(out_split.double().cpu().numpy(), expected)
            rows.append((m, times[2], separate_us, split_difference))
            print(f"{name} M={m}: split schedule {times[2]:.1f} µs (separate / split "
                  f"{separate_us / times[2]:.2f}, fused / split {fused_us / times[2]:.2f}); "
                  f"outputs differ by rel L2 {split_difference:.1e}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layers", type=pathlib.Path)
    parser.add_argument("--tokens", default="1,256,4096")
    parser.add_argument("--split", type=pathlib.Path,
                        help="the same blocks built with --shared-experts=split")
    parser.add_argument("--layers-only", default=",".join(LAYERS),
                        help="the layers to time, of " + ", ".join(LAYERS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_shared_expert_bench: error: no CUDA GPU", file=sys.stderr)
        return 1
    configs = json.loads((args.layers / "layers.json").read_text())
    print(f"card: {torch.cuda.get_device_name()}", flush=True)
    generator = torch.Generator(device="cuda")
    generator.seed()
    slower = 0
    for name in args.layers_only.split(","):
        for _, fused_us, separate_us, difference in bench_layer(
                args.layers, name, configs[f"{name}_block"],
                [int(v) for v in args.tokens.split(",")], generator, args.split):
            slower += fused_us > separate_us or difference > 1e-2
    print(f"slower than separate (or outputs apart) in {slower} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())

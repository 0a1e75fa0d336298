"""Weight-only expert blocks of two builds (and optional variants), timed in
turn in one process beside the bf16 block of the same shape, each checked
against the float64 oracle of its format on sampled rows.

    python3 bench/gpu_weight_only_ab.py OLD NEW --blocks mixtral_8x7b:int4_g128 \
        --tokens 1,16,64 [--variant noswap=DIR ...] [--out ab.json]

OLD holds `<shape>_<scheme>_block_m<M>.so` and the bf16 `<shape>_block_m<M>.so`
(scripts/gpu-layers.sh with MOE_BLOCK_SHAPES), NEW and each variant the
weight-only ones and NEW `layers.json`. Exits non-zero if a new or variant
output is not finite or is 1e-2 or more (rel L2) from the oracle.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "python"))
import gpu_moe_suite as suite  # noqa: E402
from moe_compiler import quant, reference  # noqa: E402

TOLERANCE = 1e-2


def time_block(config, builds, bf16_layer, m, tensors, bf16_weights, biases, generator):
    """{label: (µs, rel L2)} of each build's block, and the bf16 block's µs."""
    e, h = config["num_experts"], config["hidden"]
    scheme = config["weight_only"]
    per = len(tensors) // 2
    w13 = tensors[:per] + [None] * (3 - per)
    w2 = tensors[per:] + [None] * (3 - per)
    host_biases = [b.double().cpu().numpy() for b in biases] or None

    def activation(v):
        return reference.activation(v, config["activation"], config.get("swiglu_alpha"),
                                    config.get("swiglu_limit"),
                                    config.get("gate_up_interleaved", False))

    x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
    ids, weights = suite.make_routing(config, m, "softmax", generator)
    rows = suite.sample_rows(m, 4, generator)
    expected = quant.expert_block_rows(
        x.double().cpu().numpy()[rows], ids.cpu().numpy()[rows], weights.cpu().numpy()[rows],
        lambda ex: suite.dequantized_weight_only(*w13, ex, scheme) if 0 <= ex < e else None,
        lambda ex: suite.dequantized_weight_only(*w2, ex, scheme), h, activation,
        biases=host_biases)
    errors, runs = {}, []
    inputs = suite.weight_only_inputs(tensors, scheme)
    for label, layer in builds:
        out = torch.full((m, h), float("nan"), dtype=torch.bfloat16, device="cuda")
        layer(x, ids, weights, *inputs, *biases, out)
        torch.cuda.synchronize()
        finite = bool(torch.isfinite(out).all())
        error = suite.relative_l2(out[rows].double().cpu().numpy(), expected)
        errors[label] = error if finite else float("inf")
        runs.append(lambda layer=layer, out=out: layer(x, ids, weights, *inputs, *biases, out))
    bf16_out = torch.empty(m, h, dtype=torch.bfloat16, device="cuda")
    runs.append(lambda: bf16_layer(x, ids, weights, *bf16_weights, *biases, bf16_out))
    times = suite.time_graphs_interleaved(runs)
    return {label: (t, errors[label]) for (label, _), t in zip(builds, times)}, times[-1], ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=pathlib.Path)
    parser.add_argument("new", type=pathlib.Path)
    parser.add_argument("--blocks", required=True,
                        help="shape:scheme,... (e.g. qwen3_30b_a3b:int4_g32_zp)")
    parser.add_argument("--tokens", default="1,16,64,256,4096")
    parser.add_argument("--variant", action="append", default=[], help="label=DIR")
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    configs = json.loads((args.new / "layers.json").read_text())
    variants = [(v.split("=", 1)[0], pathlib.Path(v.split("=", 1)[1])) for v in args.variant]
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    peak, bandwidth, readings = suite.measure_ceilings()
    print(suite.describe_ceilings(peak, bandwidth, readings), flush=True)
    results, failures = [], 0
    for block in args.blocks.split(","):
        shape, scheme = block.split(":")
        config = configs[f"{shape}_{scheme}_block"]
        e, k, h, i = (config[key] for key in ("num_experts", "k", "hidden", "intermediate"))
        tensors = suite.make_weight_only_weights(config, generator)
        biases = suite.make_biases(config, generator)
        bf16_weights = suite.make_weights(config, generator)
        stored = sum(t.numel() * t.element_size() for t in tensors) / e
        for m in (int(t) for t in args.tokens.split(",")):
            name = f"{shape}_{scheme}_block_m{m}"
            inputs = 3 + len(tensors) + len(biases)
            builds = [(label, suite.Layer(d / f"{name}.so", name, num_inputs=inputs))
                      for label, d in [("old", args.old), ("new", args.new)] + variants
                      if (d / f"{name}.so").exists()]
            bf16 = suite.Layer(args.old / f"{shape}_block_m{m}.so", f"{shape}_block_m{m}",
                               num_inputs=5 + len(biases))
            measured, bf16_time, ids = time_block(config, builds, bf16, m, tensors,
                                                  bf16_weights, biases, generator)
            touched = int((torch.bincount(ids.view(-1).long(), minlength=e) > 0).sum())
            flops = 2 * m * k * (h * 2 * i + i * h)
            floor = max(flops / (peak * 1e12), touched * stored / (bandwidth * 1e12)) * 1e6
            old_time = measured["old"][0]
            bad = [label for label, (_, err) in measured.items()
                   if label != "old" and not err < TOLERANCE]
            failures += bool(bad)
            parts = [f"{label} {t:.1f} us ({(t / old_time - 1) * 100:+.1f}%, rel L2 {err:.2e})"
                     for label, (t, err) in measured.items()]
            print(f"{'FAIL' if bad else 'ok'} {shape} {scheme} M={m}: " + ", ".join(parts) +
                  f"; bf16 {bf16_time:.1f} us; floor {floor:.1f}", flush=True)
            results.append(dict(shape=shape, scheme=scheme, m=m, floor=floor, bf16=bf16_time,
                                builds={label: dict(us=t, rel_l2=err)
                                        for label, (t, err) in measured.items()}))
            del builds, bf16
        del tensors, bf16_weights
        torch.cuda.empty_cache()
    if args.out:
        args.out.write_text(json.dumps(dict(card=torch.cuda.get_device_name(),
                                            bandwidth_tbps=bandwidth, peak_tflops=peak,
                                            results=results), indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

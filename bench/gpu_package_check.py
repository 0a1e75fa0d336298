"""The Python front end (moe_compiler.gpu, moe_compiler.hf) on the GPU:
`fused_moe` against the float64 reference at several token counts,
CUDA-graph capture and replay, two threads calling one layer on two
streams, and `hf.MoEBlock` loaded from checkpoints in every layout:
Mixtral, Qwen3-MoE, DeepSeek-V3 (with its shared expert), GPT-OSS
(GPT-OSS-20B with its expert biases and interleaved gate/up rows) and
Qwen2-MoE (Qwen1.5-MoE-A2.7B with its gated shared expert).

The GPU machine has no LLVM, so the libraries are compiled here first:

    python3 bench/gpu_package_check.py prepare OUT   # no GPU; moe-compile
    python3 bench/gpu_package_check.py check OUT     # on the GPU machine

`prepare` compiles fused_moe's layer for each shape, one library for every token count,
through `gpu.compile` (the package's own path) and writes OUT/manifest.json
and the runtime library. `check` registers those layers as fused_moe's
per-process layers and calls `gpu.fused_moe` itself. Exit status 1 on any
failure.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import shutil
import sys
import threading

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
from moe_compiler import configs, gpu, hf, reference  # noqa: E402

# name: (experts, hidden, intermediate, top-k, renormalize), vLLM conventions.
SHAPES = {
    "mixtral_8x7b": (8, 4096, 14336, 2, True),
    "qwen3_30b_a3b": (128, 2048, 768, 8, True),
}
TOKEN_COUNTS = (1, 7, 256, 4096)
# MoEBlock: per checkpoint layout, the routed block's config and the token
# counts checked (all from one library).
BLOCKS = {
    "mixtral": (configs.MIXTRAL_8X7B, (1, 7, 256, 4096)),
    "qwen3_moe": (configs.QWEN3_30B_A3B, (1, 7, 256, 4096)),
    "deepseek_v3": (configs.DEEPSEEK_V3_SHARED, (1, 7, 256, 4096)),
    "gpt_oss": (configs.GPT_OSS_20B, (1, 7, 256, 4096)),
    "qwen2_moe": (configs.QWEN1_5_MOE_A2_7B, (1, 7, 256, 4096)),
}
BLOCK_LAYERS: dict[str, object] = {}
# Per layout, the names of an expert's gate, up and down projections.
EXPERT_NAMES = {"mixtral": ("w1", "w3", "w2"), "qwen3_moe": ("gate_proj", "up_proj", "down_proj"),
                "deepseek_v3": ("gate_proj", "up_proj", "down_proj"),
                "qwen2_moe": ("gate_proj", "up_proj", "down_proj")}


def prepare(out: pathlib.Path, moe_compile: pathlib.Path) -> None:
    prefix = moe_compile.parent.parent
    if not (prefix / "include" / "moe" / "Runtime" / "Runtime.h").is_file():
        # A build tree, not an installed one: its runtime is elsewhere.
        os.environ.setdefault("MOE_RUNTIME_INCLUDE", str(REPO / "runtime" / "include"))
        os.environ.setdefault("MOE_RUNTIME_LIB", str(prefix / "runtime"))
    manifest = []
    # One library per layer, every token count (gpu.TOKEN_BUCKETS), as
    # fused_moe and MoEBlock compile them.
    for shape, (e, h, i, k, renormalize) in SHAPES.items():
        layer = gpu.compile(gpu.fused_moe_ir(e, h, i, k, renormalize), name="fused_moe",
                            token_buckets=gpu.TOKEN_BUCKETS, moe_compile=moe_compile,
                            cache_dir=out / "cache")
        manifest.append({"shape": shape, "library": str(layer.library.relative_to(out))})
        print(f"{shape}: {layer.library.relative_to(out)}", flush=True)
    for layout, (config, _) in BLOCKS.items():
        layer = gpu.compile(hf.layer_ir(config), name="moe_block",
                            token_buckets=gpu.TOKEN_BUCKETS, moe_compile=moe_compile,
                            cache_dir=out / "cache")
        manifest.append({"block": layout, "library": str(layer.library.relative_to(out))})
        print(f"{layout} block: {layer.library.relative_to(out)}", flush=True)
    (out / "lib").mkdir(exist_ok=True)
    runtime = pathlib.Path(os.environ.get("MOE_RUNTIME_LIB", prefix / "lib")) / "libmoe_runtime.so"
    shutil.copy2(runtime, out / "lib" / runtime.name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def register(out: pathlib.Path) -> None:
    """Loads the prepared layers as fused_moe's layers of this process."""
    # The layers' runtime dependency, loaded by soname before them.
    ctypes.CDLL(str(out / "lib" / "libmoe_runtime.so"), mode=ctypes.RTLD_GLOBAL)
    for entry in json.loads((out / "manifest.json").read_text()):
        library = out / entry["library"]
        name = "moe_block" if "block" in entry else "fused_moe"
        # The signature is the largest variant's.
        layer = gpu.Layer(library, name, *gpu.parse_signature(
            (library.parent / "host.mlir").read_text(), f"{name}_m{gpu.TOKEN_BUCKETS[-1]}"))
        if "block" in entry:
            BLOCK_LAYERS[entry["block"]] = layer
            continue
        e, h, i, k, renormalize = SHAPES[entry["shape"]]
        gpu._fused_moe_layers[gpu._fused_moe_key(e, h, 2 * i, k, renormalize, None, None)] = layer


def make_inputs(shape: str, m: int, generator):
    import torch

    e, h, i, _, _ = SHAPES[shape]
    x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
    logits = torch.randn(m, e, device="cuda", generator=generator) * 2.0
    w1 = (torch.randn(e, 2 * i, h, device="cuda", generator=generator) / h ** 0.5).to(torch.bfloat16)
    w2 = (torch.randn(e, h, i, device="cuda", generator=generator) / i ** 0.5).to(torch.bfloat16)
    return x, w1, w2, logits


def routed_reference(logits, k: int, renormalize: bool, expert_output,
                     scoring: str = "softmax", config=None, score_bias=None):
    """float64 top-k routing of `logits` [R, E] (softmax scores, or
    GPT-OSS's softmax over the top-k logits; with `config`, its routing:
    DeepSeek-V3's grouped sigmoid with `score_bias` and scaling) and the
    weighted sum of `expert_output(row, expert)` (a float64 vector) over
    each row's experts, for the rows whose float64 top-k equals the top-k
    of their f32-rounded scores (others are near-ties the GPU may break
    either way). Returns (kept row positions, [kept, H] sums)."""
    options = dict(renormalize=renormalize)
    if config is not None:
        options.update(bias=score_bias, num_groups=config.num_groups,
                       topk_groups=config.topk_groups,
                       routed_scaling_factor=config.routed_scaling_factor)
    weights, ids = reference.topk(logits, k, scoring, **options)
    _, ids32 = reference.topk(logits.astype(np.float32).astype(np.float64), k, scoring,
                              **options)
    keep = [r for r in range(len(logits)) if (ids[r] == ids32[r]).all()]
    sums = [sum(float(weights[r, j]) * expert_output(r, int(ids[r, j])) for j in range(k))
            for r in keep]
    return keep, np.array(sums)


def _suite():
    """bench/gpu_moe_suite.py, for its row sampling and error measure (it
    needs torch, which `prepare` does not)."""
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_moe_suite

    return gpu_moe_suite


def reference_rows(shape, x, w1, w2, logits, rows):
    """float64 fused_moe on token rows `rows`: the rows kept (see
    routed_reference) and their expected outputs."""
    import torch

    _, _, i, k, renormalize = SHAPES[shape]

    def expert_output(r, expert):
        gate_up = w1[expert].double() @ x[rows[r]].double()
        hidden = torch.nn.functional.silu(gate_up[:i]) * gate_up[i:]
        return (w2[expert].double() @ hidden).cpu().numpy()

    keep, expected = routed_reference(logits[rows].double().cpu().numpy(), k, renormalize,
                                      expert_output)
    return [rows[r] for r in keep], expected.reshape(len(keep), x.shape[1])


def check_against_reference(generator) -> int:
    failures = 0
    for shape in SHAPES:
        _, _, _, k, renormalize = SHAPES[shape]
        for m in TOKEN_COUNTS:
            x, w1, w2, logits = make_inputs(shape, m, generator)
            out = gpu.fused_moe(x, w1, w2, logits, k, renormalize)
            rows, expected = reference_rows(shape, x, w1, w2, logits,
                                            _suite().sample_rows(m, 8, generator))
            error = _suite().relative_l2(out[rows].double().cpu().numpy(), expected)
            good = bool(out.isfinite().all()) and len(rows) > 0 and error < 1e-2
            failures += not good
            print(f"{'ok' if good else 'FAIL'}: fused_moe {shape} M={m} (one library, the "
                  f"variant tiled for {gpu.fused_moe_bucket(m)}): rel L2 {error:.2e} on "
                  f"{len(rows)} rows",
                  flush=True)
        del w1, w2
    return failures


def check_graph(generator) -> int:
    """Capture one call, change the inputs in place, replay: the replay
    matches an eager call on the new inputs (f32 atomics sum in any order,
    so equal up to bf16 rounding of the last bits)."""
    import torch

    shape, m = "qwen3_30b_a3b", 256
    _, _, _, k, renormalize = SHAPES[shape]
    x, w1, w2, logits = make_inputs(shape, m, generator)
    gpu.fused_moe(x, w1, w2, logits, k, renormalize)  # loads the kernels
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = gpu.fused_moe(x, w1, w2, logits, k, renormalize)
    fresh_x, _, _, fresh_logits = make_inputs(shape, m, generator)
    x.copy_(fresh_x)
    logits.copy_(fresh_logits)
    graph.replay()
    eager = gpu.fused_moe(x, w1, w2, logits, k, renormalize)
    torch.cuda.synchronize()
    error = _suite().relative_l2(captured.double().cpu().numpy(), eager.double().cpu().numpy())
    rows, expected = reference_rows(shape, x, w1, w2, logits,
                                    _suite().sample_rows(m, 8, generator))
    against_reference = _suite().relative_l2(captured[rows].double().cpu().numpy(), expected)
    good = error < 1e-3 and against_reference < 1e-2
    print(f"{'ok' if good else 'FAIL'}: CUDA graph replay on new inputs vs eager: rel L2 "
          f"{error:.2e}; vs float64 {against_reference:.2e}", flush=True)
    return 0 if good else 1


def check_threads(generator, calls: int = 20) -> int:
    """Two threads, each on its own stream, call one layer `calls` times on
    their own inputs; each thread's results match a single-threaded call."""
    import torch

    shape, m = "qwen3_30b_a3b", 256
    _, _, _, k, renormalize = SHAPES[shape]
    _, w1, w2, _ = make_inputs(shape, 1, generator)
    inputs = [make_inputs(shape, m, generator) for _ in range(2)]
    expected = [gpu.fused_moe(x, w1, w2, logits, k, renormalize)
                for x, _, _, logits in inputs]
    torch.cuda.synchronize()
    results: list[list] = [[], []]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            x, _, _, logits = inputs[index]
            stream = torch.cuda.Stream()
            with torch.cuda.stream(stream):
                for _ in range(calls):
                    results[index].append(gpu.fused_moe(x, w1, w2, logits, k, renormalize))
            stream.synchronize()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    torch.cuda.synchronize()
    if errors:
        print(f"FAIL: two threads: {errors[0]!r}")
        return 1
    worst = max(_suite().relative_l2(got.double().cpu().numpy(),
                                     expected[index].double().cpu().numpy())
                for index in range(2) for got in results[index])
    layer = next(iter(layer for key, layer in gpu._fused_moe_layers.items()
                      if key[1] == SHAPES[shape][1]))
    good = worst < 1e-3 and len(layer._workspaces) >= 3
    print(f"{'ok' if good else 'FAIL'}: two threads on two streams, {calls} calls each: worst "
          f"rel L2 against one thread {worst:.2e}; workspaces of the layer "
          f"{len(layer._workspaces)} (one per stream)", flush=True)
    return 0 if good else 1


def block_checkpoint(layout: str, config, prefix: str, generator) -> dict[str, object]:
    """A random bf16 checkpoint of `config` in `layout`, on the GPU."""
    import torch

    e, h, i = config.num_experts, config.hidden, config.intermediate

    def random(*shape, fan_in=1):
        return (torch.randn(*shape, device="cuda", generator=generator)
                / fan_in ** 0.5).to(torch.bfloat16)

    if layout == "gpt_oss":
        return {f"{prefix}router.weight": random(e, h, fan_in=h),
                f"{prefix}router.bias": random(e) * 0.1,
                f"{prefix}experts.gate_up_proj": random(e, h, 2 * i, fan_in=h),
                f"{prefix}experts.gate_up_proj_bias": random(e, 2 * i),
                f"{prefix}experts.down_proj": random(e, i, h, fan_in=i),
                f"{prefix}experts.down_proj_bias": random(e, h)}
    state = {f"{prefix}gate.weight": random(e, h, fan_in=h)}
    for expert in range(e):
        for name, shape, fan_in in zip(EXPERT_NAMES[layout], ((i, h), (i, h), (h, i)),
                                       (h, h, i)):
            state[f"{prefix}experts.{expert}.{name}.weight"] = random(*shape, fan_in=fan_in)
    if layout == "deepseek_v3":
        state[f"{prefix}gate.e_score_correction_bias"] = random(e) * 0.1
        width = config.num_shared_experts * i
        state[f"{prefix}shared_experts.gate_proj.weight"] = random(width, h, fan_in=h)
        state[f"{prefix}shared_experts.up_proj.weight"] = random(width, h, fan_in=h)
        state[f"{prefix}shared_experts.down_proj.weight"] = random(h, width, fan_in=width)
    if layout == "qwen2_moe":
        width = config.num_shared_experts * i
        state[f"{prefix}shared_expert.gate_proj.weight"] = random(width, h, fan_in=h)
        state[f"{prefix}shared_expert.up_proj.weight"] = random(width, h, fan_in=h)
        state[f"{prefix}shared_expert.down_proj.weight"] = random(h, width, fan_in=width)
        state[f"{prefix}shared_expert_gate.weight"] = random(1, h, fan_in=h)
    return state


def checkpoint_shared_expert(layout: str, state, prefix: str, x_row):
    """The whole shared expert's float64 output on one row: gated (Qwen2-MoE
    layout), ungated (DeepSeek-V3), or zero where the layout has none."""
    import torch

    if layout not in ("qwen2_moe", "deepseek_v3"):
        return 0.0
    name = f"{prefix}shared_expert." if layout == "qwen2_moe" else f"{prefix}shared_experts."
    hidden = (torch.nn.functional.silu(state[name + "gate_proj.weight"].double() @ x_row)
              * (state[name + "up_proj.weight"].double() @ x_row))
    out = state[name + "down_proj.weight"].double() @ hidden
    if layout == "qwen2_moe":
        out = torch.sigmoid(state[f"{prefix}shared_expert_gate.weight"].double() @ x_row) * out
    return out.cpu().numpy()


def checkpoint_logits(layout: str, state, prefix: str, xs):
    """float64 router logits of the rows `xs`, from the checkpoint."""
    if layout == "gpt_oss":
        return (xs @ state[f"{prefix}router.weight"].double().T
                + state[f"{prefix}router.bias"].double()).cpu().numpy()
    return (xs @ state[f"{prefix}gate.weight"].double().T).cpu().numpy()


def checkpoint_expert(layout: str, state, prefix: str, config, x_row, expert: int):
    """One expert's float64 output on one row, from the checkpoint's own
    tensors (GPT-OSS: interleaved gate/up columns, biases, swiglu)."""
    import torch

    if layout == "gpt_oss":
        gate_up = (x_row @ state[f"{prefix}experts.gate_up_proj"][expert].double()
                   + state[f"{prefix}experts.gate_up_proj_bias"][expert].double())
        gate_up = torch.cat([gate_up[0::2], gate_up[1::2]]).cpu().numpy()
        hidden = reference.activation(gate_up[None], config.activation, config.swiglu_alpha,
                                      config.swiglu_limit)[0]
        down = state[f"{prefix}experts.down_proj"][expert].double().cpu().numpy()
        return hidden @ down + state[f"{prefix}experts.down_proj_bias"][expert].double().cpu().numpy()
    gate_name, up_name, down_name = (f"{prefix}experts.{expert}.{part}.weight"
                                     for part in EXPERT_NAMES[layout])
    gate = state[gate_name].double() @ x_row
    up = state[up_name].double() @ x_row
    hidden = torch.nn.functional.silu(gate) * up
    return (state[down_name].double() @ hidden).cpu().numpy()


def check_moe_block(generator, layout: str) -> int:
    """hf.MoEBlock from a random checkpoint in `layout` (bf16, on the GPU),
    its forward on [1, M, H] inputs against a float64 forward written from
    the checkpoint's own tensors."""
    import torch

    config, token_counts = BLOCKS[layout]
    h, k = config.hidden, config.k
    prefix = "model.layers.0.mlp."
    state = block_checkpoint(layout, config, prefix, generator)
    block = hf.MoEBlock(config).cuda()
    block.load_experts(state, layout, prefix)
    block._layer = BLOCK_LAYERS[layout]
    failures = 0
    for m in token_counts:
        x = torch.randn(1, m, h, device="cuda", generator=generator).to(torch.bfloat16)
        out = block(x)
        rows = _suite().sample_rows(m, 6, generator)
        xs = x[0, rows].double()
        logits = checkpoint_logits(layout, state, prefix, xs)
        score_bias = state.get(f"{prefix}gate.e_score_correction_bias")
        keep, expected = routed_reference(
            logits, k, config.renormalize,
            lambda r, expert: checkpoint_expert(layout, state, prefix, config, xs[r], expert),
            config.scoring, config,
            None if score_bias is None else score_bias.double().cpu().numpy())
        expected = expected.reshape(len(keep), h)
        if config.num_shared_experts:
            expected = expected + np.stack(
                [checkpoint_shared_expert(layout, state, prefix, xs[r]) for r in keep])
        got = out[0, [rows[r] for r in keep]].double().cpu().numpy()
        error = _suite().relative_l2(got, expected)
        good = (tuple(out.shape) == (1, m, h) and bool(out.isfinite().all())
                and len(keep) > 0 and error < 1e-2)
        failures += not good
        print(f"{'ok' if good else 'FAIL'}: hf.MoEBlock {layout} layout ({config.name}), "
              f"x [1, {m}, {h}]: rel L2 {error:.2e} on {len(keep)} rows", flush=True)
    return failures


def check(out: pathlib.Path) -> int:
    import torch

    register(out)
    print(f"card: {torch.cuda.get_device_name()}", flush=True)
    generator = torch.Generator(device="cuda")
    generator.seed()  # fresh inputs on every run
    failures = check_against_reference(generator)
    failures += check_graph(generator)
    failures += check_threads(generator)
    for layout in BLOCKS:
        failures += check_moe_block(generator, layout)
    print(f"package check: {'all passed' if not failures else f'{failures} failed'}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("prepare", "check"))
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--moe-compile", type=pathlib.Path,
                        default=REPO / "build" / "bin" / "moe-compile")
    args = parser.parse_args()
    if args.mode == "prepare":
        args.out.mkdir(parents=True, exist_ok=True)
        prepare(args.out.resolve(), args.moe_compile.resolve())
        return 0
    return check(args.out.resolve())


if __name__ == "__main__":
    sys.exit(main())

"""GPU correctness suite and benchmark of the compiled expert blocks.

Runs on the GPU machine (PyTorch there, no LLVM), over the libraries that
scripts/gpu-layers.sh builds here:

    python3 bench/gpu_moe_suite.py check LAYERS_DIR      # correctness suite
    python3 bench/gpu_moe_suite.py bench LAYERS_DIR [--out FILE.json]
        [--shapes mixtral_8x7b,...] [--no-triton] [--baselines-only]

check: every example layer's expert block at full size, fresh random inputs
and routing on every run, the output poisoned (NaN) and the workspace filled
with garbage before every run; sampled rows against a float64 reference (the
GEMMs in float64 through PyTorch, the activation by the NumPy oracle
python/moe_compiler/reference.py); every output element must be finite.
Routings: softmax top-k, a hot expert, empty experts (a quarter of the
experts used), M = 1, and another device's experts (id -1).

bench: the timed span is the layer after routing (align, GEMM1, activation,
GEMM2, combine), median of CUDA-graph replays; in the same process a naive
per-expert loop, torch._grouped_mm over expert-sorted rows, a dense cuBLAS
GEMM pair with the same FLOPs, a Triton kernel of vLLM's fused_moe design at
the best of a 48-config sweep (bench/triton_fused_moe.py; --no-triton skips
it), and the floor: max(FLOPs / measured bf16 peak, touched experts' weight
bytes / bandwidth), the bandwidth being the max of a Triton streaming read
of 4 GiB (bench/triton_bandwidth.py), a 1 GiB copy and a 1 GiB `sum`.
--baselines-only times everything but the compiled layer (no libraries
needed; the shapes come from python/moe_compiler/configs.py when
LAYERS_DIR/layers.json is absent).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import pathlib
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from moe_compiler import quant, reference  # noqa: E402

SHAPES = ("mixtral_8x7b", "qwen3_30b_a3b", "deepseek_v3", "gpt_oss_120b", "gpt_oss_20b",
          "deepseek_v3_shared", "qwen1_5_moe_a2_7b")
# The w8a8 expert blocks: (shape, scheme) as configs.QUANTIZED_BLOCKS.
QUANTIZED = (("deepseek_v3", "fp8_block"), ("qwen3_30b_a3b", "fp8_channel"),
             ("qwen3_30b_a3b", "int8_channel"), ("qwen3_30b_a3b", "fp8_tensor"))
# The weight-only blocks: (shape, scheme) as configs.WEIGHT_ONLY_BLOCKS.
WEIGHT_ONLY = (("mixtral_8x7b", "int4_g128"), ("gpt_oss_120b", "mxfp4"),
               ("qwen3_30b_a3b", "int4_g32_zp"), ("qwen3_30b_a3b", "int8w_g64"),
               ("gpt_oss_20b", "mxfp4"), ("mixtral_8x7b", "int4_g128_packed"),
               ("qwen3_30b_a3b", "int4_g32_zp_packed"))
E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Relative L2 bounds of the w8a8 blocks against the float64 oracle. GEMM2's
# activations are quantized from GEMM1's bf16 output, whose rounding the GPU
# (fp8 tensor-core sums, promoted to f32 every 128 of K) and the oracle may
# break differently: where that moves a row's amax to the next bf16 value,
# its per-token fp8 scale changes by 2^-8 and about 4% of the row's codes
# move one e4m3 step (6-12%), ~1.7e-2 on that assignment (measured: one of
# 18 cases at 1.8e-2, the others 2e-3 to 6e-3). int8 steps are uniform and
# 127 per amax, so a scale change moves codes by far less (measured 1.7e-3).
W8A8_TOLERANCE = {"fp8": 3e-2, "int8": 1e-2}
BENCH_SHAPES = ("mixtral_8x7b", "qwen3_30b_a3b", "deepseek_v3")
TOKEN_COUNTS = (1, 16, 64, 256, 1024, 4096)
# Two builds of one block on the same inputs differ by bf16 rounding of
# differently ordered f32 sums (~1e-3 relative L2); a wrong kernel by O(1).
VARIANT_TOLERANCE = 1e-2


class Layer:
    """A compiled layer: moe_layer_<name>(inputs..., out, num_tokens,
    workspace, workspace_bytes, stream), device pointers throughout."""

    def __init__(self, path: pathlib.Path, name: str, num_inputs: int = 5):
        self.lib = ctypes.CDLL(str(path))
        self.fn = getattr(self.lib, f"moe_layer_{name}")
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * (num_inputs + 1) + [
            ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        self.bytes = getattr(self.lib, f"moe_layer_{name}_workspace_bytes")
        self.bytes.restype = ctypes.c_size_t
        self.bytes.argtypes = [ctypes.c_int64]
        self.lib.moe_rt_last_error.restype = ctypes.c_char_p
        self.invalid = getattr(self.lib, f"moe_layer_{name}_invalid_ids")
        self.invalid.restype = ctypes.c_int
        self.invalid.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64,
                                 ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
        self.workspace = None

    def invalid_ids(self, m: int) -> int:
        """Expert ids outside [-1, E) the last call met (waits for it)."""
        count = ctypes.c_int64(-1)
        status = self.invalid(self.workspace.data_ptr(), self.workspace.numel(), m,
                              torch.cuda.current_stream().cuda_stream, ctypes.byref(count))
        if status != 0:
            raise RuntimeError(self.lib.moe_rt_last_error().decode())
        return count.value

    def __call__(self, *tensors):
        *inputs, out = tensors
        m = inputs[0].shape[0]
        need = self.bytes(m)
        if self.workspace is None or self.workspace.numel() < need:
            self.workspace = torch.empty(max(need, 1), dtype=torch.uint8, device="cuda")
        status = self.fn(*[t.data_ptr() for t in inputs], out.data_ptr(), m,
                         self.workspace.data_ptr(), need,
                         torch.cuda.current_stream().cuda_stream)
        if status != 0:
            raise RuntimeError(f"layer failed ({status}): "
                               f"{self.lib.moe_rt_last_error().decode()}")


def sample_rows(m: int, count: int, generator) -> list[int]:
    """Up to `count` random token rows of M, always with the first and the
    last."""
    drawn = torch.randint(0, m, (min(m, count),), generator=generator, device="cuda")
    return sorted(set(drawn.tolist()) | {0, m - 1})


def relative_l2(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-30))


def total_experts(config) -> int:
    """Experts in the expert weights: the routed ones, then the shared ones."""
    return config["num_experts"] + config.get("num_shared_experts", 0)


def make_weights(config, generator):
    """Random bf16 expert weights (shared experts after the routed ones), std
    1/sqrt(fan-in) so that activations stay O(1); filled one expert at a time
    to keep the float32 temporaries small."""
    e, h, i = total_experts(config), config["hidden"], config["intermediate"]
    w13 = torch.empty(e, 2 * i, h, dtype=torch.bfloat16, device="cuda")
    w2 = torch.empty(e, h, i, dtype=torch.bfloat16, device="cuda")
    for expert in range(e):
        w13[expert] = torch.randn(2 * i, h, device="cuda", generator=generator) / math.sqrt(h)
        w2[expert] = torch.randn(h, i, device="cuda", generator=generator) / math.sqrt(i)
    return w13, w2


def make_biases(config, generator) -> list:
    """The experts' f32 biases [b13 [E, 2I], b2 [E, H]] where the layer has
    them (GPT-OSS), of the products' magnitude; else none."""
    if not config.get("has_expert_biases"):
        return []
    e, h, i = total_experts(config), config["hidden"], config["intermediate"]
    return [torch.randn(e, 2 * i, device="cuda", generator=generator),
            torch.randn(e, h, device="cuda", generator=generator)]


def make_routing(config, m, kind, generator):
    e, k = config["num_experts"], config["k"]
    logits = torch.randn(m, e, device="cuda", generator=generator)
    if kind == "empty":
        logits[:, e // 4:] = -float("inf")  # only a quarter of the experts
    if kind == "hot":
        logits[:, 0] = 100.0  # every token's first choice
    top, ids = torch.topk(torch.softmax(logits, dim=-1), k, dim=-1)
    weights = top / top.sum(-1, keepdim=True)
    ids = ids.to(torch.int32)
    if kind == "balanced":
        # Assignment a goes to expert a mod E: every expert holds M·k / E
        # rows (± 1), no expert spills into a block of a few rows.
        assignment = torch.arange(m * k, device="cuda", dtype=torch.int32)
        ids = (assignment % e).reshape(m, k)
    if kind == "remote":
        # Another device's experts: id -1, skipped.
        mask = torch.rand(m, k, device="cuda", generator=generator) < 0.3
        ids = torch.where(mask, torch.full_like(ids, -1), ids)
    if kind == "invalid":
        # Ids outside [-1, E): runtime errors, skipped and counted.
        mask = torch.rand(m, k, device="cuda", generator=generator) < 0.1
        mask[0, 0] = True
        ids = torch.where(mask, torch.full_like(ids, total_experts(config) + 3), ids)
    return ids.contiguous(), weights.float().contiguous()


def make_shared_gate(config, generator) -> list:
    """The shared experts' gate weights [1, H] where the layer has them."""
    if not config.get("shared_expert_gate"):
        return []
    h = config["hidden"]
    return [(torch.randn(1, h, device="cuda", generator=generator) / math.sqrt(h)).to(
        torch.bfloat16)]


def with_shared_experts(config, x, ids, weights, shared_gate):
    """The routed choices with the shared experts appended (float64 weights
    of 1, or the sigmoid of x · gateᵀ), as moe.add_shared_experts."""
    s = config.get("num_shared_experts", 0)
    if not s:
        return ids, weights
    m = ids.shape[0]
    shared_ids = torch.arange(config["num_experts"], config["num_experts"] + s,
                              device=ids.device, dtype=ids.dtype).expand(m, s)
    shared_weights = torch.ones(m, s, dtype=torch.float64, device=ids.device)
    if shared_gate:
        shared_weights = shared_weights * torch.sigmoid(
            x.double() @ shared_gate[0].double().T)
    return (torch.cat([ids, shared_ids], dim=1),
            torch.cat([weights.double(), shared_weights], dim=1))


def quantize_weights(w, quant_config):
    """Codes and f32 scales of weights [E, N, K] on the GPU: fp8 per 128x128
    block, per output channel or per expert (per tensor), int8 per output
    channel (amax / qmax,
    round to nearest even, saturate). The oracle dequantizes these codes, so
    only their validity matters, not that this rule is the checkpoints'."""
    e, n, k = w.shape
    fmt, layout = quant_config["format"], quant_config["scales"]
    qmax = 448.0 if fmt == "fp8" else 127.0
    w = w.float()
    if layout == "block":
        tiles = w.view(e, n // 128, 128, k // 128, 128)
        scales = tiles.abs().amax(dim=(2, 4)) / qmax
        scales = torch.where(scales > 0, scales, torch.ones_like(scales))
        full = scales.repeat_interleave(128, 1).repeat_interleave(128, 2)
    elif layout == "per_tensor":
        scales = w.abs().amax(dim=(1, 2)) / qmax
        scales = torch.where(scales > 0, scales, torch.ones_like(scales))
        full = scales[:, None, None]
    else:
        scales = w.abs().amax(dim=2) / qmax
        scales = torch.where(scales > 0, scales, torch.ones_like(scales))
        full = scales[:, :, None]
    quotient = (w / full).clamp(-qmax, qmax)
    codes = (quotient.to(torch.float8_e4m3fn) if fmt == "fp8"
             else torch.round(quotient).to(torch.int8))
    return codes.contiguous(), scales.float().contiguous()


def make_quantized_weights(config, generator):
    """Expert weights as codes and scales, one expert at a time."""
    e, h, i = config["num_experts"], config["hidden"], config["intermediate"]
    quant_config = config["quant"]
    code_type = torch.float8_e4m3fn if quant_config["format"] == "fp8" else torch.int8
    tensors = []
    for n, k in ((2 * i, h), (h, i)):
        codes = torch.empty(e, n, k, dtype=code_type, device="cuda")
        scales_shape = {"block": (e, n // 128, k // 128), "per_tensor": (e,)}.get(
            quant_config["scales"], (e, n))
        scales = torch.empty(scales_shape, dtype=torch.float32, device="cuda")
        for expert in range(e):
            w = torch.randn(1, n, k, device="cuda", generator=generator) / math.sqrt(k)
            expert_codes, expert_scales = quantize_weights(w, quant_config)
            codes[expert], scales[expert] = expert_codes[0], expert_scales[0]
        tensors += [codes, scales]
    return tensors


def dequantized_expert(codes, scales, expert, quant_config):
    """float64 [N, K] of one expert, dequantized by the NumPy oracle."""
    fmt, layout = quant_config["format"], quant_config["scales"]
    if fmt == "fp8":
        import ml_dtypes
        values = codes[expert:expert + 1].view(torch.uint8).cpu().numpy().view(ml_dtypes.float8_e4m3fn)
    else:
        values = codes[expert:expert + 1].cpu().numpy()
    return quant.dequantize(values, scales[expert:expert + 1].cpu().numpy(), fmt, layout,
                            "weight")[0]


def pack_nibbles(codes):
    """Element 2j in the low nibble of byte j (torch, uint8)."""
    nibbles = codes.to(torch.int32) & 0xF
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).to(torch.uint8)


def quantize_weight_only(w, scheme):
    """Stored codes, scales and zeros (or None) of w [1, N, K] on the GPU,
    the layouts moe.grouped_matmul takes; the oracle dequantizes them."""
    fmt, group, zero_point = scheme["format"], scheme["group"], scheme["zero_point"]
    _, n, k = w.shape
    grouped = w.float().view(1, n, k // group, group)
    if fmt == "mxfp4":
        amax = grouped.abs().amax(-1)
        exponent = torch.where(amax > 0, torch.floor(torch.log2(torch.where(amax > 0, amax, 1.0))) - 2,
                               torch.zeros_like(amax)).clamp(-127, 127)
        value = (grouped / torch.exp2(exponent)[..., None]).clamp(-6, 6)
        table = torch.tensor(E2M1_MAGNITUDES, device=w.device)
        magnitude = (value.abs()[..., None] - table).abs().argmin(-1)
        codes = magnitude | ((value < 0).to(torch.int64) << 3)
        return pack_nibbles(codes.view(1, n, k)), (exponent + 127).to(torch.uint8), None
    bits = 4 if fmt == "int4_weight" else 8
    zeros = None
    if zero_point:
        top = 2.0 ** bits - 1
        low = grouped.amin(-1).clamp(max=0)
        high = grouped.amax(-1).clamp(min=0)
        scales = torch.where(high > low, (high - low) / top, torch.ones_like(high))
        zeros = torch.round(-low / scales).clamp(0, top)
        codes = (torch.round(grouped / scales[..., None]) + zeros[..., None]).clamp(0, top)
        zeros = zeros.to(torch.uint8)
    else:
        bound = 2.0 ** (bits - 1) - 1
        scales = grouped.abs().amax(-1) / bound
        scales = torch.where(scales > 0, scales, torch.ones_like(scales))
        codes = torch.round(grouped / scales[..., None]).clamp(-bound, bound)
    codes = codes.view(1, n, k)
    if bits == 4:
        stored = pack_nibbles(codes.to(torch.int32))
    else:
        stored = codes.to(torch.uint8 if zero_point else torch.int8)
    return stored, scales.float(), zeros


def make_weight_only_weights(config, generator):
    """[w13, w13 scales, (zeros), w2, w2 scales, (zeros)], one expert at a time."""
    e, h, i = config["num_experts"], config["hidden"], config["intermediate"]
    tensors = []
    for n, k in ((2 * i, h), (h, i)):
        parts = []
        for expert in range(e):
            w = torch.randn(1, n, k, device="cuda", generator=generator) / math.sqrt(k)
            parts.append([t for t in quantize_weight_only(w, config["weight_only"]) if t is not None])
        tensors += [torch.cat(column).contiguous() for column in zip(*parts)]
    return tensors


def prepack_wgmma_a_4bit(codes):
    """moe.prepack wgmma_a_4bit on the GPU, as [E, N, K/2]: each expert's
    [N/64, K/64, 2048] tiles in row-major order (a view and a permutation,
    the one moe.prepack's CPU lowering states)."""
    e, n, pairs = codes.shape
    tiles = codes.view(e, n // 64, 4, 2, 8, pairs // 32, 4, 2, 4)
    return tiles.permute(0, 1, 5, 2, 4, 8, 6, 7, 3).contiguous().view(e, n, pairs)


def weight_only_inputs(tensors, scheme):
    """The layer's weight arguments: `tensors` (make_weight_only_weights,
    what the oracle reads) with the stored codes prepacked where the scheme
    says so. The GPU permutation is checked against the NumPy reference on
    the first expert's first tiles."""
    if not scheme.get("packed"):
        return tensors
    per_matrix = len(tensors) // 2
    inputs = list(tensors)
    for at in (0, per_matrix):
        inputs[at] = prepack_wgmma_a_4bit(tensors[at])
        probe = tensors[at][:1, :64, :64].cpu().numpy()
        expected = quant.prepack_wgmma_a_4bit(probe).reshape(1, 64, 64)
        got = prepack_wgmma_a_4bit(tensors[at][:1, :64, :64].contiguous()).cpu().numpy()
        if not np.array_equal(got, expected):
            raise AssertionError("prepack_wgmma_a_4bit on the GPU differs from the reference")
    return inputs


def dequantized_weight_only(stored, scales, zeros, expert, scheme):
    """float64 [N, K] of one expert, by the NumPy oracle."""
    def host(t):
        return None if t is None else t[expert:expert + 1].cpu().numpy()
    return quant.dequantize_weight_only(host(stored), host(scales), host(zeros), scheme["format"],
                                        scheme["group"])[0]


QUANTIZED_CASES = [(1, "softmax"), (256, "softmax"), (4096, "softmax"), (256, "hot"),
                   (256, "remote"), (1, "remote")]


def _check_quantized_blocks(layers_dir: pathlib.Path, generator, blocks, kind: str,
                            small: bool, schemes=None, token_counts=None) -> int:
    """Runs each (shape, scheme) block of `kind` ("w8a8" or "weight_only")
    on fresh inputs with a NaN-poisoned output and a garbage workspace, and
    compares sampled rows with the float64 oracle of its format; `small`:
    the scaled blocks, once each (for the sanitizers); `schemes`: only the
    blocks of these scheme names (None: all); `token_counts`: softmax and
    remote routing at each of these M instead of QUANTIZED_CASES (a
    variant's build of some M only)."""
    configs = json.loads((layers_dir / "layers.json").read_text())
    blocks = [(shape, scheme) for shape, scheme in blocks if schemes is None or scheme in schemes]
    failures = total = 0
    if small:
        cases = [(64, "remote")]
    elif token_counts:
        cases = [(m, routing) for m in token_counts for routing in ("softmax", "remote")]
    else:
        cases = QUANTIZED_CASES
    for shape, scheme_name in blocks:
        config = configs[f"{shape}_{scheme_name}_{'small_block' if small else 'block'}"]
        e, h = config["num_experts"], config["hidden"]
        activation = (lambda v: reference.activation(
            v, config["activation"], config.get("swiglu_alpha"), config.get("swiglu_limit"),
            config.get("gate_up_interleaved", False)))
        biases = []
        if kind == "w8a8":
            scheme = config["quant"]
            tensors = make_quantized_weights(config, generator)
            w13, w2 = tensors[:2], tensors[2:]

            def dequantized(matrix, expert):
                return dequantized_expert(*matrix, expert, scheme)

            def oracle(x, ids, weights, rows):
                # Per-tensor scales are over all rows: the oracle takes them all.
                return quant.w8a8_expert_block_rows(
                    x, ids, weights, lambda ex: dequantized(w13, ex) if 0 <= ex < e else None,
                    lambda ex: dequantized(w2, ex), h, scheme["format"], scheme["scales"],
                    activation, rows)
            tolerance = W8A8_TOLERANCE[scheme["format"]]
        else:
            scheme = config["weight_only"]
            tensors = make_weight_only_weights(config, generator)
            per_matrix = len(tensors) // 2
            w13 = tensors[:per_matrix] + [None] * (3 - per_matrix)
            w2 = tensors[per_matrix:] + [None] * (3 - per_matrix)

            biases = make_biases(config, generator)
            host_biases = [b.double().cpu().numpy() for b in biases] or None

            def oracle(x, ids, weights, rows):
                return quant.expert_block_rows(
                    x[rows], ids[rows], weights[rows],
                    lambda ex: dequantized_weight_only(*w13, ex, scheme) if 0 <= ex < e else None,
                    lambda ex: dequantized_weight_only(*w2, ex, scheme), h, activation,
                    biases=host_biases)
            tolerance = 1e-2
        layer_tensors = (weight_only_inputs(tensors, scheme) if kind == "weight_only"
                         else tensors)
        for m, routing in cases:
            total += 1
            name = (f"{shape}_{scheme_name}_small_block" if small
                    else f"{shape}_{scheme_name}_block_m{m}")
            layer = Layer(layers_dir / f"{name}.so", name,
                          num_inputs=3 + len(tensors) + len(biases))
            x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
            ids, weights = make_routing(config, m, routing, generator)
            out = torch.full((m, h), float("nan"), dtype=torch.bfloat16, device="cuda")
            layer.workspace = torch.full((layer.bytes(m),), 0xAB, dtype=torch.uint8, device="cuda")
            layer(x, ids, weights, *layer_tensors, *biases, out)
            torch.cuda.synchronize()
            rows = sample_rows(m, 4, generator)
            expected = oracle(x.double().cpu().numpy(), ids.cpu().numpy(),
                              weights.cpu().numpy(), rows)
            got = out[rows].double().cpu().numpy()
            error = relative_l2(got, expected)
            finite = bool(torch.isfinite(out).all())
            good = finite and error < tolerance
            failures += not good
            print(f"{'ok' if good else 'FAIL'}: {shape} {scheme_name} M={m} {routing}: rel L2 "
                  f"{error:.2e} on rows {rows[:4]}{'...' if len(rows) > 4 else ''}, all outputs "
                  f"written: {finite}", flush=True)
        del tensors, layer_tensors, w13, w2
        torch.cuda.empty_cache()
    label = "quantized" if kind == "w8a8" else "weight-only"
    print(f"{label} blocks: {total - failures} passed, {failures} failed")
    return failures


def check_quantized(layers_dir: pathlib.Path, generator, small: bool = False,
                    schemes=None, token_counts=None) -> int:
    """The w8a8 blocks against quant.w8a8_expert_block_rows."""
    return _check_quantized_blocks(layers_dir, generator, QUANTIZED, "w8a8", small, schemes,
                                   token_counts)


def check_weight_only(layers_dir: pathlib.Path, generator, small: bool = False,
                      schemes=None, token_counts=None) -> int:
    """The weight-only blocks against quant.expert_block_rows with the
    dequantized weights."""
    return _check_quantized_blocks(layers_dir, generator, WEIGHT_ONLY, "weight_only", small,
                                   schemes, token_counts)


def reference_rows(config, x, ids, weights, w13, w2, rows, biases=()):
    """float64 expert block for token rows `rows` (`biases`: b13 and b2, or
    none)."""
    act_kind = config["activation"]
    out = []
    for t in rows:
        acc = np.zeros(config["hidden"])
        xt = x[t].double()
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            if e < 0 or e >= total_experts(config):
                continue
            gate_up = w13[e].double() @ xt
            if biases:
                gate_up = gate_up + biases[0][e].double()
            act = reference.activation(gate_up.cpu().numpy()[None, :], act_kind,
                                       config.get("swiglu_alpha"), config.get("swiglu_limit"),
                                       config.get("gate_up_interleaved", False))[0]
            down = w2[e].double() @ torch.from_numpy(act).cuda()
            if biases:
                down = down + biases[1][e].double()
            down = down.cpu().numpy()
            acc += float(weights[t, j]) * down
        out.append(acc)
    return np.stack(out)


def check(layers_dir: pathlib.Path, kinds=("w8a8", "weight_only"), shapes=SHAPES,
          blocks_only=False) -> int:
    configs = json.loads((layers_dir / "layers.json").read_text())
    generator = torch.Generator(device="cuda")
    generator.seed()  # fresh inputs on every run
    failures = 0
    cases = [(1, "softmax"), (256, "softmax"), (4096, "softmax"), (256, "hot"),
             (256, "empty"), (256, "remote"), (1, "remote"), (256, "invalid")]
    # Every other block the bench times, at its own M: their configurations
    # differ (swapped 16-row blocks at M = 16 and 64, 128-row blocks and
    # wave splits at M = 1024).
    cases += [(m, "softmax") for m in TOKEN_COUNTS if m not in (1, 256, 4096)]
    for shape in shapes:
        config = configs[f"{shape}_block"]
        w13, w2 = make_weights(config, generator)
        biases = make_biases(config, generator)
        shared_gate = make_shared_gate(config, generator)
        for m, kind in cases:
            name = f"{shape}_block_m{m}"
            layer = Layer(layers_dir / f"{name}.so", name,
                          num_inputs=5 + len(shared_gate) + len(biases))
            x = torch.randn(m, config["hidden"], device="cuda", generator=generator).to(torch.bfloat16)
            ids, weights = make_routing(config, m, kind, generator)
            out = torch.full((m, config["hidden"]), float("nan"), dtype=torch.bfloat16, device="cuda")
            layer.workspace = torch.full((layer.bytes(m),), 0xAB, dtype=torch.uint8, device="cuda")
            layer(x, ids, weights, *shared_gate, w13, w2, *biases, out)
            torch.cuda.synchronize()
            rows = sample_rows(m, 6, generator)
            all_ids, all_weights = with_shared_experts(config, x, ids, weights, shared_gate)
            expected = reference_rows(config, x, all_ids, all_weights, w13, w2, rows, biases)
            got = out[rows].double().cpu().numpy()
            error = relative_l2(got, expected)
            finite = bool(torch.isfinite(out).all())
            reported = layer.invalid_ids(m)
            injected = int((ids >= total_experts(config)).sum())
            good = finite and error < 1e-2 and reported == injected
            failures += not good
            print(f"{'ok' if good else 'FAIL'}: {shape} M={m} {kind}: rel L2 {error:.2e} on rows "
                  f"{rows[:4]}{'...' if len(rows) > 4 else ''}, all outputs written: {finite}, "
                  f"invalid ids reported {reported} of {injected}", flush=True)
        del w13, w2, biases, shared_gate
        torch.cuda.empty_cache()
    print(f"expert blocks: {len(shapes) * len(cases) - failures} passed, {failures} failed")
    if "w8a8" in kinds:
        failures += check_quantized(layers_dir, generator)
    if "weight_only" in kinds:
        failures += check_weight_only(layers_dir, generator)
    if not blocks_only:
        failures += check_layers(layers_dir, generator, shapes)
    return 1 if failures else 0


def check_layers(layers_dir: pathlib.Path, generator, shapes=SHAPES) -> int:
    """The example layers, routing included, against the float64 reference
    (router and top-k by the NumPy oracle) on sampled rows. A sampled token
    whose expert choice changes when its float64 logits are rounded to f32 is
    a near-tie the GPU may break either way; it is skipped and counted."""
    configs = json.loads((layers_dir / "layers.json").read_text())
    failures = total = 0
    for shape in shapes:
        config = configs[shape]
        e, h = config["num_experts"], config["hidden"]
        w13, w2 = make_weights(config, generator)
        biases = make_biases(config, generator)
        shared_gate = make_shared_gate(config, generator)
        w_gate = (torch.randn(e, h, device="cuda", generator=generator) / math.sqrt(h)).to(torch.bfloat16)
        bias = (torch.randn(e, device="cuda", generator=generator) * 0.1).float()
        inputs = [w_gate]
        if config["has_gate_bias"] or config["has_score_bias"]:
            inputs.append(bias)
        inputs += shared_gate
        for m in (1, 256, 4096):
            total += 1
            name = f"{shape}_m{m}"
            layer = Layer(layers_dir / f"{name}.so", name,
                          num_inputs=len(inputs) + 3 + len(biases))
            x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
            out = torch.full((m, h), float("nan"), dtype=torch.bfloat16, device="cuda")
            layer.workspace = torch.full((layer.bytes(m),), 0xAB, dtype=torch.uint8, device="cuda")
            layer(x, *inputs, w13, w2, *biases, out)
            torch.cuda.synchronize()
            rows = sample_rows(m, 6, generator)
            xs = x[rows].double().cpu().numpy()
            logits = reference.router(xs, w_gate.double().cpu().numpy(),
                                      bias.double().cpu().numpy() if config["has_gate_bias"] else None)
            options = dict(num_groups=config["num_groups"], topk_groups=config["topk_groups"],
                           renormalize=config["renormalize"],
                           routed_scaling_factor=config["routed_scaling_factor"],
                           bias=bias.double().cpu().numpy() if config["has_score_bias"] else None)
            weights, ids = reference.topk(logits, config["k"], config["scoring"], **options)
            _, ids_f32 = reference.topk(logits.astype(np.float32).astype(np.float64), config["k"],
                                        config["scoring"], **options)
            keep = [i for i in range(len(rows)) if (ids[i] == ids_f32[i]).all()]
            kept_x = x[[rows[i] for i in keep]]
            all_ids, all_weights = with_shared_experts(
                config, kept_x, torch.from_numpy(ids[keep]).cuda(),
                torch.from_numpy(weights[keep]).cuda(), shared_gate)
            expected = (reference_rows(config, kept_x, all_ids, all_weights,
                                       w13, w2, range(len(keep)), biases)
                        if keep else np.zeros((0, h)))
            got = out[[rows[i] for i in keep]].double().cpu().numpy()
            error = relative_l2(got, expected)
            finite = bool(torch.isfinite(out).all())
            good = finite and error < 1e-2 and len(keep) > 0
            failures += not good
            print(f"{'ok' if good else 'FAIL'}: {shape} layer (routing included) M={m}: rel L2 "
                  f"{error:.2e} on {len(keep)} rows ({len(rows) - len(keep)} near-ties skipped), "
                  f"all outputs written: {finite}", flush=True)
        del w13, w2, biases, shared_gate
        torch.cuda.empty_cache()
    print(f"layers: {total - failures} passed, {failures} failed")
    return failures


def time_graph(fn, replays=20):
    """Median µs of CUDA-graph replays of fn (captured after a warm-up)."""
    return _median_event_time(capture_graph(fn).replay, replays)


def capture_graph(fn):
    """fn captured as a CUDA graph after a warm-up on a side stream."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    return graph


def time_graphs_interleaved(fns, replays=20):
    """Median µs of each of fns' CUDA graphs, replayed in turn (A B C A B C
    ...), so that clock and temperature drift over the measurement reaches
    every one of them alike: timed one after the other, byte-identical
    libraries measured up to 16% apart at the compute-heavy rows."""
    graphs = [capture_graph(fn) for fn in fns]
    times = [[] for _ in graphs]
    for _ in range(replays):
        for graph, samples in zip(graphs, times):
            samples.append(_median_event_time(graph.replay, 1))
    return [statistics.median(samples) for samples in times]


def time_eager(fn, repeats=5):
    fn()
    torch.cuda.synchronize()
    return _median_event_time(fn, repeats)


def _median_event_time(run, repeats):
    """Median µs of `repeats` runs of `run`, each between two device events."""
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def silu_and_mul(h):
    gate, up = h.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


def measure_ceilings():
    """bf16 matmul peak (TFLOP/s) and bandwidth (TB/s) with its readings:
    the Triton streaming read (4 GiB, bench/triton_bandwidth.py), the 1 GiB
    device copy (read + write counted) and the 1 GiB bf16 `sum` (read). The
    bandwidth is their max."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm = time_graph(lambda: torch.mm(a, b), 10)
    peak = 2 * 8192 ** 3 / (mm * 1e-6) / 1e12
    big = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(big)
    copy = time_graph(lambda: dst.copy_(big), 10)
    copy_bw = 2 * big.numel() * 2 / (copy * 1e-6) / 1e12
    read = time_graph(lambda: big.sum(dtype=torch.float32), 10)
    read_bw = big.numel() * 2 / (read * 1e-6) / 1e12
    del a, b, big, dst
    torch.cuda.empty_cache()
    readings = dict(copy=copy_bw, sum=read_bw, stream=None, stream_config=None)
    try:
        import triton_bandwidth
        readings["stream"], readings["stream_config"], _ = triton_bandwidth.measure_stream(time_graph)
    except ImportError as error:
        print(f"no Triton streaming read ({error}); the floor uses the copy and the sum",
              flush=True)
    return peak, max(v for v in (copy_bw, read_bw, readings["stream"]) if v), readings


def describe_ceilings(peak, bandwidth, readings) -> str:
    stream = ("n/a" if readings["stream"] is None else
              f"{readings['stream']:.2f} ({readings['stream_config']})")
    return (f"card: {torch.cuda.get_device_name()}, bf16 peak {peak:.0f} TFLOP/s, bandwidth "
            f"{bandwidth:.2f} TB/s = max(stream read {stream}, copy {readings['copy']:.2f}, "
            f"sum {readings['sum']:.2f})")


def block_configs(layers_dir: pathlib.Path) -> dict:
    """layers.json of the compiled libraries, or (for --baselines-only
    without them) the example configurations under the same names."""
    path = layers_dir / "layers.json"
    if path.exists():
        return json.loads(path.read_text())
    import dataclasses
    from moe_compiler import configs as example_configs
    return {f"{c.name}_block": dataclasses.asdict(c) for c in example_configs.EXAMPLE_LAYERS}


def time_builds(builds, name, num_inputs, out, call):
    """{build folder name: (µs, output)} of block `name` in each build,
    replayed in turn (time_graphs_interleaved: at the compute-heavy rows a
    library timed after another runs hotter; byte-identical builds measured
    up to 16% apart when timed one after the other), `call(layer, result)`
    writing each into its own result shaped like `out`. A variant folder
    (after the first) without the block is left out: it may hold only the
    blocks a change touches."""
    builds = builds[:1] + [build for build in builds[1:] if (build / f"{name}.so").exists()]
    layers = [Layer(build / f"{name}.so", name, num_inputs=num_inputs) for build in builds]
    results = [torch.empty_like(out) for _ in builds]
    runs = [lambda layer=layer, result=result: call(layer, result)
            for layer, result in zip(layers, results)]
    times = time_graphs_interleaved(runs)
    return {build.name: (us, result.float().clone())
            for build, us, result in zip(builds, times, results)}


def compare_variants(timed, ours_name, tolerance=VARIANT_TOLERANCE):
    """Each variant of `timed` (time_builds) against ours, on the same
    inputs: its µs by name, a text for the row, and how many variants differ
    from ours by more than `tolerance` (default: bf16 rounding)."""
    ours_us, reference = timed[ours_name]
    variant_us, text, mismatches = {}, "", 0
    for name, (us, result) in timed.items():
        if name == ours_name:
            continue
        rel = float((result - reference).norm() / reference.norm().clamp_min(1e-30))
        flag = " MISMATCH" if rel > tolerance else ""
        mismatches += bool(flag)
        variant_us[name] = us
        text += f", {name} {us:.1f} us ({us / ours_us:.2f}x ours, rel L2 to ours {rel:.1e}{flag})"
    return variant_us, text, mismatches


def bench(layers_dir: pathlib.Path, out_path: pathlib.Path | None, shapes, token_counts,
          ours_only: bool = False, triton: bool = True, baselines_only: bool = False,
          variants=()) -> int:
    """`variants`: other layer folders (other builds of the same blocks), each
    timed on the same inputs in this process beside `layers_dir`'s."""
    configs = block_configs(layers_dir) if baselines_only else \
        json.loads((layers_dir / "layers.json").read_text())
    # The baselines (Triton's fused_moe, torch._grouped_mm) have no expert
    # biases: such a shape is timed by bench-quantized or
    # gpu_weight_only_ab.py, which pass them.
    with_biases = [s for s in shapes if configs.get(f"{s}_block", {}).get("has_expert_biases")]
    if with_biases:
        print(f"gpu_moe_suite: error: bench times bias-free shapes; {', '.join(with_biases)} "
              "has expert biases", file=sys.stderr)
        return 2
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    peak, bandwidth, readings = measure_ceilings()
    print(describe_ceilings(peak, bandwidth, readings), flush=True)
    fused_moe = None
    if triton and not ours_only:
        try:
            import triton_fused_moe as fused_moe
        except ImportError as error:
            print(f"no Triton baseline: {error}", flush=True)
    results = []
    variant_mismatches = 0
    for shape in shapes:
        config = configs[f"{shape}_block"]
        e, k, h, i = config["num_experts"], config["k"], config["hidden"], config["intermediate"]
        w13, w2 = make_weights(config, generator)
        for m in token_counts:
            x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
            ids, weights = make_routing(config, m, "softmax", generator)
            out = torch.empty(m, h, dtype=torch.bfloat16, device="cuda")
            ours, variant_us, variant_text = None, {}, ""
            if not baselines_only:
                # Ours and the variants replayed in turn, each into its own
                # output, the variants' outputs checked against ours.
                timed = time_builds([layers_dir, *variants], f"{shape}_block_m{m}", 5, out,
                                    lambda layer, result: layer(x, ids, weights, w13, w2, result))
                ours = timed[layers_dir.name][0]
                variant_us, variant_text, mismatches = compare_variants(timed, layers_dir.name)
                variant_mismatches += mismatches

            flat_ids = ids.view(-1).long()
            order = torch.argsort(flat_ids, stable=True)
            counts = torch.bincount(flat_ids, minlength=e)
            offsets = torch.cumsum(counts, 0).to(torch.int32)
            token_of = order // k
            flat_w = weights.view(-1)[order]

            def grouped():
                rows = x[token_of]
                hmid = torch._grouped_mm(rows, w13.transpose(1, 2), offs=offsets)
                down = torch._grouped_mm(silu_and_mul(hmid), w2.transpose(1, 2), offs=offsets)
                res = torch.zeros(m, h, dtype=torch.float32, device="cuda")
                res.index_add_(0, token_of, down.float() * flat_w[:, None])
                return res.to(torch.bfloat16)

            touched = int((counts > 0).sum())
            flops = 2 * m * k * (h * 2 * i + i * h)
            weight_bytes = touched * 3 * h * i * 2
            floor = max(flops / (peak * 1e12), weight_bytes / (bandwidth * 1e12)) * 1e6
            if ours_only:
                print(f"{layers_dir.name} {shape} M={m}: ours {ours:.1f} us, floor {floor:.1f} "
                      f"({ours / floor:.2f}x), {flops / (ours * 1e-6) / 1e12:.0f} TFLOP/s"
                      f"{variant_text}", flush=True)
                continue
            grouped_us = time_graph(grouped)

            def naive():
                res = torch.zeros(m, h, dtype=torch.float32, device="cuda")
                for expert in range(e):
                    token, slot = torch.where(ids == expert)
                    if token.numel() == 0:
                        continue
                    hmid = silu_and_mul(x[token] @ w13[expert].T)
                    res.index_add_(0, token, (hmid @ w2[expert].T).float() * weights[token, slot, None])
                return res.to(torch.bfloat16)

            naive_us = time_eager(naive, 3)
            dense_x = torch.randn(m * k, h, device="cuda", generator=generator).to(torch.bfloat16)
            dense_us = time_graph(lambda: silu_and_mul(dense_x @ w13[0].T) @ w2[0].T)

            row = dict(shape=shape, m=m, ours=ours, floor=floor, grouped_mm=grouped_us,
                       naive=naive_us, dense=dense_us, experts_touched=touched, triton=None,
                       variants=variant_us)
            triton_text = ""
            if fused_moe is not None:
                # 48 configs x 10 replays, the fastest again with 20, checked
                # against the float64 reference on sampled rows.
                block = fused_moe.FusedMoE(x, ids, weights, w13, w2)
                compile_s = fused_moe.compile_all(block, fused_moe.CONFIGS)
                swept = fused_moe.sweep(block, time_graph, replays=10, winner_replays=20,
                                        log=print)
                del block
                row.update(triton=swept["us"], triton_config=swept["name"],
                           triton_configs_ran=swept["ran"], triton_rel_l2=swept["error"],
                           triton_not_run=swept["failed"], triton_wrong=swept.get("wrong", []),
                           triton_sweep_s=swept["seconds"], triton_compile_s=compile_s)
                versus = f" ({swept['us'] / ours:.2f}x ours)" if ours else ""
                triton_text = (f", Triton {swept['us']:.1f}{versus} [{swept['name']}, "
                               f"{swept['ran']} configs, rel L2 {swept['error']:.1e}, "
                               f"sweep {swept['seconds']:.1f} s]")
            results.append(row)
            ours_text = f"ours {ours:.1f} us ({ours / floor:.2f}x floor), " if ours else ""
            versus = f" ({grouped_us / ours:.2f}x ours)" if ours else ""
            print(f"{shape} M={m}: {ours_text}floor {floor:.1f}, grouped_mm {grouped_us:.1f}"
                  f"{versus}, dense {dense_us:.1f}, naive {naive_us:.1f}{triton_text}"
                  f"{variant_text}", flush=True)
            torch.cuda.empty_cache()
        del w13, w2
        torch.cuda.empty_cache()
    summary = dict(card=torch.cuda.get_device_name(), peak_tflops=peak, bandwidth_tbps=bandwidth,
                   stream_tbps=readings["stream"], stream_config=readings["stream_config"],
                   copy_tbps=readings["copy"], read_tbps=readings["sum"], results=results)
    if out_path:
        out_path.write_text(json.dumps(summary, indent=1))
    if variant_mismatches:
        print(f"gpu_moe_suite: error: {variant_mismatches} variant rows differ from ours by "
              f"more than {VARIANT_TOLERANCE:g} (rel L2)", file=sys.stderr)
    if ours_only:
        return 1 if variant_mismatches else 0
    print(describe_ceilings(peak, bandwidth, readings))

    def num(value, digits=0):
        return "-" if value is None else f"{value:.{digits}f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{a / b:.2f}"

    print("| shape | M | floor | ours | ours/floor | torch._grouped_mm | grouped_mm/ours | dense "
          "| naive | Triton | Triton config | Triton/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['shape']} | {r['m']} | {r['floor']:.0f} | {num(r['ours'])} | "
              f"{ratio(r['ours'], r['floor'])} | {r['grouped_mm']:.0f} | "
              f"{ratio(r['grouped_mm'], r['ours'])} | {r['dense']:.0f} | {r['naive']:.0f} | "
              f"{num(r['triton'])} | {r.get('triton_config', '-')} | "
              f"{ratio(r['triton'], r['ours'])} |")
    pairs = [r["triton"] / r["ours"] for r in results if r["triton"] and r["ours"]
             and math.isfinite(r["triton"])]
    if pairs:
        geomean = math.exp(sum(map(math.log, pairs)) / len(pairs))
        print(f"Triton/ours geomean over {len(pairs)} rows: {geomean:.2f} "
              f"({min(pairs):.2f}-{max(pairs):.2f})")
    names = list(results[0]["variants"]) if results and results[0]["variants"] else []
    if names and results[0]["ours"]:
        print(f"| shape | M | {layers_dir.name} | " + " | ".join(names) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for r in results:
            print(f"| {r['shape']} | {r['m']} | {r['ours']:.0f} | " +
                  " | ".join(f"{r['variants'][n]:.0f} ({r['variants'][n] / r['ours']:.2f}x)"
                             for n in names) + " |")
    return 1 if variant_mismatches else 0


def measure_quantized_peaks():
    """fp8 (torch._scaled_mm) and int8 (torch._int_mm) matmul peaks, TFLOP/s."""
    n = 8192
    a = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()
    one = torch.ones((), device="cuda")
    fp8 = time_graph(lambda: torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16), 10)
    ai = torch.randint(-64, 64, (n, n), device="cuda", dtype=torch.int8)
    bi = torch.randint(-64, 64, (n, n), device="cuda", dtype=torch.int8).t().contiguous().t()
    int8 = time_graph(lambda: torch._int_mm(ai, bi), 10)
    del a, b, ai, bi
    torch.cuda.empty_cache()
    return {"fp8": 2 * n ** 3 / (fp8 * 1e-6) / 1e12, "int8": 2 * n ** 3 / (int8 * 1e-6) / 1e12}


def fp8_block_oracle(config, x, ids, weights, tensors):
    """rows -> the float64 oracle of the fp8 block's token rows `rows` (a
    torch tensor on x's device), for the baselines' checks."""
    scheme = config["quant"]
    w13_codes, w13_scales, w2_codes, w2_scales = tensors
    e, h = config["num_experts"], config["hidden"]

    def activation(v):
        return reference.activation(v, config["activation"], config.get("swiglu_alpha"),
                                    config.get("swiglu_limit"),
                                    config.get("gate_up_interleaved", False))

    def oracle(rows):
        expected = quant.w8a8_expert_block_rows(
            x.double().cpu().numpy(), ids.cpu().numpy(), weights.cpu().numpy(),
            lambda ex: (dequantized_expert(w13_codes, w13_scales, ex, scheme)
                        if 0 <= ex < e else None),
            lambda ex: dequantized_expert(w2_codes, w2_scales, ex, scheme), h, "fp8",
            scheme["scales"], activation, rows)
        return torch.from_numpy(np.asarray(expected)).to(x.device)
    return oracle


def triton_fp8_row(config, x, ids, weights, tensors):
    """The fp8 Triton baseline (bench/triton_fused_moe_fp8.py) on this
    block's codes and inputs: the best of its 48-config sweep, checked with
    the project's float64 oracle of the block. Returns the sweep's dict."""
    import triton_fused_moe_fp8 as fused_moe_fp8
    import triton_fused_moe as fused_moe

    w13_codes, w13_scales, w2_codes, w2_scales = tensors
    block = fused_moe_fp8.FusedMoEFp8(x, ids, weights, w13_codes, w13_scales, w2_codes,
                                      w2_scales, config["quant"]["scales"])
    return fused_moe.sweep(block, time_graph, configs=fused_moe_fp8.CONFIGS,
                           reference=fp8_block_oracle(config, x, ids, weights, tensors),
                           tolerance=W8A8_TOLERANCE["fp8"], log=print)


def scaled_grouped_mm_row(config, x, ids, weights, tensors):
    """torch._scaled_grouped_mm over expert-sorted rows for a per-token x
    per-channel fp8 block with silu_and_mul (rows quantized by torch ops,
    amax / 448 per row, as ours): (µs, rel L2 to the oracle on sampled
    rows), or (None, why) where this torch lacks it or refuses the call."""
    if not hasattr(torch, "_scaled_grouped_mm"):
        return None, "this torch has no _scaled_grouped_mm"
    w13_codes, w13_scales, w2_codes, w2_scales = tensors
    m, k = ids.shape
    e, h = config["num_experts"], config["hidden"]
    flat_ids = ids.view(-1).long()
    order = torch.argsort(flat_ids, stable=True)
    offsets = torch.cumsum(torch.bincount(flat_ids, minlength=e), 0).to(torch.int32)
    token_of = order // k
    flat_w = weights.view(-1)[order]

    def quantize(v):
        amax = v.float().abs().amax(-1, keepdim=True)
        scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
        return (v.float() / scale).to(torch.float8_e4m3fn), scale.view(-1)

    def grouped():
        codes, scales = quantize(x)
        hmid = torch._scaled_grouped_mm(codes[token_of], w13_codes.transpose(1, 2),
                                        scales[token_of], w13_scales, offs=offsets,
                                        out_dtype=torch.bfloat16)
        act_codes, act_scales = quantize(silu_and_mul(hmid))
        down = torch._scaled_grouped_mm(act_codes, w2_codes.transpose(1, 2), act_scales,
                                        w2_scales, offs=offsets, out_dtype=torch.bfloat16)
        out = torch.zeros(m, h, dtype=torch.float32, device=x.device)
        out.index_add_(0, token_of, down.float() * flat_w[:, None])
        return out.to(torch.bfloat16)

    try:
        got = grouped()
        torch.cuda.synchronize()
    except (RuntimeError, TypeError) as error:
        return None, f"torch._scaled_grouped_mm refused: {str(error)[:160]}"
    rows = sample_rows(m, 4, torch.Generator(device="cuda").manual_seed(3))
    expected = fp8_block_oracle(config, x, ids, weights, tensors)(rows)
    return time_graph(grouped), relative_l2(got[rows].double().cpu().numpy(),
                                            expected.cpu().numpy())


def bench_quantized(layers_dir: pathlib.Path, out_path: pathlib.Path | None, token_counts,
                    kinds=("w8a8", "weight_only"), triton_fp8=False, variants=(),
                    variant_tolerance=VARIANT_TOLERANCE, schemes=None) -> int:
    """Each quantized block against the bf16 block of its shape, in this
    process, and against its own floor: max(FLOPs / the MMA's measured peak
    (fp8, int8, or bf16 for weight-only), (stored code + scale + zero bytes
    of the touched experts) / measured bandwidth). `variants`: other builds'
    layer folders, whose blocks are replayed in turn with ours on the same
    inputs, their outputs checked against ours (within `variant_tolerance`,
    rel L2: a build that accumulates differently, such as fp8
    fast_accumulation, differs from ours by its own rounding). `schemes`:
    only the blocks of these scheme names (None: all)."""
    configs = json.loads((layers_dir / "layers.json").read_text())
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    variant_mismatches = 0
    peak, bandwidth, readings = measure_ceilings()
    peaks = measure_quantized_peaks()
    peaks["bf16"] = peak
    print(describe_ceilings(peak, bandwidth, readings), flush=True)
    print(f"fp8 {peaks['fp8']:.0f}, int8 {peaks['int8']:.0f} TFLOP/s (dense 8192^3)", flush=True)
    results = []
    blocks = [(shape, scheme, "w8a8") for shape, scheme in QUANTIZED] + \
             [(shape, scheme, "weight_only") for shape, scheme in WEIGHT_ONLY]
    for shape, scheme, kind in blocks:
        config = configs.get(f"{shape}_{scheme}_block")
        if config is None or kind not in kinds or (schemes and scheme not in schemes):
            continue
        e, k, h, i = config["num_experts"], config["k"], config["hidden"], config["intermediate"]
        if kind == "w8a8":
            tensors = make_quantized_weights(config, generator)
            mma = config["quant"]["format"]
        else:
            tensors = weight_only_inputs(make_weight_only_weights(config, generator),
                                         config["weight_only"])
            mma = "bf16"
        # Stored bytes per expert: codes, scales and zeros of both matrices.
        stored_bytes = sum(t.numel() * t.element_size() for t in tensors) / e
        w13, w2 = make_weights(config, generator)
        biases = make_biases(config, generator)
        for m in token_counts:
            name = f"{shape}_{scheme}_block_m{m}"
            layer = Layer(layers_dir / f"{name}.so", name,
                          num_inputs=3 + len(tensors) + len(biases))
            bf16_name = f"{shape}_block_m{m}"
            bf16_layer = Layer(layers_dir / f"{bf16_name}.so", bf16_name,
                               num_inputs=5 + len(biases))
            x = torch.randn(m, h, device="cuda", generator=generator).to(torch.bfloat16)
            ids, weights = make_routing(config, m, "softmax", generator)
            out = torch.empty(m, h, dtype=torch.bfloat16, device="cuda")
            variant_us, variant_text = {}, ""
            if variants:
                timed = time_builds(
                    [layers_dir, *variants], name, 3 + len(tensors) + len(biases), out,
                    lambda build_layer, result: build_layer(x, ids, weights, *tensors,
                                                            *biases, result))
                ours = timed[layers_dir.name][0]
                variant_us, variant_text, mismatches = compare_variants(
                    timed, layers_dir.name, variant_tolerance)
                variant_mismatches += mismatches
            else:
                ours = time_graph(lambda: layer(x, ids, weights, *tensors, *biases, out))
            bf16 = time_graph(lambda: bf16_layer(x, ids, weights, w13, w2, *biases, out))
            touched = int((torch.bincount(ids.view(-1).long(), minlength=e) > 0).sum())
            flops = 2 * m * k * (h * 2 * i + i * h)
            floor = max(flops / (peaks[mma] * 1e12), touched * stored_bytes / (bandwidth * 1e12)) * 1e6
            bf16_floor = max(flops / (peak * 1e12), touched * 3 * h * i * 2 / (bandwidth * 1e12)) * 1e6
            row = dict(shape=shape, scheme=scheme, m=m, ours=ours, floor=floor, bf16_layer=bf16,
                       bf16_floor=bf16_floor, experts_touched=touched,
                       tflops=flops / (ours * 1e-6) / 1e12, variants=variant_us)
            if (triton_fp8 and kind == "w8a8" and config["quant"]["format"] == "fp8"
                    and config["quant"]["scales"] in ("block", "per_token_channel")):
                sweep = triton_fp8_row(config, x, ids, weights, tensors)
                row.update(triton_fp8=sweep["us"], triton_fp8_config=sweep["name"],
                           triton_fp8_error=sweep["error"])
                print(f"  Triton fp8 fused_moe: {sweep['us']:.1f} us ({sweep['name']}, rel L2 "
                      f"{sweep['error']:.2e}), Triton / ours {sweep['us'] / ours:.2f}", flush=True)
                if config["quant"]["scales"] == "per_token_channel":
                    us, error = scaled_grouped_mm_row(config, x, ids, weights, tensors)
                    if us is None:
                        print(f"  torch._scaled_grouped_mm: {error}", flush=True)
                    else:
                        row.update(scaled_grouped_mm=us, scaled_grouped_mm_error=error)
                        print(f"  torch._scaled_grouped_mm: {us:.1f} us (rel L2 {error:.2e}), "
                              f"/ ours {us / ours:.2f}", flush=True)
            results.append(row)
            print(f"{shape} {scheme} M={m}: ours {ours:.1f} us, floor {floor:.1f} "
                  f"({ours / floor:.2f}x), bf16 layer {bf16:.1f} ({bf16 / ours:.2f}x ours), "
                  f"{row['tflops']:.0f} TFLOP/s{variant_text}", flush=True)
            del layer, bf16_layer
        del tensors, w13, w2
        torch.cuda.empty_cache()
    summary = dict(card=torch.cuda.get_device_name(), peak_tflops=peak, quantized_peaks=peaks,
                   bandwidth_tbps=bandwidth, stream_tbps=readings["stream"],
                   copy_tbps=readings["copy"], read_tbps=readings["sum"], results=results)
    if out_path:
        out_path.write_text(json.dumps(summary, indent=1))
    print("| block | format | M | floor | ours | ours/floor | bf16 layer | bf16/ours "
          "| Triton fp8 | Triton/ours |")
    for r in results:
        triton_us = r.get("triton_fp8")
        triton_cells = (f"{triton_us:.0f} | {triton_us / r['ours']:.2f}" if triton_us
                        else "- | -")
        print(f"| {r['shape']} | {r['scheme']} | {r['m']} | {r['floor']:.0f} | {r['ours']:.0f} | "
              f"{r['ours'] / r['floor']:.2f} | {r['bf16_layer']:.0f} | "
              f"{r['bf16_layer'] / r['ours']:.2f} | {triton_cells} |")
    if variant_mismatches:
        print(f"gpu_moe_suite: error: {variant_mismatches} variant rows differ from ours by "
              f"more than {variant_tolerance:.0e}", file=sys.stderr)
    return 1 if variant_mismatches else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("check", "check-quantized", "smoke-quantized", "bench",
                                         "bench-quantized"))
    parser.add_argument("--kinds", default="w8a8,weight_only",
                        help="quantized blocks to check or time: w8a8, weight_only; "
                        "'none' (check: the bf16 blocks and whole layers only)")
    parser.add_argument("--schemes",
                        help="check-quantized, smoke-quantized, bench-quantized: only the "
                        "blocks of these scheme names, e.g. int4_g128,int4_g32_zp (default: all)")
    parser.add_argument("layers", type=pathlib.Path)
    parser.add_argument("--blocks-only", action="store_true",
                        help="check: the expert blocks only (a variant's build, "
                        "gpu-layers.sh with MOE_BLOCK_SHAPES)")
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--shapes", default=",".join(BENCH_SHAPES),
                        help="bench: the shapes timed")
    parser.add_argument("--check-shapes", default=",".join(SHAPES),
                        help="check: the bf16 blocks and layers checked")
    parser.add_argument("--tokens",
                        help="bench, bench-quantized: the M timed (default: "
                        f"{','.join(map(str, TOKEN_COUNTS))}); check-quantized: softmax and "
                        "remote routing at each M given (default: its fixed cases)")
    parser.add_argument("--ours-only", action="store_true",
                        help="time only the compiled layer (variant sweeps)")
    parser.add_argument("--no-triton", action="store_true",
                        help="bench: skip the Triton fused_moe sweep (quick runs)")
    parser.add_argument("--triton-fp8", action="store_true",
                        help="bench-quantized: time the fp8 Triton fused_moe baseline "
                        "(bench/triton_fused_moe_fp8.py, 48-config sweep) beside each fp8 "
                        "block with block or per-token x per-channel scales")
    parser.add_argument("--also", type=pathlib.Path, action="append", default=[],
                        help="bench, bench-quantized: another build's layer folder, timed in "
                             "the same process on the same inputs (replayed in turn with ours), "
                             "its output checked against ours (repeatable)")
    parser.add_argument("--variant-tolerance", type=float, default=VARIANT_TOLERANCE,
                        help="bench-quantized: the rel L2 by which an --also build's output may "
                        "differ from ours (default: bf16 rounding; fp8 fast_accumulation "
                        "differs by ~1e-2)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="bench: everything but the compiled layer (no libraries needed)")
    args = parser.parse_args()
    # Builds are told apart by their folders' names (in the output and the
    # JSON): two folders of one name would be compared with themselves.
    names = [folder.name for folder in [args.layers, *args.also]]
    if len(set(names)) != len(names):
        print(f"gpu_moe_suite: error: --also folders need names distinct from each other and "
              f"from the layers folder, got {names}", file=sys.stderr)
        return 2
    schemes = set(args.schemes.split(",")) if args.schemes else None
    known = {scheme for _, scheme in QUANTIZED + WEIGHT_ONLY}
    if schemes and not schemes <= known:
        print(f"gpu_moe_suite: error: unknown --schemes {sorted(schemes - known)}; known: "
              f"{sorted(known)}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_moe_suite: error: no CUDA GPU", file=sys.stderr)
        return 1
    if args.mode == "check":
        return check(args.layers, args.kinds.split(","), args.check_shapes.split(","),
                     args.blocks_only)
    if args.mode == "check-quantized":
        generator = torch.Generator(device="cuda")
        generator.seed()
        kinds = args.kinds.split(",")
        token_counts = [int(v) for v in args.tokens.split(",")] if args.tokens else None
        failures = (check_quantized(args.layers, generator, schemes=schemes,
                                    token_counts=token_counts) if "w8a8" in kinds else 0)
        if "weight_only" in kinds:
            failures += check_weight_only(args.layers, generator, schemes=schemes,
                                          token_counts=token_counts)
        return 1 if failures else 0
    if args.mode == "smoke-quantized":
        # The scaled quantized blocks once each: short enough for the
        # sanitizers.
        generator = torch.Generator(device="cuda")
        generator.seed()
        kinds = args.kinds.split(",")
        failures = (check_quantized(args.layers, generator, small=True, schemes=schemes)
                    if "w8a8" in kinds else 0)
        if "weight_only" in kinds:
            failures += check_weight_only(args.layers, generator, small=True, schemes=schemes)
        return 1 if failures else 0
    bench_tokens = [int(v) for v in args.tokens.split(",")] if args.tokens else list(TOKEN_COUNTS)
    if args.mode == "bench-quantized":
        return bench_quantized(args.layers, args.out, bench_tokens,
                               args.kinds.split(","), triton_fp8=args.triton_fp8,
                               variants=args.also, variant_tolerance=args.variant_tolerance,
                               schemes=schemes)
    return bench(args.layers, args.out, args.shapes.split(","),
                 bench_tokens, args.ours_only,
                 triton=not args.no_triton, baselines_only=args.baselines_only,
                 variants=args.also)


if __name__ == "__main__":
    sys.exit(main())

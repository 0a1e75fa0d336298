"""Checks a program's results against the float64 reference.

`moe-run --check` writes the entry function's op graph (graph.json), its
arguments (arg<i>.npy) and its results (result<i>.npy) to a directory and
runs this script on it. The graph is evaluated op by op with
`moe_compiler.reference`, in float64, rounding each op's results to the
element type the IR declares for them, so that the reference sees the same
values between ops that the program does.

Quantized ops (`moe.quantize`, quantized grouped and expert matmuls) are
evaluated with `moe_compiler.quant`: codes and scales by its quantization
rule, matmuls as the float64 product of the dequantized operands.

Tolerances (relative L2 error): 1e-2 when any tensor of the program is bf16
or f16, 1e-5 otherwise; integer results (ids, int8 codes) must match
exactly. NaNs must sit at the same places; they are left out of the error,
and a result that is all NaN fails.

Routing is discontinuous: where the k-th and (k+1)-th selection keys of a
token differ by less than `AMBIGUITY` (relative), float32 rounding may pick
the other expert legitimately. Such tokens are left out of the comparison and
counted; if more than a tenth of the tokens are ambiguous the check fails.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from moe_compiler import quant  # noqa: E402
    from moe_compiler import reference as ref  # noqa: E402
else:
    from . import quant
    from . import reference as ref

AMBIGUITY = 1e-5

try:
    import ml_dtypes

    _BF16 = ml_dtypes.bfloat16
    _F8 = ml_dtypes.float8_e4m3fn
except ImportError:  # pragma: no cover - setup.sh installs ml_dtypes
    _BF16 = _F8 = None

# Element types whose values are integers (codes, ids, packed bytes).
_INTEGER_TYPES = ("i8", "ui8", "i32", "i64")


def load(path: pathlib.Path, dtype: str) -> np.ndarray:
    array = np.load(path)
    if dtype == "bf16":
        array = array.view(_BF16)
    if dtype == "f8E4M3FN":
        array = array.view(_F8)
    return array


def round_to(value: np.ndarray, dtype: str) -> np.ndarray:
    """Rounds a float64 (or integer) array to an IR element type and back."""
    if dtype == "bf16":
        return np.asarray(value, dtype=np.float64).astype(np.float32).astype(_BF16).astype(np.float64)
    if dtype == "f16":
        return np.asarray(value).astype(np.float16).astype(np.float64)
    if dtype == "f32":
        return np.asarray(value).astype(np.float32).astype(np.float64)
    if dtype == "f8E4M3FN":
        return np.asarray(value).astype(_F8).astype(np.float64)
    if dtype in _INTEGER_TYPES:
        return np.asarray(value).astype(np.int64)
    return np.asarray(value, dtype=np.float64)


def dequantized_operands(a, weights, named: dict, quantization: dict):
    """The A operand and weights of a quantized matmul as float64 (the
    codes as their values: e4m3 codes are already floats here, integer
    codes and packed bytes int64)."""
    fmt = quantization["format"]
    if fmt in ("fp8", "int8"):
        layout = quantization["scales"]
        return (quant.dequantize(a, named["input_scales"], fmt, layout, "activation"),
                quant.dequantize(weights, named["weight_scales"], fmt, layout, "weight"))
    group = quant.MX_GROUP if fmt == "mxfp4" else quantization["group"]
    zeros = named.get("weight_zeros")
    stored = weights.astype(np.uint8) if fmt != "int8_weight" or zeros is not None else weights
    if quantization.get("packed") == "wgmma_a_4bit":
        stored = quant.unpack_wgmma_a_4bit(stored)
    return a, quant.dequantize_weight_only(stored, named["weight_scales"], zeros, fmt, group)


def ambiguous_tokens(logits: np.ndarray, attrs: dict, bias) -> np.ndarray:
    """Tokens whose k-th and (k+1)-th selection keys nearly tie."""
    k = attrs["k"]
    num_tokens, num_experts = logits.shape
    if k == num_experts:
        return np.zeros(num_tokens, dtype=bool)
    scoring = attrs["scoring"]
    if scoring == "softmax":
        scores = ref._softmax(logits)
    elif scoring == "sigmoid":
        scores = ref._sigmoid(logits)
    else:
        scores = logits
    keys = scores if bias is None else scores + bias[None, :]
    keys = np.where(np.isnan(keys), -np.inf, keys)
    ordered = -np.sort(-keys, axis=-1)
    scale = np.maximum(np.abs(ordered[:, k - 1]), 1e-30)
    near = np.abs(ordered[:, k - 1] - ordered[:, k]) <= AMBIGUITY * scale
    if attrs.get("num_groups"):
        groups = attrs["num_groups"]
        grouped = keys.reshape(num_tokens, groups, num_experts // groups)
        best_two = -np.sort(-grouped, axis=-1)[..., :2].sum(axis=-1)
        ordered_groups = -np.sort(-best_two, axis=-1)
        t = attrs["topk_groups"]
        if t < groups:
            gscale = np.maximum(np.abs(ordered_groups[:, t - 1]), 1e-30)
            near |= np.abs(ordered_groups[:, t - 1] - ordered_groups[:, t]) <= AMBIGUITY * gscale
    return near


def evaluate(graph: dict, args: list[np.ndarray]):
    """Returns the reference results and the mask of ambiguous tokens."""
    values = {f"arg{i}": round_to(a.astype(np.float64) if a.dtype.kind == "f" or a.dtype in (_BF16, _F8)
                                  else a, graph["args"][i]["dtype"])
              for i, a in enumerate(args)}
    ambiguous = None
    for op in graph["ops"]:
        name, attrs = op["op"], op["attrs"]
        x = [values[v] for v in op["operands"]]
        if name == "moe.router":
            out = [ref.router(x[0], x[1], x[2] if len(x) > 2 else None)]
        elif name == "moe.topk":
            bias = x[1] if len(x) > 1 else None
            out = list(ref.topk(x[0], attrs["k"], attrs["scoring"], bias=bias,
                                num_groups=attrs["num_groups"], topk_groups=attrs["topk_groups"],
                                renormalize=attrs["renormalize"],
                                routed_scaling_factor=attrs["routed_scaling_factor"]))
            token_mask = ambiguous_tokens(x[0], attrs, bias)
            ambiguous = token_mask if ambiguous is None else (ambiguous | token_mask)
        elif name == "moe.route":
            gate_bias = x[2] if attrs["has_gate_bias"] else None
            bias = x[-1] if attrs["has_score_bias"] else None
            logits = ref.router(x[0], x[1], gate_bias)
            out = list(ref.topk(logits, attrs["k"], attrs["scoring"], bias=bias,
                                num_groups=attrs["num_groups"], topk_groups=attrs["topk_groups"],
                                renormalize=attrs["renormalize"],
                                routed_scaling_factor=attrs["routed_scaling_factor"]))
            token_mask = ambiguous_tokens(logits, attrs, bias)
            ambiguous = token_mask if ambiguous is None else (ambiguous | token_mask)
        elif name == "moe.add_shared_experts":
            out = list(ref.add_shared_experts(x[0], x[1], attrs["num_experts"],
                                              attrs["num_shared"], x[2] if len(x) > 2 else None))
        elif name == "moe.shared_expert_routing":
            out = list(ref.shared_expert_routing(x[0], attrs["num_shared"],
                                                 x[1] if len(x) > 1 else None))
        elif name == "moe.sort":
            out = list(ref.sort_assignments(x[0], attrs["num_experts"]))
        elif name == "moe.align":
            out = list(ref.align(x[0], attrs["num_experts"], attrs["block_m"]))
        elif name == "moe.expert_matmul":
            named = dict(zip(attrs["operand_names"], x))
            if attrs["quantization"]["format"] != "none":
                named["input"], named["weights"] = dequantized_operands(
                    named["input"], named["weights"], named, attrs["quantization"])
            out = [ref.expert_matmul(
                named["input"], named["weights"], k=attrs["k"], slots=named.get("slots"),
                offsets=named.get("offsets"), block_experts=named.get("block_experts"),
                num_padded=named.get("num_padded"), routing_weights=named.get("routing_weights"),
                gather=attrs["gather"], unpermute=attrs["unpermute"],
                activation_kind=attrs["activation"], alpha=attrs["alpha"], limit=attrs["limit"],
                gate_up_interleaved=attrs["gate_up_interleaved"],
                routed_scaling_factor=attrs["routed_scaling_factor"], block_m=attrs["block_m"],
                bias=named.get("bias"), accumulate=named.get("accumulate"))]
        elif name == "moe.permute":
            out = list(ref.permute(x[0], x[1], attrs["num_experts"]))
        elif name == "moe.grouped_matmul":
            named = dict(zip(attrs["operand_names"], x))
            rows, weights = named["rows"], named["weights"]
            if attrs["quantization"]["format"] != "none":
                rows, weights = dequantized_operands(rows, weights, named, attrs["quantization"])
            out = [ref.grouped_matmul(rows, weights, named["offsets"], named.get("bias"))]
        elif name == "moe.quantize":
            quantization = attrs["quantization"]
            codes, scales = quant.quantize_activation(x[0], quantization["format"],
                                                      quantization["scales"])
            out = [codes.astype(np.float64) if quantization["format"] == "fp8" else codes, scales]
        elif name == "moe.activation":
            out = [ref.activation(x[0], attrs["kind"], attrs["alpha"], attrs["limit"],
                                  attrs["gate_up_interleaved"])]
        elif name == "moe.unpermute":
            out = [ref.unpermute(x[0], x[1], attrs["k"])]
        elif name == "moe.combine":
            out = [ref.combine(x[0], x[1], attrs["routed_scaling_factor"])]
        else:
            raise SystemExit(f"check: unsupported op {name}")
        for result, value in zip(op["results"], out):
            values[result["name"]] = round_to(value, result["dtype"])
    return [values[name] for name in graph["returns"]], ambiguous


def relative_l2(ours: np.ndarray, expected: np.ndarray) -> float:
    diff = np.linalg.norm((ours - expected).ravel())
    norm = np.linalg.norm(expected.ravel())
    return float(diff / norm) if norm > 0 else float(diff)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=pathlib.Path, required=True)
    options = parser.parse_args(argv)
    graph = json.loads((options.dir / "graph.json").read_text())
    args = [load(options.dir / f"arg{i}.npy", a["dtype"]) for i, a in enumerate(graph["args"])]
    expected, ambiguous = evaluate(graph, args)
    dtypes = [a["dtype"] for a in graph["args"]]
    for op in graph["ops"]:
        dtypes += [r["dtype"] for r in op["results"]]
    tolerance = 1e-2 if any(d in ("bf16", "f16") for d in dtypes) else 1e-5

    ok = True
    num_ambiguous = 0 if ambiguous is None else int(ambiguous.sum())
    if ambiguous is not None and num_ambiguous:
        print(f"check: {num_ambiguous} of {ambiguous.size} tokens have a near-tie in routing; "
              "left out of the comparison")
        if num_ambiguous > max(1, ambiguous.size // 10):
            print("check: FAIL: too many ambiguous tokens for a meaningful comparison")
            ok = False
    result_types = []
    for op in graph["ops"]:
        result_types += op["results"]
    for index, reference in enumerate(expected):
        dtype = next(r["dtype"] for r in result_types if r["name"] == graph["returns"][index]) \
            if graph["returns"][index].startswith("v") else graph["args"][int(graph["returns"][index][3:])]["dtype"]
        ours = load(options.dir / f"result{index}.npy", dtype)
        ours = ours.astype(np.int64) if dtype in _INTEGER_TYPES else ours.astype(np.float64)
        if ours.shape != reference.shape:
            print(f"check: result #{index}: shape {ours.shape}, expected {reference.shape}: FAIL")
            ok = False
            continue
        if ambiguous is not None and ours.ndim and ours.shape[0] == ambiguous.size:
            ours, reference = ours[~ambiguous], reference[~ambiguous]
        if dtype in _INTEGER_TYPES:
            mismatches = int(np.sum(ours != reference))
            status = "ok" if mismatches == 0 else "FAIL"
            print(f"check: result #{index} [{dtype}]: {mismatches} mismatching elements: {status}")
            ok &= mismatches == 0
            continue
        nan_ours, nan_ref = np.isnan(ours), np.isnan(reference)
        if not np.array_equal(nan_ours, nan_ref):
            print(f"check: result #{index}: NaNs at different places: FAIL")
            ok = False
            continue
        if reference.size and nan_ref.all():
            # Nothing left to compare: a program that only yields NaNs
            # must not pass for agreeing with a reference that does too.
            print(f"check: result #{index}: only NaNs: FAIL")
            ok = False
            continue
        error = relative_l2(ours[~nan_ref], reference[~nan_ref])
        status = "ok" if error < tolerance else "FAIL"
        print(f"check: result #{index} [{dtype}]: relative L2 error {error:.3e} "
              f"(tolerance {tolerance:.0e}): {status}")
        ok &= error < tolerance
    print("check: PASS" if ok else "check: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

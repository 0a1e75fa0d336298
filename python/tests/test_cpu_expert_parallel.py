"""Expert parallelism on the CPU: moe-run --ep-ranks=R runs the R per-rank
programs of each example layer (moe-expert-parallel) as threads with
emulated collectives. Their joined output must equal the single-device
layer's, and the float64 reference (--check), for both realizations, with
contiguous and replicated placements, on routings that land on every rank
and on routings where one rank is hot and others empty."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from moe_compiler import configs, load_balance
from moe_compiler import reference as ref
from moe_run import TOLERANCE, relative_l2, run_program
from test_cpu_layers import layer_inputs

rng = np.random.default_rng()

TOKENS_PER_RANK = 6


def contiguous_slots(experts: int, ranks: int) -> list[list[int]]:
    """The pass's contiguous placement: slot j of rank r holds (r·L + j) mod E."""
    per_rank = math.ceil(experts / ranks)
    return [[(r * per_rank + j) % experts for j in range(per_rank)] for r in range(ranks)]


def routed_ids(config, inputs) -> np.ndarray:
    """Every token's experts (routed, then shared) by the float64 routing."""
    values = [a.astype(np.float64) for a in inputs]
    x, gate, rest = values[0], values[1], values[2:]
    gate_bias = rest.pop(0) if config.has_gate_bias else None
    score_bias = rest.pop(0) if config.has_score_bias else None
    _, ids = ref.route(x, gate, config.k, config.scoring, gate_bias=gate_bias,
                       score_bias=score_bias, num_groups=config.num_groups,
                       topk_groups=config.topk_groups)
    shared = np.arange(config.num_experts, config.num_experts + config.num_shared_experts)
    return np.concatenate([ids, np.broadcast_to(shared, (len(ids), len(shared)))], axis=1)


def rank_loads(ids: np.ndarray, slots: list[list[int]]) -> np.ndarray:
    """Assignments each rank serves: a source rank's assignments to an expert
    go to its (source mod replicas)-th replica in rank order."""
    ranks = len(slots)
    loads = np.zeros(ranks, dtype=int)
    sources = np.repeat(np.arange(ranks), len(ids) // ranks)
    for source, row in zip(sources, ids):
        for expert in row:
            replicas = [r for r in range(ranks) if expert in slots[r]]
            loads[replicas[source % len(replicas)]] += 1
    return loads


def make_hot(config, inputs, slots) -> None:
    """Routes every token to the first max(k, L) experts (on the first
    ranks): a large constant feature that only those experts' gate rows see."""
    hot = min(config.num_experts, max(config.k, len(slots[0])))
    x, gate = inputs[0], inputs[1]
    # Sigmoid scores saturate at a logit of 16: the choice among the hot
    # experts would then fall to the score bias alone, the same for every
    # token, and one near-tie of two biases would make every token
    # ambiguous for --check. A logit of 2 keeps them apart by the tokens'
    # own features. The cold experts' logit of -6 keeps their scores
    # (~0.0025) below any hot expert's with its score bias: at -2, a token's
    # own features (~N(0, 1) of logit) sometimes lifted a cold expert into
    # its top k, and a rank meant to stay empty was not.
    hot_weight, cold_weight = (0.25, 0.75) if config.scoring == "sigmoid" else (2.0, 2.0)
    x[:, 0] = 8.0
    gate[:, 0] = -cold_weight
    gate[:hot, 0] = hot_weight


def plan_slots(config, ids, ranks) -> list[list[int]]:
    """load_balance's EPLB-style plan (one spare slot per rank, so the
    busiest experts are replicated) for this routing."""
    experts = config.num_experts + config.num_shared_experts
    loads = load_balance.expert_loads(ids, experts)
    return load_balance.plan_placement(loads, ranks, math.ceil(experts / ranks) + 1)


def run_layer(tmp_path, config, inputs, extra_args=()):
    result = run_program(tmp_path, configs.layer_mlir(config), config.name, inputs, 1,
                         extra_args=extra_args, output_dtypes=[config.dtype])
    assert result.returncode == 0, result.stderr
    return result.outputs[0].astype(np.float64)


CASES = [  # (routing, placement, realization)
    ("spread", "contiguous", "allgather"),
    ("spread", "plan", "all_to_all"),
    ("hot", "contiguous", "all_to_all"),
    ("hot", "plan", "allgather"),
]


@pytest.mark.parametrize("ranks", [2, 4, 8])
@pytest.mark.parametrize("base", configs.EXAMPLE_LAYERS, ids=lambda c: c.name)
@pytest.mark.parametrize("routing", ["spread", "hot"])
def test_example_layer_on_ranks(tmp_path, base, ranks, routing):
    dtype = "f32" if ranks != 4 else "bf16"
    config = dataclasses.replace(base.scaled(32, 16), dtype=dtype)
    experts = config.num_experts + config.num_shared_experts
    inputs = layer_inputs(config, TOKENS_PER_RANK * ranks)
    contiguous = contiguous_slots(experts, ranks)
    if routing == "hot":
        make_hot(config, inputs, contiguous)
    ids = routed_ids(config, inputs)
    loads = rank_loads(ids, contiguous)
    if routing == "hot":
        assert loads[0] >= loads.sum() / 2
        if ranks >= 4:
            assert (loads == 0).any(), loads
    else:
        assert (loads > 0).all(), loads

    single = run_layer(tmp_path / "single", config, inputs)
    plan = plan_slots(config, ids, ranks)
    assert any(sum(e in rank for rank in plan) > 1 for e in range(experts))
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps({"ranks": ranks, "slots": plan}))
    for _, placement, realization in [c for c in CASES if c[0] == routing]:
        args = [f"--ep-ranks={ranks}", f"--ep-realization={realization}",
                f"--ep-placement={plan_path if placement == 'plan' else 'contiguous'}"]
        if placement == "contiguous":
            args.append("--check")  # and against the float64 reference
        ours = run_layer(tmp_path / f"{placement}-{realization}", config, inputs, args)
        assert ours.shape == single.shape
        assert relative_l2(ours, single) < TOLERANCE[dtype], (placement, realization)


#===------------------------------------------------------------------------===#
# Bad input
#===------------------------------------------------------------------------===#

SMALL = dataclasses.replace(configs.MIXTRAL_8X7B.scaled(16, 8), dtype="f32")


def run_small(tmp_path, args, m=8):
    inputs = layer_inputs(SMALL, m)
    return run_program(tmp_path, configs.layer_mlir(SMALL), SMALL.name, inputs, 1,
                       extra_args=args)


@pytest.mark.parametrize("args, message", [
    (["--ep-ranks=3"], "--ep-ranks=3 splits the tokens evenly, but argument #0 has 8 rows"),
    (["--ep-ranks=2", "--ep-placement=missing.json"], "cannot read the placement plan 'missing.json'"),
    (["--ep-ranks=2", "--ep-realization=ring"], "realization=allgather|all_to_all, got ranks=2 realization=ring"),
    (["--ep-ranks=-1"], "--ep-ranks must be positive"),
    (["--ep-ranks=2", "--repeat=2"], "runs without --repeat and --fuse"),
])
def test_bad_options(tmp_path, args, message):
    result = run_small(tmp_path, args)
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize("plan, message", [
    ({"ranks": 2, "slots": [[0, 1, 2, 3], [4, 5, 6]]}, "expects 4 slots on every rank"),
    ({"ranks": 2, "slots": [[0, 1, 2, 3], [4, 5, 6, 6]]}, "expects an expert at most once per rank"),
    ({"ranks": 2, "slots": [[0, 1, 2, 3], [4, 5, 6, 9]]}, "expects experts in [0, 8), rank 1 holds 9"),
    ({"ranks": 2, "slots": [[0, 1, 2, 3], [4, 5, 6, 0]]}, "expects every expert on some rank, expert 7 is on none"),
    ({"ranks": 4, "slots": [[0, 1], [2, 3], [4, 5], [6, 7]]}, "places 4 ranks, but ranks=2"),
    ({"ranks": 2}, "is not a plan"),
])
def test_bad_plan(tmp_path, plan, message):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = run_small(tmp_path, ["--ep-ranks=2", f"--ep-placement={path}"])
    assert result.returncode == 1
    assert message in result.stderr


def test_expert_ids_given_as_data(tmp_path):
    """An expert block whose ids come in as arguments: an id outside
    [-1, E) is a clear runtime error on the rank that holds it, and -1
    drops the assignment on every realization."""
    h, i, e, k, ranks = 16, 8, 4, 2, 2
    ir = f"""
func.func @experts(%x: tensor<?x{h}xf32>, %ids: tensor<?x{k}xi32>, %weights: tensor<?x{k}xf32>,
                   %w13: tensor<{e}x{2 * i}x{h}xf32>, %w2: tensor<{e}x{h}x{i}xf32>) -> tensor<?x{h}xf32> {{
  %off, %src = moe.sort %ids : tensor<?x{k}xi32> -> tensor<{e + 1}xi32>, tensor<?xi32>
  %a = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<{e + 1}xi32>)
      {{gather, k = {k} : i64, activation = #moe.activation<silu_and_mul>}}
      : tensor<?x{h}xf32>, tensor<{e}x{2 * i}x{h}xf32> -> tensor<?x{i}xf32>
  %out = moe.expert_matmul %a, %w2 slots(%src : tensor<?xi32>) offsets(%off : tensor<{e + 1}xi32>)
      combine(%weights : tensor<?x{k}xf32>) {{k = {k} : i64}}
      : tensor<?x{i}xf32>, tensor<{e}x{h}x{i}xf32> -> tensor<?x{h}xf32>
  return %out : tensor<?x{h}xf32>
}}"""
    m = 8
    x = rng.standard_normal((m, h)).astype(np.float32)
    ids = rng.integers(0, e, size=(m, k)).astype(np.int32)
    ids[3, 1] = -1
    weights = rng.random((m, k)).astype(np.float32)
    w13 = (rng.standard_normal((e, 2 * i, h)) / np.sqrt(h)).astype(np.float32)
    w2 = (rng.standard_normal((e, h, i)) / np.sqrt(i)).astype(np.float32)
    kept = np.where(ids >= 0, ids, 0)
    expected = np.zeros((m, h))
    for t in range(m):
        for j in range(k):
            if ids[t, j] < 0:
                continue
            hidden = ref.activation(x[t:t + 1].astype(np.float64) @ w13[kept[t, j]].T.astype(np.float64),
                                    "silu_and_mul")
            expected[t] += weights[t, j] * (hidden @ w2[kept[t, j]].T.astype(np.float64))[0]
    for realization in ["allgather", "all_to_all"]:
        args = [f"--ep-ranks={ranks}", f"--ep-realization={realization}"]
        result = run_program(tmp_path / realization, ir, "experts", [x, ids, weights, w13, w2], 1,
                             extra_args=args)
        assert result.returncode == 0, result.stderr
        assert relative_l2(result.outputs[0], expected) < TOLERANCE["f32"]
    ids[5, 0] = e
    result = run_program(tmp_path / "bad", ir, "experts", [x, ids, weights, w13, w2], 1,
                         extra_args=[f"--ep-ranks={ranks}"])
    assert result.returncode == 1
    assert f"moe.ep_dispatch: expert id {e} is outside [-1, {e})" in result.stderr

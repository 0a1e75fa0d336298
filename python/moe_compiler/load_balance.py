"""Expert-parallel load balance over routing traces.

A trace is the expert ids a router chose, `[M, k]` (id -1: no expert), as
an array or a `.npy` file. From it this module computes:

- per-expert loads (assignments) and, for a placement of the experts on
  ranks, per-rank loads and the imbalance max / mean;
- the step time of expert parallelism: every rank waits for the slowest, so
  step = max over ranks of (rank load x cost per assignment) + a fixed cost;
- the assignments a capacity factor drops (each expert takes at most
  ceil(factor x M k / E) of them);
- a placement plan in the manner of DeepSeek's EPLB: the hottest experts
  get replicas in the spare slots (a replicated expert's load is shared
  evenly), then experts go, heaviest first, to the least-loaded rank with a
  free slot.

    python -m moe_compiler.load_balance --trace ids.npy --experts 256 --ranks 8
    python -m moe_compiler.load_balance --generate hot --experts 64 --ranks 8

The plan is JSON: `{"ranks": R, "slots": [[expert, ...] per rank]}`, the
input an expert-parallel pass takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib

import numpy as np

#: Per-assignment cost of our bf16 expert block on an H200 (Mixtral,
#: M = 4096, k = 2: 4934 us for 8192 assignments; docs/gpu-benchmark.md,
#: results/gpu-bench-persistent-2026-12-02-h200.log), in microseconds.
MIXTRAL_US_PER_ASSIGNMENT = 4934.0 / 8192


def expert_loads(ids: np.ndarray, num_experts: int) -> np.ndarray:
    """Assignments per expert; ids outside [0, E) (e.g. -1) count for none."""
    flat = np.asarray(ids).reshape(-1)
    valid = flat[(flat >= 0) & (flat < num_experts)]
    return np.bincount(valid, minlength=num_experts).astype(np.int64)


def contiguous_placement(num_experts: int, ranks: int) -> list[list[int]]:
    """Experts 0..E-1 in equal contiguous blocks: the default EP layout."""
    if num_experts % ranks:
        raise ValueError(f"{num_experts} experts do not split over {ranks} ranks")
    per_rank = num_experts // ranks
    return [list(range(r * per_rank, (r + 1) * per_rank)) for r in range(ranks)]


def rank_loads(loads: np.ndarray, slots: list[list[int]]) -> np.ndarray:
    """Assignments per rank for a placement (an expert on several ranks
    shares its load evenly among its replicas)."""
    replicas = np.zeros(len(loads), dtype=np.int64)
    for rank_slots in slots:
        for expert in rank_slots:
            replicas[expert] += 1
    if np.any((replicas == 0) & (loads > 0)):
        missing = np.nonzero((replicas == 0) & (loads > 0))[0].tolist()
        raise ValueError(f"experts {missing} have load and no slot")
    share = np.divide(loads, replicas, out=np.zeros(len(loads)), where=replicas > 0)
    return np.array([sum(share[e] for e in rank_slots) for rank_slots in slots])


def imbalance(loads: np.ndarray) -> float:
    """max / mean of a load vector (1: perfectly balanced)."""
    mean = float(np.mean(loads))
    return float(np.max(loads)) / mean if mean > 0 else 1.0


def step_time(per_rank: np.ndarray, us_per_assignment: float = MIXTRAL_US_PER_ASSIGNMENT,
              fixed_us: float = 0.0) -> float:
    """The EP step time in us: the slowest rank's work plus a fixed cost."""
    return float(np.max(per_rank)) * us_per_assignment + fixed_us


def capacity_drops(loads: np.ndarray, capacity_factor: float) -> tuple[int, int]:
    """(capacity per expert, assignments dropped) for a capacity factor."""
    total = int(np.sum(loads))
    capacity = math.ceil(capacity_factor * total / len(loads))
    return capacity, int(np.sum(np.maximum(loads - capacity, 0)))


def plan_placement(loads: np.ndarray, ranks: int, slots_per_rank: int) -> list[list[int]]:
    """An EPLB-style placement of E experts into ranks x slots_per_rank
    slots: spare slots hold replicas of the experts with the most load per
    replica, then experts (each replica a unit of load / replicas) go,
    heaviest first, to the least-loaded rank that has a free slot and does
    not hold that expert yet."""
    num_experts = len(loads)
    total_slots = ranks * slots_per_rank
    if total_slots < num_experts:
        raise ValueError(f"{total_slots} slots cannot hold {num_experts} experts")
    replicas = np.ones(num_experts, dtype=np.int64)
    for _ in range(total_slots - num_experts):
        per_replica = loads / replicas
        hottest = int(np.argmax(per_replica))
        if replicas[hottest] >= ranks:  # one replica per rank at most
            per_replica[replicas >= ranks] = -1
            hottest = int(np.argmax(per_replica))
            if per_replica[hottest] < 0:
                break
        replicas[hottest] += 1
    units = [(loads[e] / replicas[e], e) for e in range(num_experts) for _ in range(replicas[e])]
    units.sort(key=lambda unit: (-unit[0], unit[1]))
    slots: list[list[int]] = [[] for _ in range(ranks)]
    weight = np.zeros(ranks)
    for load, expert in units:
        candidates = [r for r in range(ranks)
                      if len(slots[r]) < slots_per_rank and expert not in slots[r]]
        rank = min(candidates, key=lambda r: (weight[r], r))
        slots[rank].append(expert)
        weight[rank] += load
    return slots


def generate_trace(kind: str, num_tokens: int, num_experts: int, k: int,
                   seed: int = 0, hot_fraction: float = 0.5) -> np.ndarray:
    """A synthetic routing trace [M, k] of distinct experts per token:
    `uniform`; `zipf` (expert popularity ~ 1 / rank^1.1); `hot` (the first
    E / 8 experts, one rank's worth at 8 ranks, carry `hot_fraction` of the
    routing mass, the rest share the remainder)."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        weights = np.ones(num_experts)
    elif kind == "zipf":
        weights = 1.0 / np.arange(1, num_experts + 1) ** 1.1
    elif kind == "hot":
        hot = max(1, num_experts // 8)
        weights = np.full(num_experts, (1 - hot_fraction) / (num_experts - hot))
        weights[:hot] = hot_fraction / hot
    else:
        raise ValueError(f"unknown trace kind {kind!r}")
    weights = weights / weights.sum()
    ids = np.empty((num_tokens, k), dtype=np.int32)
    for token in range(num_tokens):
        ids[token] = rng.choice(num_experts, size=k, replace=False, p=weights)
    return ids


@dataclasses.dataclass
class Report:
    """What the tool prints for one trace and placement."""

    assignments: int
    expert_imbalance: float
    rank_imbalance: float
    step_us: float
    ideal_step_us: float
    capacity: int
    dropped: int

    def lines(self, label: str) -> list[str]:
        return [f"{label}: {self.assignments} assignments, expert max/mean "
                f"{self.expert_imbalance:.2f}, rank max/mean {self.rank_imbalance:.2f}, "
                f"step {self.step_us:.1f} us (balanced {self.ideal_step_us:.1f} us, "
                f"{self.step_us / self.ideal_step_us:.2f}x)",
                f"  capacity {self.capacity} per expert: {self.dropped} assignments dropped"]


def report(loads: np.ndarray, slots: list[list[int]], capacity_factor: float,
           us_per_assignment: float) -> Report:
    per_rank = rank_loads(loads, slots)
    capacity, dropped = capacity_drops(loads, capacity_factor)
    ideal = np.full(len(slots), loads.sum() / len(slots))
    return Report(int(loads.sum()), imbalance(loads), imbalance(per_rank),
                  step_time(per_rank, us_per_assignment),
                  step_time(ideal, us_per_assignment), capacity, dropped)


def plot_loads(path: pathlib.Path, before: np.ndarray, after: np.ndarray, title: str) -> None:
    """Bar charts of per-rank loads before and after placement (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
    for axis, loads, label in ((axes[0], before, "contiguous"), (axes[1], after, "plan")):
        axis.bar(range(len(loads)), loads)
        axis.axhline(np.mean(loads), color="black", linestyle="--", linewidth=1)
        axis.set_title(f"{label}: max/mean {imbalance(loads):.2f}")
        axis.set_xlabel("rank")
    axes[0].set_ylabel("assignments")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=pathlib.Path, help="expert ids [M, k] (.npy)")
    source.add_argument("--generate", choices=("uniform", "zipf", "hot"))
    parser.add_argument("--experts", type=int, required=True)
    parser.add_argument("--ranks", type=int, required=True)
    parser.add_argument("--slots-per-rank", type=int,
                        help="expert slots per rank (default E / R + 1: one spare)")
    parser.add_argument("--tokens", type=int, default=4096, help="generated trace")
    parser.add_argument("--k", type=int, default=8, help="generated trace")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capacity-factor", type=float, default=1.25)
    parser.add_argument("--us-per-assignment", type=float, default=MIXTRAL_US_PER_ASSIGNMENT)
    parser.add_argument("--plan", type=pathlib.Path, help="write the placement (JSON)")
    parser.add_argument("--plot", type=pathlib.Path, help="per-rank loads (PNG)")
    args = parser.parse_args(argv)
    if args.trace:
        try:
            ids = np.load(args.trace)
        except (OSError, ValueError) as error:
            parser.error(f"cannot read {args.trace}: {error}")
    else:
        ids = generate_trace(args.generate, args.tokens, args.experts, args.k, args.seed)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        parser.error(f"a trace is an integer array [M, k], got {ids.dtype} {ids.shape}")
    if args.ranks < 1 or args.experts % args.ranks:
        parser.error(f"{args.experts} experts do not split over {args.ranks} ranks")
    loads = expert_loads(ids, args.experts)
    slots_per_rank = args.slots_per_rank or args.experts // args.ranks + 1
    if slots_per_rank * args.ranks < args.experts:
        parser.error(f"{args.ranks} x {slots_per_rank} slots cannot hold {args.experts} experts")
    contiguous = contiguous_placement(args.experts, args.ranks)
    plan = plan_placement(loads, args.ranks, slots_per_rank)
    print("\n".join(report(loads, contiguous, args.capacity_factor,
                           args.us_per_assignment).lines("contiguous")))
    print("\n".join(report(loads, plan, args.capacity_factor,
                           args.us_per_assignment).lines(f"plan ({slots_per_rank} slots/rank)")))
    if args.plan:
        args.plan.write_text(json.dumps({"ranks": args.ranks, "slots": plan}) + "\n")
    if args.plot:
        plot_loads(args.plot, rank_loads(loads, contiguous), rank_loads(loads, plan),
                   f"{args.experts} experts, {args.ranks} ranks, {ids.shape[0]} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

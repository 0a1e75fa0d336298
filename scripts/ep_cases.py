"""Writes the cases of bench/gpu_ep_check.py (called by gpu-ep-layers.sh).

    python3 scripts/ep_cases.py OUT MOE_RUN "SHAPE NAME RANKS PLACEMENT"...

For every case: fresh random inputs (.npy; one set of weights per shape,
shared by its cases) for 64 and 5 tokens per rank, and the output of
moe-run's CPU lowering of the same rank programs on them (moe-run
--ep-ranks, emulated collectives), which the GPU must match. Writes
OUT/data and OUT/ep.json.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

import ml_dtypes
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
from moe_compiler import configs  # noqa: E402

TOKENS_PER_RANK = (64, 5)


def bf16(array: np.ndarray) -> np.ndarray:
    return array.astype(ml_dtypes.bfloat16)


def save_weights(out: pathlib.Path, shape: str, config, generator) -> pathlib.Path:
    data = out / "data" / shape
    data.mkdir(parents=True, exist_ok=True)
    e, h, i = config.num_experts, config.hidden, config.intermediate
    arrays = {"w_gate": generator.standard_normal((e, h)) / math.sqrt(h),
              "w13": generator.standard_normal((e, 2 * i, h)) / math.sqrt(h),
              "w2": generator.standard_normal((e, h, i)) / math.sqrt(i)}
    for name, array in arrays.items():
        np.save(data / f"{name}.npy", bf16(array))
    return data


def placement_slots(placement: str, ranks: int, num_experts: int) -> list[list[int]]:
    """Rank r's experts: the contiguous placement of moe-expert-parallel, or
    a plan's."""
    if placement != "contiguous":
        return json.loads(pathlib.Path(placement).read_text())["slots"]
    per_rank = math.ceil(num_experts / ranks)
    return [[(r * per_rank + j) % num_experts for j in range(per_rank)] for r in range(ranks)]


def main() -> int:
    out, moe_run = pathlib.Path(sys.argv[1]), sys.argv[2]
    generator = np.random.default_rng()
    weights: dict[str, pathlib.Path] = {}
    entries = []
    for case in sys.argv[3:]:
        shape, name, ranks, placement = case.split(" ", 3)
        ranks = int(ranks)
        config = configs.scaled_example(getattr(configs, shape.upper()))
        if shape not in weights:
            weights[shape] = save_weights(out, shape, config, generator)
        for tokens in TOKENS_PER_RANK:
            case_dir = out / "data" / f"{name}_m{tokens}"
            case_dir.mkdir(parents=True, exist_ok=True)
            x = generator.standard_normal((ranks * tokens, config.hidden))
            np.save(case_dir / "x.npy", bf16(x))
            inputs = [case_dir / "x.npy"] + [weights[shape] / f"{n}.npy"
                                             for n in ("w_gate", "w13", "w2")]
            subprocess.run([moe_run, str(REPO / "examples" / "scaled" / f"{shape}.mlir"),
                            "--target=cpu", f"--entry={shape}", f"--ep-ranks={ranks}",
                            "--ep-realization=allgather", f"--ep-placement={placement}",
                            *[f"--input={path}" for path in inputs],
                            f"--output={case_dir / 'cpu.npy'}"], check=True)
            entries.append({
                "name": name, "reference": f"{shape}_single", "ranks": ranks,
                "slots": placement_slots(placement, ranks, config.num_experts),
                "tokens_per_rank": tokens,
                "inputs": [str(path.relative_to(out)) for path in inputs],
                "cpu_output": str((case_dir / "cpu.npy").relative_to(out)),
                "config": {"num_experts": config.num_experts, "hidden": config.hidden,
                           "intermediate": config.intermediate, "k": config.k,
                           "scoring": config.scoring, "renormalize": config.renormalize,
                           "activation": config.activation}})
    (out / "ep.json").write_text(json.dumps(entries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

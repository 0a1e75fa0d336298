"""Runs moe-run from tests: writes a program and its inputs, reads results."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess

import ml_dtypes
import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

IR_DTYPES = {"f32": np.float32, "bf16": ml_dtypes.bfloat16, "i32": np.int32}


def moe_run_path() -> pathlib.Path:
    build_dir = pathlib.Path(os.environ.get("MOE_BUILD_DIR", REPO_ROOT / "build"))
    path = build_dir / "bin" / "moe-run"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build first with scripts/build.sh")
    return path


@dataclasses.dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    outputs: list[np.ndarray]


def run_program(tmp_path: pathlib.Path, ir: str, entry: str, inputs, num_outputs: int,
                extra_args=(), output_dtypes=None) -> RunResult:
    """Runs `entry` of `ir` on `inputs` (NumPy arrays) and loads its results.

    `output_dtypes` names the IR element type of each result ("bf16" results
    come back as ml_dtypes.bfloat16)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    program = tmp_path / "program.mlir"
    program.write_text(ir)
    args = [str(moe_run_path()), str(program), f"--entry={entry}", "--target=cpu"]
    for index, array in enumerate(inputs):
        path = tmp_path / f"in{index}.npy"
        np.save(path, array)
        args.append(f"--input={path}")
    outputs = [tmp_path / f"out{index}.npy" for index in range(num_outputs)]
    args += [f"--output={path}" for path in outputs]
    args += list(extra_args)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    loaded = []
    if proc.returncode == 0:
        for index, path in enumerate(outputs):
            array = np.load(path)
            if output_dtypes and output_dtypes[index] == "bf16":
                array = array.view(ml_dtypes.bfloat16)
            loaded.append(array)
    return RunResult(proc.returncode, proc.stdout, proc.stderr, loaded)


def relative_l2(ours, expected) -> float:
    ours = np.asarray(ours, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    norm = np.linalg.norm(expected.ravel())
    diff = np.linalg.norm((ours - expected).ravel())
    return float(diff / norm) if norm else float(diff)


TOLERANCE = {"f32": 1e-5, "bf16": 1e-2}

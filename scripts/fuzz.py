#!/usr/bin/env python3
"""Mutation fuzzer of moe's tools (issue 13): no crash, abort, LLVM ERROR or
hang on any input.

Takes the example layers and the lit inputs, mutates their text (integers
to boundary values, tensor dimensions to ?, 0, 1 or huge, lines dropped or
duplicated, enum keywords swapped), and runs each mutant through the stages
a user runs: parse and verify, --moe-optimize, --moe-cpu-pipeline,
moe-compile (no GPU needed) and moe-run on random inputs at a tiny M. A
stage may reject a mutant (a diagnostic and exit 1); it may not die by a
signal, print an LLVM ERROR or a stack dump, or outrun its timeout. Each
process runs under an address-space limit, so that an unchecked huge
allocation fails instead of swapping.

    python3 scripts/fuzz.py --mutants 2000 --seed 1            # CI's run
    python3 scripts/fuzz.py --mutants 10000 --seed 7 --jobs 8  # longer, local

Failing mutants are written to --crashes (default build/fuzz-crashes) with
the stage and its output; keep each as a regression input under
test/Regression/Fuzz once fixed. Exit status: 0 when no mutant failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import random
import re
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BOUNDARY_INTEGERS = ["0", "1", "-1", "2", "3", "7", "64", "127", "128", "4097", "65537",
                     "2147483647", "2147483648", "1099511627776", "9223372036854775807"]
DIMENSIONS = ["?", "0", "1", "3", "1099511627776"]
KEYWORDS = [("softmax", "sigmoid"), ("sigmoid", "topk_softmax"), ("silu_and_mul", "swiglu"),
            ("per_token_channel", "per_tensor"), ("per_tensor", "block"), ("fp8", "int8"),
            ("int4_weight", "mxfp4"), ("bf16", "f32"), ("f32", "f16"), ("gather", "unpermute"),
            ("renormalize", "gather"), ("i32", "i64")]
FAILURE_MARKERS = ("LLVM ERROR", "Stack dump", "PLEASE submit a bug report", "Assertion",
                   "terminate called", "Segmentation fault", "AddressSanitizer")
# Largest inputs moe-run fills at random for a mutant (64 MB of f32).
MAX_RUN_ELEMENTS = 1 << 24
ABSURD_ELEMENTS = 1 << 40
INTEGER = re.compile(r"(?<![\w.#%@])-?\d+(?![\w.])")
TENSOR_DIM = re.compile(r"(?<=[<x])(\?|\d+)(?=x)")


def seeds(paths) -> list[str]:
    texts = []
    for path in paths:
        text = path.read_text()
        # One function per mutant source: split lit files at their markers.
        texts.extend(part for part in text.split("// -----") if "func.func" in part)
    return texts


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(5)
        if choice == 0:
            spans = [m.span() for m in INTEGER.finditer(text)]
            if spans:
                start, end = rng.choice(spans)
                text = text[:start] + rng.choice(BOUNDARY_INTEGERS) + text[end:]
        elif choice == 1:
            spans = [m.span() for m in TENSOR_DIM.finditer(text)]
            if spans:
                start, end = rng.choice(spans)
                text = text[:start] + rng.choice(DIMENSIONS) + text[end:]
        elif choice == 2:
            old, new = rng.choice(KEYWORDS)
            if rng.random() < 0.5:
                old, new = new, old
            positions = [m.start() for m in re.finditer(re.escape(old), text)]
            if positions:
                at = rng.choice(positions)
                text = text[:at] + new + text[at + len(old):]
        else:
            lines = text.split("\n")
            body = [i for i, line in enumerate(lines) if line.strip() and
                    not line.lstrip().startswith("//")]
            if body:
                index = rng.choice(body)
                if choice == 3:
                    del lines[index]
                else:
                    lines.insert(index, lines[index])
            text = "\n".join(lines)
    return text


def limit_memory(megabytes: int):
    def apply():
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run(command, timeout: float, memory_mb: int):
    """(failure reason or None, output) of one stage."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace",
                                timeout=timeout, preexec_fn=limit_memory(memory_mb))
    except subprocess.TimeoutExpired:
        return f"hang (> {timeout:.0f} s)", ""
    output = result.stdout[-4000:] + result.stderr[-4000:]
    if result.returncode < 0:
        return f"signal {-result.returncode}", output
    for marker in FAILURE_MARKERS:
        if marker in result.stderr:
            return marker, output
    if result.returncode not in (0, 1):
        return f"exit {result.returncode}", output
    return None, output if result.returncode else ""


def entry_of(text: str) -> str | None:
    match = re.search(r"func\.func @([\w$.]+)", text)
    return match.group(1) if match else None


def argument_elements(text: str) -> int:
    """Elements of the entry's tensor arguments, dynamic sizes counted as 3
    (moe-run fills them with random values)."""
    signature = re.search(r"func\.func @[\w$.]+\(([^)]*)\)", text)
    total = 0
    for shape in re.findall(r"tensor<([^>]*)>", signature.group(1) if signature else ""):
        count = 1
        for dim in shape.split("x")[:-1]:
            count *= 3 if dim == "?" else int(dim) if dim.isdigit() else 1
        total += count
    return total


def stages(bin_dir: pathlib.Path, source: pathlib.Path, work: pathlib.Path, text: str,
           compile_too: bool):
    opt = str(bin_dir / "moe-opt")
    yield "verify", [opt, str(source)]
    yield "optimize", [opt, str(source), "--moe-optimize=num-tokens=4"]
    yield "cpu-pipeline", [opt, str(source), "--moe-cpu-pipeline=fuse=1 num-tokens=4"]
    if compile_too:
        yield "moe-compile", [str(bin_dir / "moe-compile"), str(source), "-o", str(work / "out"),
                              "--num-tokens", "4"]
    entry = entry_of(text)
    # Real full-size layers (GBs of weights) take minutes to fill and run:
    # skipped. Absurd sizes (past 2^40) must fail cleanly, and fast.
    elements = argument_elements(text)
    if entry and (elements <= MAX_RUN_ELEMENTS or elements > ABSURD_ELEMENTS):
        yield "moe-run", [str(bin_dir / "moe-run"), str(source), f"--entry={entry}",
                          "--target=cpu", "--random", "--seed=1", "--num-tokens=3", "--fuse"]


def fuzz_one(args, index: int, text: str):
    """[(stage, reason, output)] of the failures of one mutant."""
    with tempfile.TemporaryDirectory() as directory:
        work = pathlib.Path(directory)
        source = work / f"mutant{index}.mlir"
        source.write_text(text)
        failures = []
        compile_too = index % args.compile_every == 0
        verified = False
        for stage, command in stages(args.bin_dir, source, work, text, compile_too):
            reason, output = run(command, args.timeout, args.memory_mb)
            if reason:
                failures.append((stage, reason, output))
            elif stage == "verify":
                if output:
                    break  # rejected with a diagnostic: the later stages would too
                verified = True
        return failures, verified


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per stage")
    parser.add_argument("--memory-mb", type=int, default=4096, help="address space per process")
    parser.add_argument("--compile-every", type=int, default=8,
                        help="run moe-compile on every N-th mutant (it assembles with ptxas)")
    parser.add_argument("--bin-dir", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("MOE_BUILD_DIR", REPO / "build")) / "bin")
    parser.add_argument("--crashes", type=pathlib.Path, default=REPO / "build" / "fuzz-crashes")
    args = parser.parse_args()
    for tool in ("moe-opt", "moe-run", "moe-compile"):
        if not (args.bin_dir / tool).exists():
            print(f"fuzz: error: {args.bin_dir / tool} not found (build first)", file=sys.stderr)
            return 2
    inputs = sorted((REPO / "examples" / "scaled").glob("*.mlir")) + \
        sorted((REPO / "examples" / "quantized" / "scaled").glob("*.mlir")) + \
        sorted(p for p in (REPO / "test" / "Dialect").rglob("*.mlir")
               if p.name != "invalid.mlir") + \
        sorted((REPO / "test" / "Conversion" / "MoeToLinalg").glob("*.mlir"))
    sources = seeds(inputs)
    rng = random.Random(args.seed)
    mutants = [mutate(rng.choice(sources), rng) for _ in range(args.mutants)]
    start = time.time()
    failed = verified = 0
    by_reason: dict[str, int] = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(fuzz_one, args, i, text): i for i, text in enumerate(mutants)}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            failures, valid = future.result()
            verified += valid
            if not failures:
                continue
            failed += 1
            args.crashes.mkdir(parents=True, exist_ok=True)
            (args.crashes / f"mutant{index}.mlir").write_text(mutants[index])
            report = "".join(f"== {stage}: {reason}\n{output}\n" for stage, reason, output in failures)
            (args.crashes / f"mutant{index}.txt").write_text(report)
            for stage, reason, _ in failures:
                key = f"{stage}: {reason}"
                by_reason[key] = by_reason.get(key, 0) + 1
                print(f"FAIL mutant {index}: {key}", flush=True)
    elapsed = time.time() - start
    print(f"fuzz: {args.mutants} mutants (seed {args.seed}) from {len(sources)} functions in "
          f"{elapsed:.0f} s: {verified} verified and went through every stage, {failed} failed")
    for key, count in sorted(by_reason.items()):
        print(f"  {count:5d}  {key}")
    if failed:
        print(f"fuzz: failing mutants and their output in {args.crashes}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

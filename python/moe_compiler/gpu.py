"""Compile a moe layer for the GPU from Python, and call it on torch tensors.

    from moe_compiler import gpu
    layer = gpu.compile("examples/mixtral_8x7b.mlir", num_tokens=256)
    out = layer(x, w_gate, w13, w2)       # CUDA tensors, on the current stream

`compile` runs `moe-compile` (the installed tool: `moe_compile=`, the
`MOE_COMPILE` variable, or `PATH`) and builds the host code it writes into a
shared library against the installed runtime (`<prefix>/include`,
`<prefix>/lib/libmoe_runtime.so` beside `<prefix>/bin/moe-compile`). It
needs no GPU. Libraries are cached on disk (`cache_dir=`, `MOE_CACHE_DIR`,
else `~/.cache/moe`) under a key of the IR, the options and the tool.

Calling a `Layer` needs PyTorch and a GPU: it checks each tensor's device,
dtype, shape and contiguity against the layer's signature, runs on
`torch.cuda.current_stream()`, and keeps one workspace per stream, so
threads that call one layer on their own streams do not share scratch
memory. A stream's workspace is allocated at the largest size any stream of
the device needed so far, and grows at least twofold; one it outgrows is
kept, not freed, since a captured CUDA graph may still use it. The first
call on a device loads the kernels, and warms a workspace up to its token
count: make it, at the largest token count, before capturing a graph.
Otherwise a call allocates only its result.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from typing import Sequence

__all__ = ["CompileError", "Layer", "TOKEN_BUCKETS", "TensorSpec", "compile", "fused_moe",
           "fused_moe_bucket",
           "fused_moe_ir"]

#: Bumped when the cache layout or the build of a library changes.
_CACHE_VERSION = "1"

_DTYPES = {
    "bf16": "bfloat16",
    "f16": "float16",
    "f32": "float32",
    "i32": "int32",
    "i64": "int64",
    "i8": "int8",
    "f8E4M3FN": "float8_e4m3fn",
}


class CompileError(RuntimeError):
    """moe-compile, the runtime or the C++ compiler could not be found or
    failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One tensor parameter: its shape (None for the token count) and the
    name of its torch dtype."""

    shape: tuple[int | None, ...]
    dtype: str


def _find_moe_compile(explicit: str | os.PathLike | None) -> pathlib.Path:
    candidate = explicit or os.environ.get("MOE_COMPILE") or shutil.which("moe-compile")
    if not candidate:
        raise CompileError(
            "moe-compile not found: pass moe_compile=, set MOE_COMPILE, or put "
            "the installed tool (cmake --install) on PATH")
    path = pathlib.Path(candidate).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise CompileError(f"moe-compile not found at {path}")
    return path


def _runtime_dirs(moe_compile: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The runtime's include and library directories of the installed tree
    that holds `moe_compile` (or MOE_RUNTIME_INCLUDE / MOE_RUNTIME_LIB)."""
    prefix = moe_compile.parent.parent
    include = pathlib.Path(os.environ.get("MOE_RUNTIME_INCLUDE", prefix / "include"))
    lib = pathlib.Path(os.environ.get("MOE_RUNTIME_LIB", prefix / "lib"))
    if not (include / "moe" / "Runtime" / "Runtime.h").is_file():
        raise CompileError(
            f"no moe/Runtime/Runtime.h under {include}: use the moe-compile of an "
            "installed tree (cmake --install), or set MOE_RUNTIME_INCLUDE")
    if not (lib / "libmoe_runtime.so").is_file():
        raise CompileError(
            f"no libmoe_runtime.so in {lib}: moe was installed without the CUDA "
            "toolkit, or set MOE_RUNTIME_LIB")
    return include, lib


def _cuda_home() -> pathlib.Path:
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                      "/usr/local/cuda"):
        if candidate and (pathlib.Path(candidate) / "include" / "cuda.h").is_file():
            return pathlib.Path(candidate)
    raise CompileError("the CUDA toolkit (include/cuda.h) was not found: set CUDA_HOME")


def parse_signature(host_ir: str, name: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The input and result tensors of `moe_layer_<name>` in the host IR
    that `moe-compile --kernels` writes."""
    header = re.search(rf"func\.func @moe_layer_{re.escape(name)}\((.*?)\)\s*attributes",
                       host_ir)
    if not header:
        raise CompileError(f"no host function moe_layer_{name} in the host IR")
    if "!moe_gpu.group" in header.group(1):
        raise CompileError(
            f"moe_layer_{name} is the program of one expert-parallel rank and takes a "
            "moe_rt_group, which this front end does not pass yet: call its C entry point "
            "(docs/expert-parallel.md, GPU execution)")
    inputs, results = [], []
    for match in re.finditer(r"%\w+: memref<([^>]*)>(?: \{moe_gpu\.(result|workspace)\})?",
                             header.group(1)):
        if match.group(2) == "workspace":
            continue
        *dims, element = match.group(1).split("x")
        if element not in _DTYPES:
            raise CompileError(f"unsupported element type {element} in the layer's signature")
        spec = TensorSpec(tuple(None if d == "?" else int(d) for d in dims), _DTYPES[element])
        (results if match.group(2) == "result" else inputs).append(spec)
    return inputs, results


def _cache_key(text: str, options: Sequence[str], tool: pathlib.Path) -> str:
    digest = hashlib.sha256()
    stat = tool.stat()
    for part in (_CACHE_VERSION, text, *options, str(tool), str(stat.st_size),
                 str(stat.st_mtime_ns)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise CompileError(f"{what} failed ({result.returncode}):\n{result.stderr.strip()}")


def compile(ir: str | os.PathLike, *, name: str = "layer", num_tokens: int = 256,
            token_buckets: Sequence[int] | None = None,
            entry: str | None = None, flags: Sequence[str] = (),
            moe_compile: str | os.PathLike | None = None,
            cache_dir: str | os.PathLike | None = None) -> "Layer":
    """Compiles the layer of `ir` (a path to a .mlir file, or IR text) for
    Hopper, tiled for `num_tokens` tokens (it runs any count), into a
    library, or takes it from the cache. With `token_buckets`, the one
    library holds a variant tiled for each bucket and runs each call on the
    smallest bucket at least its token count (the largest above them all;
    `num_tokens` is then unused). `entry` picks the function of a file with
    several; `flags` are more moe-compile options."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a C identifier, got {name!r}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be positive, got {num_tokens}")
    # The host function whose signature the layer has: the largest
    # variant's, with buckets.
    signature_name = name
    tiling = ["--num-tokens", str(num_tokens)]
    if token_buckets is not None:
        buckets = sorted({int(bucket) for bucket in token_buckets})
        if not buckets or buckets[0] < 1:
            raise ValueError(f"token_buckets must be positive counts, got {token_buckets!r}")
        signature_name = f"{name}_m{buckets[-1]}"
        tiling = ["--token-buckets", ",".join(map(str, buckets))]
    looks_like_ir = isinstance(ir, str) and ("func.func" in ir or "\n" in ir)
    text = ir if looks_like_ir else pathlib.Path(ir).read_text()
    tool = _find_moe_compile(moe_compile)
    include, lib = _runtime_dirs(tool)
    cuda = _cuda_home()
    options = ["--name", name, *tiling, *flags]
    if entry:
        options += ["--entry", entry]
    root = pathlib.Path(cache_dir or os.environ.get("MOE_CACHE_DIR")
                        or pathlib.Path.home() / ".cache" / "moe")
    target = root / _cache_key(text, options, tool)
    library = target / f"libmoe_layer_{name}.so"
    if library.is_file():
        return Layer(library, name,
                     *parse_signature((target / "host.mlir").read_text(), signature_name),
                     from_cache=True)
    root.mkdir(parents=True, exist_ok=True)
    # Built aside, then renamed into place: a cache entry is whole or absent.
    work = pathlib.Path(tempfile.mkdtemp(dir=root, prefix="build-"))
    try:
        (work / "layer.mlir").write_text(text)
        _run([str(tool), str(work / "layer.mlir"), "-o", str(work),
              "--kernels", str(work / "host.mlir"), *options], "moe-compile")
        _run(["c++", "-O2", "-std=c++17", "-shared", "-fPIC", str(work / f"{name}.cpp"),
              "-I", str(work), "-I", str(include), "-I", str(cuda / "include"),
              "-L", str(lib), "-lmoe_runtime", f"-Wl,-rpath,{lib}",
              "-L", str(cuda / "lib64" / "stubs"), "-lcuda",
              "-o", str(work / library.name)], "building the host code")
        work.rename(target)
    except OSError:
        # Another process may have finished the same entry first.
        if not library.is_file():
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Layer(library, name,
                 *parse_signature((target / "host.mlir").read_text(), signature_name))


class Layer:
    """A compiled layer: `layer(*inputs)` runs it on torch CUDA tensors and
    returns its result (or the tuple of its results)."""

    def __init__(self, library: pathlib.Path, name: str, inputs: list[TensorSpec],
                 results: list[TensorSpec], from_cache: bool = False):
        self.library = library
        self.name = name
        self.inputs = inputs
        self.results = results
        self.from_cache = from_cache
        self._functions = None
        # (device index, stream handle) -> uint8 tensor: calls on two streams
        # may overlap, so each stream has its own scratch memory.
        self._workspaces: dict[tuple[int, int], object] = {}
        # Per device, the largest workspace so far (new streams start there),
        # and the outgrown ones, which a captured graph may still read.
        self._largest: dict[int, int] = {}
        self._outgrown: list[object] = []

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, inputs={self.inputs}, results={self.results})"

    def _load(self):
        if self._functions is None:
            try:
                handle = ctypes.CDLL(str(self.library))
            except OSError as error:
                raise RuntimeError(f"cannot load {self.library} (is there a CUDA driver?): "
                                   f"{error}") from error
            run = getattr(handle, f"moe_layer_{self.name}")
            run.restype = ctypes.c_int32
            run.argtypes = ([ctypes.c_void_p] * (len(self.inputs) + len(self.results))
                            + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t,
                               ctypes.c_void_p])
            workspace_bytes = getattr(handle, f"moe_layer_{self.name}_workspace_bytes")
            workspace_bytes.restype = ctypes.c_size_t
            workspace_bytes.argtypes = [ctypes.c_int64]
            handle.moe_rt_last_error.restype = ctypes.c_char_p
            self._functions = (run, workspace_bytes, handle.moe_rt_last_error)
        return self._functions

    def check(self, tensors: Sequence[object]) -> int:
        """The token count of `tensors`, after checking them against the
        signature; a ValueError names the first mismatch."""
        import torch

        if len(tensors) != len(self.inputs):
            raise ValueError(f"{self.name} takes {len(self.inputs)} tensors, got {len(tensors)}")
        num_tokens = None
        for position, (tensor, spec) in enumerate(zip(tensors, self.inputs)):
            where = f"{self.name}: input {position}"
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cuda":
                raise ValueError(f"{where} must be a CUDA tensor")
            if tensor.dtype != getattr(torch, spec.dtype):
                raise ValueError(f"{where} must be {spec.dtype}, got {tensor.dtype}")
            if tensor.dim() != len(spec.shape):
                raise ValueError(f"{where} must have {len(spec.shape)} dimensions, "
                                 f"got shape {tuple(tensor.shape)}")
            for size, expected in zip(tensor.shape, spec.shape):
                if expected is None:
                    if num_tokens is None:
                        num_tokens = size
                    elif size != num_tokens:
                        raise ValueError(f"{where} has {size} tokens, the inputs before it "
                                         f"{num_tokens}")
                elif size != expected:
                    raise ValueError(f"{where} must have shape {spec.shape} (None: tokens), "
                                     f"got {tuple(tensor.shape)}")
            if not tensor.is_contiguous() or tensor.data_ptr() % 16:
                raise ValueError(f"{where} must be contiguous and 16-byte aligned")
            if tensor.device != tensors[0].device:
                raise ValueError(f"{where} is on {tensor.device}, input 0 on "
                                 f"{tensors[0].device}")
        return num_tokens or 0

    def __call__(self, *tensors):
        import torch

        num_tokens = self.check(tensors)
        run, workspace_bytes, last_error = self._load()
        device = tensors[0].device
        outputs = [torch.empty(tuple(num_tokens if d is None else d for d in spec.shape),
                               dtype=getattr(torch, spec.dtype), device=device)
                   for spec in self.results]
        needed = max(int(workspace_bytes(num_tokens)), 1)
        stream = torch.cuda.current_stream(device).cuda_stream
        key = (device.index, stream)
        workspace = self._workspaces.get(key)
        if workspace is None or workspace.numel() < needed:
            size = max(needed, self._largest.get(device.index, 0))
            if workspace is not None:
                size = max(size, 2 * workspace.numel())
                self._outgrown.append(workspace)
            workspace = torch.empty(size, dtype=torch.uint8, device=device)
            self._workspaces[key] = workspace
            self._largest[device.index] = size
        status = run(*[t.data_ptr() for t in tensors], *[o.data_ptr() for o in outputs],
                     num_tokens, workspace.data_ptr(), workspace.numel(), stream)
        if status != 0:
            raise RuntimeError(f"moe_layer_{self.name} failed ({status}): "
                               f"{last_error().decode(errors='replace')}")
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def fused_moe_ir(num_experts: int, hidden: int, intermediate: int, topk: int,
                 renormalize: bool, name: str = "fused_moe") -> str:
    """The layer vLLM's `fused_moe` computes, as moe IR: softmax top-k of the
    router logits [M, E] (renormalized if asked), then per expert
    silu(x w1_gate) * (x w1_up) w2, summed with the routing weights. w1 is
    [E, 2I, H] (gate rows, then up rows), w2 [E, H, I]."""
    from . import configs

    if min(num_experts, hidden, intermediate, topk) < 1 or topk > num_experts:
        raise ValueError(f"need 1 <= topk <= experts and positive sizes, got E={num_experts} "
                         f"H={hidden} I={intermediate} k={topk}")
    config = configs.LayerConfig(name, num_experts, topk, hidden, intermediate,
                                 renormalize=renormalize)
    return configs.logits_layer_mlir(config)


#: fused_moe's layers of this process, by `_fused_moe_key`: a call after the
#: first neither hashes IR nor reads the disk cache, and reuses the layer's
#: loaded kernels and workspaces. (A tool rebuilt while the process runs is
#: not noticed.)
_fused_moe_layers: dict[tuple, Layer] = {}


#: The token-count buckets of fused_moe's and hf.MoEBlock's libraries: one
#: library holds a variant tiled for each bucket.
TOKEN_BUCKETS = (1, 16, 64, 256, 1024, 4096)


def _fused_moe_key(num_experts: int, hidden: int, twice_intermediate: int, topk: int,
                   renormalize: bool, moe_compile, cache_dir) -> tuple:
    # The tool and cache as compile() would find them from the environment.
    return (num_experts, hidden, twice_intermediate, topk, bool(renormalize),
            str(moe_compile or os.environ.get("MOE_COMPILE")),
            str(cache_dir or os.environ.get("MOE_CACHE_DIR")))


def fused_moe_bucket(num_tokens: int) -> int:
    """The bucket whose variant a call of `num_tokens` tokens runs in a
    library compiled with TOKEN_BUCKETS: the smallest at or above it, else
    the largest."""
    return next((bucket for bucket in TOKEN_BUCKETS if bucket >= num_tokens),
                TOKEN_BUCKETS[-1])


def fused_moe(hidden_states, w1, w2, gating_output, topk: int, renormalize: bool, *,
              moe_compile: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None):
    """A drop-in for vLLM's `fused_moe(hidden_states, w1, w2, gating_output,
    topk, renormalize)` on bf16 tensors: compiles the layer for these shapes
    once per process, into one library for every token count (a variant per
    bucket of TOKEN_BUCKETS, see `fused_moe_bucket`), and runs it on the
    current stream."""
    _, hidden = hidden_states.shape
    num_experts, twice_intermediate, _ = w1.shape
    key = _fused_moe_key(num_experts, hidden, twice_intermediate, topk, renormalize,
                         moe_compile, cache_dir)
    layer = _fused_moe_layers.get(key)
    if layer is None:
        layer = compile(fused_moe_ir(num_experts, hidden, twice_intermediate // 2, topk,
                                     renormalize),
                        name="fused_moe", token_buckets=TOKEN_BUCKETS,
                        moe_compile=moe_compile, cache_dir=cache_dir)
        _fused_moe_layers[key] = layer
    return layer(hidden_states, gating_output.float().contiguous(), w1, w2)

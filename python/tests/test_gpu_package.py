"""moe_compiler.gpu without a GPU: signatures from host IR, argument checks,
and compiling a layer through the build's moe-compile into the cache."""

import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from moe_compiler import gpu

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("MOE_BUILD_DIR", REPO / "build"))
MOE_COMPILE = BUILD / "bin" / "moe-compile"
RUNTIME_LIB = BUILD / "runtime"

HOST_IR = """
module {
  func.func @moe_layer_block(%arg0: memref<?x128xbf16>, %arg1: memref<?x2xi32>, %arg2: memref<8x256x128xbf16>, %arg3: memref<?x128xbf16> {moe_gpu.result}, %arg4: index, %arg5: memref<?xi8> {moe_gpu.workspace}, %arg6: !moe_gpu.stream) attributes {moe_gpu.workspace_layout = @ws} {
    return
  }
}
"""


def test_signature_from_host_ir():
    inputs, results = gpu.parse_signature(HOST_IR, "block")
    assert inputs == [gpu.TensorSpec((None, 128), "bfloat16"),
                      gpu.TensorSpec((None, 2), "int32"),
                      gpu.TensorSpec((8, 256, 128), "bfloat16")]
    assert results == [gpu.TensorSpec((None, 128), "bfloat16")]


def test_signature_of_a_missing_layer():
    with pytest.raises(gpu.CompileError, match="no host function moe_layer_other"):
        gpu.parse_signature(HOST_IR, "other")


def test_signature_of_an_expert_parallel_rank():
    rank_ir = HOST_IR.replace("%arg6: !moe_gpu.stream",
                              "%arg6: !moe_gpu.group, %arg7: !moe_gpu.stream")
    with pytest.raises(gpu.CompileError, match="program of one expert-parallel rank and "
                                               "takes a moe_rt_group"):
        gpu.parse_signature(rank_ir, "block")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="C identifier"):
        gpu.compile("func.func @f() {\n}", name="not a name")
    with pytest.raises(ValueError, match="num_tokens must be positive"):
        gpu.compile("func.func @f() {\n}", num_tokens=0)
    with pytest.raises(gpu.CompileError, match="moe-compile not found"):
        gpu.compile("func.func @f() {\n}", moe_compile=tmp_path / "moe-compile")


def test_runtime_must_be_installed_beside_the_tool(tmp_path, monkeypatch):
    tool = tmp_path / "bin" / "moe-compile"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.delenv("MOE_RUNTIME_INCLUDE", raising=False)
    with pytest.raises(gpu.CompileError, match="no moe/Runtime/Runtime.h under"):
        gpu.compile("func.func @f() {\n}", moe_compile=tool, cache_dir=tmp_path)


needs_toolchain = pytest.mark.skipif(
    not (MOE_COMPILE.exists() and (RUNTIME_LIB / "libmoe_runtime.so").exists()
         and (shutil.which("ptxas") or pathlib.Path("/usr/local/cuda/bin/ptxas").exists())),
    reason="needs the build's moe-compile, its runtime and ptxas")


@needs_toolchain
def test_compile_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_RUNTIME_INCLUDE", str(REPO / "runtime" / "include"))
    monkeypatch.setenv("MOE_RUNTIME_LIB", str(RUNTIME_LIB))
    source = REPO / "examples" / "scaled" / "mixtral_8x7b.mlir"
    layer = gpu.compile(source, name="mixtral", num_tokens=64, moe_compile=MOE_COMPILE,
                        cache_dir=tmp_path)
    assert not layer.from_cache
    assert layer.library.is_file() and layer.library.parent.parent == tmp_path
    assert layer.inputs[0] == gpu.TensorSpec((None, 256), "bfloat16")
    assert layer.results == [gpu.TensorSpec((None, 256), "bfloat16")]
    # The same IR as text, the same options: the same entry, not rebuilt.
    again = gpu.compile(source.read_text(), name="mixtral", num_tokens=64,
                        moe_compile=MOE_COMPILE, cache_dir=tmp_path)
    assert again.from_cache and again.library == layer.library
    # Other options are another entry.
    other = gpu.compile(source, name="mixtral", num_tokens=4096, moe_compile=MOE_COMPILE,
                        cache_dir=tmp_path)
    assert not other.from_cache and other.library != layer.library
    # Nothing is left behind by the builds.
    assert not list(tmp_path.glob("build-*"))


@needs_toolchain
def test_compile_token_buckets_into_one_library(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_RUNTIME_INCLUDE", str(REPO / "runtime" / "include"))
    monkeypatch.setenv("MOE_RUNTIME_LIB", str(RUNTIME_LIB))
    source = REPO / "examples" / "scaled" / "mixtral_8x7b.mlir"
    layer = gpu.compile(source, name="mixtral", token_buckets=[64, 1], moe_compile=MOE_COMPILE,
                        cache_dir=tmp_path)
    assert layer.library.is_file()
    assert layer.inputs[0] == gpu.TensorSpec((None, 256), "bfloat16")
    assert layer.results == [gpu.TensorSpec((None, 256), "bfloat16")]
    # One dispatching entry point exported; the variants are the library's own.
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(layer.library)],
                             capture_output=True, text=True, check=True).stdout
    assert "moe_layer_mixtral\n" in symbols
    assert "moe_layer_mixtral_m1" not in symbols and "moe_layer_mixtral_m64" not in symbols
    with pytest.raises(ValueError, match="token_buckets must be positive"):
        gpu.compile(source, name="mixtral", token_buckets=[0, 64], cache_dir=tmp_path)


@needs_toolchain
def test_compile_error_names_the_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_RUNTIME_INCLUDE", str(REPO / "runtime" / "include"))
    monkeypatch.setenv("MOE_RUNTIME_LIB", str(RUNTIME_LIB))
    with pytest.raises(gpu.CompileError, match="moe-compile failed"):
        gpu.compile("func.func @f() {\n  return\n}", moe_compile=MOE_COMPILE,
                    cache_dir=tmp_path)
    # The failed build left nothing in the cache.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("renormalize", [False, True])
def test_fused_moe_ir_matches_the_oracle_on_the_cpu(tmp_path, renormalize):
    """The IR fused_moe compiles computes vLLM's fused_moe: top-k softmax of
    the given logits, silu_and_mul experts, weighted sum (float64 oracle)."""
    import ml_dtypes
    from moe_run import relative_l2, run_program

    from moe_compiler import reference

    rng = np.random.default_rng()
    m, e, h, i, k = 37, 8, 64, 32, 2
    bf16 = ml_dtypes.bfloat16
    x = rng.standard_normal((m, h)).astype(bf16)
    logits = rng.standard_normal((m, e)).astype(np.float32)
    w1 = (rng.standard_normal((e, 2 * i, h)) / 8).astype(bf16)
    w2 = (rng.standard_normal((e, h, i)) / 8).astype(bf16)
    result = run_program(tmp_path, gpu.fused_moe_ir(e, h, i, k, renormalize), "fused_moe",
                         [x, logits, w1, w2], 1, output_dtypes=["bf16"])
    assert result.returncode == 0, result.stderr
    weights, ids = reference.topk(logits, k, renormalize=renormalize)
    expected = np.zeros((m, h))
    for token in range(m):
        for choice in range(k):
            expert = ids[token, choice]
            gate_up = w1[expert].astype(np.float64) @ x[token].astype(np.float64)
            gate, up = gate_up[:i], gate_up[i:]
            hidden = gate / (1 + np.exp(-gate)) * up
            expected[token] += weights[token, choice] * (w2[expert].astype(np.float64) @ hidden)
    assert relative_l2(result.outputs[0], expected) < 1e-2


def test_fused_moe_ir_rejects_bad_sizes():
    with pytest.raises(ValueError, match="topk <= experts"):
        gpu.fused_moe_ir(4, 64, 32, 5, False)


@needs_toolchain
def test_fused_moe_ir_compiles_for_the_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_RUNTIME_INCLUDE", str(REPO / "runtime" / "include"))
    monkeypatch.setenv("MOE_RUNTIME_LIB", str(RUNTIME_LIB))
    layer = gpu.compile(gpu.fused_moe_ir(8, 256, 128, 2, True), name="fused_moe",
                        num_tokens=64, moe_compile=MOE_COMPILE, cache_dir=tmp_path)
    assert layer.inputs == [gpu.TensorSpec((None, 256), "bfloat16"),
                            gpu.TensorSpec((None, 8), "float32"),
                            gpu.TensorSpec((8, 256, 256), "bfloat16"),
                            gpu.TensorSpec((8, 256, 128), "bfloat16")]


def test_fused_moe_buckets():
    """A call runs the variant of the smallest bucket at or above M, else
    the largest."""
    assert gpu.TOKEN_BUCKETS == (1, 16, 64, 256, 1024, 4096)
    assert [gpu.fused_moe_bucket(m) for m in (0, 1, 2, 16, 17, 256, 257, 4096, 5000)] == \
        [1, 1, 16, 16, 64, 256, 1024, 4096, 4096]

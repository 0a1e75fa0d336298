"""The runtime's expert-parallel group calls without a GPU: the launcher's
collectives over a group whose collectives are Python callbacks on host
memory, their argument checks and error reports, and the NCCL group when
NCCL cannot be loaded. Each case runs in a child process whose library path
resolves libcuda.so.1 to the toolkit's stub (none of these calls reaches the
driver)."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("MOE_BUILD_DIR", REPO / "build"))
RUNTIME = BUILD / "runtime" / "libmoe_runtime.so"
CUDA_STUB = pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "lib64" / "stubs" / "libcuda.so"

pytestmark = pytest.mark.skipif(
    not (RUNTIME.exists() and CUDA_STUB.exists()),
    reason="needs the build's runtime library and the CUDA toolkit's driver stub")

PRELUDE = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    rt = ctypes.CDLL(sys.argv[1])
    rt.moe_rt_last_error.restype = ctypes.c_char_p

    class Memref(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("offset", ctypes.c_int64),
                    ("rank", ctypes.c_int64), ("elementBytes", ctypes.c_int64),
                    ("sizes", ctypes.c_int64 * 4), ("strides", ctypes.c_int64 * 4)]

    class Launcher(ctypes.Structure):
        _fields_ = [("status", ctypes.c_int), ("active", ctypes.c_int32),
                    ("kernels", ctypes.c_void_p), ("numKernels", ctypes.c_int32),
                    ("stream", ctypes.c_void_p)]

    ERROR = ctypes.POINTER(ctypes.c_char_p)
    RankAndSize = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_int32),
                                   ctypes.POINTER(ctypes.c_int32), ERROR)
    Exchange = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ERROR)

    class Collectives(ctypes.Structure):
        _fields_ = [("rank_and_size", RankAndSize), ("all_gather", Exchange),
                    ("reduce_scatter_sum_f32", Exchange)]

    class Group(ctypes.Structure):
        _fields_ = [("collectives", ctypes.POINTER(Collectives)), ("comm", ctypes.c_void_p)]

    def memref(array):
        m = Memref(array.ctypes.data, 0, array.ndim, array.itemsize)
        for d, n in enumerate(array.shape):
            m.sizes[d] = n
        return m

    def launcher():
        return Launcher(0, 1, None, 0, None)

    # A group of RANKS ranks seen from rank RANK, over host memory: the other
    # ranks' buffers hold their rank number in every byte (all-gather) or 1.0
    # (reduce-scatter).
    RANK, RANKS = 1, 3
    def rank_and_size(comm, rank, size, error):
        rank[0], size[0] = RANK, RANKS
        return 0
    def all_gather(send, recv, nbytes, comm, stream, error):
        for r in range(RANKS):
            if r == RANK:
                ctypes.memmove(recv + r * nbytes, send, nbytes)
            else:
                ctypes.memset(recv + r * nbytes, r, nbytes)
        return 0
    def reduce_scatter(send, recv, count, comm, stream, error):
        mine = np.ctypeslib.as_array((ctypes.c_float * (count * RANKS)).from_address(send))
        out = np.ctypeslib.as_array((ctypes.c_float * count).from_address(recv))
        out[:] = mine[RANK * count:(RANK + 1) * count] + (RANKS - 1)
        return 0
    def failing(send, recv, nbytes, comm, stream, error):
        error[0] = b"link down"
        return 5
    callbacks = [RankAndSize(rank_and_size), Exchange(all_gather), Exchange(reduce_scatter)]
    collectives = Collectives(*callbacks)
    group = Group(ctypes.pointer(collectives), ctypes.c_void_p(1))
""")


def sanitizer_preload() -> dict:
    """The environment a Python child needs to load a runtime built with
    AddressSanitizer (scripts/test-sanitized.sh): the ASan runtime preloaded,
    and no leak report of the interpreter's own allocations at exit."""
    if b"libasan.so" not in RUNTIME.read_bytes():
        return {}
    libasan = subprocess.run(["c++", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    return {"LD_PRELOAD": libasan,
            "ASAN_OPTIONS": f"detect_leaks=0:{os.environ.get('ASAN_OPTIONS', '')}"}


def run(body: str, env=None) -> str:
    """Runs PRELUDE + body in a child process; returns its stdout."""
    stub_dir = BUILD / "runtime" / "cuda-stub"
    stub_dir.mkdir(exist_ok=True)
    link = stub_dir / "libcuda.so.1"
    if not link.exists():
        link.symlink_to(CUDA_STUB)
    environment = dict(os.environ, LD_LIBRARY_PATH=f"{stub_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    environment.update(sanitizer_preload())
    environment.update(env or {})
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body), str(RUNTIME)],
                          capture_output=True, text=True, env=environment, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_all_gather_places_every_rank_block():
    out = run("""
        send = np.arange(6, dtype=np.int32).reshape(2, 3)
        recv = np.full((6, 3), -7, dtype=np.int32)
        l = launcher()
        rt.moe_rt_launcher_all_gather(ctypes.byref(l), ctypes.byref(group), memref(send), memref(recv))
        print(l.status, recv[2:4].tolist(), recv.view(np.uint8).ravel()[:24].tolist() == [0] * 24,
              recv.view(np.uint8).ravel()[48:].tolist() == [2] * 24)
    """)
    assert out.split("\n")[0] == "0 [[0, 1, 2], [3, 4, 5]] True True"


def test_reduce_scatter_keeps_this_ranks_block():
    out = run("""
        send = np.arange(12, dtype=np.float32).reshape(6, 2)
        recv = np.zeros((2, 2), dtype=np.float32)
        l = launcher()
        rt.moe_rt_launcher_reduce_scatter_sum_f32(ctypes.byref(l), ctypes.byref(group),
                                                  memref(send), memref(recv))
        print(l.status, recv.tolist())
    """)
    assert out.split("\n")[0] == "0 [[6.0, 7.0], [8.0, 9.0]]"


I32, F32, F64 = "np.int32", "np.float32", "np.float64"


def buffers(first, second, dtype):
    return f"memref(np.zeros({first}, {dtype})), memref(np.zeros({second}, {dtype}))"


@pytest.mark.parametrize("body, status, message", [
    # The receive buffer must be the rank count times the send buffer.
    (f"rt.moe_rt_launcher_all_gather(ctypes.byref(l), ctypes.byref(group), "
     f"{buffers((2, 3), (4, 3), I32)})",
     2, "moe_rt_launcher_all_gather: the receive buffer is not the rank count times the send "
        "buffer"),
    (f"rt.moe_rt_launcher_reduce_scatter_sum_f32(ctypes.byref(l), ctypes.byref(group), "
     f"{buffers((6, 2), (2, 2), F64)})",
     2, "moe_rt_launcher_reduce_scatter_sum_f32: the send buffer is not the rank count times "
        "the receive buffer, of f32"),
    (f"rt.moe_rt_launcher_reduce_scatter_sum_f32(ctypes.byref(l), ctypes.byref(group), "
     f"{buffers((4, 2), (2, 2), F32)})",
     2, "moe_rt_launcher_reduce_scatter_sum_f32: the send buffer is not the rank count times "
        "the receive buffer, of f32"),
    # A layer compiled for 2 ranks in a group of 3.
    ("rt.moe_rt_launcher_store_group_rank(ctypes.byref(l), ctypes.byref(group), 2, "
     "memref(np.zeros(1, np.int32)))",
     7, "the layer was compiled for 2 ranks, its group has 3 (this is rank 1)"),
    ("rt.moe_rt_launcher_store_group_rank(ctypes.byref(l), ctypes.byref(group), 3, "
     "memref(np.zeros(2, np.int32)))",
     2, "moe_rt_launcher_store_group_rank: the rank word is not one int32"),
    (f"rt.moe_rt_launcher_all_gather(ctypes.byref(l), None, {buffers(1, 3, I32)})",
     2, "all-gather: no expert-parallel group"),
    # The group's failure and its description reach the caller.
    (f"collectives.all_gather = Exchange(failing); rt.moe_rt_launcher_all_gather("
     f"ctypes.byref(l), ctypes.byref(group), {buffers(1, 3, I32)})",
     7, "all-gather failed: link down"),
])
def test_errors_are_reported(body, status, message):
    out = run(f"l = launcher()\n{body}\nprint(l.status)\nprint(rt.moe_rt_last_error().decode())\n")
    lines = out.split("\n")
    assert lines[0] == str(status)
    assert lines[1] == message


def test_a_failed_call_skips_the_collectives():
    out = run("""
        l = launcher()
        l.status = 6
        recv = np.full(3, -1, np.int32)
        rt.moe_rt_launcher_all_gather(ctypes.byref(l), ctypes.byref(group),
                                      memref(np.zeros(1, np.int32)), memref(recv))
        print(l.status, recv.tolist())
    """)
    assert out.split("\n")[0] == "6 [-1, -1, -1]"


def test_nccl_group_without_nccl():
    out = run("""
        g = Group()
        status = rt.moe_rt_group_from_nccl(ctypes.c_void_p(8), ctypes.byref(g))
        print(status)
        print(rt.moe_rt_last_error().decode())
    """, env={"MOE_NCCL_LIBRARY": "/nonexistent/libnccl.so.2"})
    lines = out.split("\n")
    assert lines[0] == "7"
    assert lines[1].startswith("cannot load NCCL (/nonexistent/libnccl.so.2)")
    assert "MOE_NCCL_LIBRARY names a library that cannot be loaded" in lines[1]


def test_a_group_without_a_collective():
    out = run("""
        partial = Collectives(RankAndSize(rank_and_size), Exchange(all_gather))
        broken = Group(ctypes.pointer(partial), ctypes.c_void_p(1))
        l = launcher()
        rt.moe_rt_launcher_all_gather(ctypes.byref(l), ctypes.byref(broken),
                                      memref(np.zeros(1, np.int32)), memref(np.zeros(3, np.int32)))
        print(l.status)
        print(rt.moe_rt_last_error().decode())
    """)
    lines = out.split("\n")
    assert lines[0] == "2"
    assert lines[1] == "all-gather: the group lacks a collective (null function)"

"""The runtime's host prepacking entry point (moe_rt_prepack_wgmma_a_4bit)
against the NumPy reference of moe.prepack's layout, on fresh random codes,
and its argument checks. Runs in a child process with libcuda.so.1 resolved
to the toolkit's stub (no call reaches the driver)."""

import textwrap

import numpy as np
import pytest

from moe_compiler import quant
from test_runtime_collectives import CUDA_STUB, RUNTIME, run

pytestmark = pytest.mark.skipif(
    not (RUNTIME.exists() and CUDA_STUB.exists()),
    reason="needs the build's runtime library and the CUDA toolkit's driver stub")

rng = np.random.default_rng()

CALL = textwrap.dedent("""
    rt.moe_rt_prepack_wgmma_a_4bit.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                               ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    def prepack(codes, packed, shape):
        return rt.moe_rt_prepack_wgmma_a_4bit(codes.ctypes.data if codes is not None else None,
                                              packed.ctypes.data if packed is not None else None,
                                              *shape)
""")


def test_prepack_matches_the_reference(tmp_path):
    e, n, pairs = int(rng.integers(1, 4)), 64 * int(rng.integers(1, 4)), 32 * int(rng.integers(1, 4))
    codes = rng.integers(0, 256, size=(e, n, pairs)).astype(np.uint8)
    np.save(tmp_path / "codes.npy", codes)
    out = run(CALL + textwrap.dedent(f"""
        codes = np.load({str(tmp_path / "codes.npy")!r})
        packed = np.zeros({e * n * pairs}, dtype=np.uint8)
        print(prepack(codes, packed, ({e}, {n}, {pairs})))
        np.save({str(tmp_path / "packed.npy")!r}, packed)
    """))
    assert out.strip() == "0"
    expected = quant.prepack_wgmma_a_4bit(codes).ravel()
    np.testing.assert_array_equal(np.load(tmp_path / "packed.npy"), expected)


def test_prepack_rejects_bad_arguments():
    out = run(CALL + textwrap.dedent("""
        codes = np.zeros(96 * 32, dtype=np.uint8)
        packed = np.zeros(96 * 32, dtype=np.uint8)
        for shape in [(1, 96, 32), (1, 64, 48), (0, 64, 32), (1, -64, 32)]:
            print(prepack(codes, packed, shape), rt.moe_rt_last_error().decode())
        print(prepack(None, packed, (1, 64, 32)), rt.moe_rt_last_error().decode())
        print(prepack(codes, codes, (1, 64, 32)), rt.moe_rt_last_error().decode())
        print(prepack(codes, packed, (2 ** 40, 2 ** 20, 2 ** 10)), rt.moe_rt_last_error().decode())
    """))
    lines = out.strip().split("\n")
    assert len(lines) == 7
    for line in lines[:5]:
        assert line.startswith("2 moe_rt_prepack_wgmma_a_4bit: expects non-null buffers"), line
    assert "got [1, 96, 32]" in lines[0] and "got [1, 64, 48]" in lines[1]
    assert lines[5] == "2 moe_rt_prepack_wgmma_a_4bit: codes and packed overlap"
    assert lines[6] == ("2 moe_rt_prepack_wgmma_a_4bit: experts x rows x pairs overflows a "
                        "64-bit size")

"""MLIR text for the pieces the wgmma test kernels share: K-major shared
memory descriptors, the zeroed accumulator and a 64-deep K step of four
m64n128k16 bf16 wgmma. `w` appends one line."""

# The accumulator of one m64n128 wgmma: 64 f32 registers per thread.
ACC = "!llvm.struct<(" + ", ".join(["f32"] * 64) + ")>"

# Descriptor bits: address[17:4] at 0, leading byte offset 1 (unused by
# swizzled K-major), stride byte offset 1024 B (8 rows of 128 B) at 32, and
# 128B swizzle (1) at 62.
_FIXED_BITS = (1 << 62) | ((1024 >> 4) << 32) | (1 << 16)


def descriptors(w, pad):
    """From i64 shared addresses %a_addr and %b_addr, defines %a_desc0 and
    %b_desc0: K-major, 128B-swizzled tiles of 128-byte rows."""
    w(f"{pad}%mask = arith.constant {0x3FFFF} : i64")
    w(f"{pad}%four = arith.constant 4 : i64")
    w(f"{pad}%fixed = arith.constant {_FIXED_BITS} : i64")
    for operand in ("a", "b"):
        w(f"{pad}%{operand}_masked = arith.andi %{operand}_addr, %mask : i64")
        w(f"{pad}%{operand}_base = arith.shrui %{operand}_masked, %four : i64")
        w(f"{pad}%{operand}_desc0 = arith.ori %{operand}_base, %fixed : i64")


def zero_accumulator(w, pad):
    """Defines a zeroed accumulator and returns its name."""
    w(f"{pad}%zero = llvm.mlir.zero : !acc")
    w(f"{pad}%fz = arith.constant 0.0 : f32")
    name = "%zero"
    for i in range(64):
        w(f"{pad}%acc0_{i} = llvm.insertvalue %fz, {name}[{i}] : !acc")
        name = f"%acc0_{i}"
    return name


def k64_step(w, pad, acc_in):
    """Four wgmma over a 64-deep K tile (+32 bytes per k16 step in both
    K-major operands), fenced, committed and waited; returns the result."""
    w(f"{pad}nvvm.wgmma.fence.aligned")
    name = acc_in
    for s in range(4):
        w(f"{pad}%step{s} = arith.constant {2 * s} : i64")
        w(f"{pad}%da{s} = arith.addi %a_desc0, %step{s} : i64")
        w(f"{pad}%db{s} = arith.addi %b_desc0, %step{s} : i64")
        w(f"{pad}%mma{s} = nvvm.wgmma.mma_async %da{s}, %db{s}, {name}, "
          "#nvvm.shape<m = 64, n = 128, k = 16>, "
          "D [<f32>, #nvvm.wgmma_scale_out<one>], "
          "A [<bf16>, #nvvm.wgmma_scale_in<one>, #nvvm.mma_layout<row>], "
          "B [<bf16>, #nvvm.wgmma_scale_in<one>, #nvvm.mma_layout<col>] : !acc -> !acc")
        name = f"%mma{s}"
    w(f"{pad}nvvm.wgmma.commit.group.sync.aligned")
    w(f"{pad}nvvm.wgmma.wait.group.sync.aligned 0")
    return name

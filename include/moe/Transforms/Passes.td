//===- Passes.td - moe code generation passes --------------*- tablegen -*-===//

#ifndef MOE_TRANSFORMS_PASSES
#define MOE_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def CpuTileAndVectorize : Pass<"moe-cpu-tile-and-vectorize"> {
  let summary = "Tile static linalg matmuls, transposes and fills, and "
                "vectorize the tiles for the host CPU";
  let description = [{
    Runs on the linalg that `convert-moe-to-linalg` produces, before
    bufferization. Every `linalg.matmul`, `linalg.transpose` and
    `linalg.fill` with a static shape is tiled with `scf.for` loops into
    `tile-m` x `tile-n` x `tile-k` blocks (matmul), `tile-k` x `tile-n`
    (transpose) or `tile-m` x `tile-n` (fill), and every tile is vectorized
    (`vector.contract`, `vector.transpose`, `vector.broadcast`). A tile size
    that does not divide its dimension shrinks to the largest divisor below
    it, so that every tile has a static shape. Ops with dynamic shapes, and
    non-float ops (an i1 vector would be stored bit-packed), are left alone.
  }];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect"
  ];
  let options = [
    Option<"tileM", "tile-m", "int64_t", /*default=*/"8",
           "Rows of a matmul tile">,
    Option<"tileN", "tile-n", "int64_t", /*default=*/"32",
           "Columns of a matmul tile (the vectorized, contiguous dimension)">,
    Option<"tileK", "tile-k", "int64_t", /*default=*/"16",
           "Reduction depth of a matmul tile">
  ];
}

def CheckAllocSizes : Pass<"moe-check-alloc-sizes", "::mlir::ModuleOp"> {
  let summary = "Stop before a heap allocation whose byte count overflows";
  let description = [{
    Runs on bufferized code, before `finalize-memref-to-llvm`. That lowering
    multiplies a `memref.alloc`'s sizes by its element size in wrapping
    64-bit arithmetic, so dynamic sizes whose product does not fit would
    allocate a small buffer that the code then overruns. This pass computes
    the byte count of every `memref.alloc` with dynamic sizes (or a static
    one past 2^63 - 1 bytes) with checked multiplication, and where it is
    2^63 bytes or more (or a size is negative) calls

    ```mlir
    func.func private @moe_report_alloc_size_overflow()
    ```

    before the allocation. The host provides that hook, and it must not
    return (`moe-run` prints an error and exits). A zero size makes the
    byte count zero, whatever the other sizes are. Allocations that are
    static and fit are left alone.

    Example:

    ```mlir
    %a = memref.alloc(%m) : memref<?x1099511627776xf32>
    // becomes
    %m64 = arith.index_cast %m : index to i64
    %low, %high = arith.mului_extended %c4398046511104_i64, %m64 : i64
    ... // %overflow: %high != 0 or %low < 0, and %m != 0
    scf.if %overflow {
      func.call @moe_report_alloc_size_overflow() : () -> ()
    }
    %a = memref.alloc(%m) : memref<?x1099511627776xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect"
  ];
}

#endif // MOE_TRANSFORMS_PASSES

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

#endif // MOE_TRANSFORMS_PASSES

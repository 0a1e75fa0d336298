//===- Passes.td - moe conversion passes -------------------*- tablegen -*-===//

#ifndef MOE_CONVERSION_PASSES
#define MOE_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def ConvertMoeToLinalg : Pass<"convert-moe-to-linalg", "ModuleOp"> {
  let summary = "Lower moe ops to linalg, tensor, scf, arith and math";
  let description = [{
    Rewrites every `moe` op into upstream dialects with tensor semantics. The
    result is the executable specification of the layer: it bufferizes and
    lowers to LLVM through `moe-cpu-pipeline`.

    - `moe.grouped_matmul` becomes a loop over experts whose bounds are the
      expert's row range; each expert's rows go through static
      `[row-block, K] x [N, K]` contractions (`linalg.generic`), so that later
      tiling and vectorization see static shapes.
    - `moe.topk` computes scores with linalg ops for all tokens at once, then
      selects experts per token with scalar `scf` loops (k rounds of an
      argmax in which ties go to the lower index and NaN ranks as -inf).
    - `moe.permute` reports an expert id outside `[0, E)` through a call to
      `moe_report_invalid_expert(id, E)` and continues with the id clamped,
      so memory stays in bounds; the caller turns the report into an error.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect"
  ];
  let options = [
    Option<"rowBlock", "row-block", "int64_t", /*default=*/"8",
           "Rows per static contraction block of a grouped matmul">
  ];
}

def MoeEmitGpuKernels : Pass<"moe-emit-gpu-kernels", "ModuleOp"> {
  let summary = "Emit the Hopper kernels of the fused grouped matmuls";
  let description = [{
    For every `moe.expert_matmul` the GPU kernel family covers so far (the
    aligned schedule, gathered rows, bf16 rows out, optionally the
    `silu_and_mul` epilogue, block_m 64, K a multiple of 64 and N of 128, or
    256 with the epilogue), adds an sm_90a `gpu.func` to `gpu.module
    @moe_kernels` and records it on the op as `moe.gpu_kernel`: per slot
    block of 64 and column tile of 128, one warpgroup loops over K with TMA
    for the weights, cp.async gathers of the token rows into 128B-swizzled
    shared memory, and K-major `wgmma`. With the epilogue a tile holds 64 gate
    columns and their 64 up columns, and stores 64 activated ones. Other ops
    get a remark. The ops stay
    in place: lowering their launches is the next step of the GPU backend.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::NVVM::NVVMDialect",
    "::mlir::nvgpu::NVGPUDialect",
    "::mlir::scf::SCFDialect"
  ];
}

#endif // MOE_CONVERSION_PASSES

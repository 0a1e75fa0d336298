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
  let summary = "Emit the Hopper kernels of the aligned schedule and its matmuls";
  let description = [{
    Adds sm_90a `gpu.func`s to `gpu.module @moe_kernels` and records them on
    the ops (`moe.gpu_kernel`, and `moe.gpu_finalize_kernel` for a combine);
    each kernel carries a `moe.launch` dictionary telling the host how to
    launch it. Covered so far:

    - `moe.align`: one thread block; counts by shared-memory atomics, padded
      starts, sentinel and block-expert fill, scatter (the order within an
      expert's group is not the assignment order).
    - `moe.expert_matmul` on the aligned schedule, bf16, block_m 64, K a
      multiple of 64: per slot block of 64 and column tile of 128, one
      warpgroup runs a ring of up to 4 shared-memory stages, TMA for the
      weights under one mbarrier per stage and cp.async for the A rows
      (gathered by token, or in slot order) into the 128B-swizzled layout,
      and K-major `wgmma` m64n128k16. Epilogues: bf16 rows, optionally
      through a gated activation (a tile then holds 64 gate columns and
      their 64 up columns); or the routed-weight combine, added atomically
      into an f32 buffer, with the K loop split over `split_k` blocks as the
      tile says, and a second kernel converting the sums.

    Other ops get a remark and keep no kernel.
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
  let options = [
    Option<"blockN", "block-n", "int64_t", /*default=*/"0",
           "wgmma N of the grouped GEMMs (64, 128, 256); 0 follows the tile">,
    Option<"stages", "stages", "int64_t", /*default=*/"0",
           "Shared-memory ring depth (2-5); 0 follows the tile">
  ];
}

def MoeGpuLegalizeTiles : Pass<"moe-gpu-legalize-tiles", "ModuleOp"> {
  let summary = "Fit the grouped matmuls' tiles to the Hopper kernels";
  let description = [{
    Runs between `moe-tile` and `moe-align`. The Hopper grouped GEMM has slot
    blocks of 64 or 128 rows (one or two m64 warpgroups) and a wgmma N of 64,
    128 or 256; the cost model may ask for others (8-row blocks with swapped
    operands for decode). Each `#moe.tile` gets block_m 128 where it asked
    for at least 128 and 64 otherwise, and block_n rounded down to a power
    of two in [64, 256]. The matmuls of one schedule (the same `slots`) take
    the smallest block_m of the group, so that one `moe.align` serves them.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

def MoeNvvmGridConstantArgs
    : Pass<"moe-nvvm-grid-constant-args", "::mlir::gpu::GPUModuleOp"> {
  let summary = "Pass the kernels' TMA descriptors by value";
  let description = [{
    Runs after `convert-gpu-to-nvvm`. The kernels moe-emit-gpu-kernels builds
    take each TMA descriptor as an `!llvm.ptr` and list its position among
    the lowered LLVM arguments in `moe.grid_constant_args`. This pass makes
    those arguments 128-byte, 64-aligned `byval` kernel parameters marked
    `nvvm.grid_constant`, so the host passes the descriptor itself at launch
    (captured by value in a CUDA graph, no device copy) and the kernel reads
    it in parameter space. Without this pass the argument stays a pointer
    to a descriptor in device memory.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect",
                           "::mlir::NVVM::NVVMDialect"];
}

#endif // MOE_CONVERSION_PASSES

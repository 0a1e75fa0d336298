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
    - `moe.ep_dispatch` and `moe.ep_combine`, collectives, become calls to
      the group's runtime hooks `moe_ep_dispatch_<type>` and
      `moe_ep_combine` on buffers of their operands and results.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::func::FuncDialect",
    "::mlir::memref::MemRefDialect",
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
    - `moe.expert_matmul` on the aligned schedule, as its
      `#moe_gpu.kernel_config` (`moe-gpu-configure`) says: the multistage
      schedule, where per slot block (64 or 128 rows: one m64 consumer
      warpgroup per 64) and column tile (`block_n` 64, 128 or 256) every
      warp issues its share of a ring of `stages` shared-memory stages, TMA
      for the weights under one mbarrier per stage and cp.async for the A
      rows (gathered by token, or in slot order) into the 128B-swizzled
      layout, and K-major `wgmma` (bf16, e4m3 or s8). Epilogues: bf16 rows,
      optionally through a gated activation (a tile then holds the gate
      columns and their up columns); or the routed-weight combine, added
      atomically into an f32 buffer, with the K loop split over `split_k`
      blocks, and a second kernel converting the sums. For bf16, also the
      warp-specialized schedule (a producer warpgroup fills the ring
      through full and empty mbarriers while two consumer warpgroups
      multiply) and the persistent one (the same roles in one block per SM,
      walking tiles taken from a zeroed counter, with the ring's phases
      running on across tiles). A matmul without a configuration, or with
      one this emitter does not build (quantized warp-specialized or
      persistent schedules, clusters), gets a remark.
    - `moe.quantize` and `moe.route`: see their builders; `moe.topk` on
      given logits (a layer that takes the router's output) with the routing
      kernel minus the router. The quantization kernels read 8 columns per
      lane in 16-byte loads, up to 2048 columns of a row in flight, and
      store 8 codes at once.

    Other ops get a remark and keep no kernel.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::moe_gpu::MoeGPUDialect",
    "::mlir::NVVM::NVVMDialect",
    "::mlir::nvgpu::NVGPUDialect",
    "::mlir::scf::SCFDialect"
  ];
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

def ConvertMoeGpuHostToEmitC
    : Pass<"convert-moe-gpu-host-to-emitc", "ModuleOp"> {
  let summary = "Lower the host functions of a compiled layer to EmitC";
  let description = [{
    Lowers the host IR of `moe-gpu-outline-host`, once its kernels are
    serialized (`gpu.binary @moe_kernels`), to EmitC over the moe runtime
    (`runtime/include/moe/Runtime/Runtime.h`); `mlir-translate
    --mlir-to-cpp` (upstream `translateToCpp`) then prints the C++.

    - The binary becomes a static byte array, the names of the launched
      kernels (in order of first launch) a string array, and both a
      `moe_rt_program`.
    - A host function with a `!moe_gpu.stream` argument becomes an
      `extern "C"` function returning a `moe_rt_status`: it opens a
      `moe_rt_launcher` (which loads the program in the current context),
      checks the token count, the workspace (size from the layout, 128-byte
      alignment) and every pointer, then runs its steps; the launcher keeps
      the first error, so the code has no branches. A memref argument
      becomes a pointer (`const` unless marked `moe_gpu.result`), the
      workspace a pointer and its size, a result an out-pointer. A host
      function without a stream returns its one result (`size_t` for an
      index).
    - `gpu.launch_func` becomes an array of exactly its kernel arguments
      (memref descriptors or TMA descriptors) and one launch call; index
      arithmetic becomes `int64_t` arithmetic; a workspace buffer's offset
      is the sum of the earlier buffers' sizes, each rounded up to 256.

    `symbol-suffix` is appended to the names of the program's globals, so
    that several lowered layers (the token-count variants of one library)
    can share one translation unit.
  }];
  let options = [
    Option<"symbolSuffix", "symbol-suffix", "std::string", /*default=*/"",
           "appended to the names of the program's globals (kImage, "
           "kKernelNames, kProgram)">
  ];
  let dependentDialects = ["::mlir::emitc::EmitCDialect"];
}

#endif // MOE_CONVERSION_PASSES

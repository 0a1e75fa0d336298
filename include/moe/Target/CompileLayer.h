//===- CompileLayer.h - compile a moe layer for the GPU ---------*- C++ -*-===//
//
// The C++ API behind moe-compile: a module holding one layer function in,
// the kernels (cubin, PTX) and the host source and header out.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_COMPILELAYER_H
#define MOE_TARGET_COMPILELAYER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

#include <functional>
#include <string>

namespace mlir {
class PassManager;
} // namespace mlir

namespace mlir::moe {

/// How to compile a layer; the defaults are moe-compile's.
struct GpuCompileOptions {
  /// The layer's name in the C entry points (`moe_layer_<name>`); empty
  /// takes the function's.
  std::string name;
  /// The token count the tiles are chosen for (the library runs any count).
  int64_t numTokens = 256;
  /// Token-count buckets: when given, one variant of the layer is compiled
  /// per bucket (tiles chosen for it, numTokens unused), and the entry
  /// points run the variant of the smallest bucket at least the call's
  /// token count (the largest above them all). The cubin is then not
  /// returned (each variant's is embedded in the source), and the PTX and
  /// host IR are the variants' in turn.
  SmallVector<int64_t> tokenBuckets;
  /// Overrides of moe-gpu-configure (0 or false: its choice).
  int64_t blockN = 0;
  int64_t stages = 0;
  /// K elements per stage of the bf16 GEMMs (64, or 128: two swizzle
  /// spans); 0: moe-gpu-configure's choice.
  int64_t blockK = 0;
  bool warpSpecialize = false;
  bool persistent = false;
  /// The mean rows per expert up to which the bf16 GEMMs of 128 x 256
  /// tiles take the persistent schedule by policy; 0: never.
  int64_t persistentMaxRows = 64;
  /// Combines store their weighted rows per assignment in bf16, summed
  /// over k by the finalize kernel (`combine_rows`), instead of reducing
  /// into f32 sums.
  bool combineRows = false;
  /// The largest K of a bf16 or w8a8 combine given combine_rows by policy;
  /// 0: never.
  int64_t combineRowsMaxK = 2048;
  /// bf16 schedules whose experts' rows likely spill out of 128-row slot
  /// blocks but fit 192 take 192-row blocks (three consumer warpgroups).
  bool tallBlocks = false;
  /// Persistent bf16 matmuls that store rows and have at most 32 K steps
  /// per tile stage them through a 64-row table (staged_epilogue).
  bool stagedEpilogue = false;
  /// Multistage bf16 matmuls whose input rows are their slots (no gather)
  /// load them by TMA (input_tma).
  bool inputTma = false;
  /// The largest K split of a swapped 4-bit weight-only GEMM (register
  /// operand) whose grid is under two blocks per SM (1: none; at most 8).
  int64_t shortSplitK = 8;
  bool pingpong = false;
  int64_t clusterM = 1;
  /// Swapped-operand kernels (16- or 32-row slot blocks) where experts
  /// hold few rows (decode).
  bool swapAB = true;
  /// The swapped-operand kernels' consumer warpgroups (1 or 2; 0:
  /// moe-gpu-configure's choice per GEMM) and weight load ("tma" or
  /// "cp_async").
  int64_t swappedWarpgroups = 0;
  std::string swappedWeightLoad = "cp_async";
  /// Swapped int4 weight-only GEMMs decode their codes into the wgmma's
  /// register operand (`weight_load = registers`) instead of a bf16 tile.
  bool weightOnlyRegisters = true;
  /// Weight-only GEMMs of 128-row slot blocks without split-K on the
  /// register operand are `persistent` (a producer warpgroup); false keeps
  /// them multistage.
  bool weightOnlyWarpSpecialize = true;
  /// fp8 GEMMs with per-channel or per-tensor scales keep their sums in the
  /// wgmma's accumulator (`fast_accumulation`) instead of promoting them.
  bool fp8FastAccumulation = true;
  /// w8a8 GEMMs that promote nothing take swapped slot blocks at decode.
  bool w8a8SwapAB = true;
  /// Calls of at most this many assignments (M·k) run no align kernel: the
  /// first GEMM of each schedule aligns its own slot blocks (0: never).
  int64_t fusedAlignAssignments = 0;
  /// Where a block's shared experts run: "cost" (the cost model of
  /// moe-split-shared-experts decides), "split" (a schedule of their own)
  /// or "fused" (among the routed experts).
  std::string sharedExperts = "cost";
  /// Launch each kernel as a programmatic dependent of the one before it
  /// (moe-gpu-dependent-launch).
  bool dependentLaunch = true;
  /// The assignment count (M·k) above which moe.align runs over many blocks.
  int64_t alignManyBlocksAbove = 4096;
  /// The CUDA toolkit with ptxas; empty: CUDA_HOME, CUDA_ROOT, CUDA_PATH,
  /// else /usr/local/cuda.
  std::string toolkitPath;
  /// Also produce the kernels' PTX.
  bool emitPtx = false;
  /// Called on each pass manager before it runs (timing, IR printing,
  /// crash reproducers: e.g. upstream's applyPassManagerCLOptions).
  std::function<LogicalResult(PassManager &)> configurePassManager;
};

/// What compiling a layer produces.
struct GpuCompiledLayer {
  /// The layer's name in the C entry points.
  std::string name;
  /// `<name>.cpp` and `<name>.h`: the host code (see moe/Target/GpuHost.h);
  /// the source includes the header and embeds the cubin.
  std::string source, header;
  /// The sm_90a cubin, and its PTX when asked for. With token buckets the
  /// cubin is empty (each variant's is embedded in the source) and the PTX
  /// is the variants' in turn, each after a `// token-count bucket B` line.
  std::string cubin, ptx;
  /// The program after moe-gpu-outline-host: the kernels and the host
  /// functions, as text (with token buckets, each variant's in turn).
  std::string hostIR;
};

/// Compiles the one layer function of `module` (other functions must be
/// declarations) for sm_90a: moe-gpu-pipeline,
/// moe-gpu-outline-host, the kernels to a cubin (ptxas), the host functions
/// to C++ through EmitC. `module` is left as it was; diagnostics go to its
/// context's handler, located on the ops that cause them.
FailureOr<GpuCompiledLayer> compileLayerForGpu(ModuleOp module,
                                               const GpuCompileOptions &options);

} // namespace mlir::moe

#endif // MOE_TARGET_COMPILELAYER_H

//===- Pipelines.h - moe pass pipelines -------------------------*- C++ -*-===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"
#include "mlir/Support/LLVM.h"

namespace mlir {
class OpPassManager;
} // namespace mlir

namespace mlir::moe {

/// Options of `moe-optimize`.
struct OptimizePipelineOptions
    : public PassPipelineOptions<OptimizePipelineOptions> {
  PassOptions::Option<int64_t> numTokens{
      *this, "num-tokens",
      llvm::cl::desc("Expected token count M the tiles are chosen for"),
      llvm::cl::init(256)};
  PassOptions::Option<int64_t> blockM{
      *this, "block-m",
      llvm::cl::desc("moe-align's padding granule; 0 takes the tiles'"),
      llvm::cl::init(0)};
  PassOptions::Option<std::string> sharedExperts{
      *this, "shared-experts",
      llvm::cl::desc("Where a block's shared experts run "
                     "(moe-split-shared-experts' policy): cost, split or "
                     "fused"),
      llvm::cl::init("cost")};
};

/// Options of `moe-gpu-pipeline`.
struct GpuPipelineOptions : public PassPipelineOptions<GpuPipelineOptions> {
  PassOptions::Option<int64_t> numTokens{
      *this, "num-tokens",
      llvm::cl::desc("Expected token count M the tiles are chosen for"),
      llvm::cl::init(256)};
  PassOptions::Option<int64_t> blockN{
      *this, "block-n",
      llvm::cl::desc("Override the grouped GEMMs' wgmma N (0: "
                     "moe-gpu-configure's choice)"),
      llvm::cl::init(0)};
  PassOptions::Option<int64_t> blockK{
      *this, "block-k",
      llvm::cl::desc("K elements per stage of the bf16 GEMMs: 64 or 128 (two "
                     "128-byte swizzle spans; multistage, no cluster); 0: "
                     "moe-gpu-configure's choice"),
      llvm::cl::init(0)};
  PassOptions::Option<int64_t> stages{
      *this, "stages",
      llvm::cl::desc("Override the shared-memory ring depth (0: "
                     "moe-gpu-configure's choice)"),
      llvm::cl::init(0)};
  PassOptions::Option<bool> warpSpecialize{
      *this, "warp-specialize",
      llvm::cl::desc("Warp-specialize the bf16 GEMMs of 128-row blocks"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> persistent{
      *this, "persistent",
      llvm::cl::desc("Make the bf16 GEMMs of 128-row blocks without split-K "
                     "persistent (warp-specialized, one block per SM)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> pingpong{
      *this, "pingpong",
      llvm::cl::desc("Make the bf16 GEMMs of 128-row blocks without split-K "
                     "pingpong (persistent; consumer warpgroups alternate "
                     "tiles)"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> persistentMaxRows{
      *this, "persistent-max-rows",
      llvm::cl::desc("Give the bf16 GEMMs of 128 x 256 tiles without split-K "
                     "the persistent schedule where experts hold at most "
                     "this many rows on average (0: never by policy)"),
      llvm::cl::init(64)};
  PassOptions::Option<bool> combineRows{
      *this, "combine-rows",
      llvm::cl::desc("Store the combines' weighted rows per assignment in "
                     "bf16 and sum them over k in the finalize kernel "
                     "(combine_rows) instead of f32 reductions"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> combineRowsMaxK{
      *this, "combine-rows-max-k",
      llvm::cl::desc("Give bf16 and w8a8 combines whose K is at most "
                     "this combine_rows by policy (0: never by policy)"),
      llvm::cl::init(2048)};
  PassOptions::Option<bool> tallBlocks{
      *this, "tall-blocks",
      llvm::cl::desc("Give bf16 schedules whose experts' rows likely spill "
                     "out of 128-row slot blocks but fit 192 slot blocks of "
                     "192 rows (three consumer warpgroups)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> stagedEpilogue{
      *this, "staged-epilogue",
      llvm::cl::desc("Give the persistent bf16 matmuls that store rows and "
                     "have at most 32 K steps per tile staged_epilogue"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> inputTma{
      *this, "input-tma",
      llvm::cl::desc("Give the multistage bf16 matmuls whose input rows are "
                     "their slots input_tma (A rows by TMA)"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> shortSplitK{
      *this, "short-split-k",
      llvm::cl::desc("The largest K split of a swapped 4-bit weight-only "
                     "GEMM (register operand) whose grid is under two "
                     "blocks per SM (1: none; at most 8)"),
      llvm::cl::init(8)};
  PassOptions::Option<int64_t> clusterM{
      *this, "cluster-m",
      llvm::cl::desc("Pair the multistage GEMMs' slot blocks in clusters of "
                     "this many (1 or 2), multicasting shared weight tiles"),
      llvm::cl::init(1)};
  PassOptions::Option<bool> swapAb{
      *this, "swap-ab",
      llvm::cl::desc("Give bf16 GEMMs of few rows per expert (decode) "
                     "16- or 32-row slot blocks with the weights as the "
                     "wgmma's A operand; on by default"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> swappedWarpgroups{
      *this, "swapped-warpgroups",
      llvm::cl::desc("Consumer warpgroups of the swapped-operand GEMMs (0: "
                     "moe-gpu-configure's choice per GEMM; 1 or 2)"),
      llvm::cl::init(0)};
  PassOptions::Option<std::string> swappedWeightLoad{
      *this, "swapped-weight-load",
      llvm::cl::desc("How the swapped-operand GEMMs load their weight tile: "
                     "tma or cp_async"),
      llvm::cl::init("cp_async")};
  PassOptions::Option<bool> weightOnlyRegisters{
      *this, "weight-only-registers",
      llvm::cl::desc(
          "Swapped 4-bit weight-only GEMMs (int4, mxfp4) decode their codes "
          "into the wgmma's register operand (weight_load = "
          "registers) instead of a bf16 tile in shared memory; false "
          "keeps the tile"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> weightOnlyWarpSpecialize{
      *this, "weight-only-warp-specialize",
      llvm::cl::desc(
          "Weight-only GEMMs of 128-row slot blocks without split-K on the "
          "register operand are persistent, with a producer warpgroup (on "
          "by default; false keeps them multistage)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fp8FastAccumulation{
      *this, "fp8-fast-accumulation",
      llvm::cl::desc("fp8 GEMMs with per-channel or per-tensor scales keep "
                     "their sums in the wgmma's accumulator over all of K "
                     "(fast_accumulation) instead of promoting them to f32 "
                     "every stage"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> w8a8SwapAb{
      *this, "w8a8-swap-ab",
      llvm::cl::desc("w8a8 GEMMs that promote nothing (int8, fp8 with "
                     "fp8-fast-accumulation) take swapped slot blocks at "
                     "decode"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> fusedAlignAssignments{
      *this, "fused-align-assignments",
      llvm::cl::desc("Calls of at most this many assignments (M·k) run no "
                     "align kernel: the first GEMM of each schedule aligns "
                     "its own slot blocks (-1, the default: the policy's "
                     "bound; 0: never)"),
      llvm::cl::init(-1)};
  PassOptions::Option<std::string> sharedExperts{
      *this, "shared-experts",
      llvm::cl::desc("Where a block's shared experts run "
                     "(moe-split-shared-experts' policy): cost, split or "
                     "fused"),
      llvm::cl::init("cost")};
};

/// Options of `moe-gpu-kernels-to-binary`.
struct GpuBinaryPipelineOptions
    : public PassPipelineOptions<GpuBinaryPipelineOptions> {
  PassOptions::Option<std::string> format{
      *this, "format",
      llvm::cl::desc("gpu-module-to-binary format: isa (PTX), bin (cubin)"),
      llvm::cl::init("bin")};
  PassOptions::Option<std::string> toolkit{
      *this, "toolkit",
      llvm::cl::desc("CUDA toolkit (ptxas, libdevice); empty: CUDA_HOME, "
                     "CUDA_ROOT or CUDA_PATH from the environment"),
      llvm::cl::init("")};
};

/// Options of `moe-cpu-pipeline`.
struct CpuPipelineOptions : public PassPipelineOptions<CpuPipelineOptions> {
  PassOptions::Option<int64_t> rowBlock{
      *this, "row-block",
      llvm::cl::desc("Rows per static contraction block of a grouped matmul"),
      llvm::cl::init(8)};
  PassOptions::Option<bool> fuse{
      *this, "fuse",
      llvm::cl::desc("Run moe-optimize (fusion, tiling, alignment) first"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> numTokens{
      *this, "num-tokens",
      llvm::cl::desc("With fuse: the token count the tiles are chosen for"),
      llvm::cl::init(256)};
  PassOptions::Option<std::string> sharedExperts{
      *this, "shared-experts",
      llvm::cl::desc("With fuse: where a block's shared experts run "
                     "(moe-split-shared-experts' policy): cost, split or "
                     "fused"),
      llvm::cl::init("cost")};
};

/// The target-neutral optimizations, in order: moe-fuse-routing,
/// moe-fuse-experts, moe-split-shared-experts, moe-tile, (`beforeAlign`: a
/// target's tile legalization), moe-align, canonicalize.
void buildOptimizePipeline(
    OpPassManager &pm, const OptimizePipelineOptions &options,
    function_ref<void(OpPassManager &)> beforeAlign = nullptr);

/// Lowers a module of moe ops on tensors to the LLVM dialect for the host
/// CPU: moe -> linalg -> bufferized loops -> LLVM. Public functions keep
/// memref arguments and results; mark them `llvm.emit_c_interface` to get
/// `_mlir_ciface_` wrappers. The lowered code takes its heap buffers from
/// the host's `_mlir_memref_to_llvm_alloc`, `_mlir_memref_to_llvm_aligned_alloc`
/// and `_mlir_memref_to_llvm_free` (so that the host checks them), and calls
/// the host's `moe_report_alloc_size_overflow` (which must not return) when a
/// buffer's byte count would overflow (moe-check-alloc-sizes).
void buildCpuPipeline(OpPassManager &pm, const CpuPipelineOptions &options);

/// moe-optimize with moe-gpu-configure before moe-align (each matmul's
/// #moe_gpu.kernel_config chosen, the schedule aligned to its block
/// height), then
/// moe-emit-gpu-kernels: every op gets its kernels in `gpu.module
/// @moe_kernels` (or a remark).
void buildGpuPipeline(OpPassManager &pm, const GpuPipelineOptions &options);

/// Lowers the kernels of a module that holds only `gpu.module @moe_kernels`
/// to NVVM, passes their TMA descriptors by value
/// (moe-nvvm-grid-constant-args), and serializes them for sm_90a.
LogicalResult
buildGpuKernelsToBinaryPipeline(OpPassManager &pm,
                                const GpuBinaryPipelineOptions &options);

/// Registers `moe-optimize` and `moe-cpu-pipeline`.
void registerCpuPipeline();

/// Registers `moe-gpu-pipeline`.
void registerGpuPipeline();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H

//===- GpuTarget.h - facts about the GPU a layer is compiled for -*- C++
//-*-===//
//
// One place for the numbers the cost model and the GPU lowering depend on,
// so that none is a literal scattered through the code.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_GPUTARGET_H
#define MOE_TARGET_GPUTARGET_H

#include <cstdint>

namespace mlir::moe {

/// A GPU as the tile cost model sees it.
struct GpuTarget {
  /// Streaming multiprocessors (H100 SXM: 132; H200: 132).
  int64_t numSMs = 132;
  /// Dynamic shared memory one thread block may use on sm_90a: 227 KiB of
  /// the 228 KiB per SM.
  int64_t sharedMemoryBytes = 227 * 1024;
  /// L2 cache, bytes (H100 SXM and H200: 50 MiB): whether one expert's
  /// weights stay there between the row blocks that read them.
  int64_t l2Bytes = 50 * 1024 * 1024;
  /// 32-bit registers per SM (64 Ki on Hopper); the accumulator of one
  /// thread block must fit in a fraction of them.
  int64_t registersPerSM = 64 * 1024;
  /// Dense bf16 tensor-core throughput, FLOP/s. The default is the measured
  /// H100 SXM matmul peak of shared/reference/moe-anchor-times.md (799
  /// TFLOP/s), not the 989 TFLOP/s of the datasheet.
  double peakFlops = 799e12;
  /// Device memory bandwidth, bytes/s: the measured H100 figure of the same
  /// reference (3.00 TB/s).
  double bandwidthBytes = 3.0e12;
  /// Fixed cost of one wave of thread blocks (launch, prologue, epilogue),
  /// seconds; it makes many thin waves lose to fewer full ones.
  double waveOverheadSeconds = 2e-6;
  /// Fraction of the shorter of compute and memory time that does not hide
  /// behind the longer one (pipeline fill, epilogue). It makes padded MMA
  /// work cost something even in a memory-bound kernel.
  double overlapLoss = 0.1;
  /// K-steps each split of a split-K reduction must run at least, to pay for
  /// its prologue and for adding the partial sums.
  int64_t minKStepsPerSplit = 4;
  /// Fraction of the MMA peak an SM reaches with one warpgroup issuing
  /// MMAs (a 64-row tile, one thread block per SM): a second warpgroup's
  /// MMAs fill the issue gaps of the first. Measured on the H200: the
  /// Qwen1.5-MoE block at M = 4096 took 1.18x as long with GEMM1 at 64
  /// rows (10% fewer padded FLOPs) as at 128 (1364 vs 1159 us).
  double singleWarpgroupMmaFraction = 0.8;
  /// The smallest M of one warpgroup MMA (wgmma.m64nNk16).
  int64_t mmaM = 64;
  /// The smallest N of one warpgroup MMA.
  int64_t mmaN = 8;
};

} // namespace mlir::moe

#endif // MOE_TARGET_GPUTARGET_H

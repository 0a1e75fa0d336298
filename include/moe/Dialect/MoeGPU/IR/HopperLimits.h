//===- HopperLimits.h - facts the sm_90a kernels are built around -*- C++ -*-//
//
// One place for the numbers that the kernel configuration's verifier, the
// configure pass and the Hopper emitters share.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOEGPU_IR_HOPPERLIMITS_H
#define MOE_DIALECT_MOEGPU_IR_HOPPERLIMITS_H

#include "moe/Dialect/Moe/IR/MoeAttrs.h"

#include <cstdint>

namespace mlir::moe_gpu::hopper {

/// A warpgroup: 4 warps, and the 64 rows of one m64 wgmma.
inline constexpr int64_t kWarpgroupRows = 64, kWarpgroupThreads = 128;
/// Dynamic shared memory one thread block may use on sm_90a.
inline constexpr int64_t kMaxSharedBytes = 227 * 1024;
/// 128B-swizzled tiles start on 1024 bytes; the emitters round the dynamic
/// shared memory base up at run time and request this much more.
inline constexpr int64_t kSwizzleAlignment = 1024;
/// Bytes of one row of a stage's tiles: one 128B swizzle span (64 bf16 or
/// 128 one-byte codes of K).
inline constexpr int64_t kStageRowBytes = 128;
/// The deepest ring the multistage emitter builds: measured on an H200,
/// five stages of a 64x256 tile (one block per SM) beat four of 64x128 (two
/// per SM) by 14% at M = 4096.
inline constexpr int64_t kMaxMultistageStages = 5;

/// Bytes of stored weight codes per 64 of K of a weight-only format: 32 for
/// int4 and e2m1 pairs, 64 for int8.
inline int64_t packedRowBytes(moe::QuantFormat format) {
  return format == moe::QuantFormat::Int8Weight ? 64 : 32;
}

} // namespace mlir::moe_gpu::hopper

#endif // MOE_DIALECT_MOEGPU_IR_HOPPERLIMITS_H

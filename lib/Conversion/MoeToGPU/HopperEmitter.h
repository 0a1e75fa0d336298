//===- HopperEmitter.h - sm_90a mechanisms of the GEMM kernels --*- C++ -*-===//
//
// The Hopper part of the expert GEMM emitter: the dynamic shared memory and
// the wgmma descriptors of its 128B-swizzled tiles, warpgroup MMAs and the
// layout of their accumulator fragments, mbarrier phase waits, async-proxy
// fences, register rebalancing between warpgroup roles (setmaxnreg),
// cluster synchronization and remote arrivals, and the paired f32
// reduction. It knows nothing of experts, slots or routing: the MoE part
// (ExpertMatmulTile.h) and the schedules (ExpertMatmulKernel.cpp) call it.
// Another MMA target (tcgen05, MFMA) gets an emitter beside this one.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_HOPPEREMITTER_H
#define MOE_LIB_CONVERSION_MOETOGPU_HOPPEREMITTER_H

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe::hopper {

/// Bytes of K one wgmma consumes: k16 of bf16, k32 of e4m3 or s8.
inline constexpr int64_t kWgmmaKBytes = 32;

/// The kernel's dynamic shared memory (bytes) and the shift that aligns it
/// to the swizzle.
struct StageMemory {
  Value bytes, shift;
  /// The tile of type `type` in stage `stage`: at byte `offset` of stage 0,
  /// `stride` bytes from one stage to the next.
  Value view(OpBuilder &b, Location loc, MemRefType type, Value stage,
             int64_t offset, int64_t stride) const;
};

/// The m64nNk16 accumulator fragment of a warpgroup: thread t holds, for
/// every 8-column group g, rows 16·(t/32 mod 4) + (t%32)/4 (+8: the second
/// row half) and columns 8g + 2·(t%4) (+1: the second of the pair).
struct WgmmaFragmentLayout {
  /// Columns of the fragment (the wgmma's N).
  int64_t columns;
  /// The register of 8-column group `group`, row half `half` (0 or 1) and
  /// column `pair` (0 or 1) of the pair.
  int64_t registerOf(int64_t group, int64_t half, int64_t pair) const {
    return 4 * group + 2 * half + pair;
  }
  /// Registers per thread.
  int64_t registers() const { return columns / 2; }
};

/// The operand and accumulator types of one wgmma.
struct WgmmaKind {
  NVVM::WGMMATypes operands = NVVM::WGMMATypes::bf16;
  NVVM::WGMMATypes sums = NVVM::WGMMATypes::f32;
  /// Bytes of one operand element (its K per wgmma is 32 bytes' worth).
  int64_t elementBytes = 2;
};

/// The 128-byte swizzle spans of K in one stage of two K-major operand
/// tiles: each span is its own swizzled block of the tile, the next
/// `strideA` (`strideB`) descriptor units (16 bytes) further.
struct WgmmaStageSpans {
  int64_t count = 1;
  int64_t strideA = 0, strideB = 0;
};

/// Builds sm_90a operations at `b`'s insertion point; holds no state but
/// the builder and the location.
class HopperEmitter {
public:
  HopperEmitter(OpBuilder &b, Location loc) : b(b), loc(loc) {}

  /// The dynamic shared memory as a memref of `bytes` i8: the external,
  /// zero-sized shared global `global` viewed through a built descriptor.
  Value dynamicSharedMemory(LLVM::GlobalOp global, int64_t bytes);
  /// The address of a memref's aligned pointer, as i64.
  Value addressOf(Value view);
  /// The wgmma descriptor of a K-major, 128B-swizzled tile at `address`.
  Value wgmmaDescriptor(Value address);
  /// Issues the wgmmas of one K stage (`spans` 128-byte spans) on
  /// `accumulators` (one per 64-row fragment of A, `fragmentStride`
  /// descriptor units apart, all against the B tile of `descriptorB`),
  /// commits them as a group and waits until at most `pendingGroups` groups
  /// are in flight. `fresh`: the first wgmma ignores the accumulators
  /// (scale-d 0).
  SmallVector<Value> wgmmaStage(ArrayRef<Value> accumulators, Value descriptorA,
                                Value descriptorB, int64_t fragmentStride,
                                const WgmmaStageSpans &spans,
                                const WgmmaFragmentLayout &layout,
                                const WgmmaKind &kind, Type accumulatorType,
                                int64_t pendingGroups, bool fresh);
  /// Issues the four bf16 m64nNk16 wgmmas of one 64-wide K stage with the
  /// A operand from registers: `operandA[f][s]` holds the four A registers
  /// (two bf16 each, in the fragment order of the wgmma's register operand)
  /// of 64-row fragment f at k16 step s, against the K-major, 128B-swizzled
  /// B tile of `descriptorB`. The accumulators of `layout` are added to
  /// (never cleared); commits the wgmmas as a group and waits until at most
  /// `pendingGroups` groups are in flight.
  SmallVector<Value>
  wgmmaRegisterStage(ArrayRef<Value> accumulators,
                     ArrayRef<SmallVector<Value, 16>> operandA,
                     Value descriptorB, const WgmmaFragmentLayout &layout,
                     Type accumulatorType, int64_t pendingGroups);
  /// An accumulator of `accumulatorType` with every register `element`'s 0.
  Value zeroAccumulator(LLVM::LLVMStructType accumulatorType, Type element);
  /// Waits on barrier `position` mod `depth` of the mbarrier group `ring`
  /// until the phase of round position / depth is complete or, with
  /// `previousRound`, that of the round before (which a fresh barrier
  /// counts as complete).
  void waitForPhase(Value ring, Value position, int64_t depth,
                    bool previousRound);
  /// waitForPhase on barrier `barrier` of `ring` for round `round`, both
  /// known to the caller (a constant barrier folds its address).
  void waitForRoundPhase(Value ring, Value barrier, Value round,
                         bool previousRound);
  /// Waits on the mbarrier at `barrier` (a shared pointer) until its phase
  /// of parity `parity` (i32) completes, acquiring at CTA scope.
  void waitForParity(Value barrier, Value parity);
  /// Copies one 16-byte chunk by cp.async from `source` at `sourceIndices`
  /// to `tile` at `tileIndices`: `chunkElements` elements, of which
  /// `elements` are read (the rest zero-filled); `bypassL1` caches it in L2
  /// only.
  void copyAsync(Value tile, ValueRange tileIndices, Value source,
                 ValueRange sourceIndices, int64_t chunkElements,
                 Value elements, bool bypassL1);
  /// Orders this thread's generic-proxy writes to shared memory (cp.async,
  /// st.shared) before the async proxy's reads (wgmma, TMA).
  void fenceAsyncProxy();
  /// One arrival on barrier `barrier` of the mbarrier group `ring` once
  /// every cp.async this thread issued so far has landed. The arrival is
  /// one of those the barrier was initialized to expect (.noinc), and the
  /// thread goes on at once.
  void arriveWhenCopiesLand(Value ring, Value barrier);
  /// A barrier over every thread of the cluster.
  void syncCluster();
  /// `barrier` (a shared pointer of this block) as the address of the same
  /// barrier in the block of cluster rank `rank`.
  Value clusterAddress(Value barrier, Value rank);
  /// One arrival, releasing at CTA scope, on the cluster barrier `target`
  /// (see clusterAddress) by the threads where `predicate` holds, without
  /// a branch (a wgmma may be in flight: ptxas serializes wgmmas around
  /// divergent code).
  void arriveOnClusterBarrier(Value target, Value predicate);
  /// Adds `first` and `second` to the two f32 values at global `address`
  /// (i64, 8-byte aligned) as one reduction.
  void reduceAddPair(Value address, Value first, Value second);
  /// Runs `producer` where `isProducer` holds and `consumers` elsewhere,
  /// each after setmaxnreg moved its registers (0: left alone).
  void splitRoles(Value isProducer, int64_t producerRegisters,
                  int64_t consumerRegisters, function_ref<void()> producer,
                  function_ref<void()> consumers);

private:
  /// One wgmma m64nNk16 (N: `layout.columns`) of bf16 with A from the four
  /// registers `a`, B by `descriptorB`, added to `accumulator`. There is no
  /// NVVM op for a register A operand: inline PTX, the accumulators tied.
  Value wgmmaRegisterA(Value accumulator, ArrayRef<Value> a, Value descriptorB,
                       const WgmmaFragmentLayout &layout, Type accumulatorType);
  Value index(int64_t value);
  Value i64(int64_t value);

  OpBuilder &b;
  Location loc;
};

} // namespace mlir::moe::hopper

#endif // MOE_LIB_CONVERSION_MOETOGPU_HOPPEREMITTER_H

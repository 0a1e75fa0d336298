//===- FusedAlign.h - one slot block of moe.align's schedule ---*- C++ -*-===//
//
// A GEMM block that aligns its own slot block (`fused_align_assignments`):
// from the ids it computes, in shared memory, what moe.align's kernel would
// have written for that block, so that the call runs no align kernel. Every
// block of the grid does the same work on the same ids and agrees on the
// schedule; within an expert's group, slots follow the assignment order.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_FUSEDALIGN_H
#define MOE_LIB_CONVERSION_MOETOGPU_FUSEDALIGN_H

#include "ScheduleEmitter.h"

namespace mlir::moe {

/// The shared-memory arrays of the alignment, each a
/// memref<N x i32, workgroup>.
struct FusedAlignArrays {
  /// Per expert: its count of assignments.
  Value counts;
  /// The block's slots: the assignment each holds, or the sentinel M·k.
  Value slots;
  /// A sum per warp (the scans).
  Value warpSums;
  /// The block's expert (-1 past the schedule), its first rank in the
  /// expert's group, the padded count and the count of ids outside
  /// [-1, E).
  Value facts;
};

/// What the block learned of the schedule.
struct OwnSlotBlock {
  /// The block's expert (i32; -1 where the block lies past the padded
  /// count) and the padded count (index).
  Value expert, paddedCount;
  /// Ids outside [-1, E) (i32), a runtime error as for moe.align.
  Value invalidIds;
};

/// Emits the alignment of one slot block, by all `threads` threads of the
/// block (a multiple of 32; every thread must reach it).
class FusedAlignEmitter : ScheduleEmitter {
public:
  FusedAlignEmitter(OpBuilder &b, Location loc, int64_t numExperts,
                    int64_t topK, int64_t blockM, int64_t threads)
      : ScheduleEmitter(b, loc, numExperts, blockM, topK), threads(threads) {}

  /// Aligns slot block `block` (index) of the schedule of `ids`
  /// (memref<?xk x i32>) into `arrays`; `tid` is the thread's index. Ends
  /// with a block barrier: the slots are then readable by every thread.
  OwnSlotBlock build(Value ids, Value block, Value tid,
                     const FusedAlignArrays &arrays);

private:
  /// Zeroes the counts, fills the slots with the sentinel.
  void initialize();
  /// Counts each expert's assignments, and the invalid ids.
  void countAssignments();
  /// The padded starts by a scan of the counts rounded up to block_m; the
  /// thread whose expert holds the block records it.
  void findBlockExpert();
  /// Each assignment of the block's expert whose rank (its place in the
  /// expert's group, in assignment order) falls in the block, into its
  /// slot.
  void placeAssignments(Value expert, Value firstRank);
  /// The sum of the warp sums of warps [0, `warps`) (i32).
  Value sumOfWarps(Value warps);
  Value fact(int64_t which);
  void setFact(int64_t which, Value value);

  int64_t threads;
  Value ids, block, tid, lane, warp, assignments;
  FusedAlignArrays arrays;
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_FUSEDALIGN_H

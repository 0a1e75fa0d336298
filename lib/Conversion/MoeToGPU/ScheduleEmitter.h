//===- ScheduleEmitter.h - what the align kernels compute alike -*- C++ -*-===//
//
// The kernels that build moe.align's schedule, whole (the single-block
// kernel, the two over many blocks) or one slot block of it (a GEMM that
// aligns its own, FusedAlign.h), read an assignment's expert, count it,
// round expert counts up to block_m and scan them the same way.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_SCHEDULEEMITTER_H
#define MOE_LIB_CONVERSION_MOETOGPU_SCHEDULEEMITTER_H

#include "KernelEmitter.h"

namespace mlir::moe {

/// The schedule's sizes and the arithmetic every align kernel shares.
struct ScheduleEmitter : KernelEmitter {
  ScheduleEmitter(OpBuilder &b, Location loc, int64_t numExperts,
                  int64_t blockM, int64_t topK)
      : KernelEmitter{b, loc}, numExperts(numExperts), blockM(blockM),
        topK(topK) {}

  /// The expert id (i32) of assignment `assignment` of the ids
  /// (memref<?xk x i32>) and whether it is scheduled here (in [0, E)).
  std::pair<Value, Value> expertOf(Value ids, Value assignment) {
    Value token = arith::DivUIOp::create(b, loc, assignment, index(topK));
    Value choice = arith::RemUIOp::create(b, loc, assignment, index(topK));
    Value id = memref::LoadOp::create(b, loc, ids, ValueRange{token, choice});
    Value valid = arith::AndIOp::create(
        b, loc, cmp(arith::CmpIPredicate::sge, id, i32(0)),
        cmp(arith::CmpIPredicate::slt, id, i32(numExperts)));
    return {id, valid};
  }
  /// `count` (i32) rounded up to block_m.
  Value roundedToBlock(Value count) {
    return arith::MulIOp::create(
        b, loc,
        arith::DivUIOp::create(
            b, loc, arith::AddIOp::create(b, loc, count, i32(blockM - 1)),
            i32(blockM)),
        i32(blockM));
  }
  /// The sum of roundedToBlock(counts[e]) over experts [first, end) (i32).
  Value sumRoundedCounts(Value counts, Value first, Value end) {
    auto loop = scf::ForOp::create(
        b, loc, first, end, index(1), ValueRange{i32(0)},
        [&](OpBuilder &, Location, Value expert, ValueRange sum) {
          Value count = memref::LoadOp::create(b, loc, counts, expert);
          scf::YieldOp::create(b, loc,
                               ValueRange{arith::AddIOp::create(
                                   b, loc, sum[0], roundedToBlock(count))});
        });
    return loop.getResult(0);
  }

  /// Counts assignment `assignment` of `ids`: one more in `counts` at its
  /// expert where it is scheduled here, else one more in `errors` at
  /// `errorIndex` unless its id is -1 (another device's assignment, not an
  /// error).
  void countAssignment(Value ids, Value assignment, Value counts, Value errors,
                       Value errorIndex) {
    auto [id, valid] = expertOf(ids, assignment);
    auto ifOp = scf::IfOp::create(b, loc, valid, /*withElse=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi, i32(1),
                                counts, toIndex(id));
    b.setInsertionPointToStart(ifOp.elseBlock());
    ifThen(negate(cmp(arith::CmpIPredicate::eq, id, i32(-1))), [&] {
      memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi, i32(1),
                                  errors, errorIndex);
    });
  }

  /// The experts [first, end) whose padded counts thread `tid` of
  /// `threads` sums in a scan of the padded starts: contiguous ranges in
  /// thread order.
  std::pair<Value, Value> expertRangeOf(Value tid, int64_t threads) {
    int64_t perThread = (numExperts + threads - 1) / threads;
    Value first = arith::MinUIOp::create(
        b, loc, arith::MulIOp::create(b, loc, tid, index(perThread)),
        index(numExperts));
    Value end = arith::MinUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, first, index(perThread)),
        index(numExperts));
    return {first, end};
  }

  /// The inclusive scan of `own` over the lanes of each warp; the warp's
  /// last lane stores the warp's total into `warpSums` at `warp`.
  Value scanWithinWarp(Value own, Value lane, Value warp, Value warpSums) {
    Value inclusive = warpInclusiveScan(b, loc, own, lane);
    ifThen(cmp(arith::CmpIPredicate::eq, lane, index(kWarpSize - 1)),
           [&] { memref::StoreOp::create(b, loc, inclusive, warpSums, warp); });
    return inclusive;
  }

  int64_t numExperts, blockM, topK;
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_SCHEDULEEMITTER_H

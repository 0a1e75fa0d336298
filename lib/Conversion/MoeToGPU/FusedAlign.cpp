//===- FusedAlign.cpp - one slot block of moe.align's schedule ------------===//
//
// Four phases, separated by block barriers: the counts (shared atomics), the
// padded starts (a warp scan by shuffles and a sum over the warps' totals),
// the block's expert, then the ranks of that expert's assignments by warp
// ballots, one round of `threads` ids at a time. A few hundred ids take a
// few rounds; what costs is the ids' one load and the barriers.
//
//===----------------------------------------------------------------------===//

#include "FusedAlign.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
enum Fact : int64_t { kExpert = 0, kFirstRank = 1, kPadded = 2, kInvalid = 3 };
} // namespace

Value FusedAlignEmitter::fact(int64_t which) {
  return memref::LoadOp::create(b, loc, arrays.facts, index(which));
}

void FusedAlignEmitter::setFact(int64_t which, Value value) {
  memref::StoreOp::create(b, loc, value, arrays.facts, index(which));
}

Value FusedAlignEmitter::sumOfWarps(Value warps) {
  auto loop = scf::ForOp::create(
      b, loc, index(0), warps, index(1), ValueRange{i32(0)},
      [&](OpBuilder &, Location, Value w, ValueRange sum) {
        Value part = memref::LoadOp::create(b, loc, arrays.warpSums, w);
        scf::YieldOp::create(
            b, loc, ValueRange{arith::AddIOp::create(b, loc, sum[0], part)});
      });
  return loop.getResult(0);
}

void FusedAlignEmitter::initialize() {
  forEach(tid, index(numExperts), index(threads), [&](Value expert) {
    memref::StoreOp::create(b, loc, i32(0), arrays.counts, expert);
  });
  Value sentinel = toI32(assignments);
  forEach(tid, index(blockM), index(threads), [&](Value row) {
    memref::StoreOp::create(b, loc, sentinel, arrays.slots, row);
  });
  ifThen(cmp(arith::CmpIPredicate::eq, tid, index(0)), [&] {
    setFact(kExpert, i32(-1));
    setFact(kInvalid, i32(0));
  });
  gpu::BarrierOp::create(b, loc);
}

void FusedAlignEmitter::countAssignments() {
  forEach(tid, assignments, index(threads), [&](Value assignment) {
    countAssignment(ids, assignment, arrays.counts, arrays.facts,
                    index(kInvalid));
  });
  gpu::BarrierOp::create(b, loc);
}

void FusedAlignEmitter::findBlockExpert() {
  // Each thread sums a contiguous range of experts' padded counts.
  auto [first, end] = expertRangeOf(tid, threads);
  Value own = sumRoundedCounts(arrays.counts, first, end);
  // Inclusive scan over the warp's lanes, then the warps before.
  Value inclusive = scanWithinWarp(own, lane, warp, arrays.warpSums);
  gpu::BarrierOp::create(b, loc);
  Value start = arith::SubIOp::create(
      b, loc, arith::AddIOp::create(b, loc, sumOfWarps(warp), inclusive), own);
  ifThen(cmp(arith::CmpIPredicate::eq, tid, index(0)),
         [&] { setFact(kPadded, sumOfWarps(index(threads / kWarpSize))); });
  // The expert whose padded range holds the block's first slot.
  Value target = toI32(arith::MulIOp::create(b, loc, block, index(blockM)));
  scf::ForOp::create(
      b, loc, first, end, index(1), ValueRange{start},
      [&](OpBuilder &, Location, Value expert, ValueRange carried) {
        Value begin = carried[0];
        Value size = roundedToBlock(
            memref::LoadOp::create(b, loc, arrays.counts, expert));
        Value next = arith::AddIOp::create(b, loc, begin, size);
        Value holds = arith::AndIOp::create(
            b, loc, cmp(arith::CmpIPredicate::sle, begin, target),
            cmp(arith::CmpIPredicate::slt, target, next));
        ifThen(holds, [&] {
          setFact(kExpert, toI32(expert));
          setFact(kFirstRank, arith::SubIOp::create(b, loc, target, begin));
        });
        scf::YieldOp::create(b, loc, ValueRange{next});
      });
  gpu::BarrierOp::create(b, loc);
}

void FusedAlignEmitter::placeAssignments(Value expert, Value firstRank) {
  Value rounds = arith::DivUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, assignments, index(threads - 1)),
      index(threads));
  Value laneBit = arith::ShLIOp::create(b, loc, i32(1), toI32(lane));
  Value lanesBelow = arith::SubIOp::create(b, loc, laneBit, i32(1));
  Value lastRank = arith::AddIOp::create(b, loc, firstRank, i32(blockM));
  scf::ForOp::create(
      b, loc, index(0), rounds, index(1), ValueRange{i32(0)},
      [&](OpBuilder &, Location, Value round, ValueRange carried) {
        Value assignment = arith::AddIOp::create(
            b, loc, arith::MulIOp::create(b, loc, round, index(threads)), tid);
        Value inRange = cmp(arith::CmpIPredicate::ult, assignment, assignments);
        Value safe =
            arith::SelectOp::create(b, loc, inRange, assignment, index(0));
        Value id = expertOf(ids, safe).first;
        Value matches = arith::AndIOp::create(
            b, loc, inRange, cmp(arith::CmpIPredicate::eq, id, expert));
        // Every lane votes: the loop's bounds are the block's.
        Value ballot =
            NVVM::VoteSyncOp::create(b, loc, b.getI32Type(), i32(-1), matches,
                                     NVVM::VoteSyncKind::ballot);
        ifThen(cmp(arith::CmpIPredicate::eq, lane, index(0)), [&] {
          memref::StoreOp::create(b, loc, LLVM::CtPopOp::create(b, loc, ballot),
                                  arrays.warpSums, warp);
        });
        gpu::BarrierOp::create(b, loc);
        Value rank = arith::AddIOp::create(
            b, loc, arith::AddIOp::create(b, loc, carried[0], sumOfWarps(warp)),
            LLVM::CtPopOp::create(
                b, loc, arith::AndIOp::create(b, loc, ballot, lanesBelow)));
        Value inBlock = arith::AndIOp::create(
            b, loc,
            arith::AndIOp::create(
                b, loc, matches,
                cmp(arith::CmpIPredicate::sge, rank, firstRank)),
            cmp(arith::CmpIPredicate::slt, rank, lastRank));
        ifThen(inBlock, [&] {
          memref::StoreOp::create(
              b, loc, toI32(assignment), arrays.slots,
              toIndex(arith::SubIOp::create(b, loc, rank, firstRank)));
        });
        Value roundTotal = sumOfWarps(index(threads / kWarpSize));
        // The warp sums are written again next round.
        gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(
            b, loc,
            ValueRange{arith::AddIOp::create(b, loc, carried[0], roundTotal)});
      });
}

OwnSlotBlock FusedAlignEmitter::build(Value idsValue, Value blockValue,
                                      Value tidValue,
                                      const FusedAlignArrays &shared) {
  ids = idsValue;
  block = blockValue;
  tid = tidValue;
  arrays = shared;
  lane = arith::RemUIOp::create(b, loc, tid, index(kWarpSize));
  warp = arith::DivUIOp::create(b, loc, tid, index(kWarpSize));
  assignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, ids, 0), index(topK));
  initialize();
  countAssignments();
  findBlockExpert();
  OwnSlotBlock own;
  own.expert = fact(kExpert);
  own.paddedCount = toIndex(fact(kPadded));
  own.invalidIds = fact(kInvalid);
  Value firstRank = fact(kFirstRank);
  // The expert is the block's: the branch is uniform.
  ifThen(cmp(arith::CmpIPredicate::sge, own.expert, i32(0)),
         [&] { placeAssignments(own.expert, firstRank); });
  gpu::BarrierOp::create(b, loc);
  return own;
}

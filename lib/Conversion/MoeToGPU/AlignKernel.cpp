//===- AlignKernel.cpp - the GPU kernel of moe.align ----------------------===//
//
// One thread block computes the whole aligned schedule, so that nothing is
// read back to the host: per-expert counts by shared-memory atomics, the
// padded starts by a scan over the threads (each a contiguous range of
// experts; shuffles within a warp, then over the warps' sums), the sentinel
// and block-expert fill, then the scatter of every assignment to its expert's
// next slot. The scatter takes slots by atomics, so the order within an
// expert's group is not the assignment order (moe.align leaves it open).
// An id outside [-1, E) is a runtime error, as on the CPU: it is skipped
// and counted in an error word the host can read after the call.
//
//===----------------------------------------------------------------------===//

#include "MoeGpuKernels.h"
#include "ScheduleEmitter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kAlignThreads = 1024;

/// Builds the align kernel's body, one method per phase; the phases are
/// separated by block barriers.
class AlignKernelBuilder : ScheduleEmitter {
public:
  using ScheduleEmitter::ScheduleEmitter;

  /// Fills `func` (arguments: ids, sorted, blocks, padded, errors) over the
  /// shared arrays `countsName` and `cursorsName` of type `countsType` and
  /// `warpSumsName` of `warpSumsType`.
  void build(gpu::GPUFuncOp func, MemRefType countsType, StringRef countsName,
             StringRef cursorsName, MemRefType warpSumsType,
             StringRef warpSumsName);

private:
  /// Emits `for (i = tid; i < bound; i += kAlignThreads) body(i)`.
  void forEachStrided(Value bound, function_ref<void(Value)> body) {
    forEach(tid, bound, index(kAlignThreads), body);
  }
  /// Zeroes the counts and the error word, then counts each expert's
  /// assignments; an id outside [-1, E) is counted as an error.
  void countAssignments();
  /// Padded starts: an exclusive scan of the counts rounded up to block_m,
  /// into the cursors and the padded count.
  void scanPaddedStarts();
  /// Every slot holds the sentinel M·k, every block past the padded count
  /// expert -1, and each expert's blocks its id.
  void fillSlotsAndBlocks();
  /// Each assignment into its expert's next slot.
  void scatterAssignments();

  Value ids, sorted, blocks, padded, errors, counts, cursors, warpSums, tid,
      numAssignments;
};
} // namespace

void AlignKernelBuilder::countAssignments() {
  forEachStrided(index(numExperts), [&](Value expert) {
    memref::StoreOp::create(b, loc, i32(0), counts, expert);
  });
  ifThen(cmp(arith::CmpIPredicate::eq, tid, index(0)),
         [&] { memref::StoreOp::create(b, loc, i32(0), errors, index(0)); });
  gpu::BarrierOp::create(b, loc);
  forEachStrided(numAssignments, [&](Value assignment) {
    countAssignment(ids, assignment, counts, errors, index(0));
  });
  gpu::BarrierOp::create(b, loc);
}

void AlignKernelBuilder::scanPaddedStarts() {
  // Each thread sums a contiguous range of experts' rounded counts.
  auto [first, end] = expertRangeOf(tid, kAlignThreads);
  Value own = sumRoundedCounts(counts, first, end);
  Value lane = arith::RemUIOp::create(b, loc, tid, index(kWarpSize));
  Value warp = arith::DivUIOp::create(b, loc, tid, index(kWarpSize));
  Value inclusive = scanWithinWarp(own, lane, warp, warpSums);
  gpu::BarrierOp::create(b, loc);
  // The first warp turns the warps' sums into exclusive starts.
  ifThen(cmp(arith::CmpIPredicate::eq, warp, index(0)), [&] {
    Value sum = memref::LoadOp::create(b, loc, warpSums, lane);
    Value scanned = warpInclusiveScan(b, loc, sum, lane);
    memref::StoreOp::create(b, loc, arith::SubIOp::create(b, loc, scanned, sum),
                            warpSums, lane);
  });
  gpu::BarrierOp::create(b, loc);
  Value start = arith::SubIOp::create(
      b, loc,
      arith::AddIOp::create(
          b, loc, memref::LoadOp::create(b, loc, warpSums, warp), inclusive),
      own);
  auto startLoop = scf::ForOp::create(
      b, loc, first, end, index(1), ValueRange{start},
      [&](OpBuilder &, Location, Value expert, ValueRange carried) {
        memref::StoreOp::create(b, loc, carried[0], cursors, expert);
        Value count = memref::LoadOp::create(b, loc, counts, expert);
        scf::YieldOp::create(b, loc,
                             ValueRange{arith::AddIOp::create(
                                 b, loc, carried[0], roundedToBlock(count))});
      });
  // The last thread's range ends at the total.
  ifThen(cmp(arith::CmpIPredicate::eq, tid, index(kAlignThreads - 1)), [&] {
    memref::StoreOp::create(b, loc, startLoop.getResult(0), padded, index(0));
  });
  gpu::BarrierOp::create(b, loc);
}

void AlignKernelBuilder::fillSlotsAndBlocks() {
  Value sentinel = toI32(numAssignments);
  forEachStrided(memref::DimOp::create(b, loc, sorted, 0), [&](Value slot) {
    memref::StoreOp::create(b, loc, sentinel, sorted, slot);
  });
  Value total = toIndex(memref::LoadOp::create(b, loc, padded, index(0)));
  forEachStrided(memref::DimOp::create(b, loc, blocks, 0), [&](Value block) {
    Value first = arith::MulIOp::create(b, loc, block, index(blockM));
    ifThen(cmp(arith::CmpIPredicate::sge, first, total),
           [&] { memref::StoreOp::create(b, loc, i32(-1), blocks, block); });
  });
  forEachStrided(index(numExperts), [&](Value expert) {
    Value start = toIndex(memref::LoadOp::create(b, loc, cursors, expert));
    Value count = toIndex(memref::LoadOp::create(b, loc, counts, expert));
    Value firstBlock = arith::DivUIOp::create(b, loc, start, index(blockM));
    Value blockCount = arith::DivUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, count, index(blockM - 1)),
        index(blockM));
    Value expertId = toI32(expert);
    forEach(firstBlock, arith::AddIOp::create(b, loc, firstBlock, blockCount),
            index(1), [&](Value block) {
              memref::StoreOp::create(b, loc, expertId, blocks, block);
            });
  });
  // The sentinel fill must land before the scatter overwrites slots.
  gpu::BarrierOp::create(b, loc);
}

void AlignKernelBuilder::scatterAssignments() {
  forEachStrided(numAssignments, [&](Value assignment) {
    auto [id, valid] = expertOf(ids, assignment);
    ifThen(valid, [&, id = id] {
      Value slot = memref::AtomicRMWOp::create(
          b, loc, arith::AtomicRMWKind::addi, i32(1), cursors, toIndex(id));
      memref::StoreOp::create(b, loc, toI32(assignment), sorted, toIndex(slot));
    });
  });
}

void AlignKernelBuilder::build(gpu::GPUFuncOp func, MemRefType countsType,
                               StringRef countsName, StringRef cursorsName,
                               MemRefType warpSumsType,
                               StringRef warpSumsName) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  ids = entry.getArgument(0);
  sorted = entry.getArgument(1);
  blocks = entry.getArgument(2);
  padded = entry.getArgument(3);
  errors = entry.getArgument(4);
  counts = memref::GetGlobalOp::create(b, loc, countsType, countsName);
  cursors = memref::GetGlobalOp::create(b, loc, countsType, cursorsName);
  warpSums = memref::GetGlobalOp::create(b, loc, warpSumsType, warpSumsName);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  numAssignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, ids, 0), index(topK));
  countAssignments();
  scanPaddedStarts();
  fillSlotsAndBlocks();
  scatterAssignments();
  gpu::ReturnOp::create(b, loc);
}

FailureOr<gpu::GPUFuncOp> mlir::moe::buildAlignKernel(OpBuilder &b,
                                                      gpu::GPUModuleOp module,
                                                      AlignOp op,
                                                      StringRef name) {
  int64_t numExperts = op.getNumExperts();
  int64_t topK = op.getIds().getType().getDimSize(1);
  if (ShapedType::isDynamic(topK))
    return op.emitRemark("no GPU kernel: the number of experts per token "
                         "must be static");
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  auto i32 = b.getI32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  auto countsType = MemRefType::get({numExperts}, i32,
                                    MemRefLayoutAttrInterface(), workgroup);
  b.setInsertionPointToStart(module.getBody());
  std::string countsName = (name + "_counts").str();
  std::string cursorsName = (name + "_cursors").str();
  for (StringRef global : {StringRef(countsName), StringRef(cursorsName)})
    memref::GlobalOp::create(b, loc, global, b.getStringAttr("private"),
                             countsType, Attribute(), /*constant=*/false,
                             b.getI64IntegerAttr(kSharedArrayAlignment));
  // One sum per warp of the block.
  auto warpSumsType = MemRefType::get({kAlignThreads / kWarpSize}, i32,
                                      MemRefLayoutAttrInterface(), workgroup);
  std::string warpSumsName = (name + "_warp_sums").str();
  memref::GlobalOp::create(b, loc, warpSumsName, b.getStringAttr("private"),
                           warpSumsType, Attribute(), /*constant=*/false,
                           b.getI64IntegerAttr(kSharedArrayAlignment));
  b.setInsertionPointToEnd(module.getBody());

  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, topK}, i32), MemRefType::get({dynamic}, i32),
      MemRefType::get({dynamic}, i32), MemRefType::get({1}, i32),
      MemRefType::get({1}, i32)};
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kAlignThreads))});
  AlignKernelBuilder(b, loc, numExperts, op.getBlockM(), topK)
      .build(func, countsType, countsName, cursorsName, warpSumsType,
             warpSumsName);
  return func;
}

//===- AlignManyBlocksKernels.cpp - moe.align over many blocks ------------===//
//
// The aligned schedule in two kernels over chunks of 1024 assignments, for
// assignment counts where the single-block kernel is the bottleneck (about
// 48 µs for 32768 assignments on one SM):
//
// - count: each block counts its chunk's experts in shared memory and adds
//   them into the global counts (one atomic per expert present), counts the
//   invalid ids, and fills its share of the slots with the sentinel;
// - scatter: every block scans the padded counts itself (they are few),
//   block 0 writes the padded count, the blocks share the block-expert
//   fill, and each block reserves a range of every expert's slots with one
//   atomic per expert present (the global cursors) before placing its
//   assignments by shared-memory ranks.
//
// The counts, the cursors and the error word must be zero before the count
// kernel; the host zeroes them. The order within an expert's group depends
// on the atomics (moe.align leaves it open).
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
constexpr int64_t kThreads = kAlignManyBlocksThreads;
constexpr int64_t kChunk = kAlignManyBlocksChunk;

/// What the two kernels share: the op's sizes and small builders.
class AlignBuilder : public ScheduleEmitter {
public:
  AlignBuilder(OpBuilder &b, Location loc, AlignOp op)
      : ScheduleEmitter(b, loc, op.getNumExperts(), op.getBlockM(),
                        op.getIds().getType().getDimSize(1)) {}

  /// A kernel `name` of `arguments` with its shared arrays of E i32 named
  /// `name_<array>`, one per entry of `arrays`.
  gpu::GPUFuncOp createKernel(gpu::GPUModuleOp module, StringRef name,
                              ArrayRef<Type> arguments,
                              ArrayRef<StringRef> arrays,
                              SmallVectorImpl<Value> &shared);
  /// Calls body(assignment) for the block's chunk of assignments.
  void forEachOfChunk(Value numAssignments, function_ref<void(Value)> body);
  /// Counts the chunk's valid assignments per expert into `local` (zeroed
  /// here); invalid ids other than -1 go to `errors` if it is set.
  void countChunk(Value ids, Value numAssignments, Value local, Value errors);

  Value tid, block, gridSize;
};
} // namespace

gpu::GPUFuncOp AlignBuilder::createKernel(gpu::GPUModuleOp module,
                                          StringRef name,
                                          ArrayRef<Type> arguments,
                                          ArrayRef<StringRef> arrays,
                                          SmallVectorImpl<Value> &shared) {
  auto workgroup =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  b.setInsertionPointToStart(module.getBody());
  SmallVector<std::pair<std::string, MemRefType>> globals;
  for (StringRef array : arrays) {
    int64_t size = array == "partials" ? kThreads : numExperts;
    auto type = MemRefType::get({size}, b.getI32Type(),
                                MemRefLayoutAttrInterface(), workgroup);
    std::string global = (name + "_" + array).str();
    memref::GlobalOp::create(b, loc, global, b.getStringAttr("private"), type,
                             Attribute(), /*constant=*/false,
                             b.getI64IntegerAttr(kSharedArrayAlignment));
    globals.push_back({global, type});
  }
  b.setInsertionPointToEnd(module.getBody());
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kThreads)),
       b.getNamedAttr("chunk", b.getI64IntegerAttr(kChunk))});
  b.setInsertionPointToStart(&func.getBody().front());
  for (auto &[global, type] : globals)
    shared.push_back(memref::GetGlobalOp::create(b, loc, type, global));
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  gridSize = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
  return func;
}

void AlignBuilder::forEachOfChunk(Value numAssignments,
                                  function_ref<void(Value)> body) {
  Value first = arith::MulIOp::create(b, loc, block, index(kChunk));
  Value end = arith::MinUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, first, index(kChunk)),
      numAssignments);
  forEach(arith::AddIOp::create(b, loc, first, tid), end, index(kThreads),
          body);
}

void AlignBuilder::countChunk(Value ids, Value numAssignments, Value local,
                              Value errors) {
  forEach(tid, index(numExperts), index(kThreads), [&](Value expert) {
    memref::StoreOp::create(b, loc, i32(0), local, expert);
  });
  gpu::BarrierOp::create(b, loc);
  forEachOfChunk(numAssignments, [&](Value assignment) {
    auto [id, valid] = expertOf(ids, assignment);
    ifThen(valid, [&, id = id] {
      memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi, i32(1),
                                  local, toIndex(id));
    });
    if (!errors)
      return;
    Value invalid = arith::AndIOp::create(
        b, loc,
        arith::XOrIOp::create(
            b, loc, valid,
            arith::ConstantOp::create(b, loc, b.getBoolAttr(true))),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, id, i32(-1)));
    ifThen(invalid, [&] {
      memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi, i32(1),
                                  errors, index(0));
    });
  });
  gpu::BarrierOp::create(b, loc);
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildAlignCountKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                 AlignOp op, StringRef name) {
  OpBuilder::InsertionGuard guard(b);
  AlignBuilder align(b, op.getLoc(), op);
  Location loc = op.getLoc();
  auto i32 = b.getI32Type();
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Value> shared;
  gpu::GPUFuncOp func = align.createKernel(
      module, name,
      {MemRefType::get({dynamic, align.topK}, i32),
       MemRefType::get({dynamic}, i32),
       MemRefType::get({2 * align.numExperts}, i32), MemRefType::get({1}, i32)},
      {"local"}, shared);
  Block &entry = func.getBody().front();
  Value ids = entry.getArgument(0), sorted = entry.getArgument(1),
        state = entry.getArgument(2), errors = entry.getArgument(3);
  Value local = shared[0];
  Value numAssignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, ids, 0), align.index(align.topK));
  // The sentinel in every slot, the grid sharing them; the scatter kernel
  // overwrites the scheduled ones after this kernel.
  Value sentinel = arith::IndexCastOp::create(b, loc, i32, numAssignments);
  Value stride =
      arith::MulIOp::create(b, loc, align.gridSize, align.index(kThreads));
  Value firstSlot = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, align.block, align.index(kThreads)),
      align.tid);
  align.forEach(firstSlot, memref::DimOp::create(b, loc, sorted, 0), stride,
                [&](Value slot) {
                  memref::StoreOp::create(b, loc, sentinel, sorted, slot);
                });
  align.countChunk(ids, numAssignments, local, errors);
  align.forEach(align.tid, align.index(align.numExperts), align.index(kThreads),
                [&](Value expert) {
                  Value count = memref::LoadOp::create(b, loc, local, expert);
                  Value present = arith::CmpIOp::create(
                      b, loc, arith::CmpIPredicate::sgt, count, align.i32(0));
                  align.ifThen(present, [&] {
                    memref::AtomicRMWOp::create(b, loc,
                                                arith::AtomicRMWKind::addi,
                                                count, state, expert);
                  });
                });
  gpu::ReturnOp::create(b, loc);
  return func;
}

namespace {
/// The scatter kernel's steps, on top of the shared builder.
class ScatterBuilder : public AlignBuilder {
public:
  using AlignBuilder::AlignBuilder;
  /// starts[e] = the padded start of expert e (an exclusive scan of the
  /// counts rounded up to block_m, each thread over a contiguous range of
  /// experts, the threads' sums scanned in `partials`); returns the total.
  Value scanStarts(Value state, Value starts, Value partials);
  /// Block experts: each expert's blocks, and -1 past the padded count.
  void fillBlockExperts(Value state, Value blocks, Value starts, Value total);
};
} // namespace

Value ScatterBuilder::scanStarts(Value state, Value starts, Value partials) {
  int64_t perThread = (numExperts + kThreads - 1) / kThreads;
  Value first = arith::MulIOp::create(b, loc, tid, index(perThread));
  Value end = arith::MinUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, first, index(perThread)),
      index(numExperts));
  Value own = sumRoundedCounts(state, first, end);
  memref::StoreOp::create(b, loc, own, partials, tid);
  gpu::BarrierOp::create(b, loc);
  // Inclusive Hillis-Steele scan of the threads' sums.
  for (int64_t offset = 1; offset < kThreads; offset *= 2) {
    Value mine = memref::LoadOp::create(b, loc, partials, tid);
    Value has = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, tid,
                                      index(offset));
    Value other = arith::SelectOp::create(
        b, loc, has, arith::SubIOp::create(b, loc, tid, index(offset)),
        index(0));
    Value theirs = memref::LoadOp::create(b, loc, partials, other);
    Value sum = arith::AddIOp::create(
        b, loc, mine, arith::SelectOp::create(b, loc, has, theirs, i32(0)));
    gpu::BarrierOp::create(b, loc);
    memref::StoreOp::create(b, loc, sum, partials, tid);
    gpu::BarrierOp::create(b, loc);
  }
  Value running = arith::SubIOp::create(
      b, loc, memref::LoadOp::create(b, loc, partials, tid), own);
  scf::ForOp::create(
      b, loc, first, end, index(1), ValueRange{running},
      [&](OpBuilder &, Location, Value expert, ValueRange start) {
        memref::StoreOp::create(b, loc, start[0], starts, expert);
        Value count = memref::LoadOp::create(b, loc, state, expert);
        scf::YieldOp::create(b, loc,
                             ValueRange{arith::AddIOp::create(
                                 b, loc, start[0], roundedToBlock(count))});
      });
  Value total = memref::LoadOp::create(b, loc, partials, index(kThreads - 1));
  gpu::BarrierOp::create(b, loc);
  return total;
}

void ScatterBuilder::fillBlockExperts(Value state, Value blocks, Value starts,
                                      Value total) {
  Value stride = arith::MulIOp::create(b, loc, gridSize, index(kThreads));
  Value firstOfGrid = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, block, index(kThreads)), tid);
  forEach(firstOfGrid, index(numExperts), stride, [&](Value expert) {
    Value start = memref::LoadOp::create(b, loc, starts, expert);
    Value end = arith::AddIOp::create(
        b, loc, start,
        roundedToBlock(memref::LoadOp::create(b, loc, state, expert)));
    Value expertId = arith::IndexCastOp::create(b, loc, b.getI32Type(), expert);
    forEach(arith::DivUIOp::create(b, loc, toIndex(start), index(blockM)),
            arith::DivUIOp::create(b, loc, toIndex(end), index(blockM)),
            index(1), [&](Value slotBlock) {
              memref::StoreOp::create(b, loc, expertId, blocks, slotBlock);
            });
  });
  Value firstPast =
      arith::DivUIOp::create(b, loc, toIndex(total), index(blockM));
  forEach(arith::AddIOp::create(b, loc, firstPast, firstOfGrid),
          memref::DimOp::create(b, loc, blocks, 0), stride,
          [&](Value slotBlock) {
            memref::StoreOp::create(b, loc, i32(-1), blocks, slotBlock);
          });
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildAlignScatterKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                   AlignOp op, StringRef name) {
  OpBuilder::InsertionGuard guard(b);
  ScatterBuilder align(b, op.getLoc(), op);
  Location loc = op.getLoc();
  auto i32 = b.getI32Type();
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Value> shared;
  gpu::GPUFuncOp func = align.createKernel(
      module, name,
      {MemRefType::get({dynamic, align.topK}, i32),
       MemRefType::get({dynamic}, i32), MemRefType::get({dynamic}, i32),
       MemRefType::get({1}, i32), MemRefType::get({2 * align.numExperts}, i32)},
      {"starts", "local", "partials"}, shared);
  Block &entry = func.getBody().front();
  Value ids = entry.getArgument(0), sorted = entry.getArgument(1),
        blocks = entry.getArgument(2), padded = entry.getArgument(3),
        state = entry.getArgument(4);
  Value starts = shared[0], local = shared[1], partials = shared[2];
  Value numAssignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, ids, 0), align.index(align.topK));
  Value total = align.scanStarts(state, starts, partials);
  Value firstThread = arith::AndIOp::create(
      b, loc,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, align.block,
                            align.index(0)),
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, align.tid,
                            align.index(0)));
  align.ifThen(firstThread, [&] {
    memref::StoreOp::create(b, loc, total, padded, align.index(0));
  });
  align.fillBlockExperts(state, blocks, starts, total);
  // Reserve the chunk's range of each expert's slots; `starts` becomes the
  // chunk's first slot per expert and `local` its running rank.
  align.countChunk(ids, numAssignments, local, Value());
  align.forEach(
      align.tid, align.index(align.numExperts), align.index(kThreads),
      [&](Value expert) {
        Value count = memref::LoadOp::create(b, loc, local, expert);
        Value present = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt,
                                              count, align.i32(0));
        align.ifThen(present, [&] {
          Value cursor = arith::AddIOp::create(b, loc, expert,
                                               align.index(align.numExperts));
          Value taken = memref::AtomicRMWOp::create(
              b, loc, arith::AtomicRMWKind::addi, count, state, cursor);
          Value start = memref::LoadOp::create(b, loc, starts, expert);
          memref::StoreOp::create(b, loc,
                                  arith::AddIOp::create(b, loc, start, taken),
                                  starts, expert);
          memref::StoreOp::create(b, loc, align.i32(0), local, expert);
        });
      });
  gpu::BarrierOp::create(b, loc);
  align.forEachOfChunk(numAssignments, [&](Value assignment) {
    auto [id, valid] = align.expertOf(ids, assignment);
    align.ifThen(valid, [&, id = id] {
      Value expert = align.toIndex(id);
      Value rank = memref::AtomicRMWOp::create(
          b, loc, arith::AtomicRMWKind::addi, align.i32(1), local, expert);
      Value slot = arith::AddIOp::create(
          b, loc, memref::LoadOp::create(b, loc, starts, expert), rank);
      memref::StoreOp::create(
          b, loc, arith::IndexCastOp::create(b, loc, i32, assignment), sorted,
          align.toIndex(slot));
    });
  });
  gpu::ReturnOp::create(b, loc);
  return func;
}

//===- AlignKernel.cpp - the GPU kernel of moe.align ----------------------===//
//
// One thread block computes the whole aligned schedule, so that nothing is
// read back to the host: per-expert counts by shared-memory atomics, the
// padded starts by one thread (E is at most a few hundred), the sentinel and
// block-expert fill, then the scatter of every assignment to its expert's
// next slot. The scatter takes slots by atomics, so the order within an
// expert's group is not the assignment order (moe.align leaves it open).
// An id outside [-1, E) is a runtime error, as on the CPU: it is skipped
// and counted in an error word the host can read after the call.
//
//===----------------------------------------------------------------------===//

#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kAlignThreads = 1024;

/// Emits `for (i = tid; i < bound; i += kAlignThreads) body(i)`.
void forEachStrided(OpBuilder &b, Location loc, Value tid, Value bound,
                    function_ref<void(Value)> body) {
  Value stride = arith::ConstantIndexOp::create(b, loc, kAlignThreads);
  scf::ForOp::create(b, loc, tid, bound, stride, ValueRange{},
                     [&](OpBuilder &, Location, Value i, ValueRange) {
                       body(i);
                       scf::YieldOp::create(b, loc);
                     });
}
} // namespace

FailureOr<gpu::GPUFuncOp> mlir::moe::buildAlignKernel(OpBuilder &b,
                                                      gpu::GPUModuleOp module,
                                                      AlignOp op,
                                                      StringRef name) {
  int64_t numExperts = op.getNumExperts();
  int64_t blockM = op.getBlockM();
  int64_t topK = op.getIds().getType().getDimSize(1);
  if (ShapedType::isDynamic(topK))
    return op.emitRemark("no GPU kernel: the number of experts per token "
                         "must be static");
  OpBuilder::InsertionGuard guard(b);
  MLIRContext *context = b.getContext();
  Location loc = op.getLoc();
  auto i32 = b.getI32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup);
  auto countsType = MemRefType::get({numExperts}, i32,
                                    MemRefLayoutAttrInterface(), workgroup);
  b.setInsertionPointToStart(module.getBody());
  std::string countsName = (name + "_counts").str();
  std::string cursorsName = (name + "_cursors").str();
  for (StringRef global : {StringRef(countsName), StringRef(cursorsName)})
    memref::GlobalOp::create(b, loc, global, b.getStringAttr("private"),
                             countsType, Attribute(), /*constant=*/false,
                             b.getI64IntegerAttr(kSharedArrayAlignment));
  b.setInsertionPointToEnd(module.getBody());

  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {MemRefType::get({dynamic, topK}, i32),
                                 MemRefType::get({dynamic}, i32),
                                 MemRefType::get({dynamic}, i32),
                                 MemRefType::get({1}, i32),
                                 MemRefType::get({1}, i32)};
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kAlignThreads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value ids = entry.getArgument(0), sorted = entry.getArgument(1),
        blocks = entry.getArgument(2), padded = entry.getArgument(3),
        errors = entry.getArgument(4);
  auto index = [&](int64_t value) -> Value {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  auto constantI32 = [&](int64_t value) -> Value {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value));
  };
  Value counts = memref::GetGlobalOp::create(b, loc, countsType, countsName);
  Value cursors = memref::GetGlobalOp::create(b, loc, countsType, cursorsName);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value numTokens = memref::DimOp::create(b, loc, ids, 0);
  Value numAssignments = arith::MulIOp::create(b, loc, numTokens, index(topK));
  Value numSlots = memref::DimOp::create(b, loc, sorted, 0);
  Value numBlocks = memref::DimOp::create(b, loc, blocks, 0);
  Value numExpertsValue = index(numExperts);
  // The expert of assignment `a` and whether it is scheduled here: ids of
  // another device (-1) and out-of-range ids are skipped.
  auto expertOf = [&](Value assignment) -> std::pair<Value, Value> {
    Value token = arith::DivUIOp::create(b, loc, assignment, index(topK));
    Value choice = arith::RemUIOp::create(b, loc, assignment, index(topK));
    Value id = memref::LoadOp::create(b, loc, ids, ValueRange{token, choice});
    Value valid = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, id,
                              constantI32(0)),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, id,
                              constantI32(numExperts)));
    return {id, valid};
  };
  auto ifThen = [&](Value condition, function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, loc, condition, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    body();
  };

  forEachStrided(b, loc, tid, numExpertsValue, [&](Value expert) {
    memref::StoreOp::create(b, loc, constantI32(0), counts, expert);
  });
  Value first =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  ifThen(first, [&] {
    memref::StoreOp::create(b, loc, constantI32(0), errors, index(0));
  });
  gpu::BarrierOp::create(b, loc);
  forEachStrided(b, loc, tid, numAssignments, [&](Value assignment) {
    auto [id, valid] = expertOf(assignment);
    auto ifOp = scf::IfOp::create(b, loc, valid, /*withElse=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    Value expert = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
    memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi,
                                constantI32(1), counts, expert);
    b.setInsertionPointToStart(ifOp.elseBlock());
    Value remote = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                         id, constantI32(-1));
    Value invalid = arith::XOrIOp::create(
        b, loc, remote,
        arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
    ifThen(invalid, [&] {
      memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi,
                                  constantI32(1), errors, index(0));
    });
  });
  gpu::BarrierOp::create(b, loc);
  // Padded starts: an exclusive scan of the counts rounded up to block_m.
  Value leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  ifThen(leader, [&] {
    auto scan = scf::ForOp::create(
        b, loc, index(0), numExpertsValue, index(1),
        ValueRange{constantI32(0)},
        [&](OpBuilder &, Location, Value expert, ValueRange args) {
          memref::StoreOp::create(b, loc, args[0], cursors, expert);
          Value count = memref::LoadOp::create(b, loc, counts, expert);
          Value rounded = arith::MulIOp::create(
              b, loc,
              arith::DivUIOp::create(
                  b, loc,
                  arith::AddIOp::create(b, loc, count,
                                        constantI32(blockM - 1)),
                  constantI32(blockM)),
              constantI32(blockM));
          scf::YieldOp::create(
              b, loc, ValueRange{arith::AddIOp::create(b, loc, args[0],
                                                       rounded)});
        });
    memref::StoreOp::create(b, loc, scan.getResult(0), padded, index(0));
  });
  gpu::BarrierOp::create(b, loc);
  Value sentinel =
      arith::IndexCastOp::create(b, loc, i32, numAssignments).getResult();
  forEachStrided(b, loc, tid, numSlots, [&](Value slot) {
    memref::StoreOp::create(b, loc, sentinel, sorted, slot);
  });
  Value total = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, padded, index(0)));
  forEachStrided(b, loc, tid, numBlocks, [&](Value block) {
    Value first = arith::MulIOp::create(b, loc, block, index(blockM));
    Value past = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                       first, total);
    ifThen(past, [&] {
      memref::StoreOp::create(b, loc, constantI32(-1), blocks, block);
    });
  });
  forEachStrided(b, loc, tid, numExpertsValue, [&](Value expert) {
    auto toIndex = [&](Value value) -> Value {
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), value);
    };
    Value start = toIndex(memref::LoadOp::create(b, loc, cursors, expert));
    Value count = toIndex(memref::LoadOp::create(b, loc, counts, expert));
    Value firstBlock = arith::DivUIOp::create(b, loc, start, index(blockM));
    Value blockCount = arith::DivUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, count, index(blockM - 1)),
        index(blockM));
    Value expertId = arith::IndexCastOp::create(b, loc, i32, expert);
    scf::ForOp::create(
        b, loc, firstBlock,
        arith::AddIOp::create(b, loc, firstBlock, blockCount), index(1),
        ValueRange{}, [&](OpBuilder &, Location, Value block, ValueRange) {
          memref::StoreOp::create(b, loc, expertId, blocks, block);
          scf::YieldOp::create(b, loc);
        });
  });
  // The sentinel fill must land before the scatter overwrites slots.
  gpu::BarrierOp::create(b, loc);
  forEachStrided(b, loc, tid, numAssignments, [&](Value assignment) {
    auto [id, valid] = expertOf(assignment);
    ifThen(valid, [&, id = id] {
      Value expert = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
      Value slot = memref::AtomicRMWOp::create(
          b, loc, arith::AtomicRMWKind::addi, constantI32(1), cursors, expert);
      Value assignmentId = arith::IndexCastOp::create(b, loc, i32, assignment);
      memref::StoreOp::create(
          b, loc, assignmentId, sorted,
          arith::IndexCastOp::create(b, loc, b.getIndexType(), slot)
              .getResult());
    });
  });
  gpu::ReturnOp::create(b, loc);
  return func;
}

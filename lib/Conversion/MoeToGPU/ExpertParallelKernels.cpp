//===- ExpertParallelKernels.cpp - GPU kernels of the EP exchange ---------===//
//
// The kernels around the collectives of the allgather realization of
// moe.ep_dispatch and moe.ep_combine (the host side gathers and
// reduce-scatters, see moe-gpu-outline-host):
//
// - dispatch ids: one block packs the assignments this rank serves, in
//   order of source rank and assignment index, from the gathered ids of
//   every rank. Each thread takes a contiguous run of assignments, counts
//   what it serves, one block scan gives each run its first position, and a
//   second pass writes the local slots and origins there; the rest is
//   padding (-1). Which (rank, slot) serves a (source, expert) is the
//   placement's, a constant table in the kernel module.
// - dispatch rows: one block per received position copies the token row of
//   its origin (zeros for padding).
// - return: one block per received row adds its weighted result into the
//   f32 partial sums of its origin's token (every token of every rank).
// - finalize: the scaled, reduce-scattered sums to the result type.
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kPackThreads = 1024;
constexpr int64_t kRowThreads = 256;

/// A private constant i32 table in global memory of `module`.
std::string createTable(OpBuilder &b, gpu::GPUModuleOp module, Location loc,
                        StringRef name, ArrayRef<int32_t> values) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(module.getBody());
  auto global = gpu::AddressSpaceAttr::get(b.getContext(),
                                           gpu::AddressSpace::Global);
  auto type = MemRefType::get({static_cast<int64_t>(values.size())},
                              b.getI32Type(), MemRefLayoutAttrInterface(),
                              global);
  auto tensorType = RankedTensorType::get(type.getShape(), b.getI32Type());
  memref::GlobalOp::create(b, loc, name, b.getStringAttr("private"), type,
                           DenseIntElementsAttr::get(tensorType, values),
                           /*constant=*/true, IntegerAttr());
  return name.str();
}
} // namespace

namespace {
/// The body of the dispatch ids kernel (see buildEpDispatchIdsKernel): each
/// thread's contiguous run of assignments is counted, the counts are
/// scanned over the block, and each run writes its served assignments from
/// its first position.
class DispatchPackEmitter {
public:
  /// `table` holds rank·L + slot per (source, expert); `scan` is a block
  /// array of kPackThreads i32.
  DispatchPackEmitter(OpBuilder &b, Location loc, PlacementAttr placement,
                      int64_t topK, Block &entry, Value table, Value scan)
      : b(b), loc(loc), e{b, loc}, placement(placement), topK(topK),
        ids(entry.getArgument(0)), rankWord(entry.getArgument(1)),
        localIds(entry.getArgument(2)), origins(entry.getArgument(3)),
        received(entry.getArgument(4)), errors(entry.getArgument(5)),
        table(table), scan(scan) {}

  void build();

private:
  /// (served here, local slot) of assignment `a`; with `countInvalid`, an
  /// id outside [-1, E) of this rank's own tokens is counted in the error
  /// word.
  std::pair<Value, Value> serve(Value a, bool countInvalid);
  /// How many assignments of [begin, end) this rank serves.
  Value countRun(Value begin, Value end);
  /// The block's inclusive scan of `count`, one per thread.
  Value scanBlock(Value count);
  /// Writes the served assignments of [begin, end) from `start` on.
  void writeRun(Value begin, Value end, Value start);

  OpBuilder &b;
  Location loc;
  KernelEmitter e;
  PlacementAttr placement;
  int64_t topK;
  Value ids, rankWord, localIds, origins, received, errors, table, scan;
  Value tid, rank, perSource;
};
} // namespace

std::pair<Value, Value> DispatchPackEmitter::serve(Value a,
                                                   bool countInvalid) {
  int64_t experts = placement.getExperts();
  int64_t slotsPerRank = placement.getSlotsPerRank();
  Value id = memref::LoadOp::create(
      b, loc, ids,
      ValueRange{arith::DivUIOp::create(b, loc, a, e.index(topK)),
                 arith::RemUIOp::create(b, loc, a, e.index(topK))});
  Value valid = arith::AndIOp::create(
      b, loc, e.cmp(arith::CmpIPredicate::sge, id, e.i32(0)),
      e.cmp(arith::CmpIPredicate::slt, id, e.i32(experts)));
  Value source = arith::DivUIOp::create(b, loc, a, perSource);
  if (countInvalid) {
    // Each rank counts the invalid ids of its own tokens only, so that the
    // ranks' counts add up to the group's.
    Value dropped = e.cmp(arith::CmpIPredicate::eq, id, e.i32(-1));
    Value invalid = arith::AndIOp::create(
        b, loc, e.negate(arith::OrIOp::create(b, loc, valid, dropped)),
        e.cmp(arith::CmpIPredicate::eq, e.toI32(source), rank));
    e.ifThen(invalid, [&] { e.count(errors); });
  }
  Value expert =
      arith::SelectOp::create(b, loc, valid, e.toIndex(id), e.index(0));
  Value destination = memref::LoadOp::create(
      b, loc, table,
      arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, source, e.index(experts)),
          expert)
          .getResult());
  Value destinationRank =
      arith::DivUIOp::create(b, loc, destination, e.i32(slotsPerRank));
  Value served = arith::AndIOp::create(
      b, loc, valid, e.cmp(arith::CmpIPredicate::eq, destinationRank, rank));
  Value slot =
      arith::RemUIOp::create(b, loc, destination, e.i32(slotsPerRank));
  return {served, slot};
}

Value DispatchPackEmitter::countRun(Value begin, Value end) {
  auto counting = scf::ForOp::create(
      b, loc, begin, end, e.index(1), ValueRange{e.i32(0)},
      [&](OpBuilder &, Location, Value a, ValueRange carried) {
        Value served = serve(a, /*countInvalid=*/true).first;
        Value next = arith::AddIOp::create(
            b, loc, carried[0],
            arith::ExtUIOp::create(b, loc, b.getI32Type(), served)
                .getResult());
        scf::YieldOp::create(b, loc, next);
      });
  return counting.getResult(0);
}

Value DispatchPackEmitter::scanBlock(Value count) {
  memref::StoreOp::create(b, loc, count, scan, tid);
  gpu::BarrierOp::create(b, loc);
  // Hillis-Steele: every step reads before the barrier, writes after it.
  for (int64_t offset = 1; offset < kPackThreads; offset *= 2) {
    Value hasLeft = e.cmp(arith::CmpIPredicate::sge, tid, e.index(offset));
    Value leftIndex = arith::SelectOp::create(
        b, loc, hasLeft,
        arith::SubIOp::create(b, loc, tid, e.index(offset)).getResult(), tid);
    Value left = arith::SelectOp::create(
        b, loc, hasLeft, memref::LoadOp::create(b, loc, scan, leftIndex),
        e.i32(0));
    gpu::BarrierOp::create(b, loc);
    Value sum = arith::AddIOp::create(
        b, loc, memref::LoadOp::create(b, loc, scan, tid), left);
    memref::StoreOp::create(b, loc, sum, scan, tid);
    gpu::BarrierOp::create(b, loc);
  }
  return memref::LoadOp::create(b, loc, scan, tid);
}

void DispatchPackEmitter::writeRun(Value begin, Value end, Value start) {
  scf::ForOp::create(
      b, loc, begin, end, e.index(1), ValueRange{start},
      [&](OpBuilder &, Location, Value a, ValueRange carried) {
        auto [served, slot] = serve(a, /*countInvalid=*/false);
        Value position = carried[0];
        e.ifThen(served, [&, slot = slot] {
          Value at = e.toIndex(position);
          memref::StoreOp::create(b, loc, slot, localIds,
                                  ValueRange{at, e.index(0)});
          memref::StoreOp::create(b, loc, e.toI32(a), origins, at);
        });
        Value next = arith::AddIOp::create(
            b, loc, position,
            arith::ExtUIOp::create(b, loc, b.getI32Type(), served)
                .getResult());
        scf::YieldOp::create(b, loc, next);
      });
}

void DispatchPackEmitter::build() {
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  rank = memref::LoadOp::create(b, loc, rankWord, e.index(0));
  Value assignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, ids, 0), e.index(topK));
  perSource = arith::DivUIOp::create(b, loc, assignments,
                                     e.index(placement.getRanks()));
  // This thread's contiguous run of assignments.
  Value run = arith::DivUIOp::create(
      b, loc,
      arith::AddIOp::create(b, loc, assignments, e.index(kPackThreads - 1)),
      e.index(kPackThreads));
  Value begin = arith::MinUIOp::create(
      b, loc, arith::MulIOp::create(b, loc, tid, run), assignments);
  Value end = arith::MinUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, begin, run), assignments);
  Value first = e.cmp(arith::CmpIPredicate::eq, tid, e.index(0));
  e.ifThen(first, [&] {
    memref::StoreOp::create(b, loc, e.i32(0), errors, e.index(0));
  });
  gpu::BarrierOp::create(b, loc);
  Value mine = countRun(begin, end);
  Value inclusive = scanBlock(mine);
  Value total =
      memref::LoadOp::create(b, loc, scan, e.index(kPackThreads - 1));
  writeRun(begin, end, arith::SubIOp::create(b, loc, inclusive, mine));
  e.ifThen(first, [&] {
    memref::StoreOp::create(b, loc, total, received, e.index(0));
  });
  // The padding after the received assignments.
  e.forEach(arith::AddIOp::create(b, loc, e.toIndex(total), tid), assignments,
            e.index(kPackThreads), [&](Value position) {
              memref::StoreOp::create(b, loc, e.i32(-1), localIds,
                                      ValueRange{position, e.index(0)});
              memref::StoreOp::create(b, loc, e.i32(-1), origins, position);
            });
  gpu::ReturnOp::create(b, loc);
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildEpDispatchIdsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                    EpDispatchOp op, StringRef name) {
  if (op.getRealization() != EpRealization::AllgatherReduceScatter)
    return op.emitRemark("no GPU kernel yet: only the allgather realization "
                         "of the exchange is lowered");
  PlacementAttr placement = op.getPlacement();
  int64_t slotsPerRank = placement.getSlotsPerRank();
  int64_t topK = op.getIds().getType().getDimSize(1);
  // destination[source·E + expert] = rank·L + slot.
  SmallVector<int32_t> destinations;
  for (int64_t source = 0; source < placement.getRanks(); ++source)
    for (int64_t expert = 0; expert < placement.getExperts(); ++expert) {
      auto [rank, slot] = placement.getServingSlot(expert, source);
      destinations.push_back(static_cast<int32_t>(rank * slotsPerRank + slot));
    }
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  std::string tableName =
      createTable(b, module, loc, (name + "_destinations").str(), destinations);
  auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(),
                                              gpu::AddressSpace::Workgroup);
  auto scanType = MemRefType::get({kPackThreads}, b.getI32Type(),
                                  MemRefLayoutAttrInterface(), workgroup);
  std::string scanName = (name + "_scan").str();
  b.setInsertionPointToStart(module.getBody());
  memref::GlobalOp::create(b, loc, scanName, b.getStringAttr("private"),
                           scanType, Attribute(), /*constant=*/false,
                           b.getI64IntegerAttr(kSharedArrayAlignment));
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  Type i32 = b.getI32Type();
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, topK}, i32), MemRefType::get({1}, i32),
      MemRefType::get({dynamic, 1}, i32),    MemRefType::get({dynamic}, i32),
      MemRefType::get({1}, i32),             MemRefType::get({1}, i32)};
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kPackThreads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value table = memref::GetGlobalOp::create(
      b, loc,
      cast<MemRefType>(
          module.lookupSymbol<memref::GlobalOp>(tableName).getType()),
      tableName);
  Value scan = memref::GetGlobalOp::create(b, loc, scanType, scanName);
  DispatchPackEmitter(b, loc, placement, topK, entry, table, scan).build();
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildEpDispatchRowsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                     EpDispatchOp op, StringRef name) {
  auto inputType = op.getInput().getType();
  int64_t width = inputType.getDimSize(1);
  Type element = inputType.getElementType();
  int64_t topK = op.getIds().getType().getDimSize(1);
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  Type i32 = b.getI32Type();
  SmallVector<Type> arguments = {MemRefType::get({dynamic, width}, element),
                                 MemRefType::get({dynamic}, i32),
                                 MemRefType::get({1}, i32),
                                 MemRefType::get({dynamic, width}, element)};
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kRowThreads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  KernelEmitter e{b, loc};
  Value tokens = entry.getArgument(0), origins = entry.getArgument(1),
        received = entry.getArgument(2), rows = entry.getArgument(3);
  Value position = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value count =
      e.toIndex(memref::LoadOp::create(b, loc, received, e.index(0)));
  Value isReceived = e.cmp(arith::CmpIPredicate::ult, position, count);
  auto ifOp = scf::IfOp::create(b, loc, isReceived, /*withElse=*/true);
  b.setInsertionPointToStart(ifOp.thenBlock());
  Value origin =
      e.toIndex(memref::LoadOp::create(b, loc, origins, position));
  Value token = arith::DivUIOp::create(b, loc, origin, e.index(topK));
  e.forEach(tid, e.index(width), e.index(kRowThreads), [&](Value column) {
    Value value =
        memref::LoadOp::create(b, loc, tokens, ValueRange{token, column});
    memref::StoreOp::create(b, loc, value, rows, ValueRange{position, column});
  });
  b.setInsertionPointToStart(ifOp.elseBlock());
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  e.forEach(tid, e.index(width), e.index(kRowThreads), [&](Value column) {
    memref::StoreOp::create(b, loc, zero, rows, ValueRange{position, column});
  });
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildEpReturnKernel(OpBuilder &b, gpu::GPUModuleOp module,
                               EpCombineOp op, StringRef name) {
  if (op.getRealization() != EpRealization::AllgatherReduceScatter)
    return op.emitRemark("no GPU kernel yet: only the allgather realization "
                         "of the exchange is lowered");
  auto rowsType = op.getRows().getType();
  int64_t width = rowsType.getDimSize(1);
  Type element = rowsType.getElementType();
  int64_t topK = op.getWeights().getType().getDimSize(1);
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  SmallVector<Type> arguments = {MemRefType::get({dynamic, width}, element),
                                 MemRefType::get({dynamic}, i32),
                                 MemRefType::get({dynamic, topK}, f32),
                                 MemRefType::get({dynamic, width}, f32),
                                 MemRefType::get({1}, i32)};
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kRowThreads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  KernelEmitter e{b, loc};
  Value results = entry.getArgument(0), origins = entry.getArgument(1),
        weights = entry.getArgument(2), partial = entry.getArgument(3),
        errors = entry.getArgument(4);
  Value row = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value origin = memref::LoadOp::create(b, loc, origins, row);
  // Origins index the assignments of every rank: [0, R·M·k).
  Value bound = e.toI32(arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, weights, 0), e.index(topK)));
  Value inRange = arith::AndIOp::create(
      b, loc, e.cmp(arith::CmpIPredicate::sge, origin, e.i32(0)),
      e.cmp(arith::CmpIPredicate::slt, origin, bound));
  Value padding = e.cmp(arith::CmpIPredicate::eq, origin, e.i32(-1));
  Value invalid = e.negate(arith::OrIOp::create(b, loc, inRange, padding));
  e.ifThen(arith::AndIOp::create(
               b, loc, invalid,
               e.cmp(arith::CmpIPredicate::eq, tid, e.index(0))),
           [&] { e.count(errors); });
  e.ifThen(inRange, [&] {
    Value assignment = e.toIndex(origin);
    Value token = arith::DivUIOp::create(b, loc, assignment, e.index(topK));
    Value choice = arith::RemUIOp::create(b, loc, assignment, e.index(topK));
    Value weight =
        memref::LoadOp::create(b, loc, weights, ValueRange{token, choice});
    e.forEach(tid, e.index(width), e.index(kRowThreads), [&](Value column) {
      Value value =
          memref::LoadOp::create(b, loc, results, ValueRange{row, column});
      if (value.getType() != f32)
        value = arith::ExtFOp::create(b, loc, f32, value);
      memref::AtomicRMWOp::create(
          b, loc, arith::AtomicRMWKind::addf,
          arith::MulFOp::create(b, loc, weight, value), partial,
          ValueRange{token, column});
    });
  });
  gpu::ReturnOp::create(b, loc);
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildEpFinalizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                 EpCombineOp op, StringRef name) {
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  double scale = op.getRoutedScalingFactor()
                     ? op.getRoutedScalingFactor()->convertToDouble()
                     : 1.0;
  return buildFinalizeKernel(b, module, op.getLoc(), resultType.getDimSize(1),
                             resultType.getElementType(), scale, name);
}

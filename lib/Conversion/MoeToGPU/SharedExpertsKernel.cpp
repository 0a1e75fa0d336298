//===- SharedExpertsKernel.cpp - kernels of the shared experts' routing ---===//
//
// moe.add_shared_experts appends the shared experts to every token's routed
// choices; moe.shared_expert_routing writes them alone. One block per token,
// one thread per output column.
//
//===----------------------------------------------------------------------===//

#include "MoeGpuKernels.h"

#include "moe/Conversion/Utils/ScalarMath.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
/// The columns a routing kernel writes for each token: `routed` columns
/// copied from the routed choices, then `numShared` shared experts, ids
/// from `firstShared`.
struct SharedColumns {
  int64_t routed = 0, numShared = 1, firstShared = 0;
  bool gated = false;
};
} // namespace

/// One block per token, a thread per column. Arguments: with routed
/// columns the routed weights memref<?xkxf32> and ids memref<?xkxi32>; the
/// optional gate logits memref<?x1xf32>; then the weights and ids out.
static FailureOr<gpu::GPUFuncOp>
buildSharedColumnsKernel(OpBuilder &b, gpu::GPUModuleOp module, Operation *op,
                         const SharedColumns &columns, StringRef name) {
  int64_t k = columns.routed;
  int64_t width = k + columns.numShared;
  // One thread per column, in whole warps.
  int64_t threads = llvm::alignTo(width, 32);
  if (threads > 1024)
    return op->emitRemark("no GPU kernel yet: more than 1024 routed and "
                          "shared choices per token");
  OpBuilder::InsertionGuard guard(b);
  Location loc = op->getLoc();
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  SmallVector<Type> arguments;
  if (k > 0)
    arguments.append({MemRefType::get({dynamic, k}, f32),
                      MemRefType::get({dynamic, k}, i32)});
  if (columns.gated)
    arguments.push_back(MemRefType::get({dynamic, 1}, f32));
  arguments.append({MemRefType::get({dynamic, width}, f32),
                    MemRefType::get({dynamic, width}, i32)});
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(threads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value gate = columns.gated ? entry.getArgument(k > 0 ? 2 : 0) : Value();
  Value weightsOut = entry.getArgument(arguments.size() - 2);
  Value idsOut = entry.getArgument(arguments.size() - 1);
  auto index = [&](int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value).getResult();
  };
  Value token = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value column = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                        column, index(width));
  auto inside = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToStart(inside.thenBlock());
  SmallVector<Value, 2> place = {token, column};
  if (k > 0) {
    Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         column, index(k));
    auto choice = scf::IfOp::create(b, loc, routed, /*withElse=*/true);
    b.setInsertionPointToStart(choice.thenBlock());
    memref::StoreOp::create(
        b, loc, memref::LoadOp::create(b, loc, entry.getArgument(0), place),
        weightsOut, place);
    memref::StoreOp::create(
        b, loc, memref::LoadOp::create(b, loc, entry.getArgument(1), place),
        idsOut, place);
    b.setInsertionPointToStart(choice.elseBlock());
  }
  // Column k + s holds shared expert firstShared + s.
  Value expert = arith::IndexCastOp::create(
      b, loc, i32,
      arith::AddIOp::create(b, loc, column, index(columns.firstShared - k)));
  Value weight =
      gate ? buildSigmoid(b, loc,
                          memref::LoadOp::create(b, loc, gate,
                                                 ValueRange{token, index(0)}))
           : f32Constant(b, loc, 1.0);
  memref::StoreOp::create(b, loc, weight, weightsOut, place);
  memref::StoreOp::create(b, loc, expert, idsOut, place);
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildSharedExpertsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                    AddSharedExpertsOp op, StringRef name) {
  SharedColumns columns;
  columns.routed = op.getRoutedIds().getType().getDimSize(1);
  columns.numShared = op.getNumShared();
  columns.firstShared = op.getNumExperts();
  columns.gated = static_cast<bool>(op.getGate());
  return buildSharedColumnsKernel(b, module, op, columns, name);
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildSharedExpertRoutingKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                          SharedExpertRoutingOp op,
                                          StringRef name) {
  SharedColumns columns;
  columns.numShared = op.getNumShared();
  columns.gated = static_cast<bool>(op.getGate());
  return buildSharedColumnsKernel(b, module, op, columns, name);
}

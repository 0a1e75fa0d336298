//===- SharedExpertsKernel.cpp - the GPU kernel of add_shared_experts -----===//
//
// Appends the shared experts to every token's routed choices: one block per
// token, one thread per output column.
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

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildSharedExpertsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                    AddSharedExpertsOp op, StringRef name) {
  int64_t k = op.getRoutedIds().getType().getDimSize(1);
  int64_t width = k + op.getNumShared();
  // One thread per column, in whole warps.
  int64_t threads = llvm::alignTo(width, 32);
  if (threads > 1024)
    return op.emitRemark("no GPU kernel yet: more than 1024 routed and "
                         "shared choices per token");
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  SmallVector<Type> arguments = {MemRefType::get({dynamic, k}, f32),
                                 MemRefType::get({dynamic, k}, i32)};
  if (op.getGate())
    arguments.push_back(MemRefType::get({dynamic, 1}, f32));
  arguments.append({MemRefType::get({dynamic, width}, f32),
                    MemRefType::get({dynamic, width}, i32)});
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(threads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value routedWeights = entry.getArgument(0);
  Value routedIds = entry.getArgument(1);
  Value gate = op.getGate() ? entry.getArgument(2) : Value();
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
  Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       column, index(k));
  auto choice = scf::IfOp::create(b, loc, routed, /*withElse=*/true);
  b.setInsertionPointToStart(choice.thenBlock());
  SmallVector<Value, 2> place = {token, column};
  memref::StoreOp::create(
      b, loc, memref::LoadOp::create(b, loc, routedWeights, place), weightsOut,
      place);
  memref::StoreOp::create(b, loc,
                          memref::LoadOp::create(b, loc, routedIds, place),
                          idsOut, place);
  b.setInsertionPointToStart(choice.elseBlock());
  // Column k + s holds shared expert num_experts + s.
  Value expert = arith::IndexCastOp::create(
      b, loc, i32,
      arith::AddIOp::create(b, loc, column, index(op.getNumExperts() - k)));
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

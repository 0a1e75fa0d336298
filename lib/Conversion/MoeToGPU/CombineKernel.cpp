//===- CombineKernel.cpp - the GPU kernel finishing a combine -------------===//
//
// The combining grouped matmul (and the return of an expert-parallel
// exchange) adds weighted products atomically into an f32 [M, N] buffer;
// this kernel scales the sums and converts them to the result's element
// type, eight columns per thread where the width allows. With
// `combine_rows` the matmul stores each assignment's weighted row instead,
// and the second kernel here sums each token's k rows.
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kFinalizeThreads = 256;
/// Columns per thread where the width allows: 32 bytes of f32 sums in, 16
/// of bf16 out. One f32 per thread streamed 44 MB in 37 µs (1.2 TB/s,
/// DeepSeek-V3 M = 1024 on an H200), a quarter of the bandwidth.
constexpr int64_t kFinalizeVectorColumns = 8;

/// Where a thread of a row-by-column-block kernel works: its row (the
/// block's x), its first column, and the columns it handles.
struct RowColumns {
  gpu::GPUFuncOp func;
  Value row, column;
  int64_t columns;
};

/// A kernel `name` of `arguments` over grid (rows, ceil(width /
/// columns_per_block)), kFinalizeThreads threads of `columns` adjacent
/// columns each (eight where width % 8 == 0: the buffers are 16-byte
/// aligned, the workspace's offsets and the C header's contract, so every
/// row's vectors are). The builder is left inside the thread's guard of
/// column < width; the function returns after it.
RowColumns createRowColumnsKernel(OpBuilder &b, Location loc, StringRef name,
                                  ArrayRef<Type> arguments, int64_t width) {
  int64_t columns =
      width % kFinalizeVectorColumns == 0 ? kFinalizeVectorColumns : 1;
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kFinalizeThreads)),
       b.getNamedAttr("columns_per_block",
                      b.getI64IntegerAttr(kFinalizeThreads * columns))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto index = [&](int64_t value) -> Value {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  Value row = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value columnBlock = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value column = arith::MulIOp::create(
      b, loc,
      arith::AddIOp::create(
          b, loc,
          arith::MulIOp::create(b, loc, columnBlock, index(kFinalizeThreads)),
          tid),
      index(columns));
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                        column, index(width));
  auto ifOp = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
  b.setInsertionPointToStart(ifOp.thenBlock());
  return {func, row, column, columns};
}
} // namespace

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildFinalizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                               Location loc, int64_t width, Type elementType,
                               double scale, StringRef name) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, width}, b.getF32Type()),
      MemRefType::get({dynamic, width}, elementType)};
  RowColumns kernel = createRowColumnsKernel(b, loc, name, arguments, width);
  Block &entry = kernel.func.getBody().front();
  Value sums = entry.getArgument(0), out = entry.getArgument(1);
  Value row = kernel.row, column = kernel.column;
  int64_t columns = kernel.columns;
  auto sumType = VectorType::get({columns}, b.getF32Type());
  auto outType = VectorType::get({columns}, elementType);
  constexpr unsigned kVectorAlignment = 16;
  Value sum = LLVM::LoadOp::create(
      b, loc, sumType, globalElementPointer(b, loc, sums, row, column, width),
      /*alignment=*/columns == 1 ? 4 : kVectorAlignment);
  if (scale != 1.0)
    sum = arith::MulFOp::create(
        b, loc, sum,
        arith::ConstantOp::create(
            b, loc,
            DenseElementsAttr::get(
                sumType, b.getF32FloatAttr(static_cast<float>(scale)))));
  Value narrow = sum;
  if (elementType != b.getF32Type())
    narrow = arith::TruncFOp::create(b, loc, outType, sum);
  int64_t outBytes = columns * outType.getElementTypeBitWidth() / 8;
  LLVM::StoreOp::create(
      b, loc, narrow, globalElementPointer(b, loc, out, row, column, width),
      /*alignment=*/std::min<int64_t>(outBytes, kVectorAlignment));
  return kernel.func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildCombineFinalizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                      ExpertMatmulOp op, StringRef name) {
  // The matmul's epilogue already applied the routed scaling factor.
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  return buildFinalizeKernel(b, module, op.getLoc(), resultType.getDimSize(1),
                             resultType.getElementType(), /*scale=*/1.0,
                             name);
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildCombineRowsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                  ExpertMatmulOp op, StringRef name) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(module.getBody());
  Location loc = op.getLoc();
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  Type elementType = resultType.getElementType();
  int64_t width = resultType.getDimSize(1);
  int64_t topK = op.getK();
  int64_t numExperts = op.getNumExperts();
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, width}, elementType),
      MemRefType::get({dynamic, topK}, b.getI32Type()),
      MemRefType::get({dynamic, width}, elementType)};
  RowColumns kernel = createRowColumnsKernel(b, loc, name, arguments, width);
  Block &entry = kernel.func.getBody().front();
  Value rows = entry.getArgument(0), ids = entry.getArgument(1),
        out = entry.getArgument(2);
  Value token = kernel.row, column = kernel.column;
  int64_t columns = kernel.columns;
  auto index = [&](int64_t value) -> Value {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  auto sumType = VectorType::get({columns}, b.getF32Type());
  auto rowType = VectorType::get({columns}, elementType);
  constexpr unsigned kVectorAlignment = 16;
  int64_t rowBytes = columns * rowType.getElementTypeBitWidth() / 8;
  unsigned alignment = std::min<int64_t>(rowBytes, kVectorAlignment);
  Value sum = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(sumType, b.getF32FloatAttr(0.0f)));
  // A fixed order over k: the same inputs give the same bits.
  Value firstRow = arith::MulIOp::create(b, loc, token, index(topK));
  for (int64_t choice = 0; choice < topK; ++choice) {
    Value id =
        memref::LoadOp::create(b, loc, ids, ValueRange{token, index(choice)});
    // Unsigned: a negative id is out of range too.
    Value valid = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ult, id,
        arith::ConstantIntOp::create(b, loc, b.getI32Type(), numExperts));
    auto add = scf::IfOp::create(b, loc, TypeRange{sumType}, valid,
                                 /*withElseRegion=*/true);
    b.setInsertionPointToStart(add.thenBlock());
    Value row = LLVM::LoadOp::create(
        b, loc, rowType,
        globalElementPointer(
            b, loc, rows,
            arith::AddIOp::create(b, loc, firstRow, index(choice)), column,
            width),
        alignment);
    Value wide = arith::ExtFOp::create(b, loc, sumType, row);
    scf::YieldOp::create(b, loc,
                         arith::AddFOp::create(b, loc, sum, wide).getResult());
    b.setInsertionPointToStart(add.elseBlock());
    scf::YieldOp::create(b, loc, sum);
    b.setInsertionPointAfter(add);
    sum = add.getResult(0);
  }
  Value narrow = arith::TruncFOp::create(b, loc, rowType, sum);
  LLVM::StoreOp::create(b, loc, narrow,
                        globalElementPointer(b, loc, out, token, column, width),
                        alignment);
  return kernel.func;
}

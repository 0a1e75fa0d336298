//===- ExpertParallelToLinalg.cpp - ep_dispatch / ep_combine lowering -----===//
//
// The exchange ops are collectives: on the CPU they become calls to the
// group's runtime hooks (kEpDispatchFnPrefix, kEpCombineFn), which see every
// rank's buffers. The lowering passes them buffers of the operands and of
// fresh results, and a table of which (rank, slot) serves each expert for
// each source, computed here from the placement so that the runtime does not
// restate its rule.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

/// The memref type the hooks take for a tensor of `type`'s rank and
/// element type: dynamic sizes, any strides.
static MemRefType hookMemRefType(RankedTensorType type) {
  SmallVector<int64_t> shape(type.getRank(), ShapedType::kDynamic);
  SmallVector<int64_t> strides(type.getRank(), ShapedType::kDynamic);
  MLIRContext *context = type.getContext();
  return MemRefType::get(
      shape, type.getElementType(),
      StridedLayoutAttr::get(context, ShapedType::kDynamic, strides));
}

/// A read-only buffer of `tensor` in the hooks' memref type.
static Value readBuffer(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  auto exact = MemRefType::get(
      type.getShape(), type.getElementType(),
      StridedLayoutAttr::get(
          b.getContext(), ShapedType::kDynamic,
          SmallVector<int64_t>(type.getRank(), ShapedType::kDynamic)));
  Value buffer = bufferization::ToBufferOp::create(b, loc, exact, tensor,
                                                   /*readOnly=*/true);
  return memref::CastOp::create(b, loc, hookMemRefType(type), buffer);
}

/// A fresh buffer for a result of `type` with leading size `rows`.
static Value allocResult(OpBuilder &b, Location loc, RankedTensorType type,
                         Value rows) {
  SmallVector<Value> dynamic;
  if (type.isDynamicDim(0))
    dynamic.push_back(rows);
  auto allocType = MemRefType::get(type.getShape(), type.getElementType());
  return memref::AllocOp::create(b, loc, allocType, dynamic);
}

/// The tensor a hook filled into `buffer`.
static Value filledTensor(OpBuilder &b, Location loc, Value buffer,
                          RankedTensorType type) {
  return bufferization::ToTensorOp::create(b, loc, type, buffer,
                                           /*restrict=*/true,
                                           /*writable=*/true);
}

/// Declares (once) the hook `name` taking `inputs`, with a C interface.
static func::FuncOp getOrInsertHook(OpBuilder &b, Operation *op,
                                    StringRef name, TypeRange inputs) {
  auto module = op->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(name))
    return existing;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(module.getBody());
  auto hook = func::FuncOp::create(b, op->getLoc(), name,
                                   b.getFunctionType(inputs, {}));
  hook.setPrivate();
  hook->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                b.getUnitAttr());
  return hook;
}

/// Calls `hook` on `operands`, cast to its parameter types.
static void callHook(OpBuilder &b, Location loc, func::FuncOp hook,
                     ValueRange operands) {
  SmallVector<Value> cast;
  for (auto [operand, type] :
       llvm::zip(operands, hook.getFunctionType().getInputs()))
    cast.push_back(operand.getType() == type
                       ? operand
                       : memref::CastOp::create(b, loc, type, operand));
  func::CallOp::create(b, loc, hook, cast);
}

static Value i32Constant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value));
}

/// The suffix of a dispatch hook for rows of `type`.
static std::string rowTypeSuffix(Type type) {
  if (type.isF32())
    return "f32";
  return type.isBF16() ? "bf16" : "f16";
}

namespace {
struct EpDispatchOpLowering : public OpConversionPattern<EpDispatchOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(EpDispatchOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    PlacementAttr placement = op.getPlacement();
    int64_t ranks = placement.getRanks(), experts = placement.getExperts();
    SmallVector<int32_t> serving;
    for (int64_t source = 0; source < ranks; ++source)
      for (int64_t expert = 0; expert < experts; ++expert) {
        auto [rank, slot] = placement.getServingSlot(expert, source);
        serving.append({static_cast<int32_t>(rank), static_cast<int32_t>(slot)});
      }
    auto servingType =
        RankedTensorType::get({ranks, experts, 2}, rewriter.getI32Type());
    Value servingTable = arith::ConstantOp::create(
        rewriter, loc, DenseIntElementsAttr::get(servingType, serving));

    Value input = adaptor.getInput(), ids = adaptor.getIds();
    auto idsType = cast<RankedTensorType>(ids.getType());
    Value numTokens = tensor::DimOp::create(rewriter, loc, input, 0);
    Value numRows = arith::MulIOp::create(
        rewriter, loc, numTokens,
        indexConstant(rewriter, loc, ranks * idsType.getDimSize(1)));
    RankedTensorType rowsType = op.getRows().getType();
    RankedTensorType localType = op.getLocalIds().getType();
    RankedTensorType originType = op.getOrigin().getType();
    Value rows = allocResult(rewriter, loc, rowsType, numRows);
    Value local = allocResult(rewriter, loc, localType, numRows);
    Value origin = allocResult(rewriter, loc, originType, numRows);

    SmallVector<Value> operands = {
        readBuffer(rewriter, loc, input), readBuffer(rewriter, loc, ids),
        readBuffer(rewriter, loc, servingTable), rows, local, origin,
        i32Constant(rewriter, loc,
                    static_cast<int64_t>(op.getRealization()))};
    SmallVector<Type> hookTypes = {
        hookMemRefType(cast<RankedTensorType>(input.getType())),
        hookMemRefType(idsType), hookMemRefType(servingType),
        hookMemRefType(rowsType), hookMemRefType(localType),
        hookMemRefType(originType), rewriter.getI32Type()};
    std::string name = (kEpDispatchFnPrefix +
                        rowTypeSuffix(rowsType.getElementType())).str();
    callHook(rewriter, loc, getOrInsertHook(rewriter, op, name, hookTypes),
             operands);
    rewriter.replaceOp(op, {filledTensor(rewriter, loc, rows, rowsType),
                            filledTensor(rewriter, loc, local, localType),
                            filledTensor(rewriter, loc, origin, originType)});
    return success();
  }
};

struct EpCombineOpLowering : public OpConversionPattern<EpCombineOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(EpCombineOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Type f32 = rewriter.getF32Type();
    Value rows = adaptor.getRows();
    auto rowsType = cast<RankedTensorType>(rows.getType());
    if (!rowsType.getElementType().isF32())
      rows = buildConvert(rewriter, loc, rows, rowsType.clone(f32));
    RankedTensorType resultType = op.getResult().getType();
    auto f32Result = resultType.clone(f32);
    Value weights = adaptor.getWeights();
    Value numTokens = tensor::DimOp::create(rewriter, loc, weights, 0);
    Value result = allocResult(rewriter, loc, f32Result, numTokens);
    float scale = op.getRoutedScalingFactor()
                      ? op.getRoutedScalingFactor()->convertToFloat()
                      : 1.0f;
    SmallVector<Value> operands = {
        readBuffer(rewriter, loc, rows),
        readBuffer(rewriter, loc, adaptor.getOrigin()),
        readBuffer(rewriter, loc, weights), result,
        arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(scale)),
        i32Constant(rewriter, loc, static_cast<int64_t>(op.getRealization()))};
    SmallVector<Type> types = {
        hookMemRefType(cast<RankedTensorType>(rows.getType())),
        hookMemRefType(cast<RankedTensorType>(adaptor.getOrigin().getType())),
        hookMemRefType(cast<RankedTensorType>(weights.getType())),
        hookMemRefType(f32Result), f32, rewriter.getI32Type()};
    callHook(rewriter, loc, getOrInsertHook(rewriter, op, kEpCombineFn, types),
             operands);
    Value summed = filledTensor(rewriter, loc, result, f32Result);
    if (!resultType.getElementType().isF32())
      summed = buildConvert(rewriter, loc, summed, resultType);
    rewriter.replaceOp(op, summed);
    return success();
  }
};
} // namespace

void mlir::moe::lowering::populateExpertParallelLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<EpDispatchOpLowering, EpCombineOpLowering>(
      patterns.getContext());
}

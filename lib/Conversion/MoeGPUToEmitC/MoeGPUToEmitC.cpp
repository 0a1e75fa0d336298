//===- MoeGPUToEmitC.cpp - convert-moe-gpu-host-to-emitc ------------------===//
//
// Lowers the host functions of moe-gpu-outline-host to EmitC calls of the
// moe runtime, so that upstream translateToCpp prints the host source.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/EmitC/IR/EmitC.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Conversion/SCFToEmitC/SCFToEmitC.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/AffineExpr.h"
#include "mlir/Transforms/DialectConversion.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOEGPUHOSTTOEMITC
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using moe_gpu::MoeGPUDialect;

namespace {
// Marks the launcher pointer a host function opens (a name without a
// dialect: it is gone once the C++ is printed).
constexpr llvm::StringLiteral kLauncherAttr = "launcher";

emitc::OpaqueType opaque(MLIRContext *context, StringRef name) {
  return emitc::OpaqueType::get(context, name);
}
emitc::PointerType pointerTo(Type type) {
  return emitc::PointerType::get(type);
}

/// The C types of the host IR.
class HostTypeConverter : public TypeConverter {
public:
  explicit HostTypeConverter(MLIRContext *context) {
    addConversion([](Type type) -> std::optional<Type> {
      if (isa<emitc::EmitCDialect>(type.getDialect()))
        return type;
      return std::nullopt;
    });
    addConversion([context](IndexType) -> Type {
      return IntegerType::get(context, 64);
    });
    addConversion([](IntegerType type) -> Type { return type; });
    addConversion([context](MemRefType) -> Type {
      return opaque(context, "moe_rt_memref");
    });
    addConversion([context](moe_gpu::StreamType) -> Type {
      return opaque(context, "CUstream");
    });
    addConversion([context](LLVM::LLVMPointerType) -> Type {
      return pointerTo(opaque(context, "CUtensorMap"));
    });
    addConversion([context](moe_gpu::GroupType) -> Type {
      return pointerTo(opaque(context, "const moe_rt_group"));
    });
  }
};

/// The kernels the host functions launch, in order of first launch: the
/// index a launch passes to the runtime; and the names of the globals that
/// hold the program (its image, its kernels' names, the program itself).
struct KernelTable {
  explicit KernelTable(StringRef symbolSuffix)
      : imageName(("kImage" + symbolSuffix).str()),
        kernelNamesName(("kKernelNames" + symbolSuffix).str()),
        programName(("kProgram" + symbolSuffix).str()) {}
  SmallVector<std::string> names;
  std::string imageName, kernelNamesName, programName;
  unsigned indexOf(StringRef name) {
    auto found = llvm::find(names, name);
    if (found != names.end())
      return found - names.begin();
    names.push_back(name.str());
    return names.size() - 1;
  }
};

/// A string literal argument of an emitc.call_opaque.
Attribute stringLiteral(MLIRContext *context, StringRef text) {
  std::string quoted = "\"";
  for (char c : text)
    quoted += (c == '"' || c == '\\') ? std::string("\\") + c
                                      : std::string(1, c);
  return emitc::OpaqueAttr::get(context, quoted + "\"");
}

Value i64Constant(OpBuilder &b, Location loc, int64_t value) {
  Type i64 = b.getI64Type();
  return emitc::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(value));
}

/// `expr` (of the token count `numTokens`, symbol 0) as int64_t arithmetic.
FailureOr<Value> emitAffine(OpBuilder &b, Location loc, AffineExpr expr,
                            Value numTokens) {
  if (auto value = dyn_cast<AffineConstantExpr>(expr))
    return i64Constant(b, loc, value.getValue());
  if (isa<AffineSymbolExpr>(expr))
    return numTokens;
  auto binary = dyn_cast<AffineBinaryOpExpr>(expr);
  if (!binary)
    return failure();
  FailureOr<Value> lhs = emitAffine(b, loc, binary.getLHS(), numTokens);
  FailureOr<Value> rhs = emitAffine(b, loc, binary.getRHS(), numTokens);
  if (failed(lhs) || failed(rhs))
    return failure();
  Type i64 = b.getI64Type();
  switch (expr.getKind()) {
  case AffineExprKind::Add:
    return emitc::AddOp::create(b, loc, i64, *lhs, *rhs).getResult();
  case AffineExprKind::Mul:
    return emitc::MulOp::create(b, loc, i64, *lhs, *rhs).getResult();
  case AffineExprKind::FloorDiv:
    // Byte counts are never negative: C's division is the floor.
    return emitc::DivOp::create(b, loc, i64, *lhs, *rhs).getResult();
  default:
    return failure();
  }
}

/// Where buffer `index` of `layout` starts (index = the buffer count: the
/// bytes of the whole layout), as an affine expression of the token count.
AffineExpr bufferOffset(moe_gpu::WorkspaceLayoutOp layout, int64_t index) {
  constexpr int64_t alignment = moe_gpu::WorkspaceLayoutOp::kBufferAlignment;
  AffineExpr offset = getAffineConstantExpr(0, layout.getContext());
  for (Attribute map : layout.getBuffers().getValue().take_front(index)) {
    AffineExpr bytes = cast<AffineMapAttr>(map).getValue().getResult(0);
    offset = offset + (bytes + (alignment - 1)).floorDiv(alignment) * alignment;
  }
  return offset;
}

FailureOr<Value> emitLayoutOffset(OpBuilder &b, Operation *user,
                                  FlatSymbolRefAttr symbol, int64_t index,
                                  Value numTokens) {
  auto layout = SymbolTable::lookupNearestSymbolFrom<
      moe_gpu::WorkspaceLayoutOp>(user, symbol);
  if (!layout)
    return user->emitError("no workspace layout ") << symbol;
  FailureOr<Value> offset = emitAffine(b, user->getLoc(),
                                       bufferOffset(layout, index), numTokens);
  if (failed(offset))
    return user->emitError("workspace sizes must use +, * and floordiv");
  return offset;
}

/// The launcher pointer the host function containing `op` opened.
Value launcherOf(Operation *op) {
  auto func = op->getParentOfType<emitc::FuncOp>();
  for (Operation &candidate : func.getBody().front())
    if (candidate.hasAttr(kLauncherAttr))
      return candidate.getResult(0);
  return Value();
}

/// Calls `callee` with `operands` and the opaque `extraArgs` after them.
emitc::CallOpaqueOp call(OpBuilder &b, Location loc, TypeRange results,
                         StringRef callee, ValueRange operands,
                         ArrayRef<Attribute> extraArgs = {}) {
  if (extraArgs.empty())
    return emitc::CallOpaqueOp::create(b, loc, results, callee, operands);
  SmallVector<Attribute> args;
  for (unsigned i = 0; i < operands.size(); ++i)
    args.push_back(b.getIndexAttr(i));
  llvm::append_range(args, extraArgs);
  return emitc::CallOpaqueOp::create(b, loc, results, callee, operands,
                                     b.getArrayAttr(args));
}

/// `moe_rt_memref_<rank>d(data, elementBytes, sizes...)`.
Value makeMemref(OpBuilder &b, Location loc, Value data, MemRefType type,
                 ArrayRef<Value> sizes) {
  SmallVector<Value> operands = {
      data, i64Constant(b, loc, type.getElementTypeBitWidth() / 8)};
  llvm::append_range(operands, sizes);
  return call(b, loc, opaque(b.getContext(), "moe_rt_memref"),
              ("moe_rt_memref_" + Twine(type.getRank()) + "d").str(),
              operands)
      .getResult(0);
}

/// The sizes of `type` with every dynamic dimension `dynamic`.
SmallVector<Value> sizesOf(OpBuilder &b, Location loc, MemRefType type,
                           ValueRange dynamic) {
  SmallVector<Value> sizes;
  unsigned next = 0;
  for (int64_t size : type.getShape())
    sizes.push_back(ShapedType::isDynamic(size)
                        ? dynamic[dynamic.size() == 1 ? 0 : next++]
                        : i64Constant(b, loc, size));
  return sizes;
}

//===----------------------------------------------------------------------===//
// Host functions
//===----------------------------------------------------------------------===//

/// A host function: launching (it has a stream) or pure.
struct HostFuncLowering : public OpConversionPattern<func::FuncOp> {
  HostFuncLowering(const TypeConverter &converter, MLIRContext *context,
                   const KernelTable &kernels)
      : OpConversionPattern(converter, context), kernels(kernels) {}

  LogicalResult
  matchAndRewrite(func::FuncOp func, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (func.isExternal())
      return rewriter.notifyMatchFailure(func, "a declaration");
    bool launching = llvm::any_of(func.getArgumentTypes(), [](Type type) {
      return isa<moe_gpu::StreamType>(type);
    });
    return launching ? lowerLaunching(func, rewriter)
                     : lowerPure(func, rewriter);
  }

private:
  LogicalResult lowerPure(func::FuncOp func,
                          ConversionPatternRewriter &rewriter) const;
  LogicalResult lowerLaunching(func::FuncOp func,
                               ConversionPatternRewriter &rewriter) const;
  /// Opens the launcher and checks the arguments; returns the values that
  /// replace the host function's arguments.
  FailureOr<SmallVector<Value>>
  openCall(func::FuncOp func, emitc::FuncOp cFunc,
           ArrayRef<int64_t> cArgumentOf,
           ConversionPatternRewriter &rewriter) const;

  const KernelTable &kernels;
};

LogicalResult
HostFuncLowering::lowerPure(func::FuncOp func,
                            ConversionPatternRewriter &rewriter) const {
  MLIRContext *context = func.getContext();
  SmallVector<Type> inputs, results;
  for (Type type : func.getArgumentTypes()) {
    if (!type.isIntOrIndex())
      return func.emitError("a host function without a stream takes "
                            "integers only");
    inputs.push_back(getTypeConverter()->convertType(type));
  }
  for (Type type : func.getResultTypes())
    results.push_back(isa<IndexType>(type)
                          ? Type(emitc::SizeTType::get(context))
                          : getTypeConverter()->convertType(type));
  auto cFunc = emitc::FuncOp::create(
      rewriter, func.getLoc(), func.getName(),
      rewriter.getFunctionType(inputs, results));
  cFunc.setSpecifiersAttr(rewriter.getStrArrayAttr({"extern \"C\""}));
  rewriter.inlineRegionBefore(func.getBody(), cFunc.getBody(),
                              cFunc.getBody().end());
  TypeConverter::SignatureConversion signature(func.getNumArguments());
  for (auto [index, type] : llvm::enumerate(inputs))
    signature.addInputs(index, type);
  rewriter.applySignatureConversion(&cFunc.getBody().front(), signature,
                                    getTypeConverter());
  rewriter.eraseOp(func);
  return success();
}

FailureOr<SmallVector<Value>>
HostFuncLowering::openCall(func::FuncOp func, emitc::FuncOp cFunc,
                           ArrayRef<int64_t> cArgumentOf,
                           ConversionPatternRewriter &rewriter) const {
  MLIRContext *context = func.getContext();
  Location loc = func.getLoc();
  Block *entry = &cFunc.getBody().front();
  rewriter.setInsertionPointToStart(entry);
  Type launcherType = opaque(context, "moe_rt_launcher");
  Value launcher = emitc::VariableOp::create(
      rewriter, loc, emitc::LValueType::get(launcherType),
      emitc::OpaqueAttr::get(context, ""));
  Type programType = opaque(context, "moe_rt_program");
  Value program = emitc::GetGlobalOp::create(
      rewriter, loc, emitc::LValueType::get(programType), kernels.programName);
  Value programPointer = emitc::AddressOfOp::create(
      rewriter, loc, pointerTo(programType), program);
  Value stream;
  Value numTokens;
  for (auto [index, type] : llvm::enumerate(func.getArgumentTypes())) {
    if (isa<moe_gpu::StreamType>(type))
      stream = entry->getArgument(cArgumentOf[index]);
    if (isa<IndexType>(type))
      numTokens = entry->getArgument(cArgumentOf[index]);
  }
  if (!numTokens)
    return func.emitError("a launching host function needs the token count "
                          "(an index argument)");
  Value begin = call(rewriter, loc, launcherType, "moe_rt_launcher_begin",
                     {programPointer, stream})
                    .getResult(0);
  emitc::AssignOp::create(rewriter, loc, launcher, begin);
  auto self = emitc::AddressOfOp::create(rewriter, loc, pointerTo(launcherType),
                                         launcher);
  self->setAttr(kLauncherAttr, rewriter.getUnitAttr());
  Value l = self.getResult();
  std::string name = func.getName().str();
  call(rewriter, loc, {}, "moe_rt_launcher_require_tokens", {l, numTokens},
       {stringLiteral(context, name + ": the token count is out of range")});

  SmallVector<Value> replacements;
  for (auto [index, type] : llvm::enumerate(func.getArgumentTypes())) {
    Value cArgument = entry->getArgument(cArgumentOf[index]);
    auto memref = dyn_cast<MemRefType>(type);
    if (!memref) {
      replacements.push_back(cArgument);
      continue;
    }
    if (func.getArgAttr(index, MoeGPUDialect::getWorkspaceAttrName())) {
      Value bytes = entry->getArgument(cArgumentOf[index] + 1);
      auto layout = func->getAttrOfType<FlatSymbolRefAttr>(
          MoeGPUDialect::getWorkspaceLayoutAttrName());
      if (!layout)
        return func.emitError("a host function with a workspace needs '")
               << MoeGPUDialect::getWorkspaceLayoutAttrName() << "'";
      auto layoutOp = SymbolTable::lookupNearestSymbolFrom<
          moe_gpu::WorkspaceLayoutOp>(func, layout);
      if (!layoutOp)
        return func.emitError("no workspace layout ") << layout;
      FailureOr<Value> required =
          emitLayoutOffset(rewriter, func, layout,
                           layoutOp.getBuffers().size(), numTokens);
      if (failed(required))
        return failure();
      call(rewriter, loc, {}, "moe_rt_launcher_require_workspace",
           {l, cArgument, bytes, *required},
           {stringLiteral(context, name + ": the workspace is missing, too "
                                          "small or not 128-byte aligned")});
      Value bytes64 = emitc::CastOp::create(rewriter, loc,
                                            rewriter.getI64Type(), bytes);
      replacements.push_back(
          makeMemref(rewriter, loc, cArgument, memref, {bytes64}));
      continue;
    }
    call(rewriter, loc, {}, "moe_rt_launcher_require_tensor", {l, cArgument},
         {stringLiteral(context, name + ": a null tensor pointer, or one "
                                        "not 16-byte aligned")});
    replacements.push_back(makeMemref(rewriter, loc, cArgument, memref,
                                      sizesOf(rewriter, loc, memref,
                                              numTokens)));
  }
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    call(rewriter, loc, {}, "moe_rt_launcher_require_pointer",
         {l, entry->getArgument(entry->getNumArguments() -
                                func.getNumResults() + i)},
         {stringLiteral(context, name + ": a null result pointer")});
  call(rewriter, loc, {}, "moe_rt_launcher_finish_if_empty", {l, numTokens});
  return replacements;
}

LogicalResult
HostFuncLowering::lowerLaunching(func::FuncOp func,
                                 ConversionPatternRewriter &rewriter) const {
  MLIRContext *context = func.getContext();
  Type voidType = opaque(context, "void");
  Type constVoid = opaque(context, "const void");
  SmallVector<Type> cTypes;
  SmallVector<int64_t> cArgumentOf;
  for (auto [index, type] : llvm::enumerate(func.getArgumentTypes())) {
    cArgumentOf.push_back(cTypes.size());
    if (isa<MemRefType>(type)) {
      bool written =
          func.getArgAttr(index, MoeGPUDialect::getResultAttrName()) ||
          func.getArgAttr(index, MoeGPUDialect::getWorkspaceAttrName());
      cTypes.push_back(pointerTo(written ? voidType : constVoid));
      if (func.getArgAttr(index, MoeGPUDialect::getWorkspaceAttrName()))
        cTypes.push_back(emitc::SizeTType::get(context));
      continue;
    }
    Type converted = getTypeConverter()->convertType(type);
    if (!converted)
      return func.emitError("no C type for host argument type ") << type;
    cTypes.push_back(converted);
  }
  for (Type type : func.getResultTypes())
    cTypes.push_back(pointerTo(getTypeConverter()->convertType(type)));
  auto cFunc = emitc::FuncOp::create(
      rewriter, func.getLoc(), func.getName(),
      rewriter.getFunctionType(cTypes, {rewriter.getI32Type()}));
  cFunc.setSpecifiersAttr(rewriter.getStrArrayAttr({"extern \"C\""}));
  Block *entry = cFunc.addEntryBlock();
  FailureOr<SmallVector<Value>> replacements =
      openCall(func, cFunc, cArgumentOf, rewriter);
  if (failed(replacements))
    return failure();
  Block &body = func.getBody().front();
  rewriter.inlineBlockBefore(&body, entry, entry->end(), *replacements);
  rewriter.eraseOp(func);
  return success();
}

/// Returns the launcher's status, after storing the results through their
/// out-pointers (a null one was already reported); a pure function returns
/// its result.
struct ReturnLowering : public OpConversionPattern<func::ReturnOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(func::ReturnOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    auto cFunc = op->getParentOfType<emitc::FuncOp>();
    if (!cFunc)
      return rewriter.notifyMatchFailure(op, "host function not lowered yet");
    Location loc = op.getLoc();
    Value launcher = launcherOf(op);
    if (!launcher) {
      SmallVector<Value> results;
      for (auto [value, type] : llvm::zip_equal(
               adaptor.getOperands(), cFunc.getFunctionType().getResults()))
        results.push_back(value.getType() == type
                              ? value
                              : emitc::CastOp::create(rewriter, loc, type,
                                                      value));
      rewriter.replaceOpWithNewOp<emitc::ReturnOp>(
          op, results.empty() ? Value() : results.front());
      return success();
    }
    Block &entry = cFunc.getBody().front();
    unsigned first = entry.getNumArguments() - op.getNumOperands();
    for (auto [index, value] : llvm::enumerate(adaptor.getOperands())) {
      if (value.getType() != rewriter.getI64Type())
        return op.emitError("a launching host function returns i64 counts "
                            "only, got ")
               << value.getType();
      call(rewriter, loc, {}, "moe_rt_launcher_store_i64",
           {launcher, entry.getArgument(first + index), value});
    }
    Value status = call(rewriter, loc, rewriter.getI32Type(),
                        "moe_rt_launcher_end", {launcher})
                       .getResult(0);
    rewriter.replaceOpWithNewOp<emitc::ReturnOp>(op, status);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Index arithmetic
//===----------------------------------------------------------------------===//

struct ConstantLowering : public OpConversionPattern<arith::ConstantOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(arith::ConstantOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    auto value = dyn_cast<IntegerAttr>(op.getValue());
    Type type = getTypeConverter()->convertType(op.getType());
    if (!value || !type)
      return rewriter.notifyMatchFailure(op, "not an integer");
    rewriter.replaceOpWithNewOp<emitc::ConstantOp>(
        op, type, IntegerAttr::get(type, value.getValue().getSExtValue()));
    return success();
  }
};

template <typename ArithOp, typename EmitCOp>
struct BinaryLowering : public OpConversionPattern<ArithOp> {
  using OpConversionPattern<ArithOp>::OpConversionPattern;

  LogicalResult
  matchAndRewrite(ArithOp op, typename ArithOp::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Type type = this->getTypeConverter()->convertType(op.getType());
    rewriter.replaceOpWithNewOp<EmitCOp>(op, type, adaptor.getLhs(),
                                         adaptor.getRhs());
    return success();
  }
};

/// min and max as a comparison and a conditional.
template <typename ArithOp, emitc::CmpPredicate predicate>
struct MinMaxLowering : public OpConversionPattern<ArithOp> {
  using OpConversionPattern<ArithOp>::OpConversionPattern;

  LogicalResult
  matchAndRewrite(ArithOp op, typename ArithOp::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Type type = this->getTypeConverter()->convertType(op.getType());
    Value takeLhs = emitc::CmpOp::create(rewriter, op.getLoc(),
                                         rewriter.getI1Type(), predicate,
                                         adaptor.getLhs(), adaptor.getRhs());
    rewriter.replaceOpWithNewOp<emitc::ConditionalOp>(
        op, type, takeLhs, adaptor.getLhs(), adaptor.getRhs());
    return success();
  }
};

/// Integer comparisons of sizes and counts (never negative, so the signed
/// predicates serve).
struct CmpILowering : public OpConversionPattern<arith::CmpIOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(arith::CmpIOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    std::optional<emitc::CmpPredicate> predicate;
    switch (op.getPredicate()) {
    case arith::CmpIPredicate::eq:
      predicate = emitc::CmpPredicate::eq;
      break;
    case arith::CmpIPredicate::ne:
      predicate = emitc::CmpPredicate::ne;
      break;
    case arith::CmpIPredicate::slt:
      predicate = emitc::CmpPredicate::lt;
      break;
    case arith::CmpIPredicate::sle:
      predicate = emitc::CmpPredicate::le;
      break;
    case arith::CmpIPredicate::sgt:
      predicate = emitc::CmpPredicate::gt;
      break;
    case arith::CmpIPredicate::sge:
      predicate = emitc::CmpPredicate::ge;
      break;
    default:
      return rewriter.notifyMatchFailure(op, "unsigned comparison");
    }
    rewriter.replaceOpWithNewOp<emitc::CmpOp>(op, rewriter.getI1Type(),
                                              *predicate, adaptor.getLhs(),
                                              adaptor.getRhs());
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Launches and the moe_gpu host ops
//===----------------------------------------------------------------------===//

struct LaunchLowering : public OpConversionPattern<gpu::LaunchFuncOp> {
  LaunchLowering(const TypeConverter &converter, MLIRContext *context,
                 KernelTable &kernels)
      : OpConversionPattern(converter, context), kernels(kernels) {}

  LogicalResult
  matchAndRewrite(gpu::LaunchFuncOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError("gpu.launch_func outside a launching host function");
    MLIRContext *context = op.getContext();
    Location loc = op.getLoc();
    Type argType = opaque(context, "moe_rt_kernel_arg");
    ValueRange operands = adaptor.getKernelOperands();
    auto arrayType = emitc::ArrayType::get(
        {static_cast<int64_t>(std::max<size_t>(operands.size(), 1))},
        argType);
    Value args = emitc::VariableOp::create(rewriter, loc, arrayType,
                                           emitc::OpaqueAttr::get(context, ""));
    for (auto [index, operand] : llvm::enumerate(operands)) {
      StringRef wrap = isa<emitc::PointerType>(operand.getType())
                           ? "moe_rt_tensor_map_arg"
                           : "moe_rt_memref_arg";
      Value arg = call(rewriter, loc, argType, wrap, operand).getResult(0);
      Value slot = emitc::SubscriptOp::create(
          rewriter, loc, emitc::LValueType::get(argType), args,
          ValueRange{i64Constant(rewriter, loc, index)});
      emitc::AssignOp::create(rewriter, loc, slot, arg);
    }
    Value shared = adaptor.getDynamicSharedMemorySize();
    if (!shared)
      shared = i64Constant(rewriter, loc, 0);
    Value kernel = emitc::ConstantOp::create(
        rewriter, loc, rewriter.getI32Type(),
        rewriter.getI32IntegerAttr(
            kernels.indexOf(op.getKernelName().getValue())));
    Value count = emitc::ConstantOp::create(
        rewriter, loc, rewriter.getI32Type(),
        rewriter.getI32IntegerAttr(operands.size()));
    // A kernel that waits for the kernels before it may be launched as
    // their programmatic dependent (moe-gpu-dependent-launch).
    StringRef launchFunction =
        op->hasAttr(moe_gpu::MoeGPUDialect::getDependentLaunchAttrName())
            ? "moe_rt_launcher_launch_dependent"
            : "moe_rt_launcher_launch";
    call(rewriter, loc, {}, launchFunction,
         {launcher, kernel, adaptor.getGridSizeX(), adaptor.getGridSizeY(),
          adaptor.getGridSizeZ(), adaptor.getBlockSizeX(), shared, args,
          count});
    rewriter.eraseOp(op);
    return success();
  }

  KernelTable &kernels;
};

struct WorkspaceBufferLowering
    : public OpConversionPattern<moe_gpu::WorkspaceBufferOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::WorkspaceBufferOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    FailureOr<Value> offset =
        emitLayoutOffset(rewriter, op, op.getLayoutAttr(), op.getIndex(),
                         adaptor.getNumTokens());
    if (failed(offset))
      return failure();
    Type voidPointer = pointerTo(opaque(op.getContext(), "void"));
    Value data = call(rewriter, loc, voidPointer, "moe_rt_memref_at",
                      {adaptor.getWorkspace(), *offset})
                     .getResult(0);
    rewriter.replaceOp(op, makeMemref(rewriter, loc, data, op.getType(),
                                      sizesOf(rewriter, loc, op.getType(),
                                              adaptor.getSizes())));
    return success();
  }
};

struct WorkspaceBytesLowering
    : public OpConversionPattern<moe_gpu::WorkspaceBytesOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::WorkspaceBytesOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    auto layout = SymbolTable::lookupNearestSymbolFrom<
        moe_gpu::WorkspaceLayoutOp>(op, op.getLayoutAttr());
    if (!layout)
      return op.emitError("no workspace layout ") << op.getLayoutAttr();
    FailureOr<Value> bytes =
        emitLayoutOffset(rewriter, op, op.getLayoutAttr(),
                         layout.getBuffers().size(), adaptor.getNumTokens());
    if (failed(bytes))
      return failure();
    rewriter.replaceOp(op, *bytes);
    return success();
  }
};

struct TensorMapLowering : public OpConversionPattern<moe_gpu::TensorMapOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::TensorMapOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError("moe_gpu.tensor_map outside a launching host "
                          "function");
    MLIRContext *context = op.getContext();
    Location loc = op.getLoc();
    MemRefType type = op.getSource().getType();
    Type mapType = opaque(context, "CUtensorMap");
    Value map = emitc::VariableOp::create(
        rewriter, loc, emitc::LValueType::get(mapType),
        emitc::OpaqueAttr::get(context, ""));
    Value pointer =
        emitc::AddressOfOp::create(rewriter, loc, pointerTo(mapType), map);
    Value data = call(rewriter, loc, pointerTo(opaque(context, "void")),
                      "moe_rt_memref_at",
                      {adaptor.getSource(), i64Constant(rewriter, loc, 0)})
                     .getResult(0);
    int64_t cols = type.getShape().back();
    // Every dimension but the last folds into the rows; a dynamic leading
    // one (verified: the only one) is read from the memref at run time.
    int64_t innerRows = 1;
    for (int64_t size : type.getShape().drop_front().drop_back())
      innerRows *= size;
    Value rows = i64Constant(
        rewriter, loc,
        type.isDynamicDim(0) ? innerRows : type.getShape().front() * innerRows);
    if (type.isDynamicDim(0)) {
      Value leading =
          call(rewriter, loc, rewriter.getI64Type(), "moe_rt_memref_size",
               {adaptor.getSource(), i64Constant(rewriter, loc, 0)})
              .getResult(0);
      rows = emitc::MulOp::create(rewriter, loc, rewriter.getI64Type(), leading,
                                  rows);
    }
    ArrayRef<int64_t> box = op.getBox();
    call(rewriter, loc, {}, "moe_rt_launcher_encode_tma_2d",
         {launcher, pointer, data, rows, i64Constant(rewriter, loc, cols),
          i64Constant(rewriter, loc, type.getElementTypeBitWidth() / 8),
          i64Constant(rewriter, loc, box[0]),
          i64Constant(rewriter, loc, box[1])});
    rewriter.replaceOp(op, pointer);
    return success();
  }
};

/// A leading slice is a new descriptor at a byte offset into the source.
struct LeadingSliceLowering
    : public OpConversionPattern<moe_gpu::LeadingSliceOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::LeadingSliceOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MemRefType type = op.getResult().getType();
    int64_t entryBytes = type.getElementTypeBitWidth() / 8;
    for (int64_t size : type.getShape().drop_front())
      entryBytes *= size;
    Value data = call(rewriter, loc, pointerTo(opaque(op.getContext(), "void")),
                      "moe_rt_memref_at",
                      {adaptor.getSource(),
                       i64Constant(rewriter, loc, op.getOffset() * entryBytes)})
                     .getResult(0);
    rewriter.replaceOp(op, makeMemref(rewriter, loc, data, type,
                                      sizesOf(rewriter, loc, type, {})));
    return success();
  }
};

struct ZeroLowering : public OpConversionPattern<moe_gpu::ZeroOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::ZeroOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError("moe_gpu.zero outside a launching host function");
    call(rewriter, op.getLoc(), {}, "moe_rt_launcher_zero",
         {launcher, adaptor.getBuffer()});
    rewriter.eraseOp(op);
    return success();
  }
};

struct ReadCountLowering : public OpConversionPattern<moe_gpu::ReadCountOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::ReadCountOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError("moe_gpu.read_count outside a launching host "
                          "function");
    Location loc = op.getLoc();
    Type i64 = rewriter.getI64Type();
    Value total = emitc::VariableOp::create(rewriter, loc,
                                            emitc::LValueType::get(i64),
                                            rewriter.getI64IntegerAttr(0));
    Value pointer =
        emitc::AddressOfOp::create(rewriter, loc, pointerTo(i64), total);
    Value data =
        call(rewriter, loc, pointerTo(opaque(op.getContext(), "void")),
             "moe_rt_memref_at",
             {adaptor.getCounter(), i64Constant(rewriter, loc, 0)})
            .getResult(0);
    call(rewriter, loc, {}, "moe_rt_launcher_add_counter",
         {launcher, data, pointer});
    rewriter.replaceOpWithNewOp<emitc::LoadOp>(op, i64, total);
    return success();
  }
};

/// The group collectives: a runtime call each, on the call's launcher.
struct StoreGroupRankLowering
    : public OpConversionPattern<moe_gpu::StoreGroupRankOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::StoreGroupRankOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError("moe_gpu.store_group_rank outside a launching host "
                          "function");
    call(rewriter, op.getLoc(), {}, "moe_rt_launcher_store_group_rank",
         {launcher, adaptor.getGroup(),
          i64Constant(rewriter, op.getLoc(), op.getRanks()),
          adaptor.getRank()});
    rewriter.eraseOp(op);
    return success();
  }
};

template <typename CollectiveOp>
struct CollectiveLowering : public OpConversionPattern<CollectiveOp> {
  CollectiveLowering(const TypeConverter &converter, MLIRContext *context,
                     StringRef function)
      : OpConversionPattern<CollectiveOp>(converter, context),
        function(function.str()) {}

  LogicalResult
  matchAndRewrite(CollectiveOp op, typename CollectiveOp::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError() << op->getName()
                            << " outside a launching host function";
    call(rewriter, op.getLoc(), {}, function,
         {launcher, adaptor.getGroup(), adaptor.getSend(), adaptor.getRecv()});
    rewriter.eraseOp(op);
    return success();
  }

  std::string function;
};

struct MultiprocessorCountLowering
    : public OpConversionPattern<moe_gpu::MultiprocessorCountOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(moe_gpu::MultiprocessorCountOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value launcher = launcherOf(op);
    if (!launcher)
      return op.emitError("moe_gpu.multiprocessor_count outside a launching "
                          "host function");
    Type count = getTypeConverter()->convertType(op.getType());
    rewriter.replaceOp(op, call(rewriter, op.getLoc(), count,
                                "moe_rt_launcher_multiprocessor_count",
                                {launcher})
                               .getResult(0));
    return success();
  }
};

/// A cast between memref types of one layout changes nothing at run time.
struct MemRefCastLowering : public OpConversionPattern<memref::CastOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(memref::CastOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    rewriter.replaceOp(op, adaptor.getSource());
    return success();
  }
};

/// A collapse (static or dynamic) or a static expand is a new descriptor over
/// the same data.
template <typename ReshapeOp>
struct ReshapeLowering : public OpConversionPattern<ReshapeOp> {
  using OpConversionPattern<ReshapeOp>::OpConversionPattern;
  using OpAdaptor = typename ReshapeOp::Adaptor;

  LogicalResult
  matchAndRewrite(ReshapeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    MemRefType type = op.getResultType();
    Location loc = op.getLoc();
    SmallVector<Value> dynamicSizes;
    if (!type.hasStaticShape()) {
      // A dynamic collapse: each dynamic size is the product of its group's
      // source sizes.
      if constexpr (!std::is_same_v<ReshapeOp, memref::CollapseShapeOp>)
        return rewriter.notifyMatchFailure(op, "dynamic expand");
      for (auto [dim, group] : llvm::enumerate(op.getReassociationIndices())) {
        if (!type.isDynamicDim(dim))
          continue;
        Value size = i64Constant(rewriter, loc, 1);
        for (int64_t sourceDim : group)
          size = emitc::MulOp::create(
              rewriter, loc, rewriter.getI64Type(), size,
              call(rewriter, loc, rewriter.getI64Type(), "moe_rt_memref_size",
                   {adaptor.getSrc(), i64Constant(rewriter, loc, sourceDim)})
                  .getResult(0));
        dynamicSizes.push_back(size);
      }
    }
    Value data = call(rewriter, loc, pointerTo(opaque(op.getContext(), "void")),
                      "moe_rt_memref_at",
                      {adaptor.getSrc(), i64Constant(rewriter, loc, 0)})
                     .getResult(0);
    SmallVector<Value> sizes;
    unsigned next = 0;
    for (int64_t size : type.getShape())
      sizes.push_back(ShapedType::isDynamic(size)
                          ? dynamicSizes[next++]
                          : i64Constant(rewriter, loc, size));
    rewriter.replaceOp(op, makeMemref(rewriter, loc, data, type, sizes));
    return success();
  }
};

/// The kernels' binary as a `moe_rt_program`, at the top of the module.
struct GpuBinaryLowering : public OpConversionPattern<gpu::BinaryOp> {
  GpuBinaryLowering(const TypeConverter &converter, MLIRContext *context,
                 KernelTable &kernels)
      : OpConversionPattern(converter, context), kernels(kernels) {}

  LogicalResult
  matchAndRewrite(gpu::BinaryOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (op.getObjects().size() != 1)
      return op.emitError("expected one serialized object, found ")
             << op.getObjects().size();
    StringRef image =
        cast<gpu::ObjectAttr>(op.getObjects()[0]).getObject().getValue();
    MLIRContext *context = op.getContext();
    Location loc = op.getLoc();
    auto byteType = IntegerType::get(context, 8, IntegerType::Unsigned);
    rewriter.setInsertionPointToStart(
        op->getParentOfType<ModuleOp>().getBody());
    auto imageType = emitc::ArrayType::get(
        {static_cast<int64_t>(image.size())}, byteType);
    auto bytes = DenseElementsAttr::get(
        RankedTensorType::get({static_cast<int64_t>(image.size())}, byteType),
        ArrayRef<char>(image.data(), image.size()));
    emitc::GlobalOp::create(rewriter, loc, kernels.imageName, imageType, bytes,
                            /*extern_specifier=*/false,
                            /*static_specifier=*/true,
                            /*const_specifier=*/true);
    std::string names = "{";
    for (const std::string &name : kernels.names)
      names += "\"" + name + "\", ";
    names += "}";
    auto namesType = emitc::ArrayType::get(
        {static_cast<int64_t>(std::max<size_t>(kernels.names.size(), 1))},
        pointerTo(opaque(context, "const char")));
    emitc::GlobalOp::create(rewriter, loc, kernels.kernelNamesName, namesType,
                            emitc::OpaqueAttr::get(context, names),
                            false, true, false);
    emitc::GlobalOp::create(
        rewriter, loc, kernels.programName, opaque(context, "moe_rt_program"),
        emitc::OpaqueAttr::get(
            context, "{" + kernels.imageName + ", sizeof(" +
                         kernels.imageName + "), " + kernels.kernelNamesName +
                         ", " + std::to_string(kernels.names.size()) + "}"),
        false, true, false);
    rewriter.eraseOp(op);
    return success();
  }

  KernelTable &kernels;
};

struct ConvertMoeGpuHostToEmitCPass
    : public moe::impl::ConvertMoeGpuHostToEmitCBase<
          ConvertMoeGpuHostToEmitCPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();
    if (module.getOps<gpu::BinaryOp>().empty()) {
      module.emitError("serialize the kernels first: no gpu.binary");
      return signalPassFailure();
    }
    // The launched kernels' names, in order of first launch.
    KernelTable kernels(symbolSuffix);
    module.walk([&](gpu::LaunchFuncOp launch) {
      kernels.indexOf(launch.getKernelName().getValue());
    });

    HostTypeConverter converter(context);
    ConversionTarget target(*context);
    target.addLegalDialect<emitc::EmitCDialect>();
    target.addLegalOp<ModuleOp, moe_gpu::WorkspaceLayoutOp>();
    RewritePatternSet patterns(context);
    patterns
        .add<ReturnLowering, ConstantLowering,
             BinaryLowering<arith::AddIOp, emitc::AddOp>,
             BinaryLowering<arith::SubIOp, emitc::SubOp>,
             BinaryLowering<arith::MulIOp, emitc::MulOp>,
             BinaryLowering<arith::DivSIOp, emitc::DivOp>,
             MinMaxLowering<arith::MinSIOp, emitc::CmpPredicate::lt>,
             MinMaxLowering<arith::MaxSIOp, emitc::CmpPredicate::gt>,
             WorkspaceBufferLowering, WorkspaceBytesLowering, TensorMapLowering,
             LeadingSliceLowering, ZeroLowering, ReadCountLowering,
             MultiprocessorCountLowering, StoreGroupRankLowering,
             MemRefCastLowering, ReshapeLowering<memref::CollapseShapeOp>,
             ReshapeLowering<memref::ExpandShapeOp>>(converter, context);
    patterns.add<HostFuncLowering, LaunchLowering, GpuBinaryLowering>(
        converter, context, kernels);
    patterns.add<CmpILowering>(converter, context);
    patterns.add<CollectiveLowering<moe_gpu::AllGatherOp>>(
        converter, context, "moe_rt_launcher_all_gather");
    patterns.add<CollectiveLowering<moe_gpu::ReduceScatterOp>>(
        converter, context, "moe_rt_launcher_reduce_scatter_sum_f32");
    // A host function may branch on the token count (scf.if).
    populateSCFToEmitCConversionPatterns(patterns, converter);
    if (failed(applyFullConversion(module, target, std::move(patterns))))
      return signalPassFailure();
    // The layouts live on in the offsets computed from them.
    for (auto layout :
         llvm::make_early_inc_range(module.getOps<moe_gpu::WorkspaceLayoutOp>()))
      layout.erase();
    OpBuilder b(context);
    b.setInsertionPointToStart(module.getBody());
    emitc::IncludeOp::create(b, module.getLoc(),
                             b.getStringAttr("moe/Runtime/Runtime.h"));
  }
};
} // namespace

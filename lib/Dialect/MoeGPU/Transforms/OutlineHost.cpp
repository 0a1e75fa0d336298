//===- OutlineHost.cpp - moe-gpu-outline-host -----------------------------===//
//
// Replaces a layer function whose ops have kernels with the host functions
// that launch them: typed launches, the workspace layout and its buffers,
// TMA descriptors and zeroing, all in IR (see the pass description).
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/MoeGPU/IR/HopperLimits.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h"
#include "moe/Dialect/MoeGPU/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineExpr.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::moe_gpu {
#define GEN_PASS_DEF_MOEGPUOUTLINEHOST
#include "moe/Dialect/MoeGPU/Transforms/Passes.h.inc"
} // namespace mlir::moe_gpu

using namespace mlir;
using namespace mlir::moe_gpu;

namespace {
/// A device buffer of the host function: its memref and its sizes as affine
/// expressions of the token count (symbol 0).
struct Buffer {
  Value memref;
  SmallVector<AffineExpr> sizes;
};

/// Bytes of one element in device memory.
int64_t elementBytes(Type type) {
  return (type.getIntOrFloatBitWidth() + 7) / 8;
}

/// How the kernels see an element in memory: 8-bit floats as their bytes,
/// and integers signless.
Type storageType(Type type) {
  if (auto integer = dyn_cast<IntegerType>(type))
    return IntegerType::get(type.getContext(), integer.getWidth());
  if (isa<FloatType>(type) && type.getIntOrFloatBitWidth() == 8)
    return IntegerType::get(type.getContext(), 8);
  return type;
}

/// A launch fact of `kernel` (its `moe.launch` entry `key`), or a
/// diagnostic when the kernel builder did not record it.
FailureOr<int64_t> launchFact(gpu::GPUFuncOp kernel, StringRef key) {
  auto launch = kernel->getAttrOfType<DictionaryAttr>("moe.launch");
  auto value = launch ? launch.getAs<IntegerAttr>(key) : IntegerAttr();
  if (!value)
    return kernel.emitError("kernel has no launch fact '") << key << "'";
  return value.getInt();
}

/// A launch fact that a kernel records only when it is not zero.
/// [E, N, K] weights viewed as [E, N/2, 2K]: row pair j holds rows 2j and
/// 2j + 1 side by side (a static collapse to the flat data, then an expand;
/// the host's memref descriptors go up to rank 3).
Value viewAsRowPairs(OpBuilder &b, Location loc, Value weights) {
  auto type = cast<MemRefType>(weights.getType());
  int64_t experts = type.getDimSize(0), rows = type.getDimSize(1),
          cols = type.getDimSize(2);
  auto flat = memref::CollapseShapeOp::create(
      b, loc, weights, ArrayRef<ReassociationIndices>{{0, 1, 2}});
  return memref::ExpandShapeOp::create(
      b, loc, ArrayRef<int64_t>{experts, rows / 2, 2 * cols}, flat,
      ArrayRef<ReassociationIndices>{{0, 1, 2}});
}

int64_t optionalLaunchFact(gpu::GPUFuncOp kernel, StringRef key) {
  auto launch = kernel->getAttrOfType<DictionaryAttr>("moe.launch");
  auto value = launch ? launch.getAs<IntegerAttr>(key) : IntegerAttr();
  return value ? value.getInt() : 0;
}

/// Builds the host function of one layer function.
class HostBuilder {
public:
  HostBuilder(ModuleOp module, func::FuncOp layer, StringRef name,
              int64_t manyBlocksAbove)
      : module(module), layer(layer), name(name.str()),
        manyBlocksAbove(manyBlocksAbove), b(layer.getContext()),
        loc(layer.getLoc()),
        tokens(getAffineSymbolExpr(0, layer.getContext())) {}

  LogicalResult build();

private:
  LogicalResult createEntry();
  void createCompanions(StringRef layoutName);
  FailureOr<Buffer> argumentBuffer(BlockArgument argument, Value memref);

  /// The index value of `expr` (of the token count).
  Value materialize(AffineExpr expr);
  Value constant(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  /// A workspace buffer of `sizes` elements of `type`, named `label`.
  Buffer allocateScratch(StringRef label, ArrayRef<AffineExpr> sizes,
                         Type type);
  /// The buffer of `value`: the caller's result buffer, or a new workspace
  /// buffer.
  Buffer allocate(Value value, StringRef label, ArrayRef<AffineExpr> sizes,
                  Type type);
  FailureOr<gpu::GPUFuncOp> kernelOf(Operation *op, StringRef attribute);
  /// Launches `kernel` on a grid of `grid` blocks with `args`.
  LogicalResult launch(gpu::GPUFuncOp kernel, ArrayRef<Value> args,
                       ArrayRef<Value> grid);
  /// The slot blocks of `slots` slots that can hold an assignment.
  Value occupiedBlocks(AffineExpr slots, int64_t numExperts, int64_t blockM);

  /// Launches the routing kernel of `op` (moe.route, moe.topk or
  /// moe.add_shared_experts, whose kernel has the same form) on `rows` rows
  /// with the memrefs `args` (null: an absent optional operand),
  /// allocating its `weights` and `ids` results.
  LogicalResult launchRouting(Operation *op, AffineExpr rows,
                              ArrayRef<Value> args, Value weights, Value ids,
                              int64_t k);
  /// Launches the logits kernel of x · W_gateᵀ (+ `bias`) that `op` names
  /// by `attribute` on `rows` rows into `logits`, or its many-token tiling
  /// (`attribute` with "_many_tokens" before "_kernel") from the number of
  /// tokens that kernel states on.
  LogicalResult launchGateLogits(Operation *op, StringRef attribute,
                                 AffineExpr rows, Value input,
                                 Value gateWeight, Value bias, Value logits);
  LogicalResult lowerRoute(moe::RouteOp op);
  LogicalResult lowerTopk(moe::TopkOp op);
  LogicalResult lowerRouter(moe::RouterOp op);
  LogicalResult lowerAddSharedExperts(moe::AddSharedExpertsOp op);
  LogicalResult lowerAlign(moe::AlignOp op);
  /// The matmul that aligns its own slot blocks of `op`'s schedule
  /// (`fused_align_assignments`), or null; an error unless it is the
  /// schedule's first user, which runs before the others read it.
  FailureOr<moe::ExpertMatmulOp> findFusedAlign(moe::AlignOp op);
  LogicalResult lowerExpertMatmul(moe::ExpertMatmulOp op);
  /// Appends the weights as `kernel` reads them to `args`: weight-only codes
  /// and their scales (and zero points), the bf16 or w8a8 matrix its threads
  /// copy, or a TMA descriptor of its box.
  LogicalResult appendWeightArguments(moe::ExpertMatmulOp op,
                                      gpu::GPUFuncOp kernel,
                                      SmallVectorImpl<Value> &args);
  LogicalResult lowerCombineFinalize(moe::ExpertMatmulOp op,
                                     const Buffer &sums,
                                     const Buffer &output);
  LogicalResult lowerQuantize(moe::QuantizeOp op);
  LogicalResult lowerEpDispatch(moe::EpDispatchOp op);
  LogicalResult lowerEpCombine(moe::EpCombineOp op);
  LogicalResult lowerCollapseShape(tensor::CollapseShapeOp op);
  /// A slice of whole entries of a weight argument's first dimension (the
  /// shared experts of a separate schedule).
  LogicalResult lowerExtractSlice(tensor::ExtractSliceOp op);
  LogicalResult lowerSharedExpertRouting(moe::SharedExpertRoutingOp op);
  /// A workspace word that counts a kernel's invalid inputs, read back by
  /// the layer's `_invalid_ids`; zeroed on the stream first when `zeroed`
  /// (otherwise the kernel zeroes it).
  Buffer allocateErrorCounter(StringRef label, bool zeroed);
  /// The output of `op` and, for a combine, its f32 sums (zeroed); appends
  /// the kernel arguments they are passed as to `args`.
  FailureOr<std::pair<Buffer, Buffer>>
  allocateMatmulOutput(moe::ExpertMatmulOp op, SmallVectorImpl<Value> &args);

  ModuleOp module;
  func::FuncOp layer;
  std::string name;
  int64_t manyBlocksAbove;
  OpBuilder b;
  Location loc;
  AffineExpr tokens;
  FlatSymbolRefAttr layoutSymbol;
  Value numTokens, workspace, stream;
  /// The expert-parallel group, for a rank's program (null otherwise).
  Value group;
  DenseMap<Value, Buffer> buffers;
  DenseMap<Value, unsigned> resultIndex;
  SmallVector<Value> resultMemrefs;
  SmallVector<Attribute> layoutMaps, layoutNames;
  SmallVector<int64_t> invalidIdCounters;
  /// Per moe.align, its word of invalid ids (a fused matmul writes it).
  DenseMap<Operation *, Buffer> alignErrors;
  /// Per combine, the f32 sums that the first matmul of its schedule zeroes
  /// (getSumsZeroedBy), allocated when that matmul is launched.
  DenseMap<Operation *, Buffer> zeroedSums;
};

/// The `fused_align_assignments` of `op`'s kernel configuration (0 without
/// one).
int64_t fusedAlignAssignments(moe::ExpertMatmulOp op) {
  auto config =
      op->getAttrOfType<KernelConfigAttr>(MoeGPUDialect::getConfigAttrName());
  return config ? config.getFusedAlignAssignments() : 0;
}

/// Whether `op`'s kernel configuration has `combine_rows`.
bool combinesRows(moe::ExpertMatmulOp op) {
  auto config =
      op->getAttrOfType<KernelConfigAttr>(MoeGPUDialect::getConfigAttrName());
  return config && config.getCombineRows();
}
} // namespace

Value HostBuilder::materialize(AffineExpr expr) {
  if (auto value = dyn_cast<AffineConstantExpr>(expr))
    return constant(value.getValue());
  if (isa<AffineSymbolExpr>(expr))
    return numTokens;
  auto binary = cast<AffineBinaryOpExpr>(expr);
  Value lhs = materialize(binary.getLHS()), rhs = materialize(binary.getRHS());
  switch (expr.getKind()) {
  case AffineExprKind::Add:
    return arith::AddIOp::create(b, loc, lhs, rhs);
  case AffineExprKind::Mul:
    return arith::MulIOp::create(b, loc, lhs, rhs);
  case AffineExprKind::FloorDiv:
    // Sizes are never negative: floor division is C's.
    return arith::DivSIOp::create(b, loc, lhs, rhs);
  default:
    llvm_unreachable("sizes use +, * and floordiv only");
  }
}

Buffer HostBuilder::allocateScratch(StringRef label,
                                    ArrayRef<AffineExpr> sizes, Type type) {
  AffineExpr bytes = getAffineConstantExpr(elementBytes(type), b.getContext());
  SmallVector<int64_t> shape;
  SmallVector<Value> dynamicSizes;
  for (AffineExpr size : sizes) {
    bytes = bytes * size;
    if (auto value = dyn_cast<AffineConstantExpr>(size)) {
      shape.push_back(value.getValue());
      continue;
    }
    shape.push_back(ShapedType::kDynamic);
    dynamicSizes.push_back(materialize(size));
  }
  int64_t index = layoutMaps.size();
  layoutMaps.push_back(AffineMapAttr::get(AffineMap::get(0, 1, bytes)));
  layoutNames.push_back(b.getStringAttr(label));
  Value memref = WorkspaceBufferOp::create(
      b, loc, MemRefType::get(shape, storageType(type)), layoutSymbol,
      b.getI64IntegerAttr(index), workspace,
      numTokens, dynamicSizes);
  return Buffer{memref, SmallVector<AffineExpr>(sizes)};
}

Buffer HostBuilder::allocate(Value value, StringRef label,
                             ArrayRef<AffineExpr> sizes, Type type) {
  auto found = resultIndex.find(value);
  Buffer buffer =
      found != resultIndex.end()
          ? Buffer{resultMemrefs[found->second],
                   SmallVector<AffineExpr>(sizes)}
          : allocateScratch(label, sizes, type);
  buffers[value] = buffer;
  return buffer;
}

FailureOr<gpu::GPUFuncOp> HostBuilder::kernelOf(Operation *op,
                                                StringRef attribute) {
  auto symbol = op->getAttrOfType<SymbolRefAttr>(attribute);
  if (!symbol)
    return op->emitError("no GPU lowering for this op yet (see the remarks "
                         "of moe-emit-gpu-kernels)");
  auto kernel = dyn_cast_or_null<gpu::GPUFuncOp>(
      SymbolTable::lookupSymbolIn(module, symbol));
  if (!kernel)
    return op->emitError("kernel ") << symbol << " not found";
  return kernel;
}

LogicalResult HostBuilder::launch(gpu::GPUFuncOp kernel, ArrayRef<Value> args,
                                  ArrayRef<Value> grid) {
  FailureOr<int64_t> threads = launchFact(kernel, "threads");
  if (failed(threads))
    return failure();
  // A buffer whose shape is more static than the kernel's parameter is
  // passed through a cast; any other mismatch is the builder's bug.
  SmallVector<Value> operands;
  for (auto [arg, type] : llvm::zip_equal(args, kernel.getArgumentTypes())) {
    if (arg.getType() != type &&
        !memref::CastOp::areCastCompatible(arg.getType(), type))
      return kernel.emitError("kernel parameter of type ")
             << type << " cannot take " << arg.getType();
    operands.push_back(arg.getType() == type
                           ? arg
                           : memref::CastOp::create(b, loc, type, arg));
  }
  Value shared = arith::ConstantIntOp::create(
      b, loc, optionalLaunchFact(kernel, "shared_bytes"), 32);
  Value one = constant(1);
  auto symbol = SymbolRefAttr::get(
      kernel->getParentOfType<gpu::GPUModuleOp>().getNameAttr(),
      {FlatSymbolRefAttr::get(kernel)});
  gpu::LaunchFuncOp::create(b, loc, symbol,
                            gpu::KernelDim3{grid[0], grid[1], grid[2]},
                            gpu::KernelDim3{constant(*threads), one, one},
                            shared, operands, stream);
  return success();
}

Value HostBuilder::occupiedBlocks(AffineExpr slots, int64_t numExperts,
                                  int64_t blockM) {
  AffineExpr assignments = slots - numExperts * (blockM - 1);
  Value all = materialize((slots + (blockM - 1)).floorDiv(blockM));
  Value occupied = arith::AddIOp::create(
      b, loc, materialize(assignments.floorDiv(blockM)),
      arith::MinSIOp::create(b, loc, constant(numExperts),
                             materialize(assignments)));
  return arith::MinSIOp::create(b, loc, all, occupied);
}

LogicalResult HostBuilder::launchRouting(Operation *op, AffineExpr rows,
                                         ArrayRef<Value> args, Value weights,
                                         Value ids, int64_t k) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  AffineExpr topK = b.getAffineConstantExpr(k);
  std::string name = op->getName().getStringRef().str();
  Buffer weightsBuffer = allocate(weights, name + " weights", {rows, topK},
                                  b.getF32Type());
  Buffer idsBuffer =
      allocate(ids, name + " ids", {rows, topK}, b.getI32Type());
  SmallVector<Value> operands;
  for (Value arg : args)
    if (arg)
      operands.push_back(arg);
  operands.append({weightsBuffer.memref, idsBuffer.memref});
  return launch(*kernel, operands,
                {materialize(rows), constant(1), constant(1)});
}

LogicalResult HostBuilder::launchGateLogits(Operation *op,
                                            StringRef attribute,
                                            AffineExpr rows, Value input,
                                            Value gateWeight, Value bias,
                                            Value logits) {
  int64_t numExperts = cast<MemRefType>(logits.getType()).getDimSize(1);
  SmallVector<Value> args = {input, gateWeight};
  if (bias)
    args.push_back(bias);
  args.push_back(logits);
  auto launchTiling = [&](StringRef name) -> LogicalResult {
    FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, name);
    if (failed(kernel))
      return failure();
    FailureOr<int64_t> expertsPerBlock =
        launchFact(*kernel, "experts_per_block");
    FailureOr<int64_t> tokensPerBlock =
        launchFact(*kernel, "tokens_per_block");
    if (failed(expertsPerBlock) || failed(tokensPerBlock))
      return failure();
    // Expert chunks along x: the blocks that run together share their
    // tokens' rows, and the whole gate stays in L2.
    return launch(
        *kernel, args,
        {constant(llvm::divideCeil(numExperts, *expertsPerBlock)),
         materialize((rows + (*tokensPerBlock - 1)).floorDiv(*tokensPerBlock)),
         constant(1)});
  };
  std::string manyTokens =
      (attribute.drop_back(strlen("_kernel")) + "_many_tokens_kernel").str();
  if (!op->hasAttr(manyTokens))
    return launchTiling(attribute);
  FailureOr<gpu::GPUFuncOp> manyTokensKernel = kernelOf(op, manyTokens);
  if (failed(manyTokensKernel))
    return failure();
  FailureOr<int64_t> minTokens = launchFact(*manyTokensKernel, "min_tokens");
  if (failed(minTokens))
    return failure();
  Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                     materialize(rows), constant(*minTokens));
  auto ifOp = scf::IfOp::create(b, loc, many, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.thenBlock());
  if (failed(launchTiling(manyTokens)))
    return failure();
  b.setInsertionPointToStart(ifOp.elseBlock());
  return launchTiling(attribute);
}

LogicalResult HostBuilder::lowerTopk(moe::TopkOp op) {
  Value bias = op.getBias() ? buffers.lookup(op.getBias()).memref : Value();
  Buffer logits = buffers.lookup(op.getLogits());
  return launchRouting(op, logits.sizes[0], {logits.memref, bias},
                       op.getWeights(), op.getIds(), op.getK());
}

LogicalResult HostBuilder::lowerRoute(moe::RouteOp op) {
  AffineExpr rows = buffers.lookup(op.getInput()).sizes[0];
  int64_t numExperts = op.getGateWeight().getType().getDimSize(0);
  Buffer logits =
      allocateScratch("moe.route logits",
                      {rows, b.getAffineConstantExpr(numExperts)},
                      b.getF32Type());
  auto memrefOf = [&](Value value) {
    return value ? buffers.lookup(value).memref : Value();
  };
  if (failed(launchGateLogits(op, "moe.gpu_logits_kernel", rows,
                              memrefOf(op.getInput()),
                              memrefOf(op.getGateWeight()),
                              memrefOf(op.getGateBias()), logits.memref)))
    return failure();
  return launchRouting(op, rows, {logits.memref, memrefOf(op.getScoreBias())},
                       op.getWeights(), op.getIds(), op.getK());
}

LogicalResult HostBuilder::lowerRouter(moe::RouterOp op) {
  AffineExpr rows = buffers.lookup(op.getInput()).sizes[0];
  int64_t numExperts = op.getGateWeight().getType().getDimSize(0);
  Buffer logits =
      allocate(op.getLogits(), "moe.router logits",
               {rows, b.getAffineConstantExpr(numExperts)}, b.getF32Type());
  Value bias = op.getBias() ? buffers.lookup(op.getBias()).memref : Value();
  return launchGateLogits(op, "moe.gpu_kernel", rows,
                          buffers.lookup(op.getInput()).memref,
                          buffers.lookup(op.getGateWeight()).memref, bias,
                          logits.memref);
}

LogicalResult HostBuilder::lowerAddSharedExperts(moe::AddSharedExpertsOp op) {
  Buffer routedIds = buffers.lookup(op.getRoutedIds());
  Value gate = op.getGate() ? buffers.lookup(op.getGate()).memref : Value();
  return launchRouting(
      op, routedIds.sizes[0],
      {buffers.lookup(op.getRoutedWeights()).memref, routedIds.memref, gate},
      op.getWeights(), op.getIds(), op.getIds().getType().getDimSize(1));
}

LogicalResult HostBuilder::lowerAlign(moe::AlignOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  Buffer ids = buffers.lookup(op.getIds());
  int64_t topK = op.getIds().getType().getDimSize(1);
  int64_t numExperts = op.getNumExperts(), blockM = op.getBlockM();
  AffineExpr assignments = ids.sizes[0] * topK;
  AffineExpr slots = assignments + numExperts * (blockM - 1);
  AffineExpr blocks = (slots + (blockM - 1)).floorDiv(blockM);
  Type i32 = b.getI32Type();
  AffineExpr one = b.getAffineConstantExpr(1);
  Buffer sorted = allocate(op.getSortedIds(), "moe.align sorted ids",
                           {slots}, i32);
  Buffer experts = allocate(op.getBlockExperts(), "moe.align block experts",
                            {blocks}, i32);
  Buffer padded =
      allocate(op.getNumPadded(), "moe.align padded count", {one}, i32);
  // The single-block kernel zeroes it; the many-block path zeroes it below;
  // a matmul that aligns its own slot blocks writes it.
  Buffer errors = allocateErrorCounter("moe.align ids outside [-1, E)",
                                       /*zeroed=*/false);
  alignErrors[op] = errors;
  FailureOr<moe::ExpertMatmulOp> fused = findFusedAlign(op);
  if (failed(fused))
    return failure();
  OpBuilder::InsertionGuard guard(b);
  if (*fused) {
    // Up to the matmul's bound no align kernel runs.
    Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt,
                                       materialize(assignments),
                                       constant(fusedAlignAssignments(*fused)));
    auto ifOp = scf::IfOp::create(b, loc, many, /*withElseRegion=*/false);
    b.setInsertionPointToStart(ifOp.thenBlock());
  }
  auto launchSingle = [&] {
    return launch(*kernel,
                  {ids.memref, sorted.memref, experts.memref, padded.memref,
                   errors.memref},
                  {constant(1), constant(1), constant(1)});
  };
  auto countSymbol = op->getAttrOfType<SymbolRefAttr>("moe.gpu_count_kernel");
  if (!countSymbol)
    return launchSingle();
  FailureOr<gpu::GPUFuncOp> count = kernelOf(op, "moe.gpu_count_kernel");
  FailureOr<gpu::GPUFuncOp> scatter = kernelOf(op, "moe.gpu_scatter_kernel");
  if (failed(count) || failed(scatter))
    return failure();
  // The counts and cursors of the many-block kernels.
  Buffer state = allocateScratch("moe.align counts and cursors",
                                 {b.getAffineConstantExpr(2 * numExperts)},
                                 i32);
  // One block up to `manyBlocksAbove` assignments (fewer launches at
  // decode), many blocks past it.
  Value many = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::sgt, materialize(assignments),
      constant(manyBlocksAbove));
  auto ifOp = scf::IfOp::create(b, loc, many, /*withElseRegion=*/true);
  b.setInsertionPointToStart(ifOp.thenBlock());
  ZeroOp::create(b, loc, state.memref, stream);
  ZeroOp::create(b, loc, errors.memref, stream);
  FailureOr<int64_t> chunk = launchFact(*count, "chunk");
  if (failed(chunk))
    return failure();
  Value grid = materialize((assignments + (*chunk - 1)).floorDiv(*chunk));
  if (failed(launch(*count,
                    {ids.memref, sorted.memref, state.memref, errors.memref},
                    {grid, constant(1), constant(1)})) ||
      failed(launch(*scatter,
                    {ids.memref, sorted.memref, experts.memref,
                     padded.memref, state.memref},
                    {grid, constant(1), constant(1)})))
    return failure();
  b.setInsertionPointToStart(ifOp.elseBlock());
  return launchSingle();
}

FailureOr<moe::ExpertMatmulOp> HostBuilder::findFusedAlign(moe::AlignOp op) {
  // The users as ops of the layer's block, where their order is the order
  // they run in.
  SmallVector<Operation *> users;
  for (Value result : op->getResults())
    for (Operation *user : result.getUsers())
      if (Operation *ancestor = op->getBlock()->findAncestorOpInBlock(*user))
        users.push_back(ancestor);
  llvm::sort(users, [](Operation *lhs, Operation *rhs) {
    return lhs->isBeforeInBlock(rhs);
  });
  moe::ExpertMatmulOp fused;
  for (Operation *user : users) {
    auto matmul = dyn_cast<moe::ExpertMatmulOp>(user);
    if (!matmul || fusedAlignAssignments(matmul) == 0 || matmul == fused)
      continue;
    if (fused)
      return matmul.emitError("GPU layer: two matmuls align the slot blocks "
                              "of one moe.align (fused_align_assignments)");
    fused = matmul;
  }
  if (fused && fused != users.front())
    return fused.emitError("GPU layer: fused_align_assignments needs the "
                           "matmul to be the first user of its moe.align's "
                           "schedule, which the ops before it would read "
                           "unaligned");
  return fused;
}

LogicalResult HostBuilder::appendWeightArguments(moe::ExpertMatmulOp op,
                                                 gpu::GPUFuncOp kernel,
                                                 SmallVectorImpl<Value> &args) {
  Buffer weights = buffers.lookup(op.getWeights());
  if (op.getQuantization().isWeightOnly()) {
    // Weight-only codes are read by cp.async as an [E·N, stored K] byte
    // matrix.
    args.push_back(memref::CollapseShapeOp::create(
        b, loc, weights.memref, ArrayRef<ReassociationIndices>{{0, 1}, {2}}));
    args.push_back(buffers.lookup(op.getWeightScales()).memref);
    if (op.getWeightZeros())
      args.push_back(buffers.lookup(op.getWeightZeros()).memref);
  } else if (optionalLaunchFact(kernel, "copies_weights")) {
    // Weights copied by cp.async are read as the descriptor would view
    // them: [E·N, K], or interleaved gate/up rows as [E·N/2, 2K].
    Value viewed = weights.memref;
    if (op.getGateUpInterleaved())
      viewed = viewAsRowPairs(b, loc, viewed);
    args.push_back(memref::CollapseShapeOp::create(
        b, loc, viewed, ArrayRef<ReassociationIndices>{{0, 1}, {2}}));
  } else {
    FailureOr<int64_t> boxRows = launchFact(kernel, "box_rows");
    FailureOr<int64_t> boxCols = launchFact(kernel, "box_cols");
    if (failed(boxRows) || failed(boxCols))
      return failure();
    // Interleaved gate/up weights [E, N, K] are read as [E, N/2, 2K]: a
    // gate row and its up row side by side, so that one box row index
    // reaches both.
    Value mapped = weights.memref;
    if (op.getGateUpInterleaved())
      mapped = viewAsRowPairs(b, loc, mapped);
    args.push_back(TensorMapOp::create(
        b, loc, LLVM::LLVMPointerType::get(b.getContext()), mapped,
        b.getDenseI64ArrayAttr({*boxRows, *boxCols})));
  }
  return success();
}

LogicalResult HostBuilder::lowerExpertMatmul(moe::ExpertMatmulOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  Value weightsSource = op.getWeights();
  if (auto slice = weightsSource.getDefiningOp<tensor::ExtractSliceOp>())
    weightsSource = slice.getSource();
  auto weightsArgument = dyn_cast<BlockArgument>(weightsSource);
  if (!weightsArgument || weightsArgument.getOwner()->getParentOp() != layer)
    return op.emitError("GPU layer: the weights must be a function argument "
                        "or a slice of one");
  auto weightsType = op.getWeights().getType();
  int64_t numExperts = weightsType.getDimSize(0);
  Buffer slots = buffers.lookup(op.getSlots());
  int64_t width = op.getOutputWidth();
  FailureOr<int64_t> blockM = launchFact(*kernel, "block_m");
  FailureOr<int64_t> tileN = launchFact(*kernel, "tile_n");
  FailureOr<int64_t> splitK = launchFact(*kernel, "split_k");
  if (failed(blockM) || failed(tileN) || failed(splitK))
    return failure();

  // With input_tma the kernel reads its input rows by TMA boxes of a slot
  // block's rows, one 128-byte swizzle span of the input's elements wide: a
  // descriptor of the input, encoded per call.
  Value input = buffers.lookup(op.getInput()).memref;
  if (int64_t inputBoxRows = optionalLaunchFact(*kernel, "input_box_rows")) {
    auto inputType = cast<MemRefType>(input.getType());
    int64_t inputBoxCols =
        hopper::kStageRowBytes / (inputType.getElementTypeBitWidth() / 8);
    input = TensorMapOp::create(
        b, loc, LLVM::LLVMPointerType::get(b.getContext()), input,
        b.getDenseI64ArrayAttr({inputBoxRows, inputBoxCols}));
  }
  SmallVector<Value> args = {input, slots.memref,
                             buffers.lookup(op.getBlockExperts()).memref,
                             buffers.lookup(op.getNumPadded()).memref};
  if (failed(appendWeightArguments(op, *kernel, args)))
    return failure();
  if (op.getInputScales())
    args.append({buffers.lookup(op.getInputScales()).memref,
                 buffers.lookup(op.getWeightScales()).memref});
  if (op.getBias())
    args.push_back(buffers.lookup(op.getBias()).memref);

  FailureOr<std::pair<Buffer, Buffer>> outputs =
      allocateMatmulOutput(op, args);
  if (failed(outputs))
    return failure();
  auto [output, sums] = *outputs;
  SmallVector<Value> grid = {
      occupiedBlocks(slots.sizes[0], numExperts, *blockM),
      constant((width + *tileN - 1) / *tileN), constant(*splitK)};
  if (int64_t clusterM = optionalLaunchFact(*kernel, "cluster_m");
      clusterM > 1) {
    // Whole clusters: the extra block finds its slots past the padded count.
    // (Sizes are never negative: floor division is C's.)
    Value clusters = arith::DivSIOp::create(
        b, loc, arith::AddIOp::create(b, loc, grid[0], constant(clusterM - 1)),
        constant(clusterM));
    grid[0] = arith::MulIOp::create(b, loc, clusters, constant(clusterM));
  }
  if (optionalLaunchFact(*kernel, "persistent")) {
    // One block per SM at most; after its first tile, each block takes the
    // next from a zeroed counter.
    Buffer counter = allocateScratch("persistent tile counter",
                                     {b.getAffineConstantExpr(1)},
                                     b.getI32Type());
    ZeroOp::create(b, loc, counter.memref, stream);
    args.push_back(counter.memref);
    Value tiles = arith::MulIOp::create(b, loc, grid[0], grid[1]);
    Value multiprocessors =
        MultiprocessorCountOp::create(b, loc, b.getIndexType(), stream);
    grid = {arith::MinSIOp::create(b, loc, tiles, multiprocessors),
            constant(1), constant(1)};
  }
  if (fusedAlignAssignments(op) > 0) {
    // The ids it aligns from, and the word it counts the invalid ones in.
    auto align = op.getSlots().getDefiningOp<moe::AlignOp>();
    if (!align)
      return op.emitError("GPU layer: fused_align_assignments needs the "
                          "slots of a moe.align");
    args.append({buffers.lookup(align.getIds()).memref,
                 alignErrors.lookup(align).memref});
  }
  if (moe::ExpertMatmulOp combine = getSumsZeroedBy(op)) {
    // The combine's sums, zeroed by this kernel rather than a memset.
    Buffer sums =
        allocateScratch("f32 sums of the combine",
                        {buffers.lookup(combine.getRoutingWeights()).sizes[0],
                         b.getAffineConstantExpr(combine.getOutputWidth())},
                        b.getF32Type());
    zeroedSums[combine.getOperation()] = sums;
    args.push_back(sums.memref);
  }
  if (failed(launch(*kernel, args, grid)))
    return failure();
  // A combine that keeps its f32 sums has them as its result.
  if (!op.isCombine() || output.memref == sums.memref)
    return success();
  return lowerCombineFinalize(op, sums, output);
}

FailureOr<std::pair<Buffer, Buffer>>
HostBuilder::allocateMatmulOutput(moe::ExpertMatmulOp op,
                                  SmallVectorImpl<Value> &args) {
  Buffer slots = buffers.lookup(op.getSlots());
  int64_t width = op.getOutputWidth();
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  AffineExpr widthExpr = b.getAffineConstantExpr(width);
  Buffer output, sums;
  if (op.isCombine()) {
    Buffer routingWeights = buffers.lookup(op.getRoutingWeights());
    AffineExpr rows = routingWeights.sizes[0];
    if (Value partial = op.getAccumulate()) {
      // The kernel adds into the partial sums in place: nothing else may
      // read them.
      if (!partial.hasOneUse() || resultIndex.count(partial))
        return op.emitError("GPU layer: the partial sums of accumulate(...) "
                            "must have no other use");
      sums = buffers.lookup(partial);
      if (resultType.getElementType().isF32()) {
        // Still f32 sums, for a later combine: the same buffer.
        if (resultIndex.count(op.getResult()))
          return op.emitError("GPU layer: an accumulating combine with an "
                              "f32 result cannot be a result");
        buffers[op.getResult()] = sums;
      }
    } else if (combinesRows(op)) {
      // Rows of the assignments [M·k, N], each stored once (the verifier
      // rules out partial sums and an f32 result); the finalize sums them.
      sums = allocateScratch("weighted rows of the combine",
                             {rows * op.getK(), widthExpr},
                             resultType.getElementType());
    } else if (resultType.getElementType().isF32()) {
      // The sums are the result, kept for a later combine.
      sums = allocate(op.getResult(), "f32 sums of the combine",
                      {rows, widthExpr}, b.getF32Type());
      ZeroOp::create(b, loc, sums.memref, stream);
    } else if (auto zeroed = zeroedSums.find(op.getOperation());
               zeroed != zeroedSums.end()) {
      // The schedule's first matmul zeroed them.
      sums = zeroed->second;
    } else {
      sums = allocateScratch("f32 sums of the combine", {rows, widthExpr},
                             b.getF32Type());
      ZeroOp::create(b, loc, sums.memref, stream);
    }
    output = resultType.getElementType().isF32()
                 ? sums
                 : allocate(op.getResult(), "moe.expert_matmul output",
                            {rows, widthExpr}, resultType.getElementType());
    args.append({routingWeights.memref, sums.memref});
  } else if (op.getUnpermute()) {
    // f32 rows of assignments [M, k, N], added into from zero; the kernel
    // takes them as [M·k, N].
    auto align = op.getSlots().getDefiningOp<moe::AlignOp>();
    if (!align)
      return op.emitError("GPU layer: an unpermuting matmul needs the slots "
                          "of a moe.align");
    AffineExpr rows = buffers.lookup(align.getIds()).sizes[0];
    output = allocate(op.getResult(), "moe.expert_matmul unpermuted rows",
                      {rows, b.getAffineConstantExpr(op.getK()), widthExpr},
                      resultType.getElementType());
    ZeroOp::create(b, loc, output.memref, stream);
    args.push_back(memref::CollapseShapeOp::create(
        b, loc, output.memref,
        ArrayRef<ReassociationIndices>{{0, 1}, {2}}));
  } else {
    output = allocate(op.getResult(), "moe.expert_matmul output",
                      {slots.sizes[0], widthExpr},
                      resultType.getElementType());
    args.push_back(output.memref);
  }
  return std::make_pair(output, sums);
}

LogicalResult HostBuilder::lowerCombineFinalize(moe::ExpertMatmulOp op,
                                                const Buffer &sums,
                                                const Buffer &output) {
  FailureOr<gpu::GPUFuncOp> finalize =
      kernelOf(op, "moe.gpu_finalize_kernel");
  if (failed(finalize))
    return failure();
  FailureOr<int64_t> columns = launchFact(*finalize, "columns_per_block");
  if (failed(columns))
    return failure();
  int64_t width = op.getOutputWidth();
  if (combinesRows(op)) {
    // The rows kernel skips the assignments of ids out of range.
    auto align = op.getSlots().getDefiningOp<moe::AlignOp>();
    if (!align)
      return op.emitError("GPU layer: combine_rows needs the slots of a "
                          "moe.align");
    return launch(
        *finalize,
        {sums.memref, buffers.lookup(align.getIds()).memref, output.memref},
        {materialize(buffers.lookup(op.getRoutingWeights()).sizes[0]),
         constant((width + *columns - 1) / *columns), constant(1)});
  }
  return launch(*finalize, {sums.memref, output.memref},
                {materialize(sums.sizes[0]),
                 constant((width + *columns - 1) / *columns), constant(1)});
}

LogicalResult HostBuilder::lowerQuantize(moe::QuantizeOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  Buffer input = buffers.lookup(op.getInput());
  AffineExpr rows = input.sizes[0], columns = input.sizes[1];
  Buffer codes = allocate(op.getCodes(), "moe.quantize codes",
                          {rows, columns},
                          op.getCodes().getType().getElementType());
  auto scalesType = cast<RankedTensorType>(op.getScales().getType());
  SmallVector<AffineExpr> scaleSizes;
  for (int64_t size : scalesType.getShape())
    scaleSizes.push_back(ShapedType::isDynamic(size)
                             ? rows
                             : b.getAffineConstantExpr(size));
  Buffer scales = allocate(op.getScales(), "moe.quantize scales", scaleSizes,
                           scalesType.getElementType());
  // Rows of an aligned schedule: only the rows of the blocks that can hold
  // an assignment are launched, and the kernels stop at the padded count.
  bool bounded = optionalLaunchFact(*kernel, "bounded");
  auto producer = op.getInput().getDefiningOp<moe::ExpertMatmulOp>();
  Value launchedRows = materialize(rows);
  if (bounded)
    launchedRows = arith::MulIOp::create(
        b, loc,
        occupiedBlocks(rows, producer.getNumExperts(), *producer.getBlockM()),
        constant(*producer.getBlockM()));
  FailureOr<int64_t> rowsPerBlock = launchFact(*kernel, "rows_per_block");
  if (failed(rowsPerBlock))
    return failure();
  Value rowBlocks = arith::DivSIOp::create(
      b, loc,
      arith::AddIOp::create(b, loc, launchedRows,
                            constant(*rowsPerBlock - 1)),
      constant(*rowsPerBlock));

  // Per tensor: the amax of all rows first, into a zeroed word.
  bool perTensor =
      op.getQuantization().getScales() == moe::ScaleLayout::PerTensor;
  Buffer amaxWord;
  if (perTensor) {
    FailureOr<gpu::GPUFuncOp> amaxKernel =
        kernelOf(op, "moe.gpu_amax_kernel");
    if (failed(amaxKernel))
      return failure();
    FailureOr<int64_t> maxBlocks = launchFact(*amaxKernel, "max_blocks");
    if (failed(maxBlocks))
      return failure();
    amaxWord = allocateScratch("amax word of the per-tensor quantization",
                               {b.getAffineConstantExpr(1)}, b.getI32Type());
    ZeroOp::create(b, loc, amaxWord.memref, stream);
    SmallVector<Value> args = {input.memref, amaxWord.memref};
    if (bounded)
      args.append({buffers.lookup(producer.getNumPadded()).memref,
                   buffers.lookup(producer.getSlots()).memref});
    Value blocks =
        arith::MinSIOp::create(b, loc, rowBlocks, constant(*maxBlocks));
    if (failed(launch(*amaxKernel, args, {blocks, constant(1), constant(1)})))
      return failure();
  }
  SmallVector<Value> args = {input.memref, codes.memref, scales.memref};
  if (perTensor)
    args.push_back(amaxWord.memref);
  if (bounded)
    args.push_back(buffers.lookup(producer.getNumPadded()).memref);
  return launch(*kernel, args, {rowBlocks, constant(1), constant(1)});
}

Buffer HostBuilder::allocateErrorCounter(StringRef label, bool zeroed) {
  invalidIdCounters.push_back(layoutMaps.size());
  Buffer counter =
      allocateScratch(label, {b.getAffineConstantExpr(1)}, b.getI32Type());
  if (zeroed)
    ZeroOp::create(b, loc, counter.memref, stream);
  return counter;
}

LogicalResult HostBuilder::lowerEpDispatch(moe::EpDispatchOp op) {
  FailureOr<gpu::GPUFuncOp> idsKernel = kernelOf(op, "moe.gpu_kernel");
  FailureOr<gpu::GPUFuncOp> rowsKernel = kernelOf(op, "moe.gpu_rows_kernel");
  if (failed(idsKernel) || failed(rowsKernel))
    return failure();
  int64_t ranks = op.getPlacement().getRanks();
  Buffer input = buffers.lookup(op.getInput());
  Buffer ids = buffers.lookup(op.getIds());
  AffineExpr tokens = input.sizes[0], width = input.sizes[1];
  AffineExpr topK = ids.sizes[1];
  AffineExpr allTokens = tokens * ranks, received = allTokens * topK;
  Type i32 = b.getI32Type();
  Type element = op.getInput().getType().getElementType();
  AffineExpr one = b.getAffineConstantExpr(1);
  // The kernels find this rank's experts from its rank in the group.
  Buffer rank = allocateScratch("expert-parallel rank", {one}, i32);
  StoreGroupRankOp::create(b, loc, group, rank.memref, stream, ranks);
  Buffer allRows = allocateScratch("moe.ep_dispatch gathered token rows",
                                   {allTokens, width}, element);
  Buffer allIds =
      allocateScratch("moe.ep_dispatch gathered ids", {allTokens, topK}, i32);
  AllGatherOp::create(b, loc, input.memref, allRows.memref, group, stream,
                      ranks);
  AllGatherOp::create(b, loc, ids.memref, allIds.memref, group, stream,
                      ranks);
  Buffer rows = allocate(op.getRows(), "moe.ep_dispatch rows",
                         {received, width}, element);
  Buffer localIds = allocate(op.getLocalIds(), "moe.ep_dispatch local ids",
                             {received, one}, i32);
  Buffer origin =
      allocate(op.getOrigin(), "moe.ep_dispatch origins", {received}, i32);
  Buffer count = allocateScratch("moe.ep_dispatch received count", {one}, i32);
  // The kernel zeroes its error word itself.
  Buffer errors = allocateErrorCounter("moe.ep_dispatch ids outside [-1, E)",
                                       /*zeroed=*/false);
  if (failed(launch(*idsKernel,
                    {allIds.memref, rank.memref, localIds.memref,
                     origin.memref, count.memref, errors.memref},
                    {constant(1), constant(1), constant(1)})))
    return failure();
  return launch(*rowsKernel,
                {allRows.memref, origin.memref, count.memref, rows.memref},
                {materialize(received), constant(1), constant(1)});
}

LogicalResult HostBuilder::lowerEpCombine(moe::EpCombineOp op) {
  FailureOr<gpu::GPUFuncOp> returnKernel = kernelOf(op, "moe.gpu_kernel");
  FailureOr<gpu::GPUFuncOp> finalize = kernelOf(op, "moe.gpu_finalize_kernel");
  if (failed(returnKernel) || failed(finalize))
    return failure();
  FailureOr<int64_t> columnsPerBlock =
      launchFact(*finalize, "columns_per_block");
  if (failed(columnsPerBlock))
    return failure();
  int64_t ranks = op.getRanks();
  Buffer results = buffers.lookup(op.getRows());
  Buffer weights = buffers.lookup(op.getWeights());
  AffineExpr tokens = weights.sizes[0], topK = weights.sizes[1];
  AffineExpr width = results.sizes[1], allTokens = tokens * ranks;
  Type f32 = b.getF32Type();
  Buffer allWeights = allocateScratch("moe.ep_combine gathered weights",
                                      {allTokens, topK}, f32);
  AllGatherOp::create(b, loc, weights.memref, allWeights.memref, group,
                      stream, ranks);
  Buffer partial = allocateScratch("moe.ep_combine partial sums",
                                   {allTokens, width}, f32);
  ZeroOp::create(b, loc, partial.memref, stream);
  Buffer errors = allocateErrorCounter(
      "moe.ep_combine origins outside [-1, R*M*k)", /*zeroed=*/true);
  if (failed(launch(*returnKernel,
                    {results.memref, buffers.lookup(op.getOrigin()).memref,
                     allWeights.memref, partial.memref, errors.memref},
                    {materialize(results.sizes[0]), constant(1),
                     constant(1)})))
    return failure();
  Buffer sums =
      allocateScratch("moe.ep_combine sums", {tokens, width}, f32);
  ReduceScatterOp::create(b, loc, partial.memref, sums.memref, group, stream,
                          ranks);
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  Buffer output = allocate(op.getResult(), "moe.ep_combine output",
                           {tokens, width}, resultType.getElementType());
  int64_t columns = resultType.getDimSize(1);
  return launch(*finalize, {sums.memref, output.memref},
                {materialize(tokens),
                 constant((columns + *columnsPerBlock - 1) / *columnsPerBlock),
                 constant(1)});
}

LogicalResult HostBuilder::lowerExtractSlice(tensor::ExtractSliceOp op) {
  auto argument = dyn_cast<BlockArgument>(op.getSource());
  RankedTensorType sourceType = op.getSourceType();
  RankedTensorType resultType = op.getResultType();
  bool wholeInnerEntries =
      op.hasUnitStride() && sourceType.hasStaticShape() &&
      resultType.getRank() == sourceType.getRank() &&
      resultType.getShape().drop_front() ==
          sourceType.getShape().drop_front() &&
      llvm::all_of(op.getStaticOffsets().drop_front(),
                   [](int64_t offset) { return offset == 0; }) &&
      !ShapedType::isDynamic(op.getStaticOffsets().front());
  if (!argument || argument.getOwner()->getParentOp() != layer ||
      !wholeInnerEntries)
    return op.emitError("GPU layer: a slice must take whole static entries "
                        "of a function argument's first dimension");
  if (resultIndex.count(op.getResult()))
    return op.emitError("GPU layer: a slice cannot be a result");
  Buffer source = buffers.lookup(argument);
  auto type =
      MemRefType::get(resultType.getShape(), resultType.getElementType());
  Value view = LeadingSliceOp::create(b, loc, type, source.memref,
                                      op.getStaticOffsets().front());
  SmallVector<AffineExpr> sizes;
  for (int64_t size : resultType.getShape())
    sizes.push_back(b.getAffineConstantExpr(size));
  buffers[op.getResult()] = Buffer{view, sizes};
  return success();
}

LogicalResult
HostBuilder::lowerSharedExpertRouting(moe::SharedExpertRoutingOp op) {
  Buffer routedWeights = buffers.lookup(op.getRoutedWeights());
  Value gate = op.getGate() ? buffers.lookup(op.getGate()).memref : Value();
  return launchRouting(op, routedWeights.sizes[0], {gate}, op.getWeights(),
                       op.getIds(), op.getNumShared());
}

LogicalResult HostBuilder::lowerCollapseShape(tensor::CollapseShapeOp op) {
  Buffer source = buffers.lookup(op.getSrc());
  SmallVector<ReassociationIndices> groups = op.getReassociationIndices();
  SmallVector<AffineExpr> sizes;
  for (const ReassociationIndices &group : groups) {
    AffineExpr size = b.getAffineConstantExpr(1);
    for (int64_t dim : group)
      size = size * source.sizes[dim];
    sizes.push_back(size);
  }
  if (resultIndex.count(op.getResult()))
    return op.emitError("GPU layer: a reshaped buffer cannot be a result");
  Value view = memref::CollapseShapeOp::create(b, loc, source.memref, groups);
  buffers[op.getResult()] = Buffer{view, sizes};
  return success();
}

FailureOr<Buffer> HostBuilder::argumentBuffer(BlockArgument argument,
                                              Value memref) {
  auto type = cast<RankedTensorType>(argument.getType());
  Buffer buffer{memref, {}};
  for (auto [dim, size] : llvm::enumerate(type.getShape())) {
    if (ShapedType::isDynamic(size) && dim != 0)
      return layer.emitError("GPU layer argument ")
             << argument.getArgNumber()
             << ": only the first dimension (the token count) may be dynamic";
    buffer.sizes.push_back(ShapedType::isDynamic(size)
                               ? tokens
                               : b.getAffineConstantExpr(size));
  }
  return buffer;
}

/// A memref of the shape of tensor `type`, of its elements' storage.
static MemRefType memrefOf(Type type) {
  auto tensor = cast<RankedTensorType>(type);
  return MemRefType::get(tensor.getShape(),
                         storageType(tensor.getElementType()));
}

LogicalResult HostBuilder::createEntry() {
  Block &body = layer.getBody().front();
  for (BlockArgument argument : body.getArguments())
    if (!isa<RankedTensorType>(argument.getType()))
      return layer.emitError("GPU layer arguments must be ranked tensors");
  auto returnOp = cast<func::ReturnOp>(body.getTerminator());
  for (auto [index, value] : llvm::enumerate(returnOp.getOperands())) {
    if (isa<BlockArgument>(value) || resultIndex.count(value) ||
        !isa<RankedTensorType>(value.getType()))
      return returnOp.emitError(
          "GPU layer: each result must be a distinct computed tensor");
    resultIndex[value] = index;
  }

  SmallVector<Type> types;
  for (Type type : layer.getArgumentTypes())
    types.push_back(memrefOf(type));
  for (Type type : layer.getResultTypes())
    types.push_back(memrefOf(type));
  types.append({b.getIndexType(), MemRefType::get({ShapedType::kDynamic},
                                                   b.getI8Type())});
  // A rank's program of an expert-parallel layer exchanges over a group.
  bool expertParallel = false;
  layer.walk([&](Operation *op) {
    expertParallel |= isa<moe::EpDispatchOp, moe::EpCombineOp>(op);
  });
  if (expertParallel)
    types.push_back(GroupType::get(b.getContext()));
  types.push_back(StreamType::get(b.getContext()));
  b.setInsertionPoint(layer);
  auto host = func::FuncOp::create(b, loc, "moe_layer_" + name,
                                   b.getFunctionType(types, {}));
  host->setAttr(MoeGPUDialect::getWorkspaceLayoutAttrName(), layoutSymbol);
  unsigned numInputs = layer.getNumArguments();
  for (unsigned i = 0; i < layer.getNumResults(); ++i)
    host.setArgAttr(numInputs + i, MoeGPUDialect::getResultAttrName(),
                    b.getUnitAttr());
  unsigned workspaceIndex = numInputs + layer.getNumResults() + 1;
  host.setArgAttr(workspaceIndex, MoeGPUDialect::getWorkspaceAttrName(),
                  b.getUnitAttr());
  Block *entry = host.addEntryBlock();
  // The inputs keep their locations (a NameLoc names the C parameter).
  for (BlockArgument argument : body.getArguments())
    entry->getArgument(argument.getArgNumber()).setLoc(argument.getLoc());
  numTokens = entry->getArgument(workspaceIndex - 1);
  workspace = entry->getArgument(workspaceIndex);
  if (expertParallel)
    group = entry->getArgument(workspaceIndex + 1);
  stream = entry->getArgument(types.size() - 1);
  for (unsigned i = 0; i < layer.getNumResults(); ++i)
    resultMemrefs.push_back(entry->getArgument(numInputs + i));
  b.setInsertionPointToStart(entry);
  for (BlockArgument argument : body.getArguments()) {
    FailureOr<Buffer> buffer =
        argumentBuffer(argument, entry->getArgument(argument.getArgNumber()));
    if (failed(buffer))
      return failure();
    buffers[argument] = *buffer;
  }
  for (Operation &op : body.without_terminator()) {
    LogicalResult result =
        TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](moe::RouteOp route) { return lowerRoute(route); })
            .Case([&](moe::TopkOp topk) { return lowerTopk(topk); })
            .Case([&](moe::RouterOp router) { return lowerRouter(router); })
            .Case([&](moe::AddSharedExpertsOp shared) {
              return lowerAddSharedExperts(shared);
            })
            .Case([&](moe::AlignOp align) { return lowerAlign(align); })
            .Case([&](moe::ExpertMatmulOp matmul) {
              return lowerExpertMatmul(matmul);
            })
            .Case([&](moe::QuantizeOp quantize) {
              return lowerQuantize(quantize);
            })
            .Case([&](moe::EpDispatchOp dispatch) {
              return lowerEpDispatch(dispatch);
            })
            .Case([&](moe::EpCombineOp combine) {
              return lowerEpCombine(combine);
            })
            .Case([&](tensor::CollapseShapeOp collapse) {
              return lowerCollapseShape(collapse);
            })
            .Case([&](tensor::ExtractSliceOp slice) {
              return lowerExtractSlice(slice);
            })
            .Case([&](moe::SharedExpertRoutingOp shared) {
              return lowerSharedExpertRouting(shared);
            })
            .Default([](Operation *other) {
              return other->emitError("no GPU lowering for this op yet");
            });
    if (failed(result))
      return failure();
  }
  func::ReturnOp::create(b, loc);
  return success();
}

void HostBuilder::createCompanions(StringRef layoutName) {
  b.setInsertionPoint(layer);
  WorkspaceLayoutOp::create(b, loc, layoutName, b.getArrayAttr(layoutMaps),
                            b.getArrayAttr(layoutNames),
                            b.getDenseI64ArrayAttr(invalidIdCounters));
  MLIRContext *context = b.getContext();
  Type index = b.getIndexType();
  auto bytesFunc = func::FuncOp::create(
      b, loc, "moe_layer_" + name + "_workspace_bytes",
      b.getFunctionType({index}, {index}));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(bytesFunc.addEntryBlock());
    // A negative token count asks for the bytes of none.
    Value tokens = arith::MaxSIOp::create(b, loc, bytesFunc.getArgument(0),
                                          constant(0));
    Value bytes =
        WorkspaceBytesOp::create(b, loc, index, layoutSymbol, tokens);
    func::ReturnOp::create(b, loc, bytes);
  }
  Type workspaceType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type());
  auto countFunc = func::FuncOp::create(
      b, loc, "moe_layer_" + name + "_invalid_ids",
      b.getFunctionType({workspaceType, index, StreamType::get(context)},
                        {b.getI64Type()}));
  countFunc->setAttr(MoeGPUDialect::getWorkspaceLayoutAttrName(),
                     layoutSymbol);
  countFunc.setArgAttr(0, MoeGPUDialect::getWorkspaceAttrName(),
                       b.getUnitAttr());
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(countFunc.addEntryBlock());
  Value total = arith::ConstantIntOp::create(b, loc, 0, 64);
  for (int64_t counter : invalidIdCounters) {
    Value buffer = WorkspaceBufferOp::create(
        b, loc, MemRefType::get({1}, b.getI32Type()), layoutSymbol,
        b.getI64IntegerAttr(counter),
        countFunc.getArgument(0), countFunc.getArgument(1), ValueRange());
    Value count =
        ReadCountOp::create(b, loc, b.getI64Type(), buffer,
                            countFunc.getArgument(2));
    total = arith::AddIOp::create(b, loc, total, count);
  }
  func::ReturnOp::create(b, loc, total);
}

LogicalResult HostBuilder::build() {
  std::string layoutName = "moe_layer_" + name + "_workspace";
  layoutSymbol = FlatSymbolRefAttr::get(b.getContext(), layoutName);
  if (failed(createEntry()))
    return failure();
  createCompanions(layoutName);
  layer.erase();
  return success();
}

namespace {
struct MoeGpuOutlineHostPass
    : public moe_gpu::impl::MoeGpuOutlineHostBase<MoeGpuOutlineHostPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> layers;
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        layers.push_back(func);
    if (layers.size() != 1) {
      module.emitError("a GPU layer needs exactly one function, found ")
          << layers.size();
      return signalPassFailure();
    }
    func::FuncOp layer = layers.front();
    std::string name =
        layerName.empty() ? layer.getName().str() : layerName.getValue();
    if (failed(HostBuilder(module, layer, name, alignManyBlocksAbove).build()))
      return signalPassFailure();
    // The launch facts now live in the launches.
    module.walk([](gpu::GPUFuncOp kernel) { kernel->removeAttr("moe.launch"); });
  }
};
} // namespace

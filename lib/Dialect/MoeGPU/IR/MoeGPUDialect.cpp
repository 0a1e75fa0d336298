//===- MoeGPUDialect.cpp - moe_gpu dialect --------------------------------===//

#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/MoeGPU/IR/HopperLimits.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

using namespace mlir;
using namespace mlir::moe_gpu;

#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.cpp.inc"

void MoeGPUDialect::initialize() {
  registerAttributes();
  registerTypes();
}

LogicalResult MoeGPUDialect::verifyOperationAttribute(Operation *op,
                                                      NamedAttribute attr) {
  if (attr.getName() == getWorkspaceLayoutAttrName()) {
    if (!isa<func::FuncOp>(op) || !isa<FlatSymbolRefAttr>(attr.getValue()))
      return op->emitError() << "'" << getWorkspaceLayoutAttrName()
                             << "' must be a symbol reference on a func.func";
    return success();
  }
  if (attr.getName() == getDependentLaunchAttrName()) {
    if (!isa<UnitAttr>(attr.getValue()))
      return op->emitError() << "'" << getDependentLaunchAttrName()
                             << "' must be a unit attribute";
    // A kernel keeps the attribute once lowered to an llvm.func.
    if (auto kernel = dyn_cast<gpu::GPUFuncOp>(op);
        (kernel && kernel.isKernel()) || isa<LLVM::LLVMFuncOp>(op))
      return success();
    auto launch = dyn_cast<gpu::LaunchFuncOp>(op);
    if (!launch)
      return op->emitError()
             << "'" << getDependentLaunchAttrName()
             << "' applies to a gpu.func kernel or a gpu.launch_func, not '"
             << op->getName() << "'";
    // A dependent launch of a kernel that does not wait would race with
    // the kernel before it.
    auto callee = SymbolTable::lookupNearestSymbolFrom<gpu::GPUFuncOp>(
        launch, launch.getKernel());
    if (callee && !callee->hasAttr(getDependentLaunchAttrName()))
      return op->emitError()
             << "dependent launch of @" << callee.getName()
             << ", which does not wait for the kernels before it (no '"
             << getDependentLaunchAttrName() << "')";
    return success();
  }
  if (attr.getName() != getConfigAttrName())
    return op->emitError() << "unknown moe_gpu attribute '"
                           << attr.getName().getValue() << "'";
  auto config = dyn_cast<KernelConfigAttr>(attr.getValue());
  if (!config)
    return op->emitError() << "'" << getConfigAttrName()
                           << "' must be a #moe_gpu.kernel_config, got "
                           << attr.getValue();
  auto matmul = dyn_cast<moe::ExpertMatmulOp>(op);
  if (!matmul)
    return op->emitError() << "'" << getConfigAttrName()
                           << "' applies to moe.expert_matmul, not '"
                           << op->getName() << "'";
  // A configuration a pass built (KernelConfigAttr::get, unchecked) meets
  // the contract of one parsed from the input: a register split past the
  // block's registers, say, would make setmaxnreg.inc wait forever.
  if (failed(config.verifyContract(
          [&] { return op->emitError() << "invalid kernel config: "; })))
    return failure();
  MmaKind expected = getMmaKind(matmul.getQuantization().getFormat());
  if (config.getMma() != expected)
    return op->emitError() << "kernel config has mma = "
                           << stringifyMmaKind(config.getMma())
                           << ", but the op's format '"
                           << stringifyQuantFormat(
                                  matmul.getQuantization().getFormat())
                           << "' needs " << stringifyMmaKind(expected);
  std::optional<int64_t> blockM = matmul.getBlockM();
  if (blockM && *blockM != config.getBlockM())
    return op->emitError() << "kernel config has block_m = "
                           << config.getBlockM()
                           << ", but the aligned schedule's slot blocks are "
                           << *blockM << " rows";
  // A matmul that stores its products (neither a combine nor unpermuted
  // f32 rows) has no sums to add its K splits into: they form a cluster
  // along the grid's z, reduced through distributed shared memory.
  if (config.getSplitK() > 1 && !matmul.isCombine() && !matmul.getUnpermute() &&
      (config.getSplitK() > hopper::kMaxClusterBlocks ||
       config.getClusterM() != 1 || config.getClusterN() != 1))
    return op->emitError()
           << "kernel config has split_k = " << config.getSplitK()
           << " and cluster " << config.getClusterM() << "x"
           << config.getClusterN()
           << ", but a matmul that stores its products reduces its K "
              "splits in a cluster of its own: split_k at most "
           << hopper::kMaxClusterBlocks << " and cluster 1x1";
  // Rows of a combine: one per assignment, summed by the finalize kernel
  // into a result of their element type.
  if (config.getCombineRows()) {
    if (!matmul.isCombine())
      return op->emitError() << "kernel config has combine_rows, but the op "
                                "is not a combine";
    if (matmul.getAccumulate())
      return op->emitError() << "kernel config has combine_rows, but the op "
                                "adds into accumulate(...) partial sums";
    Type element = getElementTypeOrSelf(matmul.getType());
    if (!element.isBF16())
      return op->emitError() << "kernel config has combine_rows, which "
                                "rounds each row to the result's element "
                                "type: needs a bf16 result, got "
                             << element;
  }
  // Each K block of block scales has its own scale, applied as the block's
  // sums are promoted.
  moe::QuantizationAttr quantization = matmul.getQuantization();
  // A TMA box reads a slot block's rows as one contiguous run: the input
  // rows must be the slots themselves, not tokens gathered through them;
  // and the stage's full barrier expects the bf16 weights' boxes beside
  // them, not weight-only codes dequantized in shared memory.
  if (config.getInputTma() && matmul.getGather())
    return op->emitError() << "kernel config has input_tma, but the op "
                              "gathers its input rows through its slots; a "
                              "TMA box reads contiguous rows";
  if (config.getInputTma() && quantization.getFormat() != moe::QuantFormat::None)
    return op->emitError() << "kernel config has input_tma, which loads bf16 "
                              "rows beside the bf16 weights' TMA boxes, but "
                              "the op's format is '"
                           << stringifyQuantFormat(quantization.getFormat())
                           << "'";
  if (config.getFastAccumulation() && quantization.isW8A8() &&
      quantization.getScales() == moe::ScaleLayout::Block)
    return op->emitError() << "kernel config has fast_accumulation, but the "
                              "op's block scales are applied as each K "
                              "block's sums are promoted";
  return success();
}

moe::ExpertMatmulOp mlir::moe_gpu::getSumsZeroedBy(moe::ExpertMatmulOp op) {
  auto config =
      op->getAttrOfType<KernelConfigAttr>(MoeGPUDialect::getConfigAttrName());
  auto align = op.getSlots().getDefiningOp<moe::AlignOp>();
  if (!config || config.getFusedAlignAssignments() == 0 || !align)
    return {};
  for (Operation *user : align.getSortedIds().getUsers()) {
    auto combine = dyn_cast<moe::ExpertMatmulOp>(user);
    auto combineConfig = combine ? combine->getAttrOfType<KernelConfigAttr>(
                                       MoeGPUDialect::getConfigAttrName())
                                 : KernelConfigAttr();
    if (!combine || combine == op || !combine.isCombine() ||
        (combineConfig && combineConfig.getCombineRows()) ||
        combine.getAccumulate() || combine.getUnpermute() ||
        getElementTypeOrSelf(combine.getType()).isF32() ||
        combine->getBlock() != op->getBlock() || !op->isBeforeInBlock(combine))
      continue;
    return combine;
  }
  return {};
}

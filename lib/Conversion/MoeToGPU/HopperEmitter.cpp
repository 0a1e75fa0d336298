//===- HopperEmitter.cpp - sm_90a mechanisms of the GEMM kernels ----------===//

#include "HopperEmitter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe::hopper;

namespace {
/// Spin budget of one mbarrier try_wait before it is retried.
constexpr int64_t kWaitTicks = 10000000;
/// Descriptor bits of a K-major, 128B-swizzled tile: stride byte offset
/// 1024 (8 rows of 128 bytes) at bit 32, leading byte offset 1 at bit 16
/// (unused when swizzled), swizzle mode 1 (128B) at bit 62.
constexpr uint64_t kDescriptorBits =
    (uint64_t(1) << 62) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 16);
/// Bytes of one row of a swizzled tile, and descriptor units (16 bytes).
constexpr int64_t kTileRowBytes = 128, kDescriptorUnit = 16;
} // namespace

Value StageMemory::view(OpBuilder &b, Location loc, MemRefType type,
                        Value stage, int64_t offset, int64_t stride) const {
  auto index = [&](int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  Value at = arith::AddIOp::create(
      b, loc, arith::AddIOp::create(b, loc, shift, index(offset)),
      arith::MulIOp::create(b, loc, stage, index(stride)));
  return memref::ViewOp::create(b, loc, type, bytes, at, ValueRange{});
}

Value HopperEmitter::index(int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value HopperEmitter::i64(int64_t value) {
  return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
}

Value HopperEmitter::dynamicSharedMemory(LLVM::GlobalOp global, int64_t bytes) {
  // gpu.dynamic_shared_memory gets internal linkage, and the NVPTX backend
  // demotes it: the external global is viewed through a hand-built
  // descriptor instead.
  MLIRContext *context = b.getContext();
  auto pointerType = LLVM::LLVMPointerType::get(
      context, static_cast<unsigned>(NVVM::NVVMMemorySpace::Shared));
  auto i64Type = b.getI64Type();
  auto arrayType = LLVM::LLVMArrayType::get(i64Type, 1);
  auto descriptorType = LLVM::LLVMStructType::getLiteral(
      context, {pointerType, pointerType, i64Type, arrayType, arrayType});
  Value address = LLVM::AddressOfOp::create(b, loc, global);
  Value value = LLVM::PoisonOp::create(b, loc, descriptorType);
  auto llvmConstant = [&](int64_t v) {
    return LLVM::ConstantOp::create(b, loc, i64Type, v);
  };
  value =
      LLVM::InsertValueOp::create(b, loc, value, address, ArrayRef<int64_t>{0});
  value =
      LLVM::InsertValueOp::create(b, loc, value, address, ArrayRef<int64_t>{1});
  value = LLVM::InsertValueOp::create(b, loc, value, llvmConstant(0),
                                      ArrayRef<int64_t>{2});
  value = LLVM::InsertValueOp::create(b, loc, value, llvmConstant(bytes),
                                      ArrayRef<int64_t>{3, 0});
  value = LLVM::InsertValueOp::create(b, loc, value, llvmConstant(1),
                                      ArrayRef<int64_t>{4, 0});
  auto workgroup =
      gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup);
  auto bytesType = MemRefType::get({bytes}, b.getI8Type(),
                                   MemRefLayoutAttrInterface(), workgroup);
  return UnrealizedConversionCastOp::create(b, loc, bytesType, value)
      .getResult(0);
}

Value HopperEmitter::addressOf(Value view) {
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, view);
  return arith::IndexCastOp::create(b, loc, b.getI64Type(), pointer);
}

Value HopperEmitter::wgmmaDescriptor(Value address) {
  Value masked = arith::AndIOp::create(b, loc, address, i64(0x3FFFF));
  Value base = arith::ShRUIOp::create(b, loc, masked, i64(4));
  return arith::OrIOp::create(b, loc, base,
                              i64(static_cast<int64_t>(kDescriptorBits)));
}

SmallVector<Value>
HopperEmitter::wgmmaStage(ArrayRef<Value> accumulators, Value descriptorA,
                          Value descriptorB, int64_t fragmentStride,
                          const WgmmaStageSpans &spans,
                          const WgmmaFragmentLayout &layout,
                          const WgmmaKind &kind, Type accumulatorType,
                          int64_t pendingGroups, bool fresh) {
  NVVM::WgmmaFenceAlignedOp::create(b, loc);
  auto shape = NVVM::MMAShapeAttr::get(b.getContext(), 64, layout.columns,
                                       kWgmmaKBytes / kind.elementBytes);
  SmallVector<Value> sums(accumulators);
  constexpr int64_t stepsPerSpan = kTileRowBytes / kWgmmaKBytes;
  for (int64_t step = 0; step < spans.count * stepsPerSpan; ++step) {
    // Both K-major operands advance 32 bytes (2 descriptor units) per
    // wgmma within a span, and to the next span's block after four;
    // fragment f's rows start `fragmentStride` units after f − 1's.
    int64_t span = step / stepsPerSpan;
    int64_t inSpan = (step % stepsPerSpan) * kWgmmaKBytes / kDescriptorUnit;
    int64_t offsetA = span * spans.strideA + inSpan;
    SmallVector<Value> stepA;
    for (int64_t fragment = 0; fragment < int64_t(sums.size()); ++fragment)
      stepA.push_back(arith::AddIOp::create(
          b, loc, descriptorA, i64(fragment * fragmentStride + offsetA)));
    Value stepB = arith::AddIOp::create(
        b, loc, descriptorB, i64(span * spans.strideB + inSpan));
    for (auto [fragment, sum] : llvm::enumerate(sums))
      sum = NVVM::WgmmaMmaAsyncOp::create(
          b, loc, accumulatorType, sum, stepA[fragment], stepB, shape,
          kind.operands, kind.operands, kind.sums,
          fresh && step == 0 ? NVVM::WGMMAScaleOut::zero
                             : NVVM::WGMMAScaleOut::one,
          NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one,
          NVVM::MMALayout::row, NVVM::MMALayout::col,
          NVVM::MMAIntOverflowAttr());
  }
  NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, pendingGroups);
  return sums;
}

SmallVector<Value> HopperEmitter::wgmmaRegisterStage(
    ArrayRef<Value> accumulators, ArrayRef<SmallVector<Value, 16>> operandA,
    Value descriptorB, const WgmmaFragmentLayout &layout, Type accumulatorType,
    int64_t pendingGroups) {
  // The A registers were written by ordinary instructions since the last
  // wgmma read them.
  NVVM::WgmmaFenceAlignedOp::create(b, loc);
  SmallVector<Value> sums(accumulators);
  constexpr int64_t stepsPerSpan = kTileRowBytes / kWgmmaKBytes;
  for (int64_t step = 0; step < stepsPerSpan; ++step) {
    // B advances 32 bytes (2 descriptor units) per k16 step.
    Value stepB = arith::AddIOp::create(
        b, loc, descriptorB, i64(step * kWgmmaKBytes / kDescriptorUnit));
    for (auto [fragment, sum] : llvm::enumerate(sums))
      sum = wgmmaRegisterA(
          sum, ArrayRef<Value>(operandA[fragment]).slice(4 * step, 4), stepB,
          layout, accumulatorType);
  }
  NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, pendingGroups);
  return sums;
}

Value HopperEmitter::wgmmaRegisterA(Value accumulator, ArrayRef<Value> a,
                                    Value descriptorB,
                                    const WgmmaFragmentLayout &layout,
                                    Type accumulatorType) {
  int64_t registers = layout.registers();
  // Operands: the accumulators out ($0..), the same tied in, the four A
  // registers, B's descriptor. scale-d 1 (add), A and B unscaled, B
  // K-major (not transposed).
  std::string sums, tied, constraints;
  SmallVector<Value> operands;
  for (int64_t reg = 0; reg < registers; ++reg) {
    sums += (reg ? ", $" : "$") + std::to_string(reg);
    constraints += "=f,";
    tied += std::to_string(reg) + ",";
    operands.push_back(LLVM::ExtractValueOp::create(b, loc, accumulator, reg));
  }
  constraints += tied + "r,r,r,r,l";
  llvm::append_range(operands, a);
  operands.push_back(descriptorB);
  int64_t first = 2 * registers;
  std::string ptx =
      "wgmma.mma_async.sync.aligned.m64n" + std::to_string(layout.columns) +
      "k16.f32.bf16.bf16 {" + sums + "}, {$" + std::to_string(first) + ", $" +
      std::to_string(first + 1) + ", $" + std::to_string(first + 2) + ", $" +
      std::to_string(first + 3) + "}, $" + std::to_string(first + 4) +
      ", 1, 1, 1, 0;";
  return LLVM::InlineAsmOp::create(
             b, loc, accumulatorType, operands, ptx, constraints,
             /*has_side_effects=*/true, /*is_align_stack=*/false,
             LLVM::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr())
      .getResult(0);
}

Value HopperEmitter::zeroAccumulator(LLVM::LLVMStructType accumulatorType,
                                     Type element) {
  Value accumulator = LLVM::ZeroOp::create(b, loc, accumulatorType);
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  for (int64_t reg = 0; reg < int64_t(accumulatorType.getBody().size()); ++reg)
    accumulator = LLVM::InsertValueOp::create(b, loc, accumulator, zero, reg);
  return accumulator;
}

void HopperEmitter::waitForPhase(Value ring, Value position, int64_t depth,
                                 bool previousRound) {
  waitForRoundPhase(
      ring, arith::RemUIOp::create(b, loc, position, index(depth)),
      arith::DivUIOp::create(b, loc, position, index(depth)), previousRound);
}

void HopperEmitter::waitForRoundPhase(Value ring, Value barrier, Value round,
                                      bool previousRound) {
  // Round r of a barrier completes its phase r, of parity r mod 2.
  Value parity = arith::CmpIOp::create(
      b, loc,
      previousRound ? arith::CmpIPredicate::eq : arith::CmpIPredicate::ne,
      arith::RemUIOp::create(b, loc, round, index(2)), index(0));
  nvgpu::MBarrierTryWaitParityOp::create(b, loc, ring, parity,
                                         index(kWaitTicks), barrier);
}

void HopperEmitter::waitForParity(Value barrier, Value parity) {
  NVVM::MBarrierTryWaitParityOp::create(
      b, loc, barrier, parity,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(kWaitTicks)));
}

void HopperEmitter::copyAsync(Value tile, ValueRange tileIndices, Value source,
                              ValueRange sourceIndices, int64_t chunkElements,
                              Value elements, bool bypassL1) {
  nvgpu::DeviceAsyncCopyOp::create(
      b, loc, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tile,
      tileIndices, source, sourceIndices, b.getIndexAttr(chunkElements),
      elements, bypassL1 ? b.getUnitAttr() : UnitAttr());
}

void HopperEmitter::fenceAsyncProxy() {
  NVVM::FenceProxyOp::create(
      b, loc,
      NVVM::ProxyKindAttr::get(b.getContext(), NVVM::ProxyKind::async_shared),
      NVVM::SharedSpaceAttr::get(b.getContext(),
                                 NVVM::SharedSpace::shared_cta));
}

void HopperEmitter::arriveWhenCopiesLand(Value ring, Value barrier) {
  Value address = nvgpu::MBarrierGetOp::create(b, loc, b.getI64Type(), ring,
                                               barrier);
  auto sharedPointer = LLVM::LLVMPointerType::get(
      b.getContext(), static_cast<unsigned>(NVVM::NVVMMemorySpace::Shared));
  NVVM::CpAsyncMBarrierArriveOp::create(
      b, loc, LLVM::IntToPtrOp::create(b, loc, sharedPointer, address),
      /*noinc=*/true);
}

void HopperEmitter::syncCluster() {
  NVVM::ClusterArriveOp::create(b, loc, UnitAttr());
  NVVM::ClusterWaitOp::create(b, loc, UnitAttr());
}

Value HopperEmitter::clusterAddress(Value barrier, Value rank) {
  auto clusterPointer = LLVM::LLVMPointerType::get(
      b.getContext(),
      static_cast<unsigned>(NVVM::NVVMMemorySpace::SharedCluster));
  return NVVM::MapaOp::create(b, loc, clusterPointer, barrier, rank);
}

void HopperEmitter::arriveOnClusterBarrier(Value target, Value predicate) {
  NVVM::InlinePtxOp::create(
      b, loc, TypeRange(), ValueRange{target}, ValueRange(),
      "mbarrier.arrive.release.cta.shared::cluster.b64 _, [$0];", predicate);
}

void HopperEmitter::reduceAddPair(Value address, Value first, Value second) {
  auto globalPointer = LLVM::LLVMPointerType::get(
      b.getContext(), static_cast<unsigned>(NVVM::NVVMMemorySpace::Global));
  Value pointer = LLVM::IntToPtrOp::create(b, loc, globalPointer, address);
  // The NVPTX backend lowers a vector atomicrmw to a CAS loop; the vector
  // reduction needs PTX ISA 8.1.
  LLVM::InlineAsmOp::create(
      b, loc, TypeRange{}, ValueRange{pointer, first, second},
      "red.global.add.v2.f32 [$0], {$1, $2};", "l,f,f",
      /*has_side_effects=*/true, /*is_align_stack=*/false,
      LLVM::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
}

void HopperEmitter::splitRoles(Value isProducer, int64_t producerRegisters,
                               int64_t consumerRegisters,
                               function_ref<void()> producer,
                               function_ref<void()> consumers) {
  auto roles = scf::IfOp::create(b, loc, isProducer, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(roles.thenBlock());
  if (producerRegisters)
    NVVM::SetMaxRegisterOp::create(b, loc, producerRegisters,
                                   NVVM::SetMaxRegisterAction::decrease);
  producer();
  b.setInsertionPointToStart(roles.elseBlock());
  if (consumerRegisters)
    NVVM::SetMaxRegisterOp::create(b, loc, consumerRegisters,
                                   NVVM::SetMaxRegisterAction::increase);
  consumers();
}

//===- CheckAllocSizes.cpp - moe-check-alloc-sizes ------------------------===//
//
// Guards every heap allocation whose byte count may not fit in 63 bits: the
// LLVM lowering of memref.alloc multiplies the sizes in wrapping arithmetic,
// and a wrapped count allocates a buffer smaller than the code writes.
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/DataLayoutInterfaces.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

#include "llvm/Support/MathExtras.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CHECKALLOCSIZES
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Calls `reportFn` before a `memref.alloc` whose byte count, computed with
/// checked multiplication from its element size, static and dynamic sizes,
/// is 2^63 or more (or has a negative size) and none of its sizes is zero.
struct GuardAllocSize : public OpRewritePattern<memref::AllocOp> {
  GuardAllocSize(MLIRContext *context, func::FuncOp reportFn)
      : OpRewritePattern<memref::AllocOp>(context), reportFn(reportFn) {}

  LogicalResult matchAndRewrite(memref::AllocOp alloc,
                                PatternRewriter &rewriter) const override {
    MemRefType type = alloc.getType();
    // The static part of the byte count, checked here.
    int64_t staticBytes =
        static_cast<int64_t>(DataLayout::closest(alloc)
                                 .getTypeSize(type.getElementType())
                                 .getFixedValue());
    bool staticOverflow = false;
    for (int64_t size : type.getShape())
      if (!ShapedType::isDynamic(size))
        staticOverflow |= llvm::MulOverflow(staticBytes, size, staticBytes);
    if (staticBytes == 0 && !staticOverflow)
      return rewriter.notifyMatchFailure(alloc, "holds no bytes");
    if (alloc.getDynamicSizes().empty() && !staticOverflow)
      return rewriter.notifyMatchFailure(alloc, "static and small enough");

    Location loc = alloc.getLoc();
    rewriter.setInsertionPoint(alloc);
    Type i64 = rewriter.getI64Type();
    auto constantI64 = [&](int64_t value) -> Value {
      return arith::ConstantOp::create(rewriter, loc,
                                       rewriter.getIntegerAttr(i64, value));
    };
    Value zero = constantI64(0);
    Value overflow = arith::ConstantOp::create(
        rewriter, loc, rewriter.getBoolAttr(staticOverflow));
    Value anyZero =
        arith::ConstantOp::create(rewriter, loc, rewriter.getBoolAttr(false));
    Value bytes = constantI64(staticBytes);
    for (Value size : alloc.getDynamicSizes()) {
      Value size64 = arith::IndexCastOp::create(rewriter, loc, i64, size);
      anyZero = arith::OrIOp::create(
          rewriter, loc, anyZero,
          arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, size64,
                                zero));
      // Unsigned: a negative size is a huge one and overflows.
      auto product =
          arith::MulUIExtendedOp::create(rewriter, loc, bytes, size64);
      Value highSet = arith::CmpIOp::create(
          rewriter, loc, arith::CmpIPredicate::ne, product.getHigh(), zero);
      Value signSet = arith::CmpIOp::create(
          rewriter, loc, arith::CmpIPredicate::slt, product.getLow(), zero);
      overflow = arith::OrIOp::create(
          rewriter, loc, overflow,
          arith::OrIOp::create(rewriter, loc, highSet, signSet));
      bytes = product.getLow();
    }
    Value notZero = arith::XOrIOp::create(
        rewriter, loc, anyZero,
        arith::ConstantOp::create(rewriter, loc, rewriter.getBoolAttr(true)));
    Value fails = arith::AndIOp::create(rewriter, loc, overflow, notZero);
    auto ifOp = scf::IfOp::create(rewriter, loc, fails,
                                  /*withElseRegion=*/false);
    rewriter.setInsertionPointToStart(ifOp.thenBlock());
    func::CallOp::create(rewriter, loc, reportFn, ValueRange{});
    return success();
  }

  func::FuncOp reportFn;
};

struct CheckAllocSizesPass
    : public moe::impl::CheckAllocSizesBase<CheckAllocSizesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    OpBuilder builder(module.getBodyRegion());
    auto reportFn =
        module.lookupSymbol<func::FuncOp>(kReportAllocSizeOverflowFn);
    bool declared = false;
    if (!reportFn) {
      reportFn = func::FuncOp::create(builder, module.getLoc(),
                                      kReportAllocSizeOverflowFn,
                                      builder.getFunctionType({}, {}));
      reportFn.setPrivate();
      declared = true;
    } else if (reportFn.getFunctionType() != builder.getFunctionType({}, {})) {
      reportFn.emitError() << "'" << kReportAllocSizeOverflowFn
                           << "' must have type () -> ()";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    patterns.add<GuardAllocSize>(&getContext(), reportFn);
    // One visit per allocation: the guard is inserted before it and the
    // allocation itself is left as it is, so a fixpoint driver would guard
    // it again and again.
    walkAndApplyPatterns(module, std::move(patterns));
    if (declared && SymbolTable::symbolKnownUseEmpty(reportFn, module))
      reportFn.erase();
  }
};

} // namespace

//===- MoeToLinalg.cpp - lower moe ops to upstream dialects ---------------===//
//
// Each moe op becomes linalg/tensor/scf/arith/math ops with the same tensor
// semantics as the float64 reference in python/moe_compiler/reference.py:
// arithmetic in f32, converted to the result element type at the end.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/DialectConversion.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLINALG
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

void mlir::moe::populateMoeToLinalgConversionPatterns(
    RewritePatternSet &patterns, int64_t rowBlock) {
  lowering::populateRoutingLoweringPatterns(patterns);
  lowering::populateScheduleLoweringPatterns(patterns);
  lowering::populateMatmulLoweringPatterns(patterns, rowBlock);
  lowering::populateElementwiseLoweringPatterns(patterns);
  lowering::populateQuantizeLoweringPatterns(patterns);
  lowering::populateExpertParallelLoweringPatterns(patterns);
}

namespace {
struct ConvertMoeToLinalgPass
    : public moe::impl::ConvertMoeToLinalgBase<ConvertMoeToLinalgPass> {
  using ConvertMoeToLinalgBase::ConvertMoeToLinalgBase;

  void runOnOperation() override {
    if (rowBlock < 1) {
      getOperation()->emitError(
          "convert-moe-to-linalg: row-block must be >= 1");
      return signalPassFailure();
    }
    MLIRContext *context = &getContext();
    ConversionTarget target(*context);
    target.addIllegalDialect<MoeDialect>();
    target.addLegalDialect<arith::ArithDialect, bufferization::BufferizationDialect,
                           func::FuncDialect, memref::MemRefDialect,
                           linalg::LinalgDialect, math::MathDialect,
                           scf::SCFDialect, tensor::TensorDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(context);
    populateMoeToLinalgConversionPatterns(patterns, rowBlock);
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

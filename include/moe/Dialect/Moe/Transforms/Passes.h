//===- Passes.h - moe dialect transformations -------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_H
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_H

#include "moe/Dialect/Moe/IR/MoeDialect.h"

#include "mlir/Pass/Pass.h"

namespace mlir::moe {

#define GEN_PASS_DECL
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"

/// Adds the patterns of moe-fuse-routing.
void populateFuseRoutingPatterns(RewritePatternSet &patterns);

/// Adds the patterns of moe-fuse-experts.
void populateFuseExpertsPatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_H

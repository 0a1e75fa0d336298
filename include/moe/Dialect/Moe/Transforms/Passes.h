//===- Passes.h - moe dialect transformations -------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_H
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_H

#include "moe/Dialect/Moe/IR/MoeDialect.h"

#include "mlir/Pass/Pass.h"

namespace mlir::moe {

#define GEN_PASS_DECL
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"

/// The unit attribute moe-expert-parallel puts on each argument that holds
/// the rank's local experts (`[L, ...]`, in the placement's slot order), so
/// that a caller knows which arguments to slice.
inline constexpr llvm::StringLiteral kLocalExpertsAttrName =
    "moe.local_experts";

/// Adds the patterns of moe-fuse-routing.
void populateFuseRoutingPatterns(RewritePatternSet &patterns);

/// Adds the patterns of moe-fuse-experts.
void populateFuseExpertsPatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_H

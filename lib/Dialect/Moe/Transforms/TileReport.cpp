//===- TileReport.cpp - moe-tile-report -----------------------------------===//

#include "TileUtils.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/CostModel.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "llvm/Support/raw_ostream.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOETILEREPORT
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct MoeTileReportPass
    : public moe::impl::MoeTileReportBase<MoeTileReportPass> {
  using MoeTileReportBase::MoeTileReportBase;

  void runOnOperation() override {
    GpuTarget target;
    target.numSMs = numSMs;
    target.sharedMemoryBytes = sharedMemoryBytes;
    target.peakFlops = peakTflops * 1e12;
    target.bandwidthBytes = bandwidthGBps * 1e9;
    llvm::raw_ostream &os = llvm::outs();
    getOperation()->walk([&](Operation *op) {
      auto tile = op->getAttrOfType<TileAttr>("tile");
      std::optional<GroupedMatmulShape> shape =
          getGroupedMatmulShape(op, numTokens);
      if (!tile || !shape)
        return;
      TilePrediction prediction =
          predictTile(*shape, toTileChoice(tile), target);
      os << "moe-tile-report: " << op->getName() << " at " << op->getLoc()
         << "\n  M=" << numTokens << " rows=" << shape->numRows
         << " E=" << shape->numExperts << " N=" << shape->outFeatures
         << " K=" << shape->inFeatures << " on " << target.numSMs
         << " SMs\n  tile " << tile << "\n  ";
      // A target's kernel configuration, where one was chosen.
      if (Attribute config = op->getAttr("moe_gpu.config"))
        os << "kernel " << config << "\n  ";
      printPrediction(os, prediction);
      os << "\n";
    });
    os.flush();
    markAllAnalysesPreserved();
  }
};
} // namespace

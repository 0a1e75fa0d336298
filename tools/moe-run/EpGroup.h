//===- EpGroup.h - emulated expert-parallel group ---------------*- C++ -*-===//
//
// R ranks of an expert-parallel group as R threads of one process: the
// runtime hooks that moe.ep_dispatch and moe.ep_combine lower to exchange
// through shared memory, with the data movement of the op's realization
// (allgather + reduce-scatter, or all-to-all with exchanged counts).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_MOE_RUN_EPGROUP_H
#define MOE_TOOLS_MOE_RUN_EPGROUP_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <functional>

namespace mlir::moe {

/// Reports a runtime error of lowered code (moe-run's hook); thread-safe.
using RuntimeErrorReporter =
    std::function<void(int64_t code, int64_t value, int64_t bound)>;

/// Runs `rankMain(rank)` on `ranks` threads that form one group, and
/// returns when all have returned. The hooks called from these threads
/// exchange within the group; `report` receives the contract violations
/// they find (every rank still completes the collective, with the data of
/// the violation dropped, so that no rank waits forever).
void runEmulatedGroup(int64_t ranks, const RuntimeErrorReporter &report,
                      const std::function<void(int64_t rank)> &rankMain);

/// The hooks by name (the symbols the JIT must resolve), and their
/// addresses.
struct EpHook {
  llvm::StringRef name;
  void *address;
};
/// Every hook, for the engine's symbol map.
llvm::ArrayRef<EpHook> getEpHooks();

} // namespace mlir::moe

#endif // MOE_TOOLS_MOE_RUN_EPGROUP_H

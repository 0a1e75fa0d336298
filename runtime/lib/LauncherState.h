//===- LauncherState.h - launcher helpers shared by the runtime -*- C++ -*-===//
//
// Internal to the runtime's sources (not installed).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_LIB_LAUNCHERSTATE_H
#define MOE_RUNTIME_LIB_LAUNCHERSTATE_H

#include "moe/Runtime/Runtime.h"

namespace moe_rt {
/// Whether the launcher still has work to do; records nothing.
inline bool isLive(const moe_rt_launcher *launcher) {
  return launcher && launcher->status == MOE_RT_SUCCESS && launcher->active;
}
} // namespace moe_rt

#endif // MOE_RUNTIME_LIB_LAUNCHERSTATE_H

// A program whose collectives span 2 ranks, run alone (a group of one):
// every collective completes, and moe-run reports the mismatch and fails.
// The fuzzer found this case (the roundtrip test's exchange, run alone
// under --fuse) reading out of bounds in the dispatch.
// RUN: not moe-run %s --entry=alone --target=cpu --random --seed=1 --num-tokens=3 --fuse 2>&1 | FileCheck %s
// RUN: not moe-run %s --entry=alone --target=cpu --random --seed=1 --num-tokens=3 2>&1 | FileCheck %s
// CHECK: moe-run: error: expert parallelism: the program's collectives span 2 ranks, the group running it has 1
func.func @alone(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %y: tensor<?x64xf32>) -> tensor<?x64xbf16> {
  %rows, %local, %origin = moe.ep_dispatch all_to_all %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 8, slots = [[0, 1, 2, 3, 4], [5, 6, 7, 0, 3]]>}
      : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?xi32>
  %out = moe.ep_combine all_to_all %y, %origin, %w {ranks = 2 : i64}
      : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}

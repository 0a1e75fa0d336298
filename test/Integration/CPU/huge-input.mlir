// Random inputs larger than the machine gives: a clean error and exit 1,
// not an abort from a failed allocation (issue 13; found by scripts/fuzz.py).
// RUN: not moe-run %s --entry=huge --random 2>&1 | FileCheck %s
// CHECK: moe-run: error: argument #0 (tensor<1099511627776x4xf32>): cannot allocate 17592186044416 bytes for random argument #0
// CHECK-NOT: LLVM ERROR

func.func @huge(%x: tensor<1099511627776x4xf32>) -> tensor<1099511627776x4xf32> {
  return %x : tensor<1099511627776x4xf32>
}

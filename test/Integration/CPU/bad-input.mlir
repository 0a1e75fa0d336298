// moe-run turns bad input into a diagnostic and a non-zero exit.
// RUN: not moe-run %s --entry=missing --random 2>&1 | FileCheck %s --check-prefix=ENTRY
// RUN: not moe-run %s --entry=permute --input=%t.missing.npy --input=%t.missing.npy 2>&1 | FileCheck %s --check-prefix=FILE
// RUN: not moe-run %s --entry=permute --random --id-range=9 --num-tokens=64 --seed=5 2>&1 | FileCheck %s --check-prefix=RANGE
// RUN: not moe-run %s --entry=permute --random --target=gpu 2>&1 | FileCheck %s --check-prefix=TARGET
// A declared shape whose byte count wraps modulo 2^64 (issue 13, crash
// class 6), and an output that cannot take the data (class 7).
// RUN: not moe-run %s --entry=permute --input=%S/Inputs/huge-shape.npy --input=%S/Inputs/huge-shape.npy 2>&1 | FileCheck %s --check-prefix=HUGE
// RUN: not moe-run %s --entry=permute --random --num-tokens=4 --output=/dev/full --output=/dev/full --output=/dev/full 2>&1 | FileCheck %s --check-prefix=FULL

// ENTRY: moe-run: error: no function 'missing' in '{{.*}}bad-input.mlir'; it defines: permute
// FILE: moe-run: error: cannot read '{{.*}}.missing.npy'
// RANGE: moe-run: error: moe.permute: expert id 8 is outside [0, 8)
// TARGET: moe-run: error: unknown --target 'gpu'
// HUGE: moe-run: error: '{{.*}}huge-shape.npy' is not a valid .npy file: shape 36028797018963973x256xf32 holds 2^63 bytes or more
// FULL: moe-run: error: cannot write '/dev/full': No space left on device
// FULL-NOT: LLVM ERROR

func.func @permute(%x: tensor<?x4xf32>, %ids: tensor<?x2xi32>) -> (tensor<?x4xf32>, tensor<9xi32>, tensor<?xi32>) {
  %r, %o, %s = moe.permute %x, %ids : tensor<?x4xf32>, tensor<?x2xi32> -> tensor<?x4xf32>, tensor<9xi32>, tensor<?xi32>
  return %r, %o, %s : tensor<?x4xf32>, tensor<9xi32>, tensor<?xi32>
}

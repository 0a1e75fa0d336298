// A buffer the compiled code cannot get ends moe-run with an error and exit
// 1, not a crash (issue 13). The inputs hold no bytes (their second dimension
// is 0), so only the lowered code's own allocation is huge: 2^62 bytes, past
// any address space whatever the overcommit setting, or a byte count that
// wraps modulo 2^64 (2^22 x 2^40 x 4 bytes), which moe-check-alloc-sizes
// stops before the allocation.
// RUN: not moe-run %s --entry=fill --random --num-tokens=1048576 2>&1 | FileCheck %s --check-prefix=HUGE
// RUN: not moe-run %s --entry=fill --random --num-tokens=4194304 2>&1 | FileCheck %s --check-prefix=WRAP
// RUN: not moe-run %s --entry=router --random --num-tokens=1048576 2>&1 | FileCheck %s --check-prefix=HUGE
// RUN: not moe-run %s --entry=router --random --num-tokens=4194304 2>&1 | FileCheck %s --check-prefix=WRAP
// The same functions at a size that fits still run.
// RUN: moe-run %s --entry=fill --random --num-tokens=0 | FileCheck %s --check-prefix=EMPTY

// 2^62 bytes and 64 of alignment padding:
// HUGE: moe-run: error: the compiled layer could not allocate 4611686018427387968 bytes
// HUGE-NOT: Stack dump
// WRAP: moe-run: error: the compiled layer could not allocate 2^63 bytes or more (a buffer's sizes overflow)
// WRAP-NOT: Stack dump
// EMPTY: result #0: 0x1099511627776xf32

func.func @fill(%x: tensor<?x0xf32>) -> tensor<?x1099511627776xf32> {
  %c0 = arith.constant 0 : index
  %m = tensor.dim %x, %c0 : tensor<?x0xf32>
  %empty = tensor.empty(%m) : tensor<?x1099511627776xf32>
  %zero = arith.constant 0.0 : f32
  %filled = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x1099511627776xf32>) -> tensor<?x1099511627776xf32>
  return %filled : tensor<?x1099511627776xf32>
}

// Found by hand: 2^40 experts of hidden size 0 pass the verifier; the
// logits take M x 2^42 bytes.
func.func @router(%x: tensor<?x0xf32>, %w: tensor<1099511627776x0xf32>) -> tensor<?x1099511627776xf32> {
  %logits = moe.router %x, %w : tensor<?x0xf32>, tensor<1099511627776x0xf32> -> tensor<?x1099511627776xf32>
  return %logits : tensor<?x1099511627776xf32>
}

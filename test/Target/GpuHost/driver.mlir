// moe-compile as a driver: --help shows its own options only, a file with
// two functions needs --entry (and the error prints no IR), --entry picks
// the layer, and the standard --mlir-* flags apply to its pass managers.
// REQUIRES: ptxas
// RUN: moe-compile --help | FileCheck %s --check-prefix=HELP
// RUN: not moe-compile %s -o %t 2>&1 | FileCheck %s --check-prefix=TWO
// RUN: not moe-compile %s -o %t --entry=missing 2>&1 | FileCheck %s --check-prefix=MISSING
// An override the configure pass would round or clamp is refused.
// RUN: not moe-compile %s -o %t --entry=block --block-n 192 2>&1 | FileCheck %s --check-prefix=BLOCKN
// RUN: not moe-compile %s -o %t --entry=block --stages 17 2>&1 | FileCheck %s --check-prefix=STAGES
// RUN: rm -rf %t && moe-compile %s -o %t --entry=block --num-tokens 64 --mlir-timing 2>&1 | FileCheck %s --check-prefix=TIMING
// RUN: FileCheck %s --check-prefix=HEADER < %t/block.h

// HELP: moe-compile options:
// HELP: --entry=<string>
// HELP: --num-tokens=<long>
// HELP-NOT: --aarch64
// HELP-NOT: --amdgpu

// TWO: error: a GPU layer needs exactly one function, found 2 (moe-compile --entry picks one)
// TWO-NOT: func.func

// MISSING: error: no function @missing to compile

// BLOCKN: error: moe-gpu-configure: block-n must be 0, 64, 128 or 256, got 192
// STAGES: error: moe-gpu-configure: stages must be 0 or between 2 and 16, got 17

// TIMING: Execution time report
// TIMING: MoeGpuOutlineHost

// The C parameters take the arguments' names in the source.
// HEADER: int32_t moe_layer_block(const void* x, const void* ids, const void* weights, const void* w13, const void* w2, void* result, int64_t numTokens, void* workspace, size_t workspaceBytes, CUstream stream);

func.func @block(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}

func.func @other(%x: tensor<?x128xbf16>) -> tensor<?x128xbf16> {
  return %x : tensor<?x128xbf16>
}

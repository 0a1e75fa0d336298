// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// The emitter takes every decision from the op's #moe_gpu.kernel_config.

// block_n 64 and a 3-stage ring, as the configuration says (the configure
// pass would choose 128 and 5 here).
// CHECK-LABEL: func.func @follows_config
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: moe.launch = {block_m = 64 : i64, box_cols = 64 : i64, box_rows = 64 : i64, element_bytes = 2 : i64, shared_bytes = 50176 : i64, split_k = 1 : i64, stages = 3 : i64, threads = 128 : i64, tile_n = 64 : i64}
// CHECK: nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 3>
// CHECK-COUNT-4: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>
func.func @follows_config(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 3, consumer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// The combine splits K as the configuration says: grid z of 4.
// CHECK-LABEL: func.func @split_k
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: split_k = 4 : i64, stages = 2 : i64
func.func @split_k(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 4>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// CHECK-LABEL: func.func @unconfigured
// CHECK-NOT: gpu.module
func.func @unconfigured(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel: the op has no kernel configuration (moe_gpu.config); run moe-gpu-configure first}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// A valid configuration this emitter does not build yet.
// CHECK-LABEL: func.func @warp_specialized
// CHECK-NOT: gpu.module
func.func @warp_specialized(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 40, consumer_registers = 232>: the emitter builds the multistage schedule with 128 bytes of K per stage, block_n 64, 128 or 256, 2 to 5 stages and no cluster}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 40, consumer_registers = 232>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// split_k must divide the K steps (512 / 64 = 8).
// CHECK-LABEL: func.func @split_k_of_steps
func.func @split_k_of_steps(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel: split_k = 3 does not divide the K steps}}
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 3>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// The kernel lowers to sm_90a PTX with the intended instructions.
// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX

// An aligned, gathering bf16 GEMM (GEMM1 before its activation) gets a
// kernel; the op records it.
// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @gemm1
// CHECK: moe.expert_matmul {{.*}}moe.gpu_kernel = @moe_kernels::@expert_matmul
// CHECK: gpu.module @moe_kernels
// CHECK: memref.global "private" @expert_matmul_tiles : memref<24576xi8, #gpu.address_space<workgroup>> {alignment = 1024 : i64}
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x512xbf16>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %{{.*}}: !llvm.ptr, %{{.*}}: memref<?x256xbf16>) kernel
// CHECK: nvgpu.mbarrier.create
// CHECK: scf.for {{.*}} -> (!llvm.struct<(f32, {{.*}})>, i1)
// CHECK: nvgpu.tma.async.load
// CHECK: nvgpu.device_async_copy {{.*}}, 8, %{{.*}} : memref<?x512xbf16> to memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.fence.proxy
// CHECK: nvgpu.mbarrier.try_wait.parity
// CHECK-COUNT-4: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// PTX: .entry expert_matmul
// PTX-DAG: cp.async.bulk.tensor.2d
// PTX-DAG: cp.async.ca.shared.global
// PTX-DAG: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
func.func @gemm1(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// GEMM1 with its silu_and_mul epilogue: each tile loads 64 gate rows and the
// 64 up rows N/2 further, and stores 64 activated columns (I = 128 wide).
// CHECK-LABEL: func.func @with_silu
// CHECK: moe.gpu_kernel = @moe_kernels::@expert_matmul
// CHECK: gpu.func @expert_matmul({{.*}}, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK: %[[TILE:.*]] = arith.muli %{{.*}}, %c64 : index
// CHECK: scf.for
// CHECK: nvgpu.tma.async.load %{{.*}}[%{{.*}}, %[[GATE:.*]]], {{.*}} -> memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.tma.async.load %{{.*}}[%{{.*}}, %[[UP:.*]]], {{.*}} -> memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: math.exp
// CHECK: arith.mulf
func.func @with_silu(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Not covered yet: a remark, no kernel, no kernel module.
// CHECK-NOT: gpu.container_module
// CHECK-LABEL: func.func @with_gelu
// CHECK-NOT: moe.gpu_kernel
// CHECK-NOT: gpu.module
func.func @with_gelu(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x128xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for the gelu_and_mul epilogue}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<gelu_and_mul>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// An unpermuting matmul (GEMM2 without combine) is not covered yet.
// CHECK-LABEL: func.func @unpermute
func.func @unpermute(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xbf16>) -> tensor<?x2x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet: only aligned, gathering expert_matmul ops that write rows are covered}}
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {k = 2 : i64, block_m = 64 : i64, unpermute} : tensor<?x128xbf16>, tensor<8x256x128xbf16> -> tensor<?x2x256xbf16>
  return %o : tensor<?x2x256xbf16>
}

// -----

// CHECK-LABEL: func.func @f32_rows
func.func @f32_rows(%x: tensor<?x512xf32>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf32>) -> tensor<?x256xf32> {
  // expected-remark @+1 {{no GPU kernel yet: needs bf16, block_m 64, K a multiple of 64 and N a multiple of 128}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xf32>, tensor<8x256x512xf32> -> tensor<?x256xf32>
  return %h : tensor<?x256xf32>
}

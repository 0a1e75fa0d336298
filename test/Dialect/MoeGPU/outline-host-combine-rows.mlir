// combine_rows (moe-gpu-configure's combine-rows): Mixtral's combine at
// M = 4096 stores each assignment's weighted row in bf16 into an [M·k, N]
// workspace buffer, which no memset zeroes, and the combine_rows kernel sums
// each token's k rows, reading the ids to skip those out of range. GEMM1
// (no combine) keeps its configuration.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir --moe-gpu-pipeline="num-tokens=4096 combine-rows=true" | FileCheck %s --check-prefix=CONFIG
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir --moe-gpu-pipeline="num-tokens=4096 combine-rows=true" --moe-gpu-outline-host | FileCheck %s
// Off by default: the f32 sums, zeroed, and the finalize.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir --moe-gpu-pipeline="num-tokens=4096" --moe-gpu-outline-host | FileCheck %s --check-prefix=SUMS
// Qwen3's combine at M = 4096 takes combine_rows by policy; its tiles of 12
// K steps stage their bf16 pairs in shared memory, each row beside its
// assignment's row (-1 for padding), and the block stores the scheduled
// rows in 16-byte chunks.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir --moe-gpu-pipeline="num-tokens=4096" --moe-gpu-outline-host | FileCheck %s --check-prefix=STAGED
// With tall-blocks, DeepSeek-V3 at M = 4096 runs 192-row slot blocks of
// 384 threads (grid rows from the padded count over 192), 128 columns per
// block; its combine (32 K steps) stages 192 rows beside their
// destinations.
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir --moe-gpu-pipeline="num-tokens=4096 tall-blocks=true" --moe-gpu-outline-host | FileCheck %s --check-prefix=TALL

// CONFIG: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8>,
// CONFIG: moe.expert_matmul {{.*}}combine(%{{.*}}moe.gpu_finalize_kernel = @moe_kernels::@combine_rows, {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8, combine_rows = true>,

// CHECK-LABEL: func.func @moe_layer_mixtral_8x7b(
// CHECK-SAME: %[[OUT:[a-z0-9]+]]: memref<?x4096xbf16> {moe_gpu.result}, %[[M:[a-z0-9]+]]: index
// CHECK: %[[WEIGHTS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x2xf32>
// CHECK: %[[IDS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x2xi32>
// CHECK: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul blocks
// CHECK: %[[ROWS_COUNT:.+]] = arith.muli %[[M]], %c2{{.*}} : index
// CHECK-NEXT: %[[ROWS:.+]] = moe_gpu.workspace_buffer {{.*}} sizes(%[[ROWS_COUNT]]) : memref<?xi8> -> memref<?x4096xbf16>
// CHECK-NOT: moe_gpu.zero
// CHECK: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 {{.*}} %[[WEIGHTS]] : memref<?x2xf32>, %[[ROWS]] : memref<?x4096xbf16>)
// CHECK-NOT: moe_gpu.zero
// CHECK: gpu.launch_func {{.*}} @moe_kernels::@combine_rows blocks in (%[[M]], %c2{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c256{{.*}} args(%[[ROWS]] : memref<?x4096xbf16>, %[[IDS]] : memref<?x2xi32>, %[[OUT]] : memref<?x4096xbf16>)
// CHECK: names = [{{.*}}"weighted rows of the combine"]
// GEMM1's tiles take 64 K steps, past the 32 up to which the multistage
// epilogue is staged in shared memory: no table, pairs stored straight from
// the fragment.
// CHECK: gpu.func @expert_matmul({{.*}}%{{.*}}: memref<?x14336xbf16>)
// CHECK-NOT: memref<128x68xi32, #gpu.address_space<workgroup>>
// CHECK: llvm.store {{.*}} {alignment = 4 : i64} : vector<2xbf16>, !llvm.ptr<1>
// CHECK-NOT: memref<128x68xi32, #gpu.address_space<workgroup>>
// The combining GEMM (224 K steps per tile) stores bf16 pairs straight
// from its fragment and reduces nothing.
// CHECK: gpu.func @expert_matmul_0({{.*}}%{{.*}}: memref<?x2xf32>, %{{.*}}: memref<?x4096xbf16>)
// CHECK-NOT: red.global
// CHECK-NOT: memref<128x132xi32, #gpu.address_space<workgroup>>
// CHECK: llvm.store {{.*}} {alignment = 4 : i64} : vector<2xbf16>, !llvm.ptr<1>
// CHECK-NOT: red.global
// CHECK: gpu.func @combine_rows(%{{.*}}: memref<?x4096xbf16>, %{{.*}}: memref<?x2xi32>, %{{.*}}: memref<?x4096xbf16>)
// Two ids per token, each compared unsigned with the 8 experts, each
// selecting whether its row's eight columns are added in f32.
// CHECK-COUNT-2: arith.cmpi ult, %{{.*}}, %c8_i32
// CHECK: arith.truncf %{{.*}} : vector<8xf32> to vector<8xbf16>

// SUMS: %[[SUMS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x4096xf32>
// SUMS: moe_gpu.zero %[[SUMS]]
// SUMS: @moe_kernels::@combine_finalize {{.*}} args(%[[SUMS]] : memref<?x4096xf32>
// SUMS-NOT: @combine_rows

// STAGED: gpu.func @expert_matmul_0({{.*}}%{{.*}}: memref<?x8xf32>, %{{.*}}: memref<?x2048xbf16>)
// STAGED-NOT: red.global
// STAGED: %[[NONE:.*]] = arith.select %{{.*}}, %{{.*}}, %c-1_i32 : i32
// STAGED-NEXT: memref.store %[[NONE]], %{{.*}}[%{{.*}}] : memref<128xi32, #gpu.address_space<workgroup>>
// STAGED: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<128x132xi32, #gpu.address_space<workgroup>>
// STAGED: gpu.barrier
// STAGED: %[[DESTINATION:.*]] = memref.load %{{.*}}[%{{.*}}] : memref<128xi32, #gpu.address_space<workgroup>>
// STAGED: %[[SCHEDULED:.*]] = arith.cmpi sge, %[[DESTINATION]], %c0_i32
// STAGED: scf.if %[[SCHEDULED]]
// STAGED: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<3> -> vector<4xi32>
// STAGED: llvm.store {{.*}} {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<1>
// STAGED-NOT: red.global
// STAGED: gpu.func @combine_rows(

// TALL-LABEL: func.func @moe_layer_deepseek_v3(
// TALL: arith.divsi %{{.*}}, %c192{{.*}} : index
// TALL: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul blocks in (%{{.*}}, %c32{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c384
// TALL: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 blocks in (%{{.*}}, %c56{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c384
// TALL: gpu.func @expert_matmul_0(
// TALL: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<192xi32, #gpu.address_space<workgroup>>
// TALL: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<192x68xi32, #gpu.address_space<workgroup>>
// TALL: gpu.barrier
// TALL: memref.load %{{.*}}[%{{.*}}] : memref<192xi32, #gpu.address_space<workgroup>>

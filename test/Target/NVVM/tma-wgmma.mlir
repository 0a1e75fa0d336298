// The TMA + wgmma test tiles of the runtime (run on a GPU by
// scripts/device-runtime-test.sh) lower to the intended PTX, and ptxas
// assembles it for sm_90a.
// RUN: moe-opt %moe_src_root/runtime/test/tma_wgmma.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | FileCheck %s --check-prefix=MN
// RUN: %python %moe_src_root/runtime/test/gen_wgmma_kmajor.py > %t.mlir
// RUN: moe-opt %t.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | FileCheck %s --check-prefix=K
// RUN: %python %moe_src_root/runtime/test/gen_wgmma_kmajor.py --gather > %t.gather.mlir
// RUN: moe-opt %t.gather.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | FileCheck %s --check-prefix=GATHER
// RUN: %if ptxas %{ moe-opt %t.gather.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=bin" | FileCheck %s --check-prefix=BIN %}
// RUN: %if ptxas %{ moe-opt %t.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=bin" | FileCheck %s --check-prefix=BIN %}

// MN: .target sm_90a
// MN-SAME: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// MN-SAME: mbarrier.try_wait.parity
// B stored MN-major needs imm-trans-b = 1.
// MN-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1,  1, 0,  1;

// K: .target sm_90a
// K-SAME: cp.async.bulk.tensor.2d
// Both operands K-major: no transposes.
// K-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1,  1, 0,  0;
// K-SAME: wgmma.commit_group.sync.aligned

// BIN: gpu.binary @kernels {{.*}}"\7FELF

// GEMM1's A path: gathered rows by cp.async (zero-fill size operand), the
// proxy fence, B by TMA, wgmma without transposes.
// GATHER: .target sm_90a
// GATHER-SAME: cp.async.bulk.tensor.2d
// GATHER-SAME: cp.async.ca.shared.global [{{[^]]*}}], [{{[^]]*}}], 16, {{[^;]*}};
// GATHER-SAME: cp.async.commit_group
// GATHER-SAME: cp.async.wait_group{{[^;]*}}0;
// GATHER-SAME: fence.proxy.async.shared::cta
// GATHER-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1,  1, 0,  0;

// The prototype grouped GEMM (gen_grouped_gemm.py): a K loop of TMA weight
// tiles, gathered rows and four wgmma per step, and ptxas takes it.
// RUN: %python %moe_src_root/runtime/test/gen_grouped_gemm.py 512 256 2 > %t.gemm.mlir
// RUN: moe-opt %t.gemm.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=GEMM
// RUN: %if ptxas %{ moe-opt %t.gemm.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=bin" | FileCheck %s --check-prefix=BIN %}
// (The PTX is split into lines first: the order of blocks is the backend's.)
// GEMM: .entry grouped_gemm
// GEMM-DAG: cp.async.bulk.tensor.2d
// GEMM-DAG: cp.async.ca.shared.global
// GEMM-DAG: mbarrier.try_wait.parity
// GEMM-DAG: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16

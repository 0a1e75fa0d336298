// fp8 partial sums are promoted into f32 every stage of 128 of K. The
// multistage loop promotes each partial while the next step's wgmmas run, and
// waits for the second of each pair of steps before the back edge: ptxas 13
// serialized every wgmma of these kernels (notice C7514) while a partial stayed
// in flight across it, or while the 128-row blocks' skip of padding halves
// merged zeros with one. ptxas assembles Qwen3's per-channel layer with
// --fp8-fast-accumulation=false at decode (64-row blocks) and prefill (128-row
// blocks, two consumer warpgroups) and DeepSeek's block-scaled layer at prefill
// without the notice and without spills; also the latter warp-specialized
// (--warp-specialize), whose consumers wait for each stage's wgmmas, release
// the stage, then promote (the other consumer warpgroup's wgmmas run
// meanwhile).
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name decode --num-tokens 16 --fp8-fast-accumulation=false --ptx %t/decode.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name prefill --num-tokens 4096 --fp8-fast-accumulation=false --ptx %t/prefill.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -o %t --name blocks --num-tokens 4096 --ptx %t/blocks.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -o %t --name specialized --num-tokens 4096 --warp-specialize --ptx %t/specialized.ptx
// RUN: FileCheck %s --check-prefix=WS < %t/specialized.ptx
// RUN: FileCheck %s --check-prefix=WS-MMA < %t/specialized.ptx
// RUN: FileCheck %s < %t/decode.ptx
// RUN: FileCheck %s < %t/prefill.ptx
// RUN: FileCheck %s < %t/blocks.ptx
// RUN: ptxas -arch=sm_90a -v %t/decode.ptx -o /dev/null > %t/decode.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/prefill.ptx -o /dev/null > %t/prefill.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/blocks.ptx -o /dev/null > %t/blocks.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/specialized.ptx -o /dev/null > %t/specialized.log 2>&1
// RUN: not grep -q serialized %t/decode.log %t/prefill.log %t/blocks.log %t/specialized.log
// RUN: not grep -q "[1-9][0-9]* bytes spill" %t/decode.log %t/prefill.log %t/blocks.log %t/specialized.log

// The K loop of a GEMM: each step's wgmmas stay in flight while the
// partial before them is added; the second step then drains its own before
// the back edge.
// CHECK: .entry expert_matmul
// CHECK: wgmma.mma_async.sync.aligned.m64n{{[0-9]+}}k32.f32.e4m3.e4m3
// CHECK: wgmma.commit_group.sync.aligned;
// CHECK-NEXT: wgmma.wait_group.sync.aligned {{[[:space:]]*}}1;
// CHECK: {{add|fma}}.rn.f32
// CHECK: wgmma.mma_async.sync.aligned.m64n{{[0-9]+}}k32.f32.e4m3.e4m3
// CHECK: wgmma.commit_group.sync.aligned;
// CHECK-NEXT: wgmma.wait_group.sync.aligned {{[[:space:]]*}}1;
// CHECK: {{add|fma}}.rn.f32
// CHECK: wgmma.wait_group.sync.aligned {{[[:space:]]*}}0;
// CHECK-NOT: wgmma.mma_async
// CHECK: bra {{.*}}$L__BB

// WS: .entry expert_matmul
// WS: setmaxnreg.dec.sync.aligned.u32 {{[[:space:]]*}}88;
// WS: cp.async.bulk.tensor.2d
// WS: setmaxnreg.inc.sync.aligned.u32 {{[[:space:]]*}}208;
// WS: mbarrier.arrive.shared.b64
// WS-NEXT: fma.rn.f32
// WS-MMA: setmaxnreg.inc.sync.aligned.u32 {{[[:space:]]*}}208;
// WS-MMA: mbarrier.try_wait.parity
// WS-MMA: wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3
// WS-MMA: wgmma.commit_group.sync.aligned;
// WS-MMA-NEXT: wgmma.wait_group.sync.aligned {{[[:space:]]*}}0;

// With --fp8-fast-accumulation (the default), per-channel fp8 keeps its sums in
// the wgmma's accumulator over all of K: one m64n256 accumulator per consumer
// warpgroup, as int8 has, and no f32 promotion between the K loop's wgmmas.
// ptxas assembles the layer at decode (64-row blocks, with
// --w8a8-swap-ab=false; the swapped form is w8a8-swapped-ptxas.mlir) and
// prefill (128-row blocks, two consumer warpgroups) without serializing a wgmma
// and without spills; also the warp-specialized form, whose consumers run the
// bf16 loop.
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name decode --num-tokens 16 --w8a8-swap-ab=false --ptx %t/decode.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name prefill --num-tokens 4096 --ptx %t/prefill.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name specialized --num-tokens 4096 --warp-specialize --ptx %t/specialized.ptx
// RUN: FileCheck %s < %t/decode.ptx
// RUN: FileCheck %s < %t/prefill.ptx
// RUN: FileCheck %s --check-prefix=WS < %t/specialized.ptx
// RUN: ptxas -arch=sm_90a -v %t/decode.ptx -o /dev/null > %t/decode.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/prefill.ptx -o /dev/null > %t/prefill.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/specialized.ptx -o /dev/null > %t/specialized.log 2>&1
// RUN: not grep -q C75 %t/decode.log %t/prefill.log %t/specialized.log
// RUN: not grep -q "[1-9][0-9]* bytes spill" %t/decode.log %t/prefill.log %t/specialized.log

// GEMM1's K loop: 256-wide e4m3 wgmmas, and nothing added in f32 before
// the drain that ends the loop.
// CHECK: .entry expert_matmul(
// CHECK: wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3
// CHECK-NOT: {{add|fma}}.rn.f32
// CHECK: wgmma.wait_group.sync.aligned {{[[:space:]]*}}0;

// A warp-specialized consumer keeps one group in flight and releases the
// stage before it, with nothing to promote (a promoting one waits for its
// own wgmmas, then adds).
// WS: .entry expert_matmul(
// WS: setmaxnreg.inc.sync.aligned.u32 {{[[:space:]]*}}208;
// WS: wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3
// WS: wgmma.commit_group.sync.aligned;
// WS-NEXT: wgmma.wait_group.sync.aligned {{[[:space:]]*}}1;
// WS-NOT: {{add|fma}}.rn.f32
// WS: mbarrier.arrive.shared.b64
// WS-NOT: {{add|fma}}.rn.f32
// WS: wgmma.wait_group.sync.aligned {{[[:space:]]*}}0;

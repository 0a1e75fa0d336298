//===- MoeGpuKernels.h - builders of the Hopper kernels ---------*- C++ -*-===//
//
// One builder per kernel family. Each adds a `gpu.func` to `module` and
// records on it a `moe.launch` dictionary saying how the host launches it;
// an op the family does not cover gets a remark and the builder fails.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_MOEGPUKERNELS_H
#define MOE_LIB_CONVERSION_MOETOGPU_MOEGPUKERNELS_H

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::moe {

/// A kernel `name` taking `arguments`, created at `b`'s insertion point:
/// a `gpu.func` marked as a kernel, with the launch facts the host reads
/// (`moe.launch`, at least `threads`).
inline gpu::GPUFuncOp createKernelFunc(OpBuilder &b, Location loc,
                                       StringRef name,
                                       ArrayRef<Type> arguments,
                                       ArrayRef<NamedAttribute> launchFacts) {
  auto func =
      gpu::GPUFuncOp::create(b, loc, name, b.getFunctionType(arguments, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  func->setAttr("moe.launch", b.getDictionaryAttr(launchFacts));
  return func;
}

/// Alignment of the kernels' static shared arrays: LLVM vectorizes their
/// accesses (a scan's stores as st.shared.v4) on the alignment it infers for
/// them, so they must have it in PTX too (an [E] i32 array after another of
/// odd E was 4-byte aligned, and its v2 stores faulted).
constexpr int64_t kSharedArrayAlignment = 16;

/// The sm_90a grouped GEMM of an aligned `op` (block_m 64 or 128, with
/// swapped operands 16 or 32, on the weight-only register operand also 64,
/// 128 or 256; bf16, weight-only codes, or w8a8 fp8/int8 codes with their
/// scales; K a multiple of 128 bytes;
/// output width W % 8 == 0, or W % 64 == 0 with a gated activation) that
/// writes rows in slot order or combines into tokens.
///
/// Kernel arguments: input memref<?xKxbf16> (token rows with `gather`, slot
/// rows otherwise), sorted slots memref<?xi32>, block experts memref<?xi32>,
/// padded count memref<1xi32>, a pointer to the TMA descriptor of the
/// weights viewed as [E·N, K] (box `box_rows` x `box_cols` of
/// `element_bytes`, 128B swizzle); w8a8: input codes as i8, then the input
/// and weight scales (f32, the op's shapes); then either out memref<?xWxbf16>
/// (rows), or routing weights memref<?xkxf32> and an f32 sum buffer
/// memref<?xNxf32> that must start zeroed (combine). Launch: grid (ceil(S /
/// 64), ceil(W / tile_n), split_k), 128 threads, `shared_bytes` of dynamic
/// shared memory. The block shape, ring depth and K split are those of the op's
/// `moe_gpu.config` (moe-gpu-configure); an op without one, or with one this
/// emitter does not build, gets a remark.
FailureOr<gpu::GPUFuncOp> buildExpertMatmulKernel(OpBuilder &b,
                                                  gpu::GPUModuleOp module,
                                                  ExpertMatmulOp op,
                                                  StringRef name);

/// The selection kernel of moe.route `op`, on the logits of its router
/// (buildGateLogitsKernel, gate bias added): one block per token.
/// Arguments: logits memref<?xExf32>, the optional score bias
/// memref<Exf32>, then weights memref<?xkxf32> and ids memref<?xkxi32> out.
/// Launch: grid (M), `threads`.
FailureOr<gpu::GPUFuncOp> buildRouteKernel(OpBuilder &b,
                                           gpu::GPUModuleOp module, RouteOp op,
                                           StringRef name);

/// The router logits x · W_gateᵀ (+ bias) in f32, of moe.router or of
/// moe.route (`op`, for its remarks), tiled for decode (a warp per expert)
/// or, with `manyTokens`, for many tokens (4 experts per warp). Arguments:
/// input memref<?xHxT>, gate weights memref<ExHxT'>, the bias
/// memref<Exf32> when `bias`, then logits memref<?xExf32> out. Launch: grid
/// (ceil(E / `experts_per_block`), ceil(M / `tokens_per_block`)),
/// `threads`; M ≤ 65535 · `tokens_per_block`.
FailureOr<gpu::GPUFuncOp>
buildGateLogitsKernel(OpBuilder &b, gpu::GPUModuleOp module, Operation *op,
                      Value input, Value gateWeight, bool bias,
                      bool manyTokens, StringRef name);

/// The selection kernel of `op` on given logits, as for moe.route.
/// Arguments: logits memref<?xExf32>, the optional
/// score bias memref<Exf32>, then weights and ids out as for moe.route.
/// Launch: grid (M), `threads`.
FailureOr<gpu::GPUFuncOp> buildTopkKernel(OpBuilder &b,
                                          gpu::GPUModuleOp module, TopkOp op,
                                          StringRef name);

/// The kernel of moe.add_shared_experts: one block per token, a thread per
/// output column. Arguments: routed weights memref<?xkxf32> and ids
/// memref<?xkxi32>, the optional gate logits memref<?x1xf32>, then weights
/// memref<?x(k+S)xf32> and ids memref<?x(k+S)xi32> out. Launch: grid (M),
/// `threads`.
FailureOr<gpu::GPUFuncOp> buildSharedExpertsKernel(OpBuilder &b,
                                                   gpu::GPUModuleOp module,
                                                   AddSharedExpertsOp op,
                                                   StringRef name);

/// The kernel of moe.shared_expert_routing, in the form of
/// moe.add_shared_experts' without routed columns. Arguments: the optional
/// gate logits memref<?x1xf32>, then weights memref<?xSxf32> and ids
/// memref<?xSxi32> out. Launch: grid (M), `threads`.
FailureOr<gpu::GPUFuncOp>
buildSharedExpertRoutingKernel(OpBuilder &b, gpu::GPUModuleOp module,
                               SharedExpertRoutingOp op, StringRef name);

/// The single-block kernel of `op`. Arguments: ids memref<?xkxi32>, the
/// three results as memrefs (sorted ids, block experts, padded count), and
/// an error word memref<1xi32> that receives the number of ids outside
/// [-1, E) (skipped). Launch: one block of `threads`.
FailureOr<gpu::GPUFuncOp> buildAlignKernel(OpBuilder &b,
                                           gpu::GPUModuleOp module, AlignOp op,
                                           StringRef name);

/// moe.align over many blocks: threads per block, and assignments per block.
constexpr int64_t kAlignManyBlocksThreads = 256;
constexpr int64_t kAlignManyBlocksChunk = 1024;

/// The first kernel of `op` over many blocks (E <= kMaxAlignManyBlocksExperts):
/// per-expert counts of each chunk of kAlignManyBlocksChunk assignments
/// added into the counts, invalid ids counted, every slot set to the
/// sentinel. Arguments: ids memref<?xkxi32>, sorted ids memref<?xi32>, the
/// state memref<2Exi32> (counts, then cursors) and the error word
/// memref<1xi32>, both zero before. Launch: grid ceil(M·k / chunk) of
/// `threads`.
FailureOr<gpu::GPUFuncOp> buildAlignCountKernel(OpBuilder &b,
                                                gpu::GPUModuleOp module,
                                                AlignOp op, StringRef name);

/// The second kernel over many blocks: the padded starts, count and block
/// experts from the counts, and each chunk's assignments placed in its
/// reserved range of its experts' slots. Arguments: ids, sorted ids, block
/// experts memref<?xi32>, padded count memref<1xi32>, the state. Launch:
/// the count kernel's grid.
FailureOr<gpu::GPUFuncOp> buildAlignScatterKernel(OpBuilder &b,
                                                  gpu::GPUModuleOp module,
                                                  AlignOp op, StringRef name);

/// The most experts the many-block kernels take (three shared arrays of E
/// i32 per block).
constexpr int64_t kMaxAlignManyBlocksExperts = 1024;

/// The dynamic quantization `op` (fp8 or int8; per tensor, per token or
/// 1x128 blocks; bf16 or f32 rows, K % 128 == 0). Arguments: input
/// memref<?xKxT>, codes memref<?xKxi8> and scales memref (the op's shape)
/// out, for per-tensor the amax word memref<1xi32> that
/// buildQuantizeAmaxKernel's kernel filled, and, when `bounded` in
/// `moe.launch` (the input is an aligned matmul's rows), the padded count
/// memref<1xi32>. Launch: grid ceil(rows / rows_per_block) of `threads`.
/// 16-byte loads of 8 columns per lane, up to 2048 columns of a row in
/// flight, 8-byte code stores (rows 16-byte aligned).
FailureOr<gpu::GPUFuncOp> buildQuantizeKernel(OpBuilder &b,
                                              gpu::GPUModuleOp module,
                                              QuantizeOp op, StringRef name);

/// The amax pass of a per-tensor `op`: the f32 bits of max |input| by an
/// atomic max into a word that must be zero before. Arguments: input
/// memref<?xKxT>, the word memref<1xi32>, and, when `bounded`, the padded
/// count memref<1xi32> and the producer's slots memref<?xi32> (slots past
/// the padded count or holding the sentinel M·k are skipped). Launch: grid
/// min(ceil(rows / rows_per_block), max_blocks) of `threads`; loads as
/// buildQuantizeKernel's.
FailureOr<gpu::GPUFuncOp> buildQuantizeAmaxKernel(OpBuilder &b,
                                                  gpu::GPUModuleOp module,
                                                  QuantizeOp op,
                                                  StringRef name);

/// `scale` times f32 sums [M, width], converted to `elementType`, eight
/// columns per thread where width % 8 == 0 (both buffers 16-byte aligned).
/// Arguments: sums memref<?xwidthxf32>, out memref<?xwidthxelementType>.
/// Launch: grid (M, ceil(width / columns_per_block)), `threads`.
FailureOr<gpu::GPUFuncOp> buildFinalizeKernel(OpBuilder &b,
                                              gpu::GPUModuleOp module,
                                              Location loc, int64_t width,
                                              Type elementType, double scale,
                                              StringRef name);

/// Converts the f32 sums of combining `op` to its result type. Arguments:
/// sums memref<?xNxf32>, out memref<?xN x result type>. Launch: as
/// buildFinalizeKernel's.
FailureOr<gpu::GPUFuncOp> buildCombineFinalizeKernel(OpBuilder &b,
                                                     gpu::GPUModuleOp module,
                                                     ExpertMatmulOp op,
                                                     StringRef name);

/// Sums the k weighted rows of each token of combining `op` with
/// `combine_rows` in f32 and stores them in its result type, eight columns
/// per thread where N % 8 == 0; an assignment whose expert id is out of
/// [0, E) adds nothing (the align kernel left its row unwritten).
/// Arguments: rows memref<?xN x result type> ([M·k, N]), ids
/// memref<?xkxi32>, out memref<?xN x result type>. Launch: grid (M,
/// ceil(N / columns_per_block)), `threads`.
FailureOr<gpu::GPUFuncOp> buildCombineRowsKernel(OpBuilder &b,
                                                 gpu::GPUModuleOp module,
                                                 ExpertMatmulOp op,
                                                 StringRef name);

/// The allgather realization of moe.ep_dispatch, first kernel: one block
/// packs the assignments this rank serves from the gathered ids of every
/// rank. Arguments: gathered ids memref<?xkxi32> ([R·M, k]), this rank
/// memref<1xi32>, then local ids memref<?x1xi32> and origins memref<?xi32>
/// ([R·M·k]), the received count memref<1xi32> and an error word
/// memref<1xi32> that receives the number of this rank's own ids outside
/// [-1, E). Launch: one block of `threads`. Other realizations get a
/// remark.
FailureOr<gpu::GPUFuncOp> buildEpDispatchIdsKernel(OpBuilder &b,
                                                   gpu::GPUModuleOp module,
                                                   EpDispatchOp op,
                                                   StringRef name);

/// The second dispatch kernel: received position q gets the token row of
/// its origin from the gathered rows (zeros past the received count).
/// Arguments: gathered rows memref<?xHxT> ([R·M, H]), origins, the received
/// count, rows memref<?xHxT> ([R·M·k, H]) out. Launch: grid (R·M·k),
/// `threads`.
FailureOr<gpu::GPUFuncOp> buildEpDispatchRowsKernel(OpBuilder &b,
                                                    gpu::GPUModuleOp module,
                                                    EpDispatchOp op,
                                                    StringRef name);

/// The allgather realization of moe.ep_combine, before the reduce-scatter:
/// each received row's result, times its origin's routing weight, added
/// into the f32 partial sums of its origin's token. Arguments: results
/// memref<?xHxT> ([R·M·k, H]), origins memref<?xi32>, the gathered routing
/// weights memref<?xkxf32> ([R·M, k]), partial sums memref<?xHxf32>
/// ([R·M, H], zeroed), an error word memref<1xi32> (zeroed) that receives
/// the number of origins outside [-1, R·M·k). Launch: grid (R·M·k),
/// `threads`. Other realizations get a remark.
FailureOr<gpu::GPUFuncOp> buildEpReturnKernel(OpBuilder &b,
                                              gpu::GPUModuleOp module,
                                              EpCombineOp op, StringRef name);

/// The combine's last kernel: the reduce-scattered sums of this rank's
/// tokens times the routed scaling factor, in the result type (see
/// buildFinalizeKernel).
FailureOr<gpu::GPUFuncOp> buildEpFinalizeKernel(OpBuilder &b,
                                                gpu::GPUModuleOp module,
                                                EpCombineOp op,
                                                StringRef name);

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_MOEGPUKERNELS_H

// GEMM1 with its silu_and_mul epilogue (N = 2I = 256, K = 512, k = 2), for
// moe-grouped-gemm-test's silu mode.
func.func @gemm1(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

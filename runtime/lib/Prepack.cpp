//===- Prepack.cpp - weight-only codes in an MMA fragment order -----------===//
//
// The host form of moe.prepack (see Runtime.h): the same byte permutation as
// its CPU lowering, for a program that loads its weights without MLIR.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Runtime.h"

#include <string>

namespace {
/// wgmma_a_4bit: tiles of 64 weight rows by 32 code pairs (64 of K), 16
/// bytes for each of a warpgroup's 128 threads.
constexpr int64_t kTileRows = 64, kTilePairs = 32, kThreadBytes = 16,
                  kTileBytes = 2048;

/// Copies one tile: thread t = 32w + 4r + q holds, per k16 step s, the
/// wgmma A registers a0..a3 (h = 1: row + 8; g = 1: column + 8) of rows
/// 16w + 8h + r and code pair 8s + 4g + q.
void packTile(const uint8_t *tileCodes, int64_t pairs, uint8_t *tile) {
  for (int64_t thread = 0; thread < kTileBytes / kThreadBytes; ++thread) {
    int64_t warp = thread / 32, lane = thread % 32;
    for (int64_t byte = 0; byte < kThreadBytes; ++byte) {
      int64_t step = byte / 4, registerIndex = byte % 4;
      int64_t row = 16 * warp + lane / 4 + 8 * (registerIndex % 2);
      int64_t pair = 8 * step + 4 * (registerIndex / 2) + lane % 4;
      tile[thread * kThreadBytes + byte] = tileCodes[row * pairs + pair];
    }
  }
}
} // namespace

extern "C" moe_rt_status
moe_rt_prepack_wgmma_a_4bit(const uint8_t *codes, uint8_t *packed,
                            int64_t experts, int64_t rows, int64_t pairs) {
  if (!codes || !packed || experts <= 0 || rows <= 0 || pairs <= 0 ||
      rows % kTileRows != 0 || pairs % kTilePairs != 0) {
    std::string message =
        "moe_rt_prepack_wgmma_a_4bit: expects non-null buffers and codes "
        "[experts, rows, pairs] with rows a positive multiple of 64 and pairs "
        "of 32, got [" +
        std::to_string(experts) + ", " + std::to_string(rows) + ", " +
        std::to_string(pairs) + "]";
    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT, message.c_str());
  }
  int64_t expertBytes, totalBytes;
  if (__builtin_mul_overflow(rows, pairs, &expertBytes) ||
      __builtin_mul_overflow(experts, expertBytes, &totalBytes))
    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                       "moe_rt_prepack_wgmma_a_4bit: experts x rows x pairs "
                       "overflows a 64-bit size");
  auto codesBegin = reinterpret_cast<uintptr_t>(codes);
  auto packedBegin = reinterpret_cast<uintptr_t>(packed);
  auto size = static_cast<uintptr_t>(totalBytes);
  if (codesBegin < packedBegin + size && packedBegin < codesBegin + size)
    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                       "moe_rt_prepack_wgmma_a_4bit: codes and packed "
                       "overlap");
  for (int64_t expert = 0; expert < experts; ++expert) {
    const uint8_t *expertCodes = codes + expert * expertBytes;
    uint8_t *out = packed + expert * expertBytes;
    for (int64_t rowTile = 0; rowTile < rows / kTileRows; ++rowTile)
      for (int64_t pairTile = 0; pairTile < pairs / kTilePairs; ++pairTile) {
        packTile(expertCodes + rowTile * kTileRows * pairs +
                     pairTile * kTilePairs,
                 pairs, out);
        out += kTileBytes;
      }
  }
  return MOE_RT_SUCCESS;
}

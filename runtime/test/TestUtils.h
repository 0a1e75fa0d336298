//===- TestUtils.h - helpers shared by the GPU runtime tests ----*- C++ -*-===//

#ifndef MOE_RUNTIME_TEST_TESTUTILS_H
#define MOE_RUNTIME_TEST_TESTUTILS_H

#include "moe/Runtime/Runtime.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace moe_test {

/// float -> bf16 bits, rounding to nearest even.
inline uint16_t toBF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

inline float fromBF16(uint16_t value) {
  uint32_t bits = uint32_t(value) << 16;
  float result;
  std::memcpy(&result, &bits, 4);
  return result;
}

/// Prints the runtime's error for a failed `what`.
inline bool ok(moe_rt_status status, const char *what) {
  if (status == MOE_RT_SUCCESS)
    return true;
  std::printf("FAIL: %s: %s\n", what, moe_rt_last_error());
  return false;
}

/// Reads a PTX (or cubin) file, NUL-terminated for the driver's PTX JIT.
inline std::vector<char> readImage(const char *path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  bytes.push_back('\0');
  return bytes;
}

} // namespace moe_test

#endif // MOE_RUNTIME_TEST_TESTUTILS_H

//===- Npy.h - .npy array files ---------------------------------*- C++ -*-===//
//
// Reads and writes NumPy's .npy format (version 1.0/2.0, C order, little
// endian) for the element types moe programs exchange.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_MOE_RUN_NPY_H
#define MOE_TOOLS_MOE_RUN_NPY_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlir::moe {

/// Element types of .npy arrays that moe-run understands.
enum class NpyDType { F32, F64, BF16, F16, I32, I64, F8E4M3FN, I8, U8 };

/// Returns a short name ("f32", "bf16", ...).
llvm::StringRef dtypeName(NpyDType dtype);

/// Returns the size in bytes of one element.
size_t dtypeSize(NpyDType dtype);

/// A dense, C-ordered array held in memory.
struct NpyArray {
  NpyDType dtype = NpyDType::F32;
  llvm::SmallVector<int64_t> shape;
  std::vector<uint8_t> data;

  int64_t numElements() const;
  /// Shape as "4x2048xbf16".
  std::string describe() const;
};

/// Reads `path`. bf16 arrays, which ml_dtypes writes with the opaque descr
/// '|V2', are read as bf16.
llvm::Expected<NpyArray> readNpy(llvm::StringRef path);

/// Writes `array` to `path`; bf16 is written as '|V2', as ml_dtypes does.
llvm::Error writeNpy(llvm::StringRef path, const NpyArray &array);

} // namespace mlir::moe

#endif // MOE_TOOLS_MOE_RUN_NPY_H

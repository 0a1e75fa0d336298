//===- Npy.cpp - .npy array files -----------------------------------------===//

#include "Npy.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir::moe;
using llvm::createStringError;
using llvm::StringRef;

StringRef mlir::moe::dtypeName(NpyDType dtype) {
  switch (dtype) {
  case NpyDType::F32:
    return "f32";
  case NpyDType::F64:
    return "f64";
  case NpyDType::BF16:
    return "bf16";
  case NpyDType::F16:
    return "f16";
  case NpyDType::I32:
    return "i32";
  case NpyDType::I64:
    return "i64";
  case NpyDType::F8E4M3FN:
    return "f8E4M3FN";
  case NpyDType::I8:
    return "i8";
  case NpyDType::U8:
    return "ui8";
  }
  llvm_unreachable("unknown dtype");
}

size_t mlir::moe::dtypeSize(NpyDType dtype) {
  switch (dtype) {
  case NpyDType::F8E4M3FN:
  case NpyDType::I8:
  case NpyDType::U8:
    return 1;
  case NpyDType::BF16:
  case NpyDType::F16:
    return 2;
  case NpyDType::F32:
  case NpyDType::I32:
    return 4;
  case NpyDType::F64:
  case NpyDType::I64:
    return 8;
  }
  llvm_unreachable("unknown dtype");
}

int64_t NpyArray::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

std::string NpyArray::describe() const {
  std::string text;
  for (int64_t dim : shape)
    text += std::to_string(dim) + "x";
  return text + dtypeName(dtype).str();
}

static std::optional<NpyDType> parseDescr(StringRef descr) {
  if (descr == "<f4")
    return NpyDType::F32;
  if (descr == "<f8")
    return NpyDType::F64;
  if (descr == "<f2")
    return NpyDType::F16;
  if (descr == "|V2" || descr == "<V2" || descr == "bfloat16")
    return NpyDType::BF16;
  // ml_dtypes' float8_e4m3fn: a 1-byte void descr, like bf16's 2-byte one.
  if (descr == "|V1" || descr == "<V1" || descr == "float8_e4m3fn")
    return NpyDType::F8E4M3FN;
  if (descr == "|i1")
    return NpyDType::I8;
  if (descr == "|u1")
    return NpyDType::U8;
  if (descr == "<i4")
    return NpyDType::I32;
  if (descr == "<i8")
    return NpyDType::I64;
  return std::nullopt;
}

static StringRef descrOf(NpyDType dtype) {
  switch (dtype) {
  case NpyDType::F32:
    return "<f4";
  case NpyDType::F64:
    return "<f8";
  case NpyDType::F16:
    return "<f2";
  case NpyDType::BF16:
    return "|V2";
  case NpyDType::I32:
    return "<i4";
  case NpyDType::I64:
    return "<i8";
  case NpyDType::F8E4M3FN:
    return "|V1";
  case NpyDType::I8:
    return "|i1";
  case NpyDType::U8:
    return "|u1";
  }
  llvm_unreachable("unknown dtype");
}

/// Returns the text of the value of `key` in the header dictionary.
static std::optional<StringRef> headerValue(StringRef header, StringRef key) {
  std::string quoted = "'" + key.str() + "':";
  size_t pos = header.find(quoted);
  if (pos == StringRef::npos)
    return std::nullopt;
  return header.drop_front(pos + quoted.size()).ltrim();
}

llvm::Expected<NpyArray> mlir::moe::readNpy(StringRef path) {
  auto bufferOrError =
      llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                  /*RequiresNullTerminator=*/false);
  if (!bufferOrError)
    return createStringError(bufferOrError.getError(), "cannot read '%s': %s",
                             path.str().c_str(),
                             bufferOrError.getError().message().c_str());
  StringRef contents = (*bufferOrError)->getBuffer();
  auto malformed = [&](const llvm::Twine &why) {
    return createStringError(std::errc::invalid_argument,
                             "'%s' is not a valid .npy file: %s",
                             path.str().c_str(), why.str().c_str());
  };
  if (contents.size() < 10 || !contents.starts_with("\x93NUMPY"))
    return malformed("missing the \\x93NUMPY magic");
  uint8_t major = contents[6];
  size_t headerLength, headerStart;
  if (major == 1) {
    headerLength = uint8_t(contents[8]) | (uint8_t(contents[9]) << 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (contents.size() < 12)
      return malformed("truncated header");
    headerLength = 0;
    for (int i = 0; i < 4; ++i)
      headerLength |= size_t(uint8_t(contents[8 + i])) << (8 * i);
    headerStart = 12;
  } else {
    return malformed("unsupported format version " + llvm::Twine(major));
  }
  if (contents.size() < headerStart + headerLength)
    return malformed("truncated header");
  StringRef header = contents.substr(headerStart, headerLength);

  NpyArray array;
  std::optional<StringRef> descrText = headerValue(header, "descr");
  std::optional<StringRef> fortranText = headerValue(header, "fortran_order");
  std::optional<StringRef> shapeText = headerValue(header, "shape");
  if (!descrText || !fortranText || !shapeText)
    return malformed("header lacks descr, fortran_order or shape");
  StringRef descr = descrText->drop_front().split('\'').first;
  std::optional<NpyDType> dtype = parseDescr(descr);
  if (!dtype)
    return createStringError(std::errc::invalid_argument,
                             "'%s' has unsupported dtype '%s' (expected f32, "
                             "f64, f16, bf16, f8E4M3FN, i8, ui8, i32 or i64, little endian)",
                             path.str().c_str(), descr.str().c_str());
  array.dtype = *dtype;
  if (fortranText->starts_with("True"))
    return malformed("Fortran-ordered arrays are not supported");
  StringRef dims = shapeText->drop_front().split(')').first;
  llvm::SmallVector<StringRef> parts;
  dims.split(parts, ',', /*MaxSplit=*/-1, /*KeepEmpty=*/false);
  for (StringRef part : parts) {
    part = part.trim();
    if (part.empty())
      continue;
    int64_t dim;
    if (part.getAsInteger(10, dim) || dim < 0)
      return malformed("bad shape entry '" + part + "'");
    array.shape.push_back(dim);
  }
  // The byte count by checked multiplication: a declared shape such as
  // (2^55 + 5, 256) must not wrap around to a size the file happens to have.
  int64_t expectedBytes = dtypeSize(array.dtype);
  for (int64_t dim : array.shape)
    if (llvm::MulOverflow(expectedBytes, dim, expectedBytes))
      return malformed("shape " + array.describe() +
                       " holds 2^63 bytes or more");
  StringRef payload = contents.drop_front(headerStart + headerLength);
  if (payload.size() != static_cast<uint64_t>(expectedBytes))
    return malformed("expected " + llvm::Twine(expectedBytes) +
                     " data bytes for shape " + array.describe() + ", found " +
                     llvm::Twine(payload.size()));
  array.data.assign(payload.begin(), payload.end());
  return array;
}

llvm::Error mlir::moe::writeNpy(StringRef path, const NpyArray &array) {
  // The shape as a Python tuple: (), (n,) or (a, b, ...).
  std::string shape = "(";
  for (auto [index, dim] : llvm::enumerate(array.shape))
    shape += (index ? ", " : "") + std::to_string(dim);
  if (array.shape.size() == 1)
    shape += ",";
  shape += ")";
  std::string header = "{'descr': '" + descrOf(array.dtype).str() +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts at a multiple of 64 bytes; end with '\n'.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';

  std::error_code error;
  llvm::raw_fd_ostream out(path, error, llvm::sys::fs::OF_None);
  if (error)
    return createStringError(error, "cannot write '%s': %s", path.str().c_str(),
                             error.message().c_str());
  out << "\x93NUMPY" << char(1) << char(0) << char(header.size() & 0xff)
      << char((header.size() >> 8) & 0xff) << header;
  out.write(reinterpret_cast<const char *>(array.data.data()),
            array.data.size());
  out.close();
  if (out.has_error()) {
    std::error_code writeError = out.error();
    // A stream destroyed with an unhandled error aborts the process.
    out.clear_error();
    return createStringError(writeError, "cannot write '%s': %s",
                             path.str().c_str(), writeError.message().c_str());
  }
  return llvm::Error::success();
}

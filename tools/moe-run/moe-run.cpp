//===- moe-run.cpp - run a moe program ------------------------------------===//
//
// Compiles one function of a moe program for the host CPU, runs it on .npy
// inputs (or random ones), writes its results as .npy files, and optionally
// checks them against the float64 Python reference and times it.
//
//   moe-run FILE.mlir --entry=F --target=cpu --input=a.npy ... --output=o.npy
//
//===----------------------------------------------------------------------===//

#include "EpGroup.h"
#include "Npy.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <numeric>
#include <random>
#include <set>

using namespace mlir;
using namespace mlir::moe;
namespace cl = llvm::cl;

static cl::OptionCategory runCategory("moe-run options");

static cl::opt<std::string> inputFilename(cl::Positional, cl::Required,
                                          cl::desc("<input .mlir file>"),
                                          cl::cat(runCategory));
static cl::opt<std::string> entryName("entry", cl::Required,
                                      cl::desc("Function to run"),
                                      cl::cat(runCategory));
static cl::opt<std::string>
    targetName("target", cl::init("cpu"),
               cl::desc("Where to run: cpu (the only target so far)"),
               cl::cat(runCategory));
static cl::list<std::string>
    inputFiles("input", cl::desc("An argument as a .npy file, in order"),
               cl::cat(runCategory));
static cl::list<std::string>
    outputFiles("output", cl::desc("Where to write a result (.npy), in order"),
                cl::cat(runCategory));
static cl::opt<bool> randomInputs("random",
                                  cl::desc("Generate random arguments instead"),
                                  cl::cat(runCategory));
static cl::opt<uint64_t> seed("seed", cl::init(0), cl::desc("Seed of --random"),
                              cl::cat(runCategory));
static cl::opt<int64_t>
    numTokens("num-tokens", cl::init(8),
              cl::desc("Size of every dynamic dimension under --random"),
              cl::cat(runCategory));
static cl::opt<int64_t>
    idRange("id-range", cl::init(8),
            cl::desc("Random integer arguments are drawn from [0, N)"),
            cl::cat(runCategory));
static cl::opt<bool>
    checkResults("check",
                 cl::desc("Compare the results with the Python reference"),
                 cl::cat(runCategory));
static cl::opt<unsigned>
    repeatCount("repeat", cl::init(1),
                cl::desc("Run N times and print the median time"),
                cl::cat(runCategory));
static cl::opt<std::string>
    saveInputsDir("save-inputs",
                  cl::desc("Write the arguments as "
                           "DIR/arg<i>.npy (with --random)"),
                  cl::cat(runCategory));
static cl::opt<bool>
    fuse("fuse",
         cl::desc("Fuse, tile and align the program (moe-optimize) before "
                  "lowering it; tiles are chosen for --num-tokens"),
         cl::cat(runCategory));
static cl::opt<std::string> sharedExperts(
    "shared-experts", cl::init("cost"),
    cl::desc("With --fuse: where a block's shared experts run "
             "(moe-split-shared-experts' policy): cost, split or fused"),
    cl::cat(runCategory));
static cl::opt<int64_t>
    rowBlock("row-block", cl::init(8),
             cl::desc("Rows per grouped-matmul contraction block"),
             cl::cat(runCategory));

static cl::opt<int64_t> expertParallelRanks(
    "ep-ranks", cl::init(0),
    cl::desc("Run the layer as the programs of R expert-parallel ranks "
             "(moe-expert-parallel), as threads with emulated collectives; "
             "the results are the single-device layer's"),
    cl::cat(runCategory));
static cl::opt<std::string> expertParallelPlacement(
    "ep-placement", cl::init("contiguous"),
    cl::desc("With --ep-ranks: contiguous, or a placement plan (JSON)"),
    cl::cat(runCategory));
static cl::opt<std::string> expertParallelRealization(
    "ep-realization", cl::init("allgather"),
    cl::desc("With --ep-ranks: allgather or all_to_all"),
    cl::cat(runCategory));

/// Prints `error: <message>` and returns the exit code of a failed run.
static int fail(const llvm::Twine &message) {
  llvm::errs() << "moe-run: error: " << message << "\n";
  return 1;
}

//===----------------------------------------------------------------------===//
// Runtime error reports from lowered code
//===----------------------------------------------------------------------===//

namespace {
/// The first runtime error the program reported, and how many it reported.
struct RuntimeErrors {
  int64_t count = 0;
  int64_t code = 0, value = 0, bound = 0;
};
RuntimeErrors runtimeErrors;
} // namespace

extern "C" void moe_report_runtime_error(int64_t code, int64_t value,
                                         int64_t bound) {
  // The ranks of an emulated expert-parallel group report from threads.
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (runtimeErrors.count++ == 0) {
    runtimeErrors.code = code;
    runtimeErrors.value = value;
    runtimeErrors.bound = bound;
  }
}

static std::string describeRuntimeError(const RuntimeErrors &errors) {
  std::string text;
  llvm::raw_string_ostream os(text);
  switch (static_cast<RuntimeErrorCode>(errors.code)) {
  case RuntimeErrorCode::InvalidExpertId:
    os << "moe.permute: expert id " << errors.value << " is outside [0, "
       << errors.bound << ")";
    break;
  case RuntimeErrorCode::InvalidSourceIndex:
    os << "moe.unpermute: source index " << errors.value << " is outside [0, "
       << errors.bound << ") or repeated";
    break;
  case RuntimeErrorCode::InvalidOffsets:
    os << "moe.grouped_matmul: the offsets of expert " << errors.value
       << " do not partition [0, " << errors.bound << ") in order";
    break;
  case RuntimeErrorCode::InvalidSlot:
    os << "moe.expert_matmul: schedule slot " << errors.value
       << " holds an assignment outside [0, " << errors.bound << ")";
    break;
  case RuntimeErrorCode::InvalidBlockExpert:
    os << "moe.expert_matmul: block expert " << errors.value
       << " is outside [-1, " << errors.bound << ")";
    break;
  case RuntimeErrorCode::InvalidDispatchId:
    os << "moe.ep_dispatch: expert id " << errors.value << " is outside [-1, "
       << errors.bound << ")";
    break;
  case RuntimeErrorCode::InvalidOrigin:
    os << "moe.ep_combine: origin " << errors.value << " is outside [-1, "
       << errors.bound << ")";
    break;
  case RuntimeErrorCode::UnequalTokenCounts:
    os << "expert parallelism: a rank holds " << errors.value
       << " tokens, rank 0 holds " << errors.bound;
    break;
  case RuntimeErrorCode::GroupSizeMismatch:
    os << "expert parallelism: the program's collectives span "
       << errors.value << " ranks, the group running it has "
       << errors.bound;
    break;
  case RuntimeErrorCode::MismatchedRows:
    os << "expert parallelism: operands that travel together have "
       << errors.value << " and " << errors.bound << " rows";
    break;
  case RuntimeErrorCode::MismatchedPartialSums:
    os << "moe.expert_matmul: the partial sums have " << errors.value
       << " rows, the routing weights " << errors.bound;
    break;
  }
  os << " (" << errors.count << " invalid value"
     << (errors.count == 1 ? "" : "s") << " in all); the results are invalid";
  return text;
}

//===----------------------------------------------------------------------===//
// Heap allocations of lowered code
//===----------------------------------------------------------------------===//

/// Ends moe-run when the compiled code cannot get a buffer: it has no way to
/// go on without it, and returning null would make it crash.
[[noreturn]] static void failAllocation(const llvm::Twine &what) {
  llvm::outs().flush();
  llvm::errs() << "moe-run: error: the compiled layer could not allocate "
               << what << "\n";
  std::exit(1);
}

/// compiler-rt's float -> bf16 conversion (round to nearest even, NaNs
/// kept quiet), which LLVM calls on CPUs without a bf16 conversion
/// instruction (no AVX512-BF16) and which GCC 12's libgcc lacks. The x86-64
/// ABI returns a __bf16 in the low 16 bits of xmm0, as here of a float.
static float truncateFloatToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  uint32_t rounded = (bits & 0x7fffffffu) > 0x7f800000u
                         ? (bits >> 16) | 0x40u
                         : (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  uint32_t low = rounded & 0xffffu;
  float result;
  std::memcpy(&result, &low, sizeof(result));
  return result;
}

/// `_mlir_memref_to_llvm_alloc`, which moe-cpu-pipeline's code calls for
/// its heap buffers: malloc, checked. moe-run frees the results it reads
/// back with std::free.
static void *checkedAlloc(uint64_t bytes) {
  void *pointer = std::malloc(std::max<uint64_t>(bytes, 1));
  if (!pointer)
    failAllocation(llvm::Twine(bytes) + " bytes");
  return pointer;
}

/// `_mlir_memref_to_llvm_aligned_alloc`: posix_memalign, checked.
static void *checkedAlignedAlloc(uint64_t alignment, uint64_t bytes) {
  alignment = std::max<uint64_t>(alignment, sizeof(void *));
  void *pointer = nullptr;
  if (!llvm::isPowerOf2_64(alignment) ||
      posix_memalign(&pointer, alignment, std::max<uint64_t>(bytes, 1)) != 0)
    failAllocation(llvm::Twine(bytes) + " bytes aligned to " +
                   llvm::Twine(alignment));
  return pointer;
}

/// `_mlir_memref_to_llvm_free`.
static void checkedFree(void *pointer) { std::free(pointer); }

/// moe-check-alloc-sizes' hook: a buffer's byte count does not fit in 63
/// bits, so the lowered code would have allocated a wrapped-around size.
static void reportAllocSizeOverflow() {
  failAllocation("2^63 bytes or more (a buffer's sizes overflow)");
}

//===----------------------------------------------------------------------===//
// Arguments
//===----------------------------------------------------------------------===//

static std::optional<NpyDType> dtypeOf(Type type) {
  if (type.isF32())
    return NpyDType::F32;
  if (type.isF64())
    return NpyDType::F64;
  if (type.isBF16())
    return NpyDType::BF16;
  if (type.isF16())
    return NpyDType::F16;
  if (type.isSignlessInteger(32))
    return NpyDType::I32;
  if (type.isSignlessInteger(64))
    return NpyDType::I64;
  if (isa<Float8E4M3FNType>(type))
    return NpyDType::F8E4M3FN;
  if (type.isSignlessInteger(8))
    return NpyDType::I8;
  if (type.isUnsignedInteger(8))
    return NpyDType::U8;
  return std::nullopt;
}

/// Checks that `array` can be argument `index` of type `type`; dynamic
/// dimensions take any size.
static llvm::Error checkArgument(const NpyArray &array, RankedTensorType type,
                                 unsigned index, StringRef origin) {
  auto mismatch = [&](const llvm::Twine &why) {
    std::string typeText;
    llvm::raw_string_ostream os(typeText);
    os << type;
    return llvm::createStringError(
        std::errc::invalid_argument,
        "argument #%u (%s, from %s) does not fit %s: %s", index,
        array.describe().c_str(), origin.str().c_str(), typeText.c_str(),
        why.str().c_str());
  };
  if (dtypeOf(type.getElementType()) != array.dtype)
    return mismatch("wrong element type");
  if (static_cast<int64_t>(array.shape.size()) != type.getRank())
    return mismatch("wrong rank");
  for (auto [dim, size] : llvm::enumerate(type.getShape()))
    if (!ShapedType::isDynamic(size) && array.shape[dim] != size)
      return mismatch("dimension " + llvm::Twine(dim) + " must be " +
                      llvm::Twine(size));
  return llvm::Error::success();
}

static void storeFloat(NpyArray &array, int64_t index, double value) {
  uint8_t *slot = array.data.data() + index * dtypeSize(array.dtype);
  auto storeRounded = [&](const llvm::fltSemantics &semantics) {
    bool losesInfo;
    llvm::APFloat rounded(value);
    rounded.convert(semantics, llvm::APFloat::rmNearestTiesToEven, &losesInfo);
    uint16_t bits = rounded.bitcastToAPInt().getZExtValue();
    std::memcpy(slot, &bits, dtypeSize(array.dtype));
  };
  switch (array.dtype) {
  case NpyDType::F32: {
    float f = static_cast<float>(value);
    std::memcpy(slot, &f, sizeof(f));
    break;
  }
  case NpyDType::F64:
    std::memcpy(slot, &value, sizeof(value));
    break;
  case NpyDType::BF16:
    storeRounded(llvm::APFloat::BFloat());
    break;
  case NpyDType::F16:
    storeRounded(llvm::APFloat::IEEEhalf());
    break;
  case NpyDType::F8E4M3FN:
    // |value| stays far below 448 for the normal draws used here.
    storeRounded(llvm::APFloat::Float8E4M3FN());
    break;
  case NpyDType::I32:
  case NpyDType::I64:
  case NpyDType::I8:
  case NpyDType::U8:
    llvm_unreachable("not a float type");
  }
}

/// Whether `bytes` of `count` elements of `elementSize` can be allocated:
/// the product is checked, and a probe allocation tells whether the system
/// gives that much (a failed std::vector growth would abort moe-run).
static llvm::Error checkAllocation(int64_t count, size_t elementSize,
                                   const llvm::Twine &what) {
  int64_t bytes;
  if (llvm::MulOverflow(count, static_cast<int64_t>(elementSize), bytes))
    return llvm::createStringError(std::errc::not_enough_memory,
                                   "%s needs 2^63 bytes or more",
                                   what.str().c_str());
  void *probe = std::malloc(static_cast<size_t>(std::max<int64_t>(bytes, 1)));
  if (!probe)
    return llvm::createStringError(std::errc::not_enough_memory,
                                   "cannot allocate %lld bytes for %s",
                                   static_cast<long long>(bytes),
                                   what.str().c_str());
  std::free(probe);
  return llvm::Error::success();
}

/// Random argument of `type`: normal values, scaled by 1/sqrt(K) for weight
/// matrices (rank 3, or rank 2 with a static first dimension) so that
/// activations keep unit scale through a layer; integers uniform in
/// [0, --id-range).
static NpyArray randomArgument(RankedTensorType type, std::mt19937_64 &rng) {
  NpyArray array;
  array.dtype = *dtypeOf(type.getElementType());
  for (int64_t size : type.getShape())
    array.shape.push_back(ShapedType::isDynamic(size) ? numTokens : size);
  int64_t count = array.numElements();
  array.data.resize(count * dtypeSize(array.dtype));
  if (array.dtype == NpyDType::U8) {
    // Packed codes, zero points or e8m0 exponents near 1 (127).
    std::uniform_int_distribution<int> bytes(120, 135);
    for (int64_t i = 0; i < count; ++i)
      array.data[i] = static_cast<uint8_t>(bytes(rng));
    return array;
  }
  if (array.dtype == NpyDType::I8) {
    // Codes of a symmetric int8 format.
    std::uniform_int_distribution<int> codes(-127, 127);
    for (int64_t i = 0; i < count; ++i)
      array.data[i] = static_cast<uint8_t>(static_cast<int8_t>(codes(rng)));
    return array;
  }
  if (array.dtype == NpyDType::I32 || array.dtype == NpyDType::I64) {
    std::uniform_int_distribution<int64_t> ids(
        0, std::max<int64_t>(idRange, 1) - 1);
    for (int64_t i = 0; i < count; ++i) {
      int64_t id = ids(rng);
      if (array.dtype == NpyDType::I32) {
        int32_t narrow = static_cast<int32_t>(id);
        std::memcpy(array.data.data() + 4 * i, &narrow, 4);
      } else {
        std::memcpy(array.data.data() + 8 * i, &id, 8);
      }
    }
    return array;
  }
  bool isWeight =
      type.getRank() == 3 || (type.getRank() == 2 && !type.isDynamicDim(0));
  double scale = isWeight ? 1.0 / std::sqrt(double(type.getShape().back()))
                          : (type.getRank() == 1 ? 0.1 : 1.0);
  std::normal_distribution<double> normal(0.0, scale);
  for (int64_t i = 0; i < count; ++i)
    storeFloat(array, i, normal(rng));
  return array;
}

//===----------------------------------------------------------------------===//
// Memref descriptors of the C interface
//===----------------------------------------------------------------------===//

/// A ranked memref descriptor as the C interface lays it out: allocated
/// pointer, aligned pointer, offset, sizes[rank], strides[rank], all 8 bytes.
static size_t descriptorWords(int64_t rank) { return 3 + 2 * rank; }

static void fillDescriptor(int64_t *words, NpyArray &array) {
  void *data = array.data.data();
  std::memcpy(&words[0], &data, sizeof(void *));
  std::memcpy(&words[1], &data, sizeof(void *));
  words[2] = 0;
  int64_t rank = array.shape.size();
  int64_t stride = 1;
  for (int64_t dim = rank - 1; dim >= 0; --dim) {
    words[3 + dim] = array.shape[dim];
    words[3 + rank + dim] = stride;
    stride *= array.shape[dim];
  }
}

/// Fills `arguments` with random values of `functionType`'s inputs (dynamic
/// sizes --num-tokens), after checking that each can be allocated.
static llvm::Error randomArguments(FunctionType functionType,
                                   std::vector<NpyArray> &arguments) {
  std::mt19937_64 rng(seed);
  for (auto [index, type] : llvm::enumerate(functionType.getInputs())) {
    auto tensorType = cast<RankedTensorType>(type);
    int64_t count = 1;
    bool overflow = false;
    for (int64_t size : tensorType.getShape())
      overflow |= llvm::MulOverflow(
          count, ShapedType::isDynamic(size) ? numTokens.getValue() : size,
          count);
    llvm::Error error =
        overflow ? llvm::createStringError(std::errc::not_enough_memory,
                                           "its element count overflows")
                 : checkAllocation(
                       count, dtypeSize(*dtypeOf(tensorType.getElementType())),
                       "random argument #" + llvm::Twine(index));
    if (error) {
      std::string typeText;
      llvm::raw_string_ostream(typeText) << tensorType;
      return llvm::createStringError(
          std::errc::not_enough_memory, "argument #%zu (%s): %s", index,
          typeText.c_str(), llvm::toString(std::move(error)).c_str());
    }
    arguments.push_back(randomArgument(tensorType, rng));
  }
  return llvm::Error::success();
}

/// Copies the (possibly strided) memref described by `words` into an array
/// (result #`resultIndex`).
static llvm::Expected<NpyArray> readDescriptor(const int64_t *words,
                                               int64_t rank, NpyDType dtype,
                                               unsigned resultIndex) {
  NpyArray array;
  array.dtype = dtype;
  const uint8_t *aligned;
  std::memcpy(&aligned, &words[1], sizeof(void *));
  int64_t offset = words[2];
  for (int64_t dim = 0; dim < rank; ++dim)
    array.shape.push_back(words[3 + dim]);
  size_t elementSize = dtypeSize(dtype);
  int64_t count = array.numElements();
  if (llvm::Error error = checkAllocation(
          count, elementSize, "result #" + llvm::Twine(resultIndex)))
    return std::move(error);
  array.data.resize(count * elementSize);
  llvm::SmallVector<int64_t> index(rank, 0);
  for (int64_t linear = 0; linear < count; ++linear) {
    int64_t position = offset;
    for (int64_t dim = 0; dim < rank; ++dim)
      position += index[dim] * words[3 + rank + dim];
    std::memcpy(array.data.data() + linear * elementSize,
                aligned + position * elementSize, elementSize);
    for (int64_t dim = rank - 1; dim >= 0; --dim) {
      if (++index[dim] < array.shape[dim])
        break;
      index[dim] = 0;
    }
  }
  return array;
}

//===----------------------------------------------------------------------===//
// The op graph handed to the Python reference (--check)
//===----------------------------------------------------------------------===//

static llvm::json::Object describeValueType(Type type) {
  auto tensorType = cast<RankedTensorType>(type);
  llvm::json::Array shape;
  for (int64_t size : tensorType.getShape())
    shape.push_back(ShapedType::isDynamic(size) ? llvm::json::Value(nullptr)
                                                : llvm::json::Value(size));
  return llvm::json::Object{
      {"shape", std::move(shape)},
      {"dtype", dtypeName(*dtypeOf(tensorType.getElementType())).str()}};
}

static std::optional<double>
optionalDouble(std::optional<llvm::APFloat> value) {
  if (!value)
    return std::nullopt;
  return value->convertToDouble();
}

/// A #moe.quant attribute as JSON: format, scale layout, group, zero point.
static llvm::json::Object describeQuantization(QuantizationAttr quantization) {
  llvm::json::Object description;
  description["format"] = stringifyQuantFormat(quantization.getFormat()).str();
  std::optional<ScaleLayout> scales = quantization.getScales();
  description["scales"] =
      scales ? llvm::json::Value(stringifyScaleLayout(*scales).str())
             : llvm::json::Value(nullptr);
  description["group"] = quantization.getGroup();
  description["zero_point"] = quantization.getZeroPoint();
  std::optional<PackedWeightLayout> packed = quantization.getPacked();
  description["packed"] =
      packed ? llvm::json::Value(stringifyPackedWeightLayout(*packed).str())
             : llvm::json::Value(nullptr);
  return description;
}

/// The names of a matmul's optional scale, zero and bias operands that are
/// present, in operand order.
template <typename OpTy>
static void appendScaleAndBiasNames(OpTy op, llvm::json::Array &names) {
  for (auto [name, value] :
       {std::pair<StringRef, Value>{"input_scales", op.getInputScales()},
        {"weight_scales", op.getWeightScales()},
        {"weight_zeros", op.getWeightZeros()},
        {"bias", op.getBias()}})
    if (value)
      names.push_back(name);
}

/// The attributes that moe.topk and moe.route share.
template <typename OpTy>
static void describeTopkAttributes(OpTy op, llvm::json::Object &attrs) {
  attrs["k"] = op.getK();
  attrs["scoring"] = stringifyScoringFunc(op.getScoring()).str();
  attrs["num_groups"] = op.getNumGroups();
  attrs["topk_groups"] = op.getTopkGroups();
  attrs["renormalize"] = op.getRenormalize();
  attrs["routed_scaling_factor"] = optionalDouble(op.getRoutedScalingFactor());
}

/// The attributes of a moe.expert_matmul the reference reads, and which of
/// its optional operands are present.
static void describeExpertMatmulAttributes(ExpertMatmulOp matmul,
                                           llvm::json::Object &attrs) {
  // Which operand is which: the optional ones may be absent.
  llvm::json::Array operandNames{"input", "weights"};
  for (auto [name, value] :
       {std::pair<StringRef, Value>{"slots", matmul.getSlots()},
        {"offsets", matmul.getOffsets()},
        {"block_experts", matmul.getBlockExperts()},
        {"num_padded", matmul.getNumPadded()},
        {"routing_weights", matmul.getRoutingWeights()},
        {"accumulate", matmul.getAccumulate()}})
    if (value)
      operandNames.push_back(name);
  appendScaleAndBiasNames(matmul, operandNames);
  attrs["operand_names"] = std::move(operandNames);
  attrs["quantization"] = describeQuantization(matmul.getQuantization());
  attrs["k"] = matmul.getK();
  attrs["gather"] = matmul.getGather();
  attrs["unpermute"] = matmul.getUnpermute();
  std::optional<ActivationKind> kind = matmul.getActivation();
  attrs["activation"] =
      kind ? llvm::json::Value(stringifyActivationKind(*kind).str())
           : llvm::json::Value(nullptr);
  attrs["gate_up_interleaved"] = matmul.getGateUpInterleaved();
  attrs["alpha"] = optionalDouble(matmul.getAlpha());
  attrs["limit"] = optionalDouble(matmul.getLimit());
  attrs["routed_scaling_factor"] =
      optionalDouble(matmul.getRoutedScalingFactor());
  attrs["block_m"] = matmul.getBlockM();
}

/// The attributes of moe op `op` that the Python reference reads.
static llvm::json::Object describeAttributes(Operation *op) {
  llvm::json::Object attrs;
  TypeSwitch<Operation *>(op)
      .Case([&](TopkOp topk) { describeTopkAttributes(topk, attrs); })
      .Case([&](PermuteOp permute) {
        attrs["num_experts"] = permute.getNumExperts();
      })
      .Case([&](RouteOp route) {
        describeTopkAttributes(route, attrs);
        attrs["has_gate_bias"] = static_cast<bool>(route.getGateBias());
        attrs["has_score_bias"] = static_cast<bool>(route.getScoreBias());
      })
      .Case([&](SortOp sort) { attrs["num_experts"] = sort.getNumExperts(); })
      .Case([&](AddSharedExpertsOp shared) {
        attrs["num_experts"] = shared.getNumExperts();
        attrs["num_shared"] = shared.getNumShared();
      })
      .Case([&](SharedExpertRoutingOp shared) {
        attrs["num_shared"] = shared.getNumShared();
      })
      .Case([&](AlignOp align) {
        attrs["num_experts"] = align.getNumExperts();
        attrs["block_m"] = align.getBlockM();
      })
      .Case([&](ExpertMatmulOp matmul) {
        describeExpertMatmulAttributes(matmul, attrs);
      })
      .Case([&](GroupedMatmulOp matmul) {
        llvm::json::Array operandNames{"rows", "weights", "offsets"};
        appendScaleAndBiasNames(matmul, operandNames);
        attrs["operand_names"] = std::move(operandNames);
        attrs["quantization"] = describeQuantization(matmul.getQuantization());
      })
      .Case([&](QuantizeOp quantize) {
        attrs["quantization"] =
            describeQuantization(quantize.getQuantization());
      })
      .Case([&](ActivationOp activation) {
        attrs["kind"] = stringifyActivationKind(activation.getKind()).str();
        attrs["gate_up_interleaved"] = activation.getGateUpInterleaved();
        attrs["alpha"] = optionalDouble(activation.getAlpha());
        attrs["limit"] = optionalDouble(activation.getLimit());
      })
      .Case([&](UnpermuteOp unpermute) {
        attrs["k"] = unpermute.getResult().getType().getDimSize(1);
      })
      .Case([&](CombineOp combine) {
        attrs["routed_scaling_factor"] =
            optionalDouble(combine.getRoutedScalingFactor());
      });
  return attrs;
}

/// Serializes the entry function as a list of moe ops over named values.
static FailureOr<llvm::json::Object> describeGraph(func::FuncOp function) {
  llvm::DenseMap<Value, std::string> names;
  llvm::json::Array args;
  for (BlockArgument arg : function.getArguments()) {
    names[arg] = "arg" + std::to_string(arg.getArgNumber());
    args.push_back(describeValueType(arg.getType()));
  }
  llvm::json::Array ops, returns;
  unsigned nextValue = 0;
  for (Operation &op : function.getBody().front()) {
    if (auto returnOp = dyn_cast<func::ReturnOp>(op)) {
      for (Value operand : returnOp.getOperands())
        returns.push_back(names.lookup(operand));
      continue;
    }
    if (!isa<MoeDialect>(op.getDialect())) {
      op.emitError("--check supports functions made of moe ops only");
      return failure();
    }
    llvm::json::Object attrs = describeAttributes(&op);
    llvm::json::Array operands, results;
    for (Value operand : op.getOperands())
      operands.push_back(names.lookup(operand));
    for (Value result : op.getResults()) {
      names[result] = "v" + std::to_string(nextValue++);
      llvm::json::Object description = describeValueType(result.getType());
      description["name"] = names[result];
      results.push_back(std::move(description));
    }
    ops.push_back(llvm::json::Object{{"op", op.getName().getStringRef()},
                                     {"operands", std::move(operands)},
                                     {"results", std::move(results)},
                                     {"attrs", std::move(attrs)}});
  }
  return llvm::json::Object{{"args", std::move(args)},
                            {"ops", std::move(ops)},
                            {"returns", std::move(returns)}};
}

/// Runs the Python reference on the arguments and results; returns its exit
/// status (0 when every result is within tolerance).
static int runCheck(func::FuncOp function, ArrayRef<NpyArray> arguments,
                    ArrayRef<NpyArray> results) {
  FailureOr<llvm::json::Object> graph = describeGraph(function);
  if (failed(graph))
    return 1;
  llvm::SmallString<128> directory;
  if (std::error_code error =
          llvm::sys::fs::createUniqueDirectory("moe-run-check", directory))
    return fail("cannot create a temporary directory: " + error.message());
  auto pathOf = [&](const llvm::Twine &name) {
    llvm::SmallString<128> path(directory);
    llvm::sys::path::append(path, name);
    return std::string(path);
  };
  for (auto [index, array] : llvm::enumerate(arguments))
    if (llvm::Error error =
            writeNpy(pathOf("arg" + llvm::Twine(index) + ".npy"), array))
      return fail(llvm::toString(std::move(error)));
  for (auto [index, array] : llvm::enumerate(results))
    if (llvm::Error error =
            writeNpy(pathOf("result" + llvm::Twine(index) + ".npy"), array))
      return fail(llvm::toString(std::move(error)));
  {
    std::error_code error;
    llvm::raw_fd_ostream out(pathOf("graph.json"), error);
    if (error)
      return fail("cannot write the op graph: " + error.message());
    out << llvm::json::Value(std::move(*graph));
  }

  std::string pythonDir = MOE_PYTHON_DIR;
  if (const char *overrideDir = std::getenv("MOE_PYTHON_DIR"))
    pythonDir = overrideDir;
  llvm::SmallString<128> script(pythonDir);
  llvm::sys::path::append(script, "moe_compiler", "check.py");
  if (!llvm::sys::fs::exists(script))
    return fail("the Python reference is missing: " + script +
                " (set MOE_PYTHON_DIR)");
  const char *pythonEnv = std::getenv("MOE_PYTHON");
  llvm::ErrorOr<std::string> python =
      llvm::sys::findProgramByName(pythonEnv ? pythonEnv : "python3");
  if (!python)
    return fail("python3 not found; --check needs it");
  std::string dirArg = std::string(directory);
  llvm::SmallVector<StringRef> argv = {*python, script, "--dir", dirArg};
  std::string message;
  int status = llvm::sys::ExecuteAndWait(*python, argv, std::nullopt, {}, 0, 0,
                                         &message);
  llvm::sys::fs::remove_directories(directory);
  if (status < 0)
    return fail("cannot run the Python reference: " + message);
  return status;
}

//===----------------------------------------------------------------------===//
// Compiling and calling the program
//===----------------------------------------------------------------------===//

static llvm::Error errorOf(const llvm::Twine &message) {
  return llvm::createStringError(std::errc::invalid_argument,
                                 message.str().c_str());
}

/// Lowers `module` for the host CPU (entry `entry` with a C interface) and
/// JIT-compiles it, with moe-run's runtime hooks defined.
static llvm::Expected<std::unique_ptr<ExecutionEngine>>
compileForCpu(ModuleOp module, StringRef entry) {
  MLIRContext *context = module.getContext();
  OwningOpRef<ModuleOp> lowered = module.clone();
  lowered->lookupSymbol<func::FuncOp>(entry)->setAttr(
      LLVM::LLVMDialect::getEmitCWrapperAttrName(), UnitAttr::get(context));
  PassManager pm(context);
  CpuPipelineOptions pipelineOptions;
  pipelineOptions.rowBlock = rowBlock;
  pipelineOptions.fuse = fuse;
  pipelineOptions.sharedExperts = sharedExperts;
  pipelineOptions.numTokens = std::max<int64_t>(numTokens, 1);
  buildCpuPipeline(pm, pipelineOptions);
  if (failed(pm.run(*lowered)))
    return errorOf("lowering '" + entry + "' for the cpu failed");

  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  // Compile for this CPU and its vector extensions, not a generic x86-64.
  auto machineBuilder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!machineBuilder)
    return errorOf("cannot describe the host CPU: " +
                   llvm::toString(machineBuilder.takeError()));
  auto targetMachine = machineBuilder->createTargetMachine();
  if (!targetMachine)
    return errorOf("cannot create a target machine for the host CPU: " +
                   llvm::toString(targetMachine.takeError()));
  // The options hold a function_ref: the transformer must outlive them
  // (found by AddressSanitizer, stack-use-after-scope).
  std::function<llvm::Error(llvm::Module *)> optimize =
      makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                targetMachine->get());
  ExecutionEngineOptions engineOptions;
  engineOptions.transformer = optimize;
  auto engineOrError = ExecutionEngine::create(*lowered, engineOptions,
                                               std::move(*targetMachine));
  if (!engineOrError)
    return errorOf("JIT compilation failed: " +
                   llvm::toString(engineOrError.takeError()));
  std::unique_ptr<ExecutionEngine> engine = std::move(*engineOrError);
  engine->registerSymbols([](llvm::orc::MangleAndInterner interner) {
    llvm::orc::SymbolMap symbols;
    auto define = [&](StringRef name, auto *function) {
      symbols[interner(name)] = {llvm::orc::ExecutorAddr::fromPtr(function),
                                 llvm::JITSymbolFlags::Exported};
    };
    define(kReportRuntimeErrorFn, &moe_report_runtime_error);
    define(kReportAllocSizeOverflowFn, &reportAllocSizeOverflow);
    // finalize-memref-to-llvm's generic allocation functions.
    define("_mlir_memref_to_llvm_alloc", &checkedAlloc);
    define("_mlir_memref_to_llvm_aligned_alloc", &checkedAlignedAlloc);
    define("_mlir_memref_to_llvm_free", &checkedFree);
    define("__truncsfbf2", &truncateFloatToBf16);
    // The collectives of expert-parallel programs (an emulated group).
    for (const EpHook &hook : getEpHooks())
      define(hook.name, hook.address);
    return symbols;
  });
  return std::move(engine);
}

namespace {
/// One call of a compiled entry through its C interface: the descriptors of
/// the results (packed, one struct) and of each argument.
class PackedCall {
public:
  PackedCall(ExecutionEngine &engine, StringRef entry,
             FunctionType functionType, std::vector<NpyArray> &arguments)
      : engine(engine), entry(entry.str()), functionType(functionType) {
    for (Type type : functionType.getResults()) {
      resultRanks.push_back(cast<RankedTensorType>(type).getRank());
      resultWords += descriptorWords(resultRanks.back());
    }
    resultStorage.resize(std::max<size_t>(resultWords, 1));
    for (NpyArray &array : arguments) {
      argumentStorage.emplace_back(descriptorWords(array.shape.size()));
      fillDescriptor(argumentStorage.back().data(), array);
      argumentBases.insert(array.data.data());
    }
    resultPointer = resultStorage.data();
    for (auto &storage : argumentStorage)
      argumentPointers.push_back(storage.data());
    if (functionType.getNumResults() > 0)
      packed.push_back(&resultPointer);
    for (void *&pointer : argumentPointers)
      packed.push_back(&pointer);
  }

  /// Calls the entry once.
  llvm::Error invoke() {
    if (llvm::Error error =
            engine.invokePacked("_mlir_ciface_" + entry, packed))
      return errorOf("cannot call '" + entry +
                     "': " + llvm::toString(std::move(error)));
    return llvm::Error::success();
  }

  /// Copies the results of the last call.
  llvm::Expected<std::vector<NpyArray>> readResults() {
    std::vector<NpyArray> results;
    size_t word = 0;
    for (auto [index, rank, type] :
         llvm::enumerate(resultRanks, functionType.getResults())) {
      llvm::Expected<NpyArray> result = readDescriptor(
          &resultStorage[word], rank,
          *dtypeOf(cast<RankedTensorType>(type).getElementType()), index);
      if (!result)
        return result.takeError();
      results.push_back(std::move(*result));
      word += descriptorWords(rank);
    }
    return results;
  }

  /// Frees the result buffers of the last call. They come from
  /// checkedAlloc (malloc); those that alias an argument are not the
  /// program's to free.
  void freeResults() {
    std::set<void *> freed;
    size_t word = 0;
    for (int64_t rank : resultRanks) {
      void *allocated;
      std::memcpy(&allocated, &resultStorage[word], sizeof(void *));
      if (allocated && !argumentBases.count(allocated) &&
          freed.insert(allocated).second)
        std::free(allocated);
      word += descriptorWords(rank);
    }
  }

private:
  ExecutionEngine &engine;
  std::string entry;
  FunctionType functionType;
  llvm::SmallVector<int64_t> resultRanks;
  size_t resultWords = 0;
  std::vector<int64_t> resultStorage;
  std::vector<std::vector<int64_t>> argumentStorage;
  std::set<const void *> argumentBases;
  void *resultPointer = nullptr;
  std::vector<void *> argumentPointers;
  llvm::SmallVector<void *> packed;
};
} // namespace

/// Compiles `module` and runs its entry --repeat times on `arguments`;
/// returns the results of the last run and appends each run's time.
static llvm::Expected<std::vector<NpyArray>>
runOnCpu(ModuleOp module, FunctionType functionType,
         std::vector<NpyArray> &arguments, std::vector<double> &timesUs) {
  llvm::Expected<std::unique_ptr<ExecutionEngine>> engine =
      compileForCpu(module, entryName);
  if (!engine)
    return engine.takeError();
  PackedCall call(**engine, entryName, functionType, arguments);
  std::vector<NpyArray> results;
  for (unsigned run = 0; run < repeatCount; ++run) {
    runtimeErrors = RuntimeErrors();
    auto start = std::chrono::steady_clock::now();
    if (llvm::Error error = call.invoke())
      return std::move(error);
    auto stop = std::chrono::steady_clock::now();
    timesUs.push_back(
        std::chrono::duration<double, std::micro>(stop - start).count());
    if (runtimeErrors.count) {
      call.freeResults();
      return errorOf(describeRuntimeError(runtimeErrors));
    }
    if (run + 1 == repeatCount) {
      llvm::Expected<std::vector<NpyArray>> read = call.readResults();
      call.freeResults();
      if (!read)
        return read.takeError();
      results = std::move(*read);
    } else {
      call.freeResults();
    }
  }
  return results;
}

//===----------------------------------------------------------------------===//
// Expert parallelism: R per-rank programs in one process (--ep-ranks)
//===----------------------------------------------------------------------===//

/// Bytes of one row (dimension 0) of `array`.
static size_t rowBytes(const NpyArray &array) {
  size_t bytes = dtypeSize(array.dtype);
  for (int64_t size : ArrayRef(array.shape).drop_front())
    bytes *= size;
  return bytes;
}

/// The rows `rows` of `array`, in that order.
static NpyArray gatherRows(const NpyArray &array, ArrayRef<int64_t> rows) {
  NpyArray part;
  part.dtype = array.dtype;
  part.shape = array.shape;
  part.shape[0] = rows.size();
  size_t bytes = rowBytes(array);
  part.data.resize(rows.size() * bytes);
  for (auto [index, row] : llvm::enumerate(rows))
    std::memcpy(part.data.data() + index * bytes,
                array.data.data() + row * bytes, bytes);
  return part;
}

/// The arrays of `parts` one after the other along dimension 0.
static NpyArray concatRows(ArrayRef<NpyArray> parts) {
  NpyArray whole;
  whole.dtype = parts.front().dtype;
  whole.shape = parts.front().shape;
  whole.shape[0] = 0;
  for (const NpyArray &part : parts) {
    whole.shape[0] += part.shape[0];
    whole.data.insert(whole.data.end(), part.data.begin(), part.data.end());
  }
  return whole;
}

/// Rewrites `module`'s entry into its per-rank program with the --ep-*
/// options; returns the placement it chose.
static llvm::Expected<PlacementAttr> buildPerRankProgram(ModuleOp module) {
  PassManager pm(module.getContext());
  MoeExpertParallelOptions options;
  options.ranks = expertParallelRanks;
  options.realization = expertParallelRealization;
  options.placement = expertParallelPlacement;
  pm.addNestedPass<func::FuncOp>(createMoeExpertParallel(options));
  if (failed(pm.run(module)))
    return errorOf("moe-expert-parallel failed on '" + entryName + "'");
  PlacementAttr placement;
  module.lookupSymbol<func::FuncOp>(entryName).walk(
      [&](EpDispatchOp dispatch) { placement = dispatch.getPlacement(); });
  if (!placement)
    return errorOf("'" + entryName +
                   "' has no expert block to distribute over --ep-ranks");
  return placement;
}

/// Each rank's arguments: token rows (a dynamic leading dimension) split in
/// R equal blocks, the arguments the pass marked as local experts cut to
/// the rank's slots, everything else the same on every rank.
static llvm::Expected<std::vector<std::vector<NpyArray>>>
perRankArguments(FunctionType global, func::FuncOp local,
                 PlacementAttr placement, ArrayRef<NpyArray> arguments) {
  int64_t ranks = placement.getRanks();
  if (llvm::none_of(global.getInputs(), [](Type type) {
        auto tensorType = cast<RankedTensorType>(type);
        return tensorType.getRank() > 0 && tensorType.isDynamicDim(0);
      }))
    return errorOf("--ep-ranks splits the tokens over the ranks, but '" +
                   entryName + "' has no argument of a dynamic token count");
  std::vector<std::vector<NpyArray>> perRank(ranks);
  for (auto [index, array] : llvm::enumerate(arguments)) {
    auto globalType = cast<RankedTensorType>(global.getInput(index));
    bool isExpertArgument =
        static_cast<bool>(local.getArgAttr(index, kLocalExpertsAttrName));
    bool isTokenArgument =
        globalType.getRank() > 0 && globalType.isDynamicDim(0);
    if (isTokenArgument && array.shape[0] % ranks != 0)
      return errorOf("--ep-ranks=" + llvm::Twine(ranks) +
                     " splits the tokens evenly, but argument #" +
                     llvm::Twine(index) + " has " +
                     llvm::Twine(array.shape[0]) + " rows");
    int64_t block = isTokenArgument ? array.shape[0] / ranks : 0;
    for (int64_t rank = 0; rank < ranks; ++rank) {
      if (isExpertArgument) {
        perRank[rank].push_back(
            gatherRows(array, placement.getSlots()[rank].asArrayRef()));
      } else if (isTokenArgument) {
        SmallVector<int64_t> rows(block);
        std::iota(rows.begin(), rows.end(), rank * block);
        perRank[rank].push_back(gatherRows(array, rows));
      } else {
        perRank[rank].push_back(array);
      }
    }
  }
  return perRank;
}

/// Runs `entry` as the R per-rank programs of an expert-parallel group,
/// the ranks as threads of this process, and returns what the single-device
/// entry returns: each result is the ranks' token blocks in rank order.
static llvm::Expected<std::vector<NpyArray>>
runExpertParallel(ModuleOp module, func::FuncOp entry,
                  std::vector<NpyArray> &arguments) {
  OwningOpRef<ModuleOp> perRankModule = module.clone();
  llvm::Expected<PlacementAttr> placement =
      buildPerRankProgram(*perRankModule);
  if (!placement)
    return placement.takeError();
  FunctionType global = entry.getFunctionType();
  auto perRankEntry = perRankModule->lookupSymbol<func::FuncOp>(entryName);
  FunctionType local = perRankEntry.getFunctionType();
  for (Type type : global.getResults())
    if (!cast<RankedTensorType>(type).isDynamicDim(0))
      return errorOf("--ep-ranks needs results whose leading dimension is "
                     "the token count (dynamic)");
  auto split = perRankArguments(global, perRankEntry, *placement, arguments);
  if (!split)
    return split.takeError();
  // The LLVM lowering has no use for the marks, and warns about them.
  for (unsigned index = 0; index < perRankEntry.getNumArguments(); ++index)
    perRankEntry.removeArgAttr(index, kLocalExpertsAttrName);
  auto engine = compileForCpu(*perRankModule, entryName);
  if (!engine)
    return engine.takeError();

  int64_t ranks = placement->getRanks();
  std::vector<std::unique_ptr<PackedCall>> calls;
  for (int64_t rank = 0; rank < ranks; ++rank)
    calls.push_back(std::make_unique<PackedCall>(**engine, entryName, local,
                                                 (*split)[rank]));
  std::vector<llvm::Error> errors;
  std::vector<std::vector<NpyArray>> results(ranks);
  std::mutex errorsMutex;
  runtimeErrors = RuntimeErrors();
  runEmulatedGroup(
      ranks, moe_report_runtime_error, [&](int64_t rank) {
        llvm::Error error = calls[rank]->invoke();
        if (!error) {
          auto read = calls[rank]->readResults();
          if (read)
            results[rank] = std::move(*read);
          else
            error = read.takeError();
        }
        calls[rank]->freeResults();
        std::lock_guard<std::mutex> lock(errorsMutex);
        if (error)
          errors.push_back(std::move(error));
      });
  for (llvm::Error &error : errors)
    return std::move(error);
  if (runtimeErrors.count)
    return errorOf(describeRuntimeError(runtimeErrors));
  std::vector<NpyArray> whole;
  for (size_t index = 0; index < global.getNumResults(); ++index) {
    SmallVector<NpyArray> parts;
    for (int64_t rank = 0; rank < ranks; ++rank)
      parts.push_back(std::move(results[rank][index]));
    whole.push_back(concatRows(parts));
  }
  return whole;
}

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

/// The entry's arguments: random (--random) or read from the --input
/// files, checked against `functionType` (every dynamic leading dimension,
/// the token count, the same), and saved under --save-inputs.
static llvm::Expected<std::vector<NpyArray>>
loadArguments(FunctionType functionType) {
  unsigned numArgs = functionType.getNumInputs();
  std::vector<NpyArray> arguments;
  if (randomInputs) {
    if (llvm::Error error = randomArguments(functionType, arguments))
      return std::move(error);
  } else {
    if (inputFiles.size() != numArgs)
      return errorOf("'" + entryName + "' takes " + llvm::Twine(numArgs) +
                     " arguments, but " + llvm::Twine(inputFiles.size()) +
                     " --input files were given");
    for (const std::string &path : inputFiles) {
      llvm::Expected<NpyArray> array = readNpy(path);
      if (!array)
        return array.takeError();
      arguments.push_back(std::move(*array));
    }
  }
  std::optional<int64_t> tokenDim;
  for (auto [index, type] : llvm::enumerate(functionType.getInputs())) {
    auto tensorType = cast<RankedTensorType>(type);
    StringRef origin =
        randomInputs ? StringRef("--random") : StringRef(inputFiles[index]);
    if (llvm::Error error =
            checkArgument(arguments[index], tensorType, index, origin))
      return std::move(error);
    // Every dynamic leading dimension is the token count M (or M * k for
    // expert-ordered rows, which always travel together); they must agree,
    // since the lowered code trusts them.
    if (tensorType.getRank() > 0 && tensorType.isDynamicDim(0)) {
      int64_t size = arguments[index].shape[0];
      if (tokenDim && *tokenDim != size)
        return errorOf("argument #" + llvm::Twine(index) + " has " +
                       llvm::Twine(size) +
                       " rows but an earlier dynamic argument has " +
                       llvm::Twine(*tokenDim));
      tokenDim = size;
    }
  }
  if (!saveInputsDir.empty()) {
    llvm::sys::fs::create_directories(saveInputsDir);
    for (auto [index, array] : llvm::enumerate(arguments)) {
      llvm::SmallString<128> path(saveInputsDir);
      llvm::sys::path::append(path, "arg" + llvm::Twine(index) + ".npy");
      if (llvm::Error error = writeNpy(path, array))
        return std::move(error);
    }
  }
  return arguments;
}

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(runCategory);
  cl::ParseCommandLineOptions(argc, argv, "moe program runner\n");
  if (targetName != "cpu")
    return fail("unknown --target '" + targetName +
                "'; this build runs programs on the cpu only");
  if (repeatCount < 1)
    return fail("--repeat must be at least 1");
  if (expertParallelRanks < 0 ||
      (expertParallelRanks > 0 && (repeatCount > 1 || fuse)))
    return fail("--ep-ranks must be positive, and runs without --repeat and "
                "--fuse (the per-rank program is already fused)");
  if (randomInputs == !inputFiles.empty())
    return fail("give either --random or one --input per argument");

  // The CPU pipeline names upstream passes by their registered names.
  registerAllPasses();
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
  registry.insert<MoeDialect>();
  MLIRContext context(registry);

  std::string openError;
  std::unique_ptr<llvm::MemoryBuffer> file =
      openInputFile(inputFilename, &openError);
  if (!file)
    return fail("cannot open '" + inputFilename + "': " + openError);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return fail("'" + inputFilename + "' is not a valid moe program");

  auto entry = module->lookupSymbol<func::FuncOp>(entryName);
  if (!entry || entry.isExternal()) {
    std::string available;
    for (auto function : module->getOps<func::FuncOp>())
      if (!function.isExternal())
        available +=
            (available.empty() ? "" : ", ") + function.getSymName().str();
    return fail("no function '" + entryName + "' in '" + inputFilename +
                "'; it defines: " + (available.empty() ? "none" : available));
  }
  FunctionType functionType = entry.getFunctionType();
  for (Type type : llvm::concat<const Type>(functionType.getInputs(),
                                            functionType.getResults())) {
    auto tensorType = dyn_cast<RankedTensorType>(type);
    if (!tensorType || !dtypeOf(tensorType.getElementType()))
      return entry.emitError("moe-run supports ranked tensors of f32, f64, "
                             "bf16, f16, i32 and i64 only"),
             1;
  }

  llvm::Expected<std::vector<NpyArray>> loaded = loadArguments(functionType);
  if (!loaded)
    return fail(llvm::toString(loaded.takeError()));
  std::vector<NpyArray> arguments = std::move(*loaded);
  if (!outputFiles.empty() &&
      outputFiles.size() != functionType.getNumResults())
    return fail("'" + entryName + "' has " +
                llvm::Twine(functionType.getNumResults()) + " results, but " +
                llvm::Twine(outputFiles.size()) + " --output files were given");

  std::vector<double> timesUs;
  llvm::Expected<std::vector<NpyArray>> run =
      expertParallelRanks > 0
          ? runExpertParallel(*module, entry, arguments)
          : runOnCpu(*module, functionType, arguments, timesUs);
  if (!run)
    return fail(llvm::toString(run.takeError()));
  std::vector<NpyArray> results = std::move(*run);

  for (auto [index, array] : llvm::enumerate(results)) {
    llvm::outs() << "result #" << index << ": " << array.describe() << "\n";
    if (!outputFiles.empty())
      if (llvm::Error error = writeNpy(outputFiles[index], array))
        return fail(llvm::toString(std::move(error)));
  }
  if (repeatCount > 1) {
    std::sort(timesUs.begin(), timesUs.end());
    llvm::outs() << llvm::format("median time: %.1f us over %u runs\n",
                                 timesUs[timesUs.size() / 2],
                                 unsigned(repeatCount));
  }
  llvm::outs().flush();
  if (checkResults)
    return runCheck(entry, arguments, results);
  return 0;
}

//===- GpuHostEmitter.cpp - host source of a compiled GPU layer -----------===//
//
// Walks the layer function after moe-emit-gpu-kernels and writes, op by op,
// the C++ that launches each op's kernels through the moe runtime. Every
// intermediate lives in a caller-provided workspace, sized for the token
// count, so a call allocates nothing and never waits for the device; the
// TMA descriptors of the weights are encoded on the host at every call and
// passed by value as kernel parameters (moe-nvvm-grid-constant-args), so a
// captured CUDA graph keeps them.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/GpuHost.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
/// A device buffer of the layer: its address and shape as C++ expressions
/// (of the token count `numTokens`).
struct Buffer {
  std::string address;
  SmallVector<std::string> sizes;
  Type elementType;
};

/// Bytes of one element in device memory.
int64_t elementBytes(Type type) { return (type.getIntOrFloatBitWidth() + 7) / 8; }

std::string product(ArrayRef<std::string> factors) {
  std::string result = "int64_t(1)";
  for (const std::string &factor : factors)
    result += " * (" + factor + ")";
  return result;
}

/// The blocks of `blockM` slots of an aligned schedule with `slots` slots
/// (a C++ expression) that can hold an assignment: of the ceil(S / block_m)
/// blocks, at most A / block_m + min(E, A) (A = S − E·(block_m − 1), the
/// assignments: each expert's last block may be partial). Launching only
/// those keeps decode from spending waves on blocks that exit at once (127
/// of 135 for Qwen3 at M = 1).
std::string occupiedBlocks(StringRef slots, int64_t numExperts,
                           int64_t blockM) {
  std::string assignments =
      llvm::formatv("(({0}) - {1})", slots, numExperts * (blockM - 1));
  return llvm::formatv("std::min<int64_t>((({0}) + {1}) / {2}, {3} / {2} + "
                       "std::min<int64_t>({4}, {3}))",
                       slots, blockM - 1, blockM, assignments, numExperts);
}

/// What the runtime needs to launch a kernel: its `moe.launch` entries.
int64_t launchParameter(gpu::GPUFuncOp kernel, StringRef key) {
  auto launch = kernel->getAttrOfType<DictionaryAttr>("moe.launch");
  if (!launch)
    return 0;
  auto value = launch.getAs<IntegerAttr>(key);
  return value ? value.getInt() : 0;
}

class HostEmitter {
public:
  HostEmitter(ModuleOp module, func::FuncOp func, StringRef name)
      : module(module), func(func), name(name.str()), body(bodyText) {}

  LogicalResult emit(StringRef image, raw_ostream &source,
                     raw_ostream &header);

private:
  FailureOr<Buffer> argumentBuffer(BlockArgument argument);
  /// A workspace buffer for `value` (or the caller's result buffer).
  Buffer allocate(Value value, SmallVector<std::string> sizes, Type type);
  Buffer allocateScratch(StringRef label, SmallVector<std::string> sizes,
                         Type type);
  FailureOr<gpu::GPUFuncOp> kernelOf(Operation *op, StringRef attribute);
  unsigned kernelIndex(gpu::GPUFuncOp kernel);
  /// Emits a memref descriptor of `buffer` and adds it to `params`.
  void addMemref(const Buffer &buffer, StringRef params);
  /// Opens the scope of one launch with a fresh `Params` list; returns its
  /// name. `launch` closes the scope.
  std::string openParams();
  void launch(gpu::GPUFuncOp kernel, StringRef params,
              ArrayRef<std::string> grid);
  /// Emits zeroing `bytes` (an expression, a multiple of 4) at `address`
  /// on the stream.
  void zeroAsync(StringRef address, StringRef bytes);
  LogicalResult emitRoute(RouteOp op);
  LogicalResult emitAlign(AlignOp op);
  LogicalResult emitExpertMatmul(ExpertMatmulOp op);
  LogicalResult emitQuantize(QuantizeOp op);

  ModuleOp module;
  func::FuncOp func;
  std::string name;
  DenseMap<Value, Buffer> buffers;
  DenseMap<Value, unsigned> resultIndex;
  /// Workspace allocations after the descriptors: bytes expressions.
  SmallVector<std::string> allocations;
  SmallVector<std::string> kernelNames;
  /// Workspace buffers counting the invalid expert ids of each moe.align.
  SmallVector<unsigned> errorWords;
  std::string bodyText;
  llvm::raw_string_ostream body;
  unsigned counter = 0;
};
} // namespace

FailureOr<Buffer> HostEmitter::argumentBuffer(BlockArgument argument) {
  auto type = dyn_cast<RankedTensorType>(argument.getType());
  if (!type)
    return func.emitError("GPU layer arguments must be ranked tensors");
  Buffer buffer;
  buffer.address =
      llvm::formatv("static_cast<char *>(const_cast<void *>(arg{0}))",
                    argument.getArgNumber());
  buffer.elementType = type.getElementType();
  for (auto [dim, size] : llvm::enumerate(type.getShape())) {
    if (ShapedType::isDynamic(size) && dim != 0)
      return func.emitError("GPU layer argument ")
             << argument.getArgNumber()
             << ": only the first dimension (the token count) may be dynamic";
    buffer.sizes.push_back(ShapedType::isDynamic(size) ? "numTokens"
                                                       : std::to_string(size));
  }
  return buffer;
}

Buffer HostEmitter::allocateScratch(StringRef label,
                                    SmallVector<std::string> sizes,
                                    Type type) {
  unsigned index = allocations.size();
  allocations.push_back(product(sizes) + " * " +
                        std::to_string(elementBytes(type)));
  body << "  // " << label << "\n";
  Buffer buffer;
  buffer.address = llvm::formatv("(base + plan.offsets[{0}])", index);
  buffer.sizes = std::move(sizes);
  buffer.elementType = type;
  return buffer;
}

Buffer HostEmitter::allocate(Value value, SmallVector<std::string> sizes,
                             Type type) {
  auto found = resultIndex.find(value);
  if (found != resultIndex.end()) {
    Buffer buffer;
    buffer.address =
        llvm::formatv("static_cast<char *>(result{0})", found->second);
    buffer.sizes = std::move(sizes);
    buffer.elementType = type;
    buffers[value] = buffer;
    return buffer;
  }
  Buffer buffer = allocateScratch("workspace buffer", sizes, type);
  buffers[value] = buffer;
  return buffer;
}

FailureOr<gpu::GPUFuncOp> HostEmitter::kernelOf(Operation *op,
                                                StringRef attribute) {
  auto symbol = op->getAttrOfType<SymbolRefAttr>(attribute);
  if (!symbol)
    return op->emitError("no GPU kernel for this op (see the remarks of "
                         "moe-emit-gpu-kernels)");
  auto kernel = dyn_cast_or_null<gpu::GPUFuncOp>(
      SymbolTable::lookupSymbolIn(module, symbol));
  if (!kernel)
    return op->emitError("kernel ") << symbol << " not found";
  return kernel;
}

unsigned HostEmitter::kernelIndex(gpu::GPUFuncOp kernel) {
  for (auto [index, existing] : llvm::enumerate(kernelNames))
    if (existing == kernel.getName())
      return index;
  kernelNames.push_back(kernel.getName().str());
  return kernelNames.size() - 1;
}

void HostEmitter::addMemref(const Buffer &buffer, StringRef params) {
  unsigned id = counter++;
  size_t rank = buffer.sizes.size();
  SmallVector<std::string> strides(rank, "1");
  for (int64_t dim = static_cast<int64_t>(rank) - 2; dim >= 0; --dim)
    strides[dim] = "(" + strides[dim + 1] + ") * (" + buffer.sizes[dim + 1] + ")";
  body << llvm::formatv("  Memref<{0}> memref{1} = {{{2}, {2}, 0, {{{3}}, "
                        "{{{4}}};\n",
                        rank, id, buffer.address,
                        llvm::join(buffer.sizes, ", "),
                        llvm::join(strides, ", "));
  body << llvm::formatv("  {0}.add(memref{1});\n", params, id);
}

std::string HostEmitter::openParams() {
  std::string params = "params" + std::to_string(counter++);
  body << "  {\n  Params " << params << ";\n";
  return params;
}

void HostEmitter::launch(gpu::GPUFuncOp kernel, StringRef params,
                         ArrayRef<std::string> grid) {
  unsigned index = kernelIndex(kernel);
  int64_t threads = launchParameter(kernel, "threads");
  int64_t shared = launchParameter(kernel, "shared_bytes");
  body << llvm::formatv(
      "  if (moe_rt_status status = launch(kernels, {0}, {{{1}}, {2}, {3}, "
      "stream, {4}))\n    return status;\n  }\n",
      index, llvm::join(grid, ", "), threads, shared, params);
}

void HostEmitter::zeroAsync(StringRef address, StringRef bytes) {
  body << llvm::formatv("  if (moe_rt_status status = "
                        "moe_rt_memset_zero_async({0}, {1}, stream))\n"
                        "    return status;\n",
                        address, bytes);
}

LogicalResult HostEmitter::emitRoute(RouteOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  Buffer input = buffers.lookup(op.getInput());
  std::string numTokens = input.sizes[0];
  std::string topK = std::to_string(op.getK());
  body << "  // moe.route\n";
  Buffer weights = allocate(op.getWeights(), {numTokens, topK},
                            Float32Type::get(op.getContext()));
  Buffer ids = allocate(op.getIds(), {numTokens, topK},
                        IntegerType::get(op.getContext(), 32));
  std::string params = openParams();
  addMemref(input, params);
  addMemref(buffers.lookup(op.getGateWeight()), params);
  if (op.getGateBias())
    addMemref(buffers.lookup(op.getGateBias()), params);
  if (op.getScoreBias())
    addMemref(buffers.lookup(op.getScoreBias()), params);
  addMemref(weights, params);
  addMemref(ids, params);
  launch(*kernel, params, {numTokens, "1", "1"});
  return success();
}

LogicalResult HostEmitter::emitAlign(AlignOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  Buffer ids = buffers.lookup(op.getIds());
  int64_t topK = op.getIds().getType().getDimSize(1);
  int64_t numExperts = op.getNumExperts(), blockM = op.getBlockM();
  std::string assignments = "(" + ids.sizes[0] + ") * " + std::to_string(topK);
  std::string slots = "(" + assignments + " + " +
                      std::to_string(numExperts * (blockM - 1)) + ")";
  std::string blocks = llvm::formatv("(({0} + {1}) / {2})", slots, blockM - 1,
                                     blockM);
  auto i32 = IntegerType::get(op.getContext(), 32);
  body << "  // moe.align\n";
  Buffer sorted = allocate(op.getSortedIds(), {slots}, i32);
  Buffer experts = allocate(op.getBlockExperts(), {blocks}, i32);
  Buffer padded = allocate(op.getNumPadded(), {"1"}, i32);
  errorWords.push_back(allocations.size());
  Buffer errors = allocateScratch("ids outside [-1, E) (runtime errors)",
                                  {"1"}, i32);
  std::string params = openParams();
  for (const Buffer &buffer : {ids, sorted, experts, padded, errors})
    addMemref(buffer, params);
  launch(*kernel, params, {"1", "1", "1"});
  return success();
}

LogicalResult HostEmitter::emitExpertMatmul(ExpertMatmulOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  auto weightsArgument = dyn_cast<BlockArgument>(op.getWeights());
  if (!weightsArgument || weightsArgument.getOwner()->getParentOp() != func)
    return op.emitError("GPU layer: the weights must be a function argument");
  auto weightsType = op.getWeights().getType();
  int64_t numExperts = weightsType.getDimSize(0);
  int64_t outFeatures = weightsType.getDimSize(1);
  int64_t inFeatures = weightsType.getDimSize(2);
  body << "  // moe.expert_matmul" << (op.isCombine() ? " (combine)" : "")
       << "\n";
  // Weight-only formats read their stored codes by cp.async: no TMA
  // descriptor, the codes as a [E·N, stored K] byte matrix.
  bool weightOnly = op.getQuantization().isWeightOnly();
  unsigned map = counter++;
  if (!weightOnly)
    body << llvm::formatv(
      "  CUtensorMap map{0};\n"
      "  if (moe_rt_status status = moe_rt_encode_tma_2d(&map{0}, "
      "const_cast<void *>(arg{1}), {2}, {3}, {4}, {5}, {6}))\n"
      "    return status;\n",
      map, weightsArgument.getArgNumber(), numExperts * outFeatures,
      inFeatures, launchParameter(*kernel, "element_bytes"),
      launchParameter(*kernel, "box_rows"),
      launchParameter(*kernel, "box_cols"));

  Buffer input = buffers.lookup(op.getInput());
  Buffer slots = buffers.lookup(op.getSlots());
  Buffer blocks = buffers.lookup(op.getBlockExperts());
  Buffer padded = buffers.lookup(op.getNumPadded());
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  int64_t width = op.getOutputWidth();
  int64_t blockM = launchParameter(*kernel, "block_m");
  std::string grid0 = occupiedBlocks(slots.sizes[0], numExperts, blockM);
  int64_t tileN = launchParameter(*kernel, "tile_n");
  std::string grid1 = std::to_string((width + tileN - 1) / tileN);
  std::string grid2 = std::to_string(launchParameter(*kernel, "split_k"));

  Buffer output, sums;
  Buffer routingWeights;
  if (op.isCombine()) {
    routingWeights = buffers.lookup(op.getRoutingWeights());
    std::string numTokens = routingWeights.sizes[0];
    sums = allocateScratch("f32 sums of the combine",
                           {numTokens, std::to_string(width)},
                           Float32Type::get(op.getContext()));
    output = allocate(op.getResult(), {numTokens, std::to_string(width)},
                      resultType.getElementType());
    zeroAsync(sums.address, product(sums.sizes) + " * 4");
  } else {
    output = allocate(op.getResult(), {slots.sizes[0], std::to_string(width)},
                      resultType.getElementType());
  }
  std::string params = openParams();
  for (const Buffer &buffer : {input, slots, blocks, padded})
    addMemref(buffer, params);
  if (weightOnly) {
    Buffer codes = buffers.lookup(op.getWeights());
    codes.sizes = {std::to_string(numExperts * outFeatures), codes.sizes[2]};
    addMemref(codes, params);
    addMemref(buffers.lookup(op.getWeightScales()), params);
    if (op.getWeightZeros())
      addMemref(buffers.lookup(op.getWeightZeros()), params);
  } else {
    body << llvm::formatv("  {0}.add(map{1});\n", params, map);
  }
  if (op.getInputScales()) {
    addMemref(buffers.lookup(op.getInputScales()), params);
    addMemref(buffers.lookup(op.getWeightScales()), params);
  }
  if (op.isCombine()) {
    addMemref(routingWeights, params);
    addMemref(sums, params);
  } else {
    addMemref(output, params);
  }
  launch(*kernel, params, {grid0, grid1, grid2});
  if (!op.isCombine())
    return success();

  FailureOr<gpu::GPUFuncOp> finalize =
      kernelOf(op, "moe.gpu_finalize_kernel");
  if (failed(finalize))
    return failure();
  int64_t threads = launchParameter(*finalize, "threads");
  params = openParams();
  addMemref(sums, params);
  addMemref(output, params);
  launch(*finalize, params,
         {sums.sizes[0],
          std::to_string((width + threads - 1) / threads), "1"});
  return success();
}

LogicalResult HostEmitter::emitQuantize(QuantizeOp op) {
  FailureOr<gpu::GPUFuncOp> kernel = kernelOf(op, "moe.gpu_kernel");
  if (failed(kernel))
    return failure();
  Buffer input = buffers.lookup(op.getInput());
  std::string rows = input.sizes[0];
  std::string columns = input.sizes[1];
  body << "  // moe.quantize\n";
  Buffer codes = allocate(op.getCodes(), {rows, columns},
                          op.getCodes().getType().getElementType());
  auto scalesType = cast<RankedTensorType>(op.getScales().getType());
  SmallVector<std::string> scaleSizes;
  for (int64_t size : scalesType.getShape())
    scaleSizes.push_back(ShapedType::isDynamic(size) ? rows
                                                     : std::to_string(size));
  Buffer scales =
      allocate(op.getScales(), scaleSizes, scalesType.getElementType());
  // Rows of an aligned schedule: only the rows of the blocks that can hold
  // an assignment are launched, and the kernels stop at the padded count.
  std::string launchedRows = rows;
  bool bounded = launchParameter(*kernel, "bounded");
  auto producer = op.getInput().getDefiningOp<ExpertMatmulOp>();
  if (bounded) {
    int64_t blockM = *producer.getBlockM();
    launchedRows = llvm::formatv(
        "({0}) * {1}", occupiedBlocks(rows, producer.getNumExperts(), blockM),
        blockM);
  }
  int64_t rowsPerBlock = launchParameter(*kernel, "rows_per_block");
  std::string rowBlocks = llvm::formatv("(({0}) + {1}) / {2}", launchedRows,
                                        rowsPerBlock - 1, rowsPerBlock);

  // Per tensor: the amax of all rows first, into a zeroed word.
  Buffer amaxWord;
  bool perTensor =
      op.getQuantization().getScales() == ScaleLayout::PerTensor;
  if (perTensor) {
    FailureOr<gpu::GPUFuncOp> amaxKernel =
        kernelOf(op, "moe.gpu_amax_kernel");
    if (failed(amaxKernel))
      return failure();
    amaxWord = allocateScratch("amax word of the per-tensor quantization",
                               {"1"}, IntegerType::get(op.getContext(), 32));
    zeroAsync(amaxWord.address, "4");
    std::string params = openParams();
    addMemref(input, params);
    addMemref(amaxWord, params);
    if (bounded) {
      addMemref(buffers.lookup(producer.getNumPadded()), params);
      addMemref(buffers.lookup(producer.getSlots()), params);
    }
    launch(*amaxKernel, params,
           {llvm::formatv("std::min<int64_t>({0}, {1})", rowBlocks,
                          launchParameter(*amaxKernel, "max_blocks")),
            "1", "1"});
  }

  std::string params = openParams();
  for (const Buffer &buffer : {input, codes, scales})
    addMemref(buffer, params);
  if (perTensor)
    addMemref(amaxWord, params);
  if (bounded)
    addMemref(buffers.lookup(producer.getNumPadded()), params);
  launch(*kernel, params, {rowBlocks, "1", "1"});
  return success();
}

LogicalResult HostEmitter::emit(StringRef image, raw_ostream &source,
                                raw_ostream &header) {
  Block &entry = func.getBody().front();
  for (BlockArgument argument : entry.getArguments()) {
    FailureOr<Buffer> buffer = argumentBuffer(argument);
    if (failed(buffer))
      return failure();
    buffers[argument] = *buffer;
  }
  auto returnOp = cast<func::ReturnOp>(entry.getTerminator());
  for (auto [index, value] : llvm::enumerate(returnOp.getOperands())) {
    if (isa<BlockArgument>(value) || resultIndex.count(value))
      return returnOp.emitError(
          "GPU layer: each result must be a distinct computed value");
    resultIndex[value] = index;
  }
  for (Operation &op : entry.without_terminator()) {
    LogicalResult result =
        TypeSwitch<Operation *, LogicalResult>(&op)
            .Case<RouteOp>([&](RouteOp route) { return emitRoute(route); })
            .Case<AlignOp>([&](AlignOp align) { return emitAlign(align); })
            .Case<ExpertMatmulOp>(
                [&](ExpertMatmulOp matmul) { return emitExpertMatmul(matmul); })
            .Case<QuantizeOp>(
                [&](QuantizeOp quantize) { return emitQuantize(quantize); })
            .Default([](Operation *other) {
              return other->emitError("no GPU lowering for this op yet");
            });
    if (failed(result))
      return failure();
  }

  // The entry point's parameters.
  SmallVector<std::string> parameters;
  SmallVector<std::string> parameterDocs;
  auto describe = [](Type type) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << type;
    return text;
  };
  for (BlockArgument argument : entry.getArguments()) {
    parameters.push_back("const void *arg" +
                         std::to_string(argument.getArgNumber()));
    parameterDocs.push_back(llvm::formatv("///   arg{0}: {1}",
                                          argument.getArgNumber(),
                                          describe(argument.getType())));
  }
  for (auto [index, type] : llvm::enumerate(func.getResultTypes())) {
    parameters.push_back("void *result" + std::to_string(index));
    parameterDocs.push_back(
        llvm::formatv("///   result{0}: {1}", index, describe(type)));
  }
  std::string entryName = "moe_layer_" + name;
  std::string signature = llvm::formatv(
      "int {0}({1}, int64_t numTokens, void *workspace, size_t "
      "workspaceBytes, CUstream stream)",
      entryName, llvm::join(parameters, ", "));
  std::string guard = "MOE_LAYER_" + StringRef(name).upper() + "_H";

  header << "// Generated by moe-compile; do not edit.\n"
         << "#ifndef " << guard << "\n#define " << guard << "\n\n"
         << "#include <cuda.h>\n#include <stddef.h>\n#include <stdint.h>\n\n"
         << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
         << "/// Runs layer @" << func.getName()
         << " on `stream` (asynchronously) for `numTokens` tokens. All\n"
         << "/// pointers are device pointers; the first dimension of a '?' "
            "shape is\n/// numTokens.\n"
         << llvm::join(parameterDocs, "\n") << "\n"
         << "/// `workspace` (128-byte aligned, at least\n/// " << entryName
         << "_workspace_bytes(numTokens) bytes) holds the intermediates;\n"
            "/// it needs no initialization. The call never waits for the "
            "device, so it can be\n/// captured in a CUDA graph. Returns 0, "
            "or a moe_rt_status with\n/// moe_rt_last_error() set.\n"
         << signature << ";\n\n"
         << "/// The workspace the layer needs for `numTokens` tokens.\n"
         << "size_t " << entryName << "_workspace_bytes(int64_t numTokens);\n\n"
         << "/// Waits for `stream` and sets `*count` to the number of expert "
            "ids outside\n/// [-1, E) the last call on `workspace` met (they "
            "were skipped). Not\n/// allowed while `stream` is being captured.\n"
         << "int " << entryName << "_invalid_ids(const void *workspace, "
            "int64_t numTokens,\n    CUstream stream, int64_t *count);\n\n"
         << "#ifdef __cplusplus\n}\n#endif\n\n#endif // " << guard << "\n";

  source << "// Generated by moe-compile from @" << func.getName()
         << "; do not edit.\n"
         << "#include \"" << name << ".h\"\n"
         << "#include \"moe/Runtime/Runtime.h\"\n\n"
         << "#include <algorithm>\n#include <mutex>\n#include <vector>\n\n"
            "namespace {\n";
  source << "alignas(64) const unsigned char kImage[] = {";
  for (auto [index, byte] : llvm::enumerate(image)) {
    if (index % 16 == 0)
      source << "\n ";
    source << " " << static_cast<unsigned>(static_cast<unsigned char>(byte))
           << ",";
  }
  source << "\n  0};\n\n";
  source << "const char *const kKernelNames[] = {";
  for (const std::string &kernel : kernelNames)
    source << "\"" << kernel << "\", ";
  source << "};\nconstexpr int kNumKernels = " << kernelNames.size() << ";\n"

         << "constexpr int kNumBuffers = " << allocations.size() << ";\n\n";
  source << R"cpp(template <int Rank> struct Memref {
  void *allocated, *aligned;
  int64_t offset, sizes[Rank], strides[Rank];
};

/// Kernel parameters in the order of the lowered gpu.func arguments.
struct Params {
  void *items[64];
  int count = 0;
  template <int Rank> void add(Memref<Rank> &memref) {
    items[count++] = &memref.allocated;
    items[count++] = &memref.aligned;
    items[count++] = &memref.offset;
    for (int dim = 0; dim < Rank; ++dim)
      items[count++] = &memref.sizes[dim];
    for (int dim = 0; dim < Rank; ++dim)
      items[count++] = &memref.strides[dim];
  }
  /// A TMA descriptor, passed by value (a 128-byte grid constant).
  void add(CUtensorMap &map) { items[count++] = &map; }
};

/// The kernels, loaded once per CUDA context (a process may run the layer
/// on several devices, each with its primary context current).
struct Loaded {
  CUcontext context;
  CUfunction kernels[kNumKernels > 0 ? kNumKernels : 1];
};
std::mutex loadMutex;
std::vector<Loaded> loaded;

moe_rt_status load(const CUfunction *&kernels) {
  CUcontext context;
  if (moe_rt_status status = moe_rt_current_context(&context))
    return status;
  std::lock_guard<std::mutex> lock(loadMutex);
  for (const Loaded &entry : loaded)
    if (entry.context == context) {
      kernels = entry.kernels;
      return MOE_RT_SUCCESS;
    }
  Loaded entry{context, {}};
  moe_rt_module_t module;
  if (moe_rt_status status =
          moe_rt_module_load(kImage, sizeof(kImage), &module))
    return status;
  for (int i = 0; i < kNumKernels; ++i)
    if (moe_rt_status status =
            moe_rt_get_function(module, kKernelNames[i], &entry.kernels[i]))
      return status;
  loaded.push_back(entry);
  kernels = loaded.back().kernels;
  return MOE_RT_SUCCESS;
}

moe_rt_status launch(const CUfunction *kernels, int kernel,
                     const int64_t (&grid)[3], uint32_t threads,
                     uint32_t sharedBytes, CUstream stream, Params &params) {
  uint32_t grid32[3], block[3] = {threads, 1, 1};
  for (int i = 0; i < 3; ++i)
    grid32[i] = static_cast<uint32_t>(grid[i]);
  return moe_rt_launch(kernels[kernel], grid32, block, sharedBytes, stream,
                       params.items);
}

/// The buffers, each on 256 bytes.
struct Plan {
  size_t offsets[kNumBuffers > 0 ? kNumBuffers : 1];
  size_t total;
};

size_t roundUp(size_t bytes) { return (bytes + 255) / 256 * 256; }

)cpp";
  source << "Plan planWorkspace(int64_t numTokens) {\n  Plan plan;\n"
         << "  size_t at = 0;\n";
  for (auto [index, bytes] : llvm::enumerate(allocations))
    source << "  plan.offsets[" << index << "] = at;\n  at = roundUp(at + "
           << bytes << ");\n";
  source << "  plan.total = at;\n  (void)numTokens;\n  return plan;\n}\n\n";
  source << "} // namespace\n\n";
  source << "extern \"C\" size_t " << entryName
         << "_workspace_bytes(int64_t numTokens) {\n"
         << "  return numTokens < 0 ? 0 : planWorkspace(numTokens).total;\n}\n\n";
  source << "extern \"C\" int " << entryName
         << "_invalid_ids(const void *workspace, int64_t numTokens, CUstream "
            "stream, int64_t *count) {\n"
         << "  if (!workspace || !count || numTokens < 0)\n"
         << "    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT, \""
         << entryName << "_invalid_ids: bad argument\");\n"
         << "  *count = 0;\n  if (numTokens == 0)\n    return MOE_RT_SUCCESS;\n"
         << "  Plan plan = planWorkspace(numTokens);\n  (void)plan;\n";
  for (unsigned word : errorWords)
    source << "  {\n    int32_t errors = 0;\n"
           << "    if (moe_rt_status status = moe_rt_download(&errors, "
              "static_cast<const char *>(workspace) + plan.offsets["
           << word << "], 4, stream))\n      return status;\n"
           << "    *count += errors;\n  }\n";
  source << "  return MOE_RT_SUCCESS;\n}\n\n";
  source << "extern \"C\" " << signature << " {\n"
         << "  if (numTokens < 0 || numTokens > (int64_t(1) << 24))\n"
         << "    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT, \"" << entryName
         << ": the token count is out of range\");\n"
         << "  Plan plan = planWorkspace(numTokens);\n";
  source << "  if (!workspace || workspaceBytes < plan.total ||\n"
         << "      reinterpret_cast<uintptr_t>(workspace) % 128 != 0)\n"
         << "    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT, \"" << entryName
         << ": the workspace is missing, too small or not 128-byte "
            "aligned\");\n";
  SmallVector<std::string> pointerChecks;
  for (unsigned i = 0; i < entry.getNumArguments(); ++i)
    pointerChecks.push_back("!arg" + std::to_string(i));
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    pointerChecks.push_back("!result" + std::to_string(i));
  source << "  if (" << llvm::join(pointerChecks, " || ") << ")\n"
         << "    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT, \"" << entryName
         << ": a null tensor pointer\");\n"
         << "  const CUfunction *kernels = nullptr;\n"
         << "  if (moe_rt_status status = load(kernels))\n    return status;\n"
         << "  if (numTokens == 0)\n    return MOE_RT_SUCCESS;\n"
         << "  char *base = static_cast<char *>(workspace);\n"
         << bodyText << "  return MOE_RT_SUCCESS;\n}\n";
  return success();
}

LogicalResult mlir::moe::emitGpuHostSource(ModuleOp module, StringRef image,
                                           StringRef name,
                                           raw_ostream &source,
                                           raw_ostream &header) {
  SmallVector<func::FuncOp> funcs;
  module.walk([&](func::FuncOp func) {
    if (!func.isExternal())
      funcs.push_back(func);
  });
  if (funcs.size() != 1)
    return module.emitError("a GPU layer needs exactly one function, found ")
           << funcs.size();
  return HostEmitter(module, funcs.front(), name).emit(image, source, header);
}

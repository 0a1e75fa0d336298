//===- TranslateToCpp.cpp - host source of a compiled GPU layer -----------===//
//
// Lowers a copy of the host IR to EmitC and prints it with upstream
// translateToCpp; the header declares the same functions, with what each
// parameter is taken from the host IR.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/GpuHost.h"

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h"

#include "mlir/Dialect/EmitC/IR/EmitC.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/Cpp/CppEmitter.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using moe_gpu::MoeGPUDialect;

namespace {
std::string printed(Type type) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

/// The C name of a tensor parameter: the argument's NameLoc (moe-compile
/// gives each its name in the source) as an identifier, else `fallback`.
std::string parameterName(BlockArgument argument, StringRef fallback) {
  auto nameLoc = dyn_cast<NameLoc>(argument.getLoc());
  if (!nameLoc || nameLoc.getName().getValue().empty())
    return fallback.str();
  std::string name = nameLoc.getName().getValue().str();
  for (char &c : name)
    if (!llvm::isAlnum(c) && c != '_')
      c = '_';
  if (llvm::isDigit(name.front()))
    name = fallback.str() + "_" + name;
  return name;
}

/// A tensor's elements and shape in C terms: `bf16 [numTokens][4096]`.
std::string describeTensor(MemRefType type) {
  std::string text;
  llvm::raw_string_ostream os(text);
  Type element = type.getElementType();
  if (element.isBF16())
    os << "bf16 (uint16_t bits)";
  else if (element.isF32())
    os << "float";
  else if (isa<Float8E4M3FNType>(element))
    os << "fp8 e4m3 (uint8_t bits)";
  else if (auto integer = dyn_cast<IntegerType>(element))
    os << "int" << integer.getWidth() << "_t";
  else
    os << element;
  os << " ";
  for (int64_t size : type.getShape()) {
    if (ShapedType::isDynamic(size))
      os << "[numTokens]";
    else
      os << "[" << size << "]";
  }
  return text;
}

/// Whether host function `func` launches work (takes a stream).
bool launches(func::FuncOp func) {
  return llvm::any_of(func.getArgumentTypes(), [](Type type) {
    return isa<moe_gpu::StreamType>(type);
  });
}

/// The names of the C parameters of host function `func`, in order (the
/// workspace is a pointer and a size; a launching function's results are
/// out pointers).
SmallVector<std::string> parameterNames(func::FuncOp func) {
  SmallVector<std::string> names;
  int64_t numResults = llvm::count_if(
      llvm::seq(func.getNumArguments()), [&](unsigned index) {
        return func.getArgAttr(index, MoeGPUDialect::getResultAttrName());
      });
  int64_t result = 0;
  for (BlockArgument argument : func.getArguments()) {
    Type type = argument.getType();
    unsigned index = argument.getArgNumber();
    if (isa<moe_gpu::StreamType>(type)) {
      names.push_back("stream");
    } else if (isa<moe_gpu::GroupType>(type)) {
      names.push_back("group");
    } else if (isa<IndexType>(type)) {
      names.push_back("numTokens");
    } else if (func.getArgAttr(index, MoeGPUDialect::getWorkspaceAttrName())) {
      names.append({"workspace", "workspaceBytes"});
    } else if (func.getArgAttr(index, MoeGPUDialect::getResultAttrName())) {
      names.push_back(numResults == 1 ? "result"
                                      : "result" + std::to_string(result));
      ++result;
    } else {
      names.push_back(parameterName(argument, "input" + std::to_string(index)));
    }
  }
  // A launching function returns its status; its results are out pointers.
  if (launches(func))
    for (unsigned i = 0; i < func.getNumResults(); ++i)
      names.push_back(func.getNumResults() == 1 ? "count"
                                                : "count" + std::to_string(i));
  return names;
}

/// The doc comment of host function `func`: its C parameters in order.
std::string describe(func::FuncOp func) {
  std::string doc;
  llvm::raw_string_ostream os(doc);
  bool launching = launches(func);
  if (StringRef(func.getName()).ends_with("_workspace_bytes"))
    os << "/// The workspace bytes the layer needs for `numTokens` tokens.\n";
  else if (StringRef(func.getName()).ends_with("_invalid_ids"))
    os << "/// Waits for the stream and sets `*count` to the number of expert "
          "ids outside\n/// [-1, E) the last call on this workspace met (they "
          "were skipped). Not\n/// allowed while the stream is being "
          "captured.\n";
  else
    os << "/// Runs the layer on the stream, asynchronously: it never waits "
          "for the device,\n/// so it can be captured in a CUDA graph. The "
          "first call in a CUDA context\n/// loads the kernels (call once "
          "before capturing). The loaded kernels are\n/// shared under a lock "
          "and never freed; a call keeps its other state on its own\n/// "
          "stack. Calls that share a workspace must be ordered.\n";
  os << "/// Parameters, in order:\n";
  SmallVector<std::string> names = parameterNames(func);
  unsigned position = 0;
  for (auto [index, type] : llvm::enumerate(func.getArgumentTypes())) {
    if (isa<moe_gpu::StreamType>(type)) {
      os << "///   CUstream stream: the stream the work is ordered on\n";
    } else if (isa<moe_gpu::GroupType>(type)) {
      os << "///   const moe_rt_group *group: the expert-parallel group "
            "(e.g. moe_rt_group_from_nccl);\n///     every rank calls the "
            "layer with the same token count\n";
    } else if (isa<IndexType>(type)) {
      os << "///   int64_t numTokens: the token count (0 to 2^24)\n";
    } else if (func.getArgAttr(index, MoeGPUDialect::getWorkspaceAttrName())) {
      if (func.getNumResults() == 0)
        os << "///   void *workspace, size_t workspaceBytes: device memory, "
              "128-byte aligned,\n///     at least "
              "_workspace_bytes(numTokens) bytes; needs no initialization\n";
      else
        os << "///   void *workspace, size_t workspaceBytes: the workspace "
              "of the last call\n";
      ++position;
    } else {
      bool result = static_cast<bool>(
          func.getArgAttr(index, MoeGPUDialect::getResultAttrName()));
      os << "///   " << (result ? "void *" : "const void *") << names[position]
         << ": " << describeTensor(cast<MemRefType>(type))
         << ", row-major,\n///     16-byte aligned device memory"
         << (result ? " (written)" : "") << "\n";
    }
    ++position;
  }
  for (Type type : func.getResultTypes()) {
    if (launching)
      os << "///   int64_t *" << names[position++]
         << ": host memory, set on success\n";
    else
      os << "/// Returns: " << (isa<IndexType>(type) ? "the bytes" : printed(type))
         << "\n";
  }
  if (launching)
    os << "/// Returns 0, or a moe_rt_status with moe_rt_last_error() set.\n";
  return doc;
}

void verbatim(OpBuilder &b, Location loc, StringRef text) {
  emitc::VerbatimOp::create(b, loc, b.getStringAttr(text));
}

/// The C declaration of `func` as translateToCpp prints it (the types come
/// from the EmitC lowering alone), with `names` given to its parameters.
FailureOr<std::string> declaration(emitc::FuncOp func,
                                   ArrayRef<std::string> names) {
  OwningOpRef<ModuleOp> holder = ModuleOp::create(func.getLoc());
  OpBuilder b(func.getContext());
  b.setInsertionPointToEnd(holder->getBody());
  emitc::FuncOp::create(b, func.getLoc(), func.getName(),
                        func.getFunctionType());
  std::string text;
  llvm::raw_string_ostream os(text);
  if (failed(emitc::translateToCpp(*holder, os)))
    return failure();
  StringRef printed = StringRef(text).trim();
  size_t open = printed.find('('), close = printed.rfind(')');
  SmallVector<StringRef> types;
  if (open < close)
    printed.slice(open + 1, close).split(types, ", ");
  if (open >= close || types.size() != names.size())
    return func.emitError("cannot name the parameters of ") << printed;
  std::string named = printed.take_front(open + 1).str();
  for (auto [position, type] : llvm::enumerate(types))
    named += (position ? ", " : "") + type.str() + " " + names[position];
  return named + printed.drop_front(close).str();
}

/// The header: a declaration of each function of `lowered`, documented from
/// the host functions of `host`, and with their parameters' names; `preamble`
/// (a comment) comes before them.
FailureOr<OwningOpRef<ModuleOp>> buildHeader(ModuleOp host, ModuleOp lowered,
                                             StringRef name,
                                             StringRef preamble = "") {
  Location loc = host.getLoc();
  OwningOpRef<ModuleOp> header = ModuleOp::create(loc);
  OpBuilder b(host.getContext());
  b.setInsertionPointToEnd(header->getBody());
  std::string guard = "MOE_LAYER_" + StringRef(name).upper() + "_H";
  verbatim(b, loc, "// Generated by moe-compile; do not edit.");
  verbatim(b, loc, "#ifndef " + guard + "\n#define " + guard);
  for (StringRef include : {"cuda.h", "stddef.h", "stdint.h"})
    emitc::IncludeOp::create(b, loc, b.getStringAttr(include),
                             b.getUnitAttr());
  verbatim(b, loc, "#ifdef __cplusplus\nextern \"C\" {\n#endif");
  // A rank's program of an expert-parallel layer takes the runtime's group
  // (moe/Runtime/Runtime.h), which the header need not include.
  bool takesGroup = false;
  host.walk([&](func::FuncOp func) {
    takesGroup |= llvm::any_of(func.getArgumentTypes(), [](Type type) {
      return isa<moe_gpu::GroupType>(type);
    });
  });
  if (takesGroup)
    verbatim(b, loc, "typedef struct moe_rt_group moe_rt_group;");
  if (!preamble.empty())
    verbatim(b, loc, preamble);
  for (auto func : lowered.getOps<emitc::FuncOp>()) {
    auto original = host.lookupSymbol<func::FuncOp>(func.getName());
    if (!original) {
      emitc::FuncOp::create(b, loc, func.getName(), func.getFunctionType());
      continue;
    }
    verbatim(b, loc, StringRef(describe(original)).rtrim());
    FailureOr<std::string> declared =
        declaration(func, parameterNames(original));
    if (failed(declared))
      return failure();
    verbatim(b, loc, *declared);
  }
  verbatim(b, loc, "#ifdef __cplusplus\n}\n#endif");
  verbatim(b, loc, "#endif // " + guard);
  return header;
}
} // namespace

namespace {
/// The C entry points of a layer, after `moe_layer_<name>`.
constexpr StringLiteral kEntrySuffixes[] = {"", "_workspace_bytes",
                                            "_invalid_ids"};

std::string variantName(StringRef name, int64_t bucket) {
  return (name + "_m" + Twine(bucket)).str();
}

/// The EmitC lowering of `module`, its program's globals suffixed with
/// `suffix`.
FailureOr<OwningOpRef<ModuleOp>> lowerHost(ModuleOp module,
                                           StringRef suffix) {
  OwningOpRef<ModuleOp> lowered = cast<ModuleOp>(module->clone());
  PassManager pm(module.getContext());
  moe::ConvertMoeGpuHostToEmitCOptions options;
  options.symbolSuffix = suffix.str();
  pm.addPass(moe::createConvertMoeGpuHostToEmitC(options));
  if (failed(pm.run(*lowered)))
    return failure();
  return lowered;
}

/// The position of the token count among the C parameters of `func`: its
/// one int64_t.
FailureOr<unsigned> tokenCountPosition(emitc::FuncOp func) {
  std::optional<unsigned> position;
  for (auto [index, type] : llvm::enumerate(func.getArgumentTypes())) {
    if (!type.isSignlessInteger(64))
      continue;
    if (position)
      return func.emitError("two int64_t parameters: which is the token "
                            "count?");
    position = index;
  }
  if (!position)
    return func.emitError("no token count parameter");
  return *position;
}

/// Adds to `module` the entry point `entry` of the type of `variants`'s
/// functions (one per bucket, ascending): it calls the variant of the
/// smallest bucket that holds the token count, or of the largest.
LogicalResult buildDispatcher(OpBuilder &b, StringRef entry,
                              ArrayRef<int64_t> buckets,
                              ArrayRef<emitc::FuncOp> variants) {
  emitc::FuncOp last = variants.back();
  FailureOr<unsigned> tokens = tokenCountPosition(last);
  if (failed(tokens))
    return failure();
  Location loc = last.getLoc();
  FunctionType type = last.getFunctionType();
  auto func = emitc::FuncOp::create(b, loc, entry, type);
  Block *body = func.addEntryBlock();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(body);
  Type resultType = type.getResult(0);
  Value result = emitc::VariableOp::create(
      b, loc, emitc::LValueType::get(resultType),
      emitc::OpaqueAttr::get(b.getContext(), ""));
  Value numTokens = body->getArgument(*tokens);
  // if (numTokens <= bucket_0) result = variant_0(...); else if ... else
  // result = variant_last(...);
  for (auto [bucket, variant] : llvm::zip_equal(buckets, variants)) {
    auto call = [&, variant = variant] {
      Value value = emitc::CallOp::create(b, loc, variant, body->getArguments())
                        .getResult(0);
      emitc::AssignOp::create(b, loc, result, value);
    };
    if (variant == last) {
      call();
      break;
    }
    Value bound = emitc::ConstantOp::create(
        b, loc, numTokens.getType(),
        b.getIntegerAttr(numTokens.getType(), bucket));
    Value fits = emitc::CmpOp::create(b, loc, b.getI1Type(),
                                      emitc::CmpPredicate::le, numTokens,
                                      bound);
    auto ifOp = emitc::IfOp::create(b, loc, fits, /*addThenBlock=*/true,
                                    /*addElseBlock=*/true);
    for (Region *region : {&ifOp.getThenRegion(), &ifOp.getElseRegion()}) {
      b.setInsertionPointToEnd(&region->front());
      emitc::YieldOp::create(b, loc);
    }
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    call();
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  }
  b.setInsertionPointToEnd(body);
  emitc::ReturnOp::create(b, loc,
                          emitc::LoadOp::create(b, loc, resultType, result));
  return success();
}
} // namespace

LogicalResult mlir::moe::emitBucketedGpuHostSource(
    ArrayRef<std::pair<int64_t, ModuleOp>> variants, StringRef name,
    raw_ostream &source, raw_ostream &header) {
  // An empty list has no module to report on; compileLayerForGpu never
  // passes one.
  if (variants.empty())
    return failure();
  ModuleOp largest = variants.back().second;
  for (auto [previous, next] : llvm::zip(variants, variants.drop_front()))
    if (previous.first >= next.first)
      return largest.emitError("token-count buckets must ascend without "
                               "repeats, got ")
             << previous.first << " before " << next.first;
  MLIRContext *context = largest.getContext();
  Location loc = largest.getLoc();
  OpBuilder b(context);
  OwningOpRef<ModuleOp> combined = ModuleOp::create(loc);
  SmallVector<int64_t> buckets;
  for (auto [bucket, module] : variants) {
    FailureOr<OwningOpRef<ModuleOp>> lowered =
        lowerHost(module, "_m" + std::to_string(bucket));
    if (failed(lowered))
      return failure();
    // The variants are the dispatcher's helpers, private to the source.
    for (auto func : (**lowered).getOps<emitc::FuncOp>())
      func.setSpecifiersAttr(b.getStrArrayAttr({"static"}));
    combined->getBody()->getOperations().splice(
        combined->getBody()->end(), (**lowered).getBody()->getOperations());
    buckets.push_back(bucket);
  }
  // The entry points, and the host functions that document them: the
  // largest variant's, under the layer's name.
  OwningOpRef<ModuleOp> entries = ModuleOp::create(loc);
  OwningOpRef<ModuleOp> documented = ModuleOp::create(loc);
  b.setInsertionPointToEnd(entries->getBody());
  for (StringRef suffix : kEntrySuffixes) {
    std::string entry = ("moe_layer_" + name + suffix).str();
    SmallVector<emitc::FuncOp> calls;
    for (int64_t bucket : buckets)
      calls.push_back(combined->lookupSymbol<emitc::FuncOp>(
          "moe_layer_" + variantName(name, bucket) + suffix.str()));
    auto host = largest.lookupSymbol<func::FuncOp>(
        "moe_layer_" + variantName(name, buckets.back()) + suffix.str());
    if (!host || llvm::is_contained(calls, emitc::FuncOp()))
      return largest.emitError("no variant entry point for ") << entry;
    if (failed(buildDispatcher(b, entry, buckets, calls)))
      return failure();
    auto doc = cast<func::FuncOp>(host->clone());
    doc.setName(entry);
    documented->push_back(doc);
  }
  // The dispatchers follow the variants they call.
  combined->getBody()->getOperations().splice(
      combined->getBody()->end(), entries->getBody()->getOperations());
  OwningOpRef<ModuleOp> dispatchers = ModuleOp::create(loc);
  b.setInsertionPointToEnd(dispatchers->getBody());
  for (StringRef suffix : kEntrySuffixes) {
    auto func = combined->lookupSymbol<emitc::FuncOp>(
        ("moe_layer_" + name + suffix).str());
    emitc::FuncOp::create(b, loc, func.getName(), func.getFunctionType());
  }
  std::string bucketList;
  for (int64_t bucket : buckets)
    bucketList += (bucketList.empty() ? "" : ", ") + std::to_string(bucket);
  std::string preamble =
      "/// One library for every token count: a variant per token-count "
      "bucket\n/// (" +
      bucketList +
      "), tiled for it; a call runs the smallest bucket at\n"
      "/// least its token count, or the largest. Each variant loads its "
      "kernels\n/// on its own first call in a CUDA context: before "
      "capturing a graph,\n/// call once with a token count of each bucket "
      "the graph will use.";
  FailureOr<OwningOpRef<ModuleOp>> declarations =
      buildHeader(*documented, *dispatchers, name, preamble);
  if (failed(declarations) ||
      failed(emitc::translateToCpp(**declarations, header)))
    return failure();
  b.setInsertionPointToStart(combined->getBody());
  verbatim(b, loc, "// Generated by moe-compile; do not edit.");
  emitc::IncludeOp::create(b, loc, b.getStringAttr((name + ".h").str()));
  return emitc::translateToCpp(*combined, source);
}

LogicalResult mlir::moe::emitGpuHostSource(ModuleOp module, StringRef name,
                                           raw_ostream &source,
                                           raw_ostream &header) {
  OwningOpRef<ModuleOp> lowered = cast<ModuleOp>(module->clone());
  PassManager pm(module.getContext());
  pm.addPass(createConvertMoeGpuHostToEmitC());
  if (failed(pm.run(*lowered)))
    return failure();
  FailureOr<OwningOpRef<ModuleOp>> declarations =
      buildHeader(module, *lowered, name);
  if (failed(declarations) ||
      failed(emitc::translateToCpp(**declarations, header)))
    return failure();
  OpBuilder b(module.getContext());
  b.setInsertionPointToStart(lowered->getBody());
  verbatim(b, lowered->getLoc(), "// Generated by moe-compile; do not edit.");
  emitc::IncludeOp::create(b, lowered->getLoc(),
                           b.getStringAttr((name + ".h").str()));
  return emitc::translateToCpp(*lowered, source);
}

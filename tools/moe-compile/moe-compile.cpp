//===- moe-compile.cpp - ahead-of-time compiler of moe layers for GPUs ----===//
//
//   moe-compile layer.mlir -o DIR [--name NAME] [--entry FUNC]
//               [--num-tokens M | --token-buckets M1,M2,...] [--ptx FILE]
//               [--cubin FILE] [--kernels FILE]
//               [--mlir-timing] [--mlir-print-ir-after-all] ...
//
// A thin driver over moe::compileLayerForGpu (moe/Target/CompileLayer.h):
// writes DIR/NAME.cpp and DIR/NAME.h, the host code of the layer with its
// sm_90a cubin embedded. Build it with the runtime into a shared library
// (scripts/gpu-layers.sh shows how).
//
//===----------------------------------------------------------------------===//

#include "moe/InitAllMoe.h"
#include "moe/Target/CompileLayer.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/AsmParser/AsmParserState.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;

namespace {
llvm::cl::OptionCategory moeCategory("moe-compile options");

llvm::cl::opt<std::string> inputFile(llvm::cl::Positional,
                                     llvm::cl::desc("<layer.mlir>"),
                                     llvm::cl::Required,
                                     llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string> outputDir("o", llvm::cl::desc("Output directory"),
                                     llvm::cl::value_desc("dir"),
                                     llvm::cl::Required,
                                     llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string>
    layerName("name",
              llvm::cl::desc("Layer name (default: the function's name)"),
              llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string>
    entry("entry",
          llvm::cl::desc("The layer function, when the file has several"),
          llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t>
    numTokens("num-tokens",
              llvm::cl::desc("Token count the tiles are chosen for"),
              llvm::cl::init(256), llvm::cl::cat(moeCategory));
llvm::cl::list<int64_t> tokenBuckets(
    "token-buckets",
    llvm::cl::desc("One library for every token count: a variant per "
                   "bucket (tiles chosen for it), each call running the "
                   "smallest bucket at least its token count (the largest "
                   "above them all); replaces --num-tokens"),
    llvm::cl::CommaSeparated, llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t>
    blockN("block-n",
           llvm::cl::desc("Override the grouped GEMMs' wgmma N (64, 128, "
                          "256; 0: moe-gpu-configure's choice)"),
           llvm::cl::init(0), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t>
    blockK("block-k",
           llvm::cl::desc("Override the K elements per stage of the bf16 "
                          "GEMMs (64, or 128: 256 bytes of every weight row "
                          "per step; multistage schedule without a cluster; "
                          "0: moe-gpu-configure's choice)"),
           llvm::cl::init(0), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t>
    stages("stages",
           llvm::cl::desc("Override the shared-memory ring depth (2-16, "
                          "fewer where K has fewer steps or the ring would "
                          "not fit; 0: moe-gpu-configure's choice)"),
           llvm::cl::init(0), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> warpSpecialize(
    "warp-specialize",
    llvm::cl::desc("Warp-specialize the bf16 and w8a8 (fp8, int8) GEMMs of "
                   "128-row blocks (a producer warpgroup and two consumers)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> persistent(
    "persistent",
    llvm::cl::desc("Make the bf16 GEMMs of 128-row blocks without split-K "
                   "persistent (warp-specialized, one block per SM taking "
                   "tiles from a counter; experimental, see "
                   "docs/gpu-warp-specialized.md)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> persistentMaxRows(
    "persistent-max-rows",
    llvm::cl::desc("Give the bf16 GEMMs of 128 x 256 tiles without split-K "
                   "the persistent schedule where experts hold at most this "
                   "many rows on average, M*k/E (default 64; 0: never by "
                   "policy; see docs/gpu-benchmark.md)"),
    llvm::cl::init(64), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> combineRows(
    "combine-rows",
    llvm::cl::desc("Store the combining GEMMs' weighted rows per assignment "
                   "in bf16 and sum each token's k rows in the finalize "
                   "kernel, instead of f32 reductions into the token's sums "
                   "(combine_rows; see docs/gpu-benchmark.md)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> combineRowsMaxK(
    "combine-rows-max-k",
    llvm::cl::desc("Give the bf16 and w8a8 (fp8, int8) combining GEMMs whose "
                   "K is at most this combine_rows by policy, where their "
                   "tiles are unswapped without split-K (default 2048; 0: "
                   "never by policy; see docs/gpu-benchmark.md)"),
    llvm::cl::init(2048), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> tallBlocks(
    "tall-blocks",
    llvm::cl::desc("Give bf16 schedules whose experts' rows likely spill out "
                   "of 128-row slot blocks but fit 192 slot blocks of 192 "
                   "rows, three consumer warpgroups (see moe-gpu-configure "
                   "in docs/MoeGPUPasses.md)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> stagedEpilogue(
    "staged-epilogue",
    llvm::cl::desc("Give the persistent bf16 matmuls that store rows and "
                   "have at most 32 K steps per tile staged_epilogue: rows "
                   "through a 64-row table in shared memory (see "
                   "moe-gpu-configure in docs/MoeGPUPasses.md)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> inputTma(
    "input-tma",
    llvm::cl::desc("Give the multistage bf16 matmuls whose input rows are "
                   "their slots (GEMM2) input_tma: the A rows by TMA boxes "
                   "instead of cp.async (see moe-gpu-configure in "
                   "docs/MoeGPUPasses.md)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> shortSplitK(
    "short-split-k",
    llvm::cl::desc("The largest K split of a swapped 4-bit weight-only GEMM "
                   "(register operand) whose expected grid is under two "
                   "blocks per SM; GEMM1 splits in at most 2 (default 8; 1: "
                   "none; see moe-gpu-configure in docs/MoeGPUPasses.md)"),
    llvm::cl::init(8), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> pingpong(
    "pingpong",
    llvm::cl::desc("Make the bf16 GEMMs of 128-row blocks without split-K "
                   "pingpong: persistent, the two consumer warpgroups on "
                   "alternate tiles (experimental, see "
                   "docs/gpu-warp-specialized.md)"),
    llvm::cl::init(false), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> clusterM(
    "cluster-m",
    llvm::cl::desc("Pair the multistage GEMMs' (with --warp-specialize: "
                   "the warp-specialized GEMMs') slot blocks in clusters of "
                   "this many (1 or 2): a pair of one expert loads each "
                   "weight tile once, multicast to both (experimental, see "
                   "docs/gpu-warp-specialized.md)"),
    llvm::cl::init(1), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> swapAB(
    "swap-ab",
    llvm::cl::desc("Give the bf16 and weight-only GEMMs whose experts hold "
                   "few rows (decode: at most 16 or 32, mean + 2 sd) slot "
                   "blocks of that height, multiplied with the weights as "
                   "the wgmma's A operand (on by default, --swap-ab=false "
                   "turns it off; see docs/gpu-decode-kernel.md)"),
    llvm::cl::init(true), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> swappedWarpgroups(
    "swapped-warpgroups",
    llvm::cl::desc("Consumer warpgroups of the swapped-operand GEMMs (0, "
                   "the default: chosen per GEMM by moe-gpu-configure; 1; or "
                   "2: two split each tile's weight rows)"),
    llvm::cl::init(0), llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string> swappedWeightLoad(
    "swapped-weight-load",
    llvm::cl::desc("How the swapped-operand GEMMs load their weight tile: "
                   "tma (one thread's boxes) or cp_async (16-byte chunks "
                   "from every thread)"),
    llvm::cl::init("cp_async"), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> weightOnlyRegisters(
    "weight-only-registers",
    llvm::cl::desc(
        "Swapped 4-bit weight-only GEMMs (int4, mxfp4) decode their codes into "
        "the wgmma's register operand instead of a bf16 tile in "
        "shared memory (weight_load = registers); "
        "=false keeps the bf16 tile"),
    llvm::cl::init(true), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> weightOnlyWarpSpecialize(
    "weight-only-warp-specialize",
    llvm::cl::desc("Weight-only GEMMs of 128-row slot blocks without "
                   "split-K on the register operand are persistent, with a "
                   "producer warpgroup that copies slot rows and codes (on "
                   "by default; =false keeps them multistage)"),
    llvm::cl::init(true), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> fp8FastAccumulation(
    "fp8-fast-accumulation",
    llvm::cl::desc("fp8 GEMMs with per-channel or per-tensor scales keep "
                   "their sums in the wgmma's accumulator over all of K "
                   "(fewer mantissa bits than f32; tiles up to 256 wide) "
                   "instead of promoting them every stage; =false "
                   "promotes (closer to f32 sums)"),
    llvm::cl::init(true), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> w8a8SwapAB(
    "w8a8-swap-ab",
    llvm::cl::desc("w8a8 GEMMs that promote nothing (int8, fp8 with "
                   "--fp8-fast-accumulation) take swapped slot blocks of 16 "
                   "or 32 rows at decode, as bf16 ones do"),
    llvm::cl::init(true), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> fusedAlignAssignments(
    "fused-align-assignments",
    llvm::cl::desc("Calls of at most this many assignments (M·k) run no "
                   "align kernel: the first GEMM of each schedule aligns its "
                   "own slot blocks and writes the schedule for the GEMMs "
                   "after it (-1, the default: the policy's bound for the "
                   "schedule's format and expected M; 0: never; at most "
                   "1024; moe-gpu-configure's fused-align-assignments)"),
    llvm::cl::init(-1), llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string> sharedExperts(
    "shared-experts",
    llvm::cl::desc("Where a block's shared experts run: cost (the cost "
                   "model decides per token count), split (a schedule of "
                   "their own) or fused (among the routed experts)"),
    llvm::cl::init("cost"), llvm::cl::cat(moeCategory));
llvm::cl::opt<bool> dependentLaunch(
    "dependent-launch",
    llvm::cl::desc("Launch each kernel as a programmatic dependent of the "
                   "one before it on the stream, so that its launch overlaps "
                   "that kernel's end (moe-gpu-dependent-launch; on by "
                   "default, --dependent-launch=false turns it off)"),
    llvm::cl::init(true), llvm::cl::cat(moeCategory));
llvm::cl::opt<int64_t> alignManyBlocksAbove(
    "align-many-blocks-above",
    llvm::cl::desc("Assignment count (M·k) above which moe.align runs over "
                   "many blocks (moe-gpu-outline-host)"),
    llvm::cl::init(4096), llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string>
    cudaPath("cuda-path",
             llvm::cl::desc("CUDA toolkit with ptxas and libdevice (default: "
                            "CUDA_HOME, CUDA_ROOT or CUDA_PATH, else "
                            "/usr/local/cuda)"),
             llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string> ptxFile("ptx",
                                   llvm::cl::desc("Also write the PTX here"),
                                   llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string>
    cubinFile("cubin",
              llvm::cl::desc("Also write the cubin here (for cuobjdump and "
                             "ncu)"),
              llvm::cl::cat(moeCategory));
llvm::cl::opt<std::string>
    kernelsFile("kernels",
                llvm::cl::desc("Also write the program with its kernels and "
                               "its host functions (after "
                               "moe-gpu-outline-host) here"),
                llvm::cl::cat(moeCategory));

LogicalResult writeFile(StringRef path, StringRef contents) {
  std::string error;
  auto file = openOutputFile(path, &error);
  if (!file) {
    llvm::errs() << "moe-compile: error: " << error << "\n";
    return failure();
  }
  file->os() << contents;
  file->keep();
  return success();
}

/// Keeps only the layer function `name` of `module` (and declarations).
LogicalResult selectEntry(ModuleOp module, StringRef name) {
  auto layer = module.lookupSymbol<func::FuncOp>(name);
  if (!layer || layer.isExternal())
    return module.emitError("no function @") << name << " to compile";
  for (auto func :
       llvm::make_early_inc_range(module.getOps<func::FuncOp>()))
    if (func != layer && !func.isExternal())
      func.erase();
  return success();
}

/// Gives each function argument its name in the source (`%hidden` ->
/// NameLoc "hidden"), which the generated header uses for the parameter.
void nameArgumentsFromSource(const AsmParserState &state) {
  for (const AsmParserState::BlockDefinition &block : state.getBlockDefs()) {
    if (!block.block || !isa_and_nonnull<func::FuncOp>(block.block->getParentOp()))
      continue;
    for (auto [argument, definition] :
         llvm::zip(block.block->getArguments(), block.arguments)) {
      llvm::SMRange range = definition.loc;
      StringRef name(range.Start.getPointer(),
                     range.End.getPointer() - range.Start.getPointer());
      name.consume_front("%");
      if (!name.empty())
        argument.setLoc(NameLoc::get(
            StringAttr::get(argument.getContext(), name), argument.getLoc()));
    }
  }
}

LogicalResult writeOutputs(const moe::GpuCompiledLayer &layer) {
  if (std::error_code code = llvm::sys::fs::create_directories(outputDir)) {
    llvm::errs() << "moe-compile: error: cannot create " << outputDir << ": "
                 << code.message() << "\n";
    return failure();
  }
  SmallString<256> sourcePath(outputDir), headerPath(outputDir);
  llvm::sys::path::append(sourcePath, layer.name + ".cpp");
  llvm::sys::path::append(headerPath, layer.name + ".h");
  return success(
      succeeded(writeFile(sourcePath, layer.source)) &&
      succeeded(writeFile(headerPath, layer.header)) &&
      (ptxFile.empty() || succeeded(writeFile(ptxFile, layer.ptx))) &&
      (cubinFile.empty() || succeeded(writeFile(cubinFile, layer.cubin))) &&
      (kernelsFile.empty() || succeeded(writeFile(kernelsFile, layer.hostIR))));
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  moe::registerAllPasses();
  // The standard --mlir-* flags: timing, IR printing, diagnostics.
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  registerDefaultTimingManagerCLOptions();
  registerAsmPrinterCLOptions();
  // --help shows moe-compile's own options; the rest (the --mlir-* flags
  // and LLVM's) are accepted and listed by --help-hidden.
  llvm::cl::HideUnrelatedOptions(moeCategory);
  llvm::cl::ParseCommandLineOptions(
      argc, argv,
      "moe GPU layer compiler\n\n"
      "Also takes the standard MLIR flags, e.g. --mlir-timing, "
      "--mlir-print-ir-after-all, --mlir-print-op-on-diagnostic "
      "(see --help-hidden).\n");

  DialectRegistry registry;
  moe::registerAllDialects(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  // A diagnostic names its op's location; the op's IR (and a layer's
  // thousands of lines) is not printed with it.
  context.printOpOnDiagnostic(false);

  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  std::string error;
  auto input = openInputFile(inputFile, &error);
  if (!input) {
    llvm::errs() << "moe-compile: error: " << error << "\n";
    return 1;
  }
  sourceMgr.AddNewSourceBuffer(std::move(input), llvm::SMLoc());
  // Parsed with the parser's state, which holds the arguments' names.
  AsmParserState parserState;
  ParserConfig config(&context);
  Block parsed;
  if (failed(parseAsmSourceFile(sourceMgr, &parsed, config, &parserState)))
    return 1;
  nameArgumentsFromSource(parserState);
  OwningOpRef<ModuleOp> program =
      detail::constructContainerOpForParserIfNecessary<ModuleOp>(
          &parsed, &context, FileLineColLoc::get(&context, inputFile, 0, 0));
  if (!program || (!entry.empty() && failed(selectEntry(*program, entry))))
    return 1;

  moe::GpuCompileOptions options;
  options.name = layerName;
  options.numTokens = numTokens;
  options.tokenBuckets.assign(tokenBuckets.begin(), tokenBuckets.end());
  if (!options.tokenBuckets.empty() && numTokens.getNumOccurrences()) {
    llvm::errs() << "moe-compile: error: --num-tokens and --token-buckets "
                    "both choose the tiles; give one\n";
    return 1;
  }
  if (!options.tokenBuckets.empty() && !cubinFile.empty()) {
    llvm::errs() << "moe-compile: error: --cubin takes one variant; with "
                    "--token-buckets the cubins are only in the source\n";
    return 1;
  }
  options.blockN = blockN;
  options.stages = stages;
  options.blockK = blockK;
  options.warpSpecialize = warpSpecialize;
  options.persistent = persistent;
  options.persistentMaxRows = persistentMaxRows;
  options.shortSplitK = shortSplitK;
  options.combineRows = combineRows;
  options.combineRowsMaxK = combineRowsMaxK;
  options.tallBlocks = tallBlocks;
  options.stagedEpilogue = stagedEpilogue;
  options.inputTma = inputTma;
  options.pingpong = pingpong;
  options.clusterM = clusterM;
  options.swapAB = swapAB;
  options.swappedWarpgroups = swappedWarpgroups;
  options.swappedWeightLoad = swappedWeightLoad;
  options.weightOnlyRegisters = weightOnlyRegisters;
  options.weightOnlyWarpSpecialize = weightOnlyWarpSpecialize;
  options.fp8FastAccumulation = fp8FastAccumulation;
  options.w8a8SwapAB = w8a8SwapAB;
  options.fusedAlignAssignments = fusedAlignAssignments;
  options.sharedExperts = sharedExperts;
  options.alignManyBlocksAbove = alignManyBlocksAbove;
  options.dependentLaunch = dependentLaunch;
  options.toolkitPath = cudaPath;
  options.emitPtx = !ptxFile.empty();
  DefaultTimingManager timing;
  applyDefaultTimingManagerCLOptions(timing);
  TimingScope rootTiming = timing.getRootScope();
  options.configurePassManager = [&](PassManager &pm) -> LogicalResult {
    pm.enableTiming(rootTiming);
    return applyPassManagerCLOptions(pm);
  };
  FailureOr<moe::GpuCompiledLayer> layer =
      moe::compileLayerForGpu(*program, options);
  if (failed(layer) || failed(writeOutputs(*layer)))
    return 1;
  return 0;
}

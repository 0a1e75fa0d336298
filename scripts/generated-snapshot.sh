#!/usr/bin/env bash
# Writes what moe-compile generates (PTX and host C++) for every expert
# block and layer of `configs --write-gpu-blocks` at M = 1 and 4096, and for
# the bf16 blocks under each experimental schedule and ring override, so
# that a refactoring of the emitters can be checked to change no byte:
#   scripts/generated-snapshot.sh OLD_MOE_COMPILE /tmp/before
#   scripts/generated-snapshot.sh build/bin/moe-compile /tmp/after
#   diff -r /tmp/before /tmp/after
# (Keep a copy of the old moe-compile before rebuilding: it links libMLIR
# dynamically and nothing of this repository, so a copied binary runs.)
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 MOE_COMPILE OUT_DIR" >&2
  exit 2
fi
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
moe_compile=$(realpath "$1")
out=$2
mkdir -p "$out/programs"
PYTHONPATH="$repo_root/python" python3 -m moe_compiler.configs \
  --write-gpu-blocks "$out/programs" >/dev/null
jobs=$out/jobs.txt
: >"$jobs"
for program in "$out"/programs/*.mlir; do
  name=$(basename "$program" .mlir)
  for m in 1 4096; do
    echo "$program|${name}_m$m|--num-tokens $m" >>"$jobs"
  done
done
for name in qwen3_30b_a3b_block mixtral_8x7b_block deepseek_v3_block \
  gpt_oss_20b_block; do
  for flags in "--warp-specialize" "--persistent" "--pingpong" \
    "--cluster-m 2" "--warp-specialize --cluster-m 2" "--stages 3" \
    "--block-n 128 --stages 4" "--warp-specialize --stages 3"; do
    tag=$(echo "$flags" | tr -d ' -')
    echo "$out/programs/$name.mlir|${name}_m4096_$tag|--num-tokens 4096 $flags" \
      >>"$jobs"
  done
done
echo "$out/programs/qwen3_30b_a3b_block.mlir|qwen3_m256_bn64|--num-tokens 256 --block-n 64 --stages 4" >>"$jobs"
echo "$out/programs/deepseek_v3_block.mlir|deepseek_m16_stages2|--num-tokens 16 --stages 2" >>"$jobs"
# Swapped operands at decode (16- and 32-row blocks).
for name in qwen3_30b_a3b_block mixtral_8x7b_block deepseek_v3_block \
  gpt_oss_20b_block; do
  for m in 1 64 256; do
    echo "$out/programs/$name.mlir|${name}_m${m}_swapab|--num-tokens $m --swap-ab" >>"$jobs"
  done
done

generate() { # program|tag|flags
  IFS='|' read -r program tag flags <<<"$1"
  local dir=$out/$tag
  mkdir -p "$dir/src"
  # The exit status is part of the snapshot: a program that stops compiling
  # shows up in the diff.
  set +e
  # shellcheck disable=SC2086
  "$moe_compile" "$program" -o "$dir/src" --name layer $flags \
    --ptx="$dir/layer.ptx" >"$dir/log" 2>&1
  echo "exit status $?" >>"$dir/log"
  set -e
  cp "$dir"/src/*.cpp "$dir"/src/*.h "$dir/" 2>/dev/null || true
  rm -rf "$dir/src"
}
export -f generate
export out moe_compile
xargs -P "$(nproc)" -I{} bash -c 'generate "$@"' _ {} <"$jobs"
rm -rf "$out/programs"
echo "generated-snapshot: $(wc -l <"$jobs") programs in $out"

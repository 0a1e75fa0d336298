#!/usr/bin/env bash
# One device call: the correctness parts on the new defaults.
set -u
L=build/dev/new
for part in check-bf16 check-package sanitize; do
  start=$SECONDS
  OUT=$OUT timeout 280 bash scripts/device-gpu-suite.sh $part $L > $OUT/$part.log 2>&1
  echo "$part: rc $? in $((SECONDS-start)) s" | tee -a $OUT/summary.log
done

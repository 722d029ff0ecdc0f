#!/usr/bin/env bash
# Fuzzes the model-file readers with Jazzer.js (libFuzzer), each target for a bounded time, starting from the committed
# seed corpus (a fresh copy: what the fuzzer adds goes to a temporary directory, never into test/fuzz/corpus).
#
#   FUZZ_SECONDS=60 bash test/fuzz/run.sh [target...]     targets: gguf safetensors config tokenizer (default: all)
#
# Prints one summary line per target. On a finding it prints the fuzzer's report, leaves the input that triggered it
# in $FUZZ_FINDINGS/<target>/ (crash-*, timeout-*, oom-*) and exits 1 once every target has run. Keep such inputs in
# test/fuzz/regressions/<target>/ once the reader is fixed. FUZZ_SKIP_BUILD=1 skips `npm run build` (targets load
# dist/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
seconds="${FUZZ_SECONDS:-60}"
findings="${FUZZ_FINDINGS:-${TMPDIR:-/tmp}/dynamoe-fuzz-findings}"
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(gguf safetensors config tokenizer); fi

if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then npm run --silent build; fi
work="$(mktemp -d)"
# The targets' scratch files (harness.js), on tmpfs where there is one: every execution writes its input there.
FUZZ_SCRATCH="$(mktemp -d -p "$([ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")" dynamoe-fuzz-XXXXXX)"
export FUZZ_SCRATCH
trap 'rm -rf "$work" "$FUZZ_SCRATCH"' EXIT

status=0
for target in "${targets[@]}"; do
  corpus="$work/corpus-$target"
  log="$work/$target.log"
  rm -rf "${findings:?}/$target"
  mkdir -p "$corpus" "$findings/$target"
  cp test/fuzz/corpus/"$target"/* "$corpus"/
  # A libFuzzer dictionary of the format's keywords (test/fuzz/dict/) helps mutations past the JSON / key parsers.
  dict=(); if [ -f "test/fuzz/dict/$target.dict" ]; then dict=(-dict="test/fuzz/dict/$target.dict"); fi
  started=$SECONDS
  # jazzer-glibc-compat.js lets Jazzer's prebuilt libFuzzer addon load where glibc is older than 2.38.
  # Instrumented for coverage feedback: the library and the tokenizer / template libraries it hands files to.
  # Jazzer's --timeout (ms) becomes libFuzzer's -timeout (s): a single input running over 10 s is a finding.
  set +e
  node --require ./test/fuzz/jazzer-glibc-compat.js node_modules/.bin/jazzer "test/fuzz/$target.fuzz.js" "$corpus" \
    --includes dist/lib/ --includes node_modules/@huggingface/ --timeout 10000 -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -artifact_prefix="$findings/$target/" \
    -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
  code=$?
  set -e
  # libFuzzer closes with "Done N runs in S second(s)"; after a timeout or crash there is no such line: then the
  # executions are its final stats' (or last status line's) and the seconds the wall-clock time.
  done_line="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
  if [ -n "$done_line" ]; then
    read -r _ runs _ _ secs _ <<<"$done_line"
  else
    runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p; s/^#([0-9]+)[[:space:]].*/\1/p' "$log" | tail -n 1)"
    secs=$(( SECONDS - started ))
  fi
  runs="${runs:-0}"
  rate=$(( secs > 0 ? runs / secs : runs ))
  entries="$(find "$corpus" -type f | wc -l)"
  if [ "$code" -eq 0 ]; then
    echo "fuzz $target: ok, $runs executions in $secs s ($rate exec/s), corpus $entries files"
  else
    status=1
    echo "fuzz $target: FINDING (exit $code) after $runs executions; input kept in $findings/$target/:"
    ls -1 "$findings/$target"
    cp "$log" "$findings/$target.log"
    grep -vE '^(#[0-9]+|INFO:|MS:|Dictionary:)' "$log" | tail -n 60 || true
  fi
done
exit "$status"

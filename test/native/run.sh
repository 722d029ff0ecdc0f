#!/usr/bin/env bash
# Native checks without Node: builds and runs the routing libFuzzer target for FUZZ_SECONDS (default 60) on a
# temporary copy of its seed corpus, then the leak check (LEAK_ITERATIONS, default 100) under LeakSanitizer, then (on
# x86-64) the bf16 dot-product tile check (DOT_CASES, default 400), then the thread pool check (POOL_ROUNDS, default
# 2000) under ThreadSanitizer. The first three are built with clang (installed from Debian when missing) with ASan +
# UBSan, the last with g++ and TSan, all into build-native-tests/.
# Prints one summary line each; exits non-zero on any finding. Fuzzer findings are kept in
# build-native-tests/fuzz-findings/ (copy them to test/native/corpus/routing/ once fixed, as regressions).
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly ROOT="$PWD"
readonly OUT="$ROOT/build-native-tests"
readonly FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
readonly LEAK_ITERATIONS="${LEAK_ITERATIONS:-100}"
readonly FINDINGS="$OUT/fuzz-findings"

# libFuzzer is in compiler-rt, which Debian packages apart from clang (libclang-rt-N-dev, only recommended by it).
can_build_fuzzers() {
  command -v clang++ >/dev/null 2>&1 &&
    echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
      clang++ -x c++ -fsanitize=fuzzer,address,undefined - -o "$OUT/probe" >/dev/null 2>&1
}
mkdir -p "$OUT"
if ! can_build_fuzzers; then
  echo "== native: installing clang and compiler-rt from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang >/dev/null
  major="$(clang++ -dumpversion | cut -d. -f1)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "libclang-rt-$major-dev" >/dev/null
  can_build_fuzzers || { echo "native: clang cannot link a libFuzzer target"; exit 1; }
fi

readonly CXXFLAGS="-std=c++17 -O1 -g -fno-omit-frame-pointer -pthread -Wall -Wextra -Wno-unused-parameter"
readonly SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all"
X86_DEFINES=""
[ "$(uname -m)" = x86_64 ] && X86_DEFINES="-DDYNAMOE_X86_KERNELS"

echo "== native: building the routing fuzzer"
# The routing core and what consumes its result; no N-API code.
FUZZ_SOURCES=(
  native/cpu/routing.cpp native/core/routing_policy.cpp native/core/router_rule.cpp native/cpu/thread_pool.cpp
  native/cpu/expert_plan.cpp native/cpu/combine.cpp native/cpu/router_losses.cpp native/core/router_stats.cpp
)
# Beyond -fsanitize=undefined: a float division by zero (how a 0/0 weight arises) and implicit conversions that
# change a value (a negative int turned into a size) are bugs in this code even where IEEE / C++ define them.
# shellcheck disable=SC2086
clang++ $CXXFLAGS -fsanitize=fuzzer,address,undefined,float-divide-by-zero,implicit-conversion \
  -fno-sanitize-recover=all test/native/routing_fuzzer.cpp "${FUZZ_SOURCES[@]}" -o "$OUT/routing_fuzzer"

echo "== native: building the leak check"
# Every native/core and native/cpu source (neither has N-API code); the SIMD kernel files get their own -m flags, as
# in binding.gyp.
mkdir -p "$OUT/leak-objects"
LEAK_SOURCES=(native/core/*.cpp)
for source in native/cpu/*.cpp; do
  case "$source" in
    *_avx2.cpp | *_avx512.cpp | *_avx512bf16.cpp | *_avx512vnni.cpp | *_avxvnni.cpp) ;;
    *) LEAK_SOURCES+=("$source") ;;
  esac
done
SIMD_OBJECTS=()
if [ -n "$X86_DEFINES" ]; then
  shopt -s nullglob  # an ISA group may have no file yet
  for source in native/cpu/*_avx2.cpp native/cpu/*_avx512.cpp native/cpu/*_avx512bf16.cpp \
    native/cpu/*_avx512vnni.cpp native/cpu/*_avxvnni.cpp; do
    case "$source" in
      *_avx2.cpp) isa_flags="-mavx2 -mfma -mf16c" ;;
      *_avx512bf16.cpp) isa_flags="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma -mf16c" ;;
      *_avx512vnni.cpp) isa_flags="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c" ;;
      *_avxvnni.cpp) isa_flags="-mavx2 -mfma -mf16c -mavxvnni" ;;
      *) isa_flags="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c" ;;
    esac
    object="$OUT/leak-objects/$(basename "$source" .cpp).o"
    # shellcheck disable=SC2086
    clang++ $CXXFLAGS $SANITIZE $X86_DEFINES $isa_flags -c "$source" -o "$object"
    SIMD_OBJECTS+=("$object")
  done
  shopt -u nullglob
fi
# shellcheck disable=SC2086
clang++ $CXXFLAGS $SANITIZE $X86_DEFINES test/native/leak_check.cpp "${LEAK_SOURCES[@]}" "${SIMD_OBJECTS[@]}" \
  -o "$OUT/leak_check"

echo "== native: fuzzing routing for ${FUZZ_SECONDS}s"
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cp test/native/corpus/routing/* "$corpus/"  # libFuzzer adds to its first corpus directory: keep the seeds clean
rm -rf "$FINDINGS"
mkdir -p "$FINDINGS"
fuzz_status=0
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" "$OUT/routing_fuzzer" \
  -max_total_time="$FUZZ_SECONDS" -max_len=4096 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$FINDINGS/" "$corpus" >"$OUT/fuzz.log" 2>&1 || fuzz_status=$?
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz.log")"
rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$OUT/fuzz.log")"
if [ "$fuzz_status" -ne 0 ] || [ -n "$(ls -A "$FINDINGS")" ]; then
  tail -n 60 "$OUT/fuzz.log"
  echo "routing fuzzer: FAILED (status $fuzz_status); inputs in ${FINDINGS#"$ROOT"/}: $(ls "$FINDINGS" | tr '\n' ' ')"
  exit 1
fi
echo "routing fuzzer: ${runs:-?} runs in ${FUZZ_SECONDS}s, ${rate:-?} execs/s, corpus $(ls "$corpus" | wc -l) inputs, no findings"

echo "== native: leak check"
ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  "$OUT/leak_check" "$LEAK_ITERATIONS" >"$OUT/leak.log" 2>&1 || {
  cat "$OUT/leak.log"
  echo "leak check: FAILED"
  exit 1
}
cat "$OUT/leak.log"
echo "leak check: $LEAK_ITERATIONS iterations, no leaks"

if [ -n "$X86_DEFINES" ]; then
  echo "== native: bf16 dot-product tile check (ASan + UBSan)"
  # shellcheck disable=SC2086
  clang++ $CXXFLAGS $SANITIZE $X86_DEFINES -O2 -mavx2 -mfma -mf16c test/native/bf16_dot_check.cpp \
    -o "$OUT/bf16_dot_check"
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" "$OUT/bf16_dot_check" "${DOT_CASES:-400}"
fi

echo "== native: thread pool check (ThreadSanitizer)"
# TSan cannot share a process with ASan, hence its own binary; halt_on_error turns the first race into a failure.
g++ -std=c++17 -O1 -g -pthread -fsanitize=thread test/native/thread_pool_check.cpp native/cpu/thread_pool.cpp \
  -o "$OUT/thread_pool_check"
# Without address randomisation: TSan's fixed shadow layout clashes with the high mmap randomisation of some kernels
# ("unexpected memory mapping"); setarch -R is the documented workaround.
no_aslr=(); if setarch "$(uname -m)" -R true >/dev/null 2>&1; then no_aslr=(setarch "$(uname -m)" -R); fi
TSAN_OPTIONS="halt_on_error=1" "${no_aslr[@]}" "$OUT/thread_pool_check" "${POOL_ROUNDS:-2000}"

#!/bin/bash
# Builds the libFuzzer targets with the toolchain's clang and swiftc (-fsanitize=fuzzer with
# AddressSanitizer; UndefinedBehaviorSanitizer too for the C targets) and runs each one from
# its committed seed corpus (Tests/Fuzz/corpus/<target>/, which also holds every input that
# once crashed a target: a regression fails at once, before any fuzzing).
#
#   Tests/Fuzz/run.sh [--seconds N | --runs N] [--build-only] [TARGET...]
#
#   --seconds N   fuzz each target for N seconds (default 20)
#   --runs N      ... or for N executions
#   --build-only  build, run nothing
#   TARGET        fuzz_h2_server, fuzz_protobuf_c, fuzz_swift_decoders (default: all)
#
# New inputs go to $FUZZ_OUT/corpus/<target> (default .build/fuzz, kept between runs, never
# committed); a crash writes its input to $FUZZ_OUT/artifacts/<target>/ and fails the run.
# The closing table gives per target: executions, executions per second, coverage (cov:
# instrumented edges reached, ft: features), corpus size, crashes; then the total.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${FUZZ_OUT:-$ROOT/.build/fuzz}
TOOLCHAIN=${TOOLCHAIN:-/opt/swift/usr/bin}
CC="$TOOLCHAIN/clang"
SWIFTC="$TOOLCHAIN/swiftc"
PYTHON=${PYTHON:-python3}

SECONDS_EACH=20
RUNS=""
BUILD_ONLY=0
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    fuzz_*) TARGETS+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_h2_server fuzz_protobuf_c fuzz_swift_decoders)

mkdir -p "$OUT/obj" "$OUT/swift"
cd "$ROOT"

# ------------------------------------------------------------------ build

SHIM=Sources/CH2Shim
PROTOS_C=Sources/GeneratedCProtos
CFLAGS_C=(-std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
          -fno-sanitize-recover=undefined -fuse-ld=lld -Wall -Wextra -Werror)

# Whether $1 is missing or older than any file under the other arguments.
stale() {
    local out=$1
    shift
    [ ! -e "$out" ] || [ -n "$(find "$@" -newer "$out" -type f -print -quit)" ]
}

"$PYTHON" "$HERE/messages.py" c "$OUT/messages_c.inc.new"
"$PYTHON" "$HERE/messages.py" swift "$OUT/messages_swift.swift.new"
for f in messages_c.inc messages_swift.swift; do # rewritten only when different (keeps builds incremental)
    if cmp -s "$OUT/$f.new" "$OUT/$f"; then rm "$OUT/$f.new"; else mv "$OUT/$f.new" "$OUT/$f"; fi
done

build_h2_server() {
    # h2_loop.c is compiled as part of the target (it includes it); every other unit as it is.
    local units=()
    for f in "$SHIM"/*.c; do [ "$(basename "$f")" = h2_loop.c ] || units+=("$f"); done
    if stale "$OUT/fuzz_h2_server" "$SHIM" "$HERE/fuzz_h2_server.c"; then
        echo "== build fuzz_h2_server"
        "$CC" "${CFLAGS_C[@]}" -DH2_TEST_HOOKS -I"$SHIM/include" -I"$SHIM" -o "$OUT/fuzz_h2_server" \
            "$HERE/fuzz_h2_server.c" "${units[@]}" -lnghttp2 -lssl -lcrypto
    fi
}

build_protobuf_c() {
    if stale "$OUT/fuzz_protobuf_c" "$PROTOS_C" "$HERE/fuzz_protobuf_c.c" "$OUT/messages_c.inc"; then
        echo "== build fuzz_protobuf_c"
        "$CC" "${CFLAGS_C[@]}" -I"$OUT" -I"$PROTOS_C/include" -o "$OUT/fuzz_protobuf_c" \
            "$HERE/fuzz_protobuf_c.c" $(find "$PROTOS_C" -name '*.pb-c.c' | sort) -lprotobuf-c
    fi
}

# The Swift modules are compiled straight with swiftc (SwiftPM has no libFuzzer mode), in
# dependency order, as static libraries: H2RPC, H2RPCProtobuf, GeneratedProtos; the
# protobuf-c code they use is compiled with clang; the target itself links libFuzzer's main.
build_swift_decoders() {
    local S="$OUT/swift"
    local SWIFT_FLAGS=(-parse-as-library -swift-version 6 -package-name labgallery -sanitize=fuzzer,address
                       -Onone -g -I "$S" -I Sources/CProtobufC -I "$PROTOS_C/include")
    local objs=()
    for f in $(find "$PROTOS_C" -name '*.pb-c.c' | sort); do
        local o="$S/$(echo "${f#"$PROTOS_C"/}" | tr / _).o"
        objs+=("$o")
        if stale "$o" "$f" "$PROTOS_C/include"; then
            "$CC" -c -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address -I"$PROTOS_C/include" "$f" -o "$o"
        fi
    done
    local deps=()
    for module in H2RPC H2RPCProtobuf GeneratedProtos; do
        deps+=("Sources/$module")
        if stale "$S/lib$module.a" "${deps[@]}"; then
            echo "== build Swift module $module (libFuzzer + ASan)"
            rm -f "$S/lib$module.a"
            "$SWIFTC" "${SWIFT_FLAGS[@]}" -wmo -module-name "$module" -emit-library -static -emit-module \
                -emit-module-path "$S/$module.swiftmodule" $(find "Sources/$module" -name '*.swift' | sort) \
                -o "$S/lib$module.a"
        fi
    done
    if stale "$OUT/fuzz_swift_decoders" "$S" "$HERE/fuzz_swift_decoders.swift" "$OUT/messages_swift.swift"; then
        echo "== build fuzz_swift_decoders"
        "$SWIFTC" "${SWIFT_FLAGS[@]}" -use-ld=lld -module-name FuzzSwiftDecoders \
            "$HERE/fuzz_swift_decoders.swift" "$OUT/messages_swift.swift" \
            "$S/libGeneratedProtos.a" "$S/libH2RPCProtobuf.a" "$S/libH2RPC.a" "${objs[@]}" -lprotobuf-c \
            -o "$OUT/fuzz_swift_decoders"
    fi
}

for t in "${TARGETS[@]}"; do
    case "$t" in
    fuzz_h2_server) build_h2_server ;;
    fuzz_protobuf_c) build_protobuf_c ;;
    fuzz_swift_decoders) build_swift_decoders ;;
    *) echo "run.sh: unknown target $t" >&2; exit 2 ;;
    esac
done
[ "$BUILD_ONLY" = 1 ] && exit 0

# ------------------------------------------------------------------ run

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export SWIFT_BACKTRACE=enable=no # the sanitizer prints the stack; Swift's backtracer only slows a crash down
export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$TOOLCHAIN/llvm-symbolizer}

if [ -n "$RUNS" ]; then LIMIT=(-runs="$RUNS"); else LIMIT=(-max_total_time="$SECONDS_EACH"); fi
summary=()
total=0
crashed=0
for t in "${TARGETS[@]}"; do
    seeds="$HERE/corpus/$t"
    work="$OUT/corpus/$t"
    arts="$OUT/artifacts/$t"
    log="$OUT/$t.log"
    mkdir -p "$work" "$arts"
    dict=()
    [ -f "$HERE/$t.dict" ] && dict=(-dict="$HERE/$t.dict")
    echo "== $t: ${LIMIT[*]} (seeds: $(ls "$seeds" | wc -l), log: $log)"
    rc=0
    # New units go to the first corpus directory (the work one); the seeds are only read.
    "$OUT/$t" "${LIMIT[@]}" "${dict[@]}" -timeout=10 -rss_limit_mb=2560 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$arts/" "$work" "$seeds" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    crashes=0
    if [ "$rc" != 0 ]; then
        crashes=1
        crashed=1
        echo "!! $t failed (exit $rc); its log:" >&2
        grep -v -E '^#[0-9]+ ' "$log" | tail -60 >&2
    fi
    total=$((total + ${execs:-0}))
    summary+=("$(printf '%-22s %12s %10s %7s %7s %7s %8s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
done

echo
printf '%-22s %12s %10s %7s %7s %7s %8s\n' target executions exec/s cov ft corpus crashes
printf '%s\n' "${summary[@]}"
echo "total executions: $total"
if [ "$crashed" != 0 ]; then
    echo "FUZZ FAILED: a target crashed; its input is in $OUT/artifacts/<target>/" >&2
    exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, 0 crashes"

#!/usr/bin/env bash
# Replication and upload benchmarks (release build), against a real labgallery-server:
#   1. replication throughput, WAN model off, one target region, vs `cp` + fsync of the same file
#      on the same disk (our copy also SHA-256-verifies and persists progress);
#   2. upload throughput through UploadImage (our Swift client, 1 MiB chunks) vs `cat file > other` + fsync;
#   3. the same replication with 1,000 gallery watchers attached: throughput vs no watcher, server RSS;
#   4. CreateLab and SaveLabTemplateImage of a TEMPLATE_MIB (default 1024) MiB image: milliseconds
#      (both share the image's blob, so neither copies; target < 50 ms).
# Prints a table; BENCH_OUT=FILE also writes it there (markdown). SIZE_MIB sets the file size,
# ROUNDS the number of interleaved rounds (medians are compared). RESULTS_OUT=FILE appends the
# upload and `cat` medians there as key=value lines (for run.sh's issue 13 targets table).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-256}
WATCHERS=${WATCHERS:-1000}
ROUNDS=${ROUNDS:-7}
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/.build}")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

swift build -c release --product labgallery-server >/dev/null
swift build -c release --package-path Benchmarks --product labgallery-bench >/dev/null
BIN=.build/release
BENCH_BIN=Benchmarks/.build/release

now() { date +%s.%N; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }
hwm_kib() { awk '/VmHWM/ {print $2}' /proc/"$1"/status; }
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/image.bin"
BYTES=$((SIZE_MIB << 20))

# A two-region geography: one replica per image, so throughput = one copy.
echo '{"geographies": {"Bench": ["r1", "r2"]}}' > "$WORK/regions.json"
# The watchers are one caller (on 10 connections): the per-caller watch cap (100 by default,
# issue 10) must hold them, the bench's own image watch, and the previous round's watchers that are
# still closing when a round opens its own.
"$BIN/labgallery-server" --port 0 --data-dir "$WORK/data" --regions-file "$WORK/regions.json" --wan-model off \
  --max-watchers-per-caller $((2 * WATCHERS + 1)) --max-watchers-per-connection "$WATCHERS" --log-level warning > "$WORK/server.out" 2> "$WORK/server.err" & PIDS+=($!); SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(head -1 "$WORK/server.out" | awk -F: '{print $NF}')
TOKEN=$(cat "$WORK/data/admin.token")
RSS_IDLE=$(rss_kib "$SERVER")

bench() { "$BENCH_BIN/labgallery-bench" --port "$PORT" --token "$TOKEN" --region r1 --file "$WORK/image.bin" "$@"; }
timed() { local t0 t1; t0=$(now); "$@"; t1=$(now); echo "$t1 - $t0" | bc -l; }
cat_sync() { cat "$WORK/image.bin" > "$WORK/copy.bin"; sync "$WORK/copy.bin"; }
cp_sync() { cp "$WORK/image.bin" "$WORK/copy2.bin"; sync "$WORK/copy2.bin"; }
# Every measurement starts from the same state: nothing dirty. No pause: after a second or more
# idle, this VM's disk runs the next fsynced writes 3-4x slower.
settle() { rm -f "$WORK/copy.bin" "$WORK/copy2.bin"; sync; }

# This VM's disk is noisy, so each contender runs the same I/O sequence from the same state:
# `cat` (the upload's baseline), then at once `cp` (the replica's baseline), against our upload
# followed at once by its replication. Rounds are interleaved and compared by their medians.
# Each run deletes what it wrote (copy files; the bench its image), so all of them write into
# recycled page-cache pages: a never-touched page of this VM costs ~4x more to fill.
bench --image-id warmup >/dev/null  # page cache, database
CP=(); CAT=(); UP=(); REPL=(); REPLW=(); MSGS=0
for r in $(seq "$ROUNDS"); do
  settle; CAT+=("$(timed cat_sync)"); CP+=("$(timed cp_sync)")
  settle; NOW=$(bench --image-id "plain$r")
  UP+=("$(field "$NOW" upload_s)"); REPL+=("$(field "$NOW" replication_s)")
  if [ "$r" = 1 ]; then RSS_BEFORE=$(rss_kib "$SERVER"); fi
  settle; WITH=$(bench --image-id "watched$r" --watchers "$WATCHERS")
  REPLW+=("$(field "$WITH" replication_s)"); MSGS=$((MSGS + $(field "$WITH" watcher_messages)))
done
RSS_AFTER=$(rss_kib "$SERVER"); HWM=$(hwm_kib "$SERVER")

# CreateLab / SaveLabTemplateImage of a big image, TEMPLATE_ROUNDS times.
TEMPLATE_MIB=${TEMPLATE_MIB:-1024}
TEMPLATE_ROUNDS=${TEMPLATE_ROUNDS:-3}
rm -f "$WORK/copy.bin" "$WORK/copy2.bin"
head -c $((TEMPLATE_MIB << 20)) /dev/urandom > "$WORK/big.bin"
LAB=(); SAVE=()
for r in $(seq "$TEMPLATE_ROUNDS"); do
  T=$("$BENCH_BIN/labgallery-bench" --port "$PORT" --token "$TOKEN" --region r1 --file "$WORK/big.bin" --image-id "big$r" --templates)
  LAB+=("$(field "$T" createlab_ms)"); SAVE+=("$(field "$T" save_ms)")
done
rm -f "$WORK/big.bin"

med() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f} {min(v):.3f}")' "$@"; }
read -r CP_S CP_MIN < <(med "${CP[@]}"); read -r CAT_S CAT_MIN < <(med "${CAT[@]}")
read -r UP_S UP_MIN < <(med "${UP[@]}"); read -r REPL_S REPL_MIN < <(med "${REPL[@]}")
read -r REPLW_S REPLW_MIN < <(med "${REPLW[@]}")
read -r LAB_MS LAB_MAX < <(python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f} {max(v):.2f}")' "${LAB[@]}")
read -r SAVE_MS SAVE_MAX < <(python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f} {max(v):.2f}")' "${SAVE[@]}")
mibs() { echo "scale=1; $BYTES / 1048576 / $1" | bc -l; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

TABLE=$(cat <<MD
${SIZE_MIB} MiB file, $ROUNDS interleaved rounds; median (min) seconds.

| measurement | median s | min s | MiB/s (median) | ratio (medians) |
|---|---|---|---|---|
| \`cp\` + fsync (same disk, right after the \`cat\`) | $CP_S | $CP_MIN | $(mibs "$CP_S") | |
| replication, WAN model off (read, SHA-256 verify, fsync, rename), right after the upload | $REPL_S | $REPL_MIN | $(mibs "$REPL_S") | $(ratio "$CP_S" "$REPL_S") of cp (≥ 0.8) |
| \`cat file > other\` + fsync | $CAT_S | $CAT_MIN | $(mibs "$CAT_S") | |
| UploadImage, Swift client, 1 MiB chunks | $UP_S | $UP_MIN | $(mibs "$UP_S") | $(ratio "$CAT_S" "$UP_S") of cat (≥ 0.8, issue 13) |
| replication with $WATCHERS watchers | $REPLW_S | $REPLW_MIN | $(mibs "$REPLW_S") | $(ratio "$REPL_S" "$REPLW_S") of no-watcher run (≥ 0.9) |
| CreateLab, ${TEMPLATE_MIB} MiB template image (ms) | $LAB_MS | max $LAB_MAX | | < 50 ms |
| SaveLabTemplateImage, unchanged ${TEMPLATE_MIB} MiB (ms) | $SAVE_MS | max $SAVE_MAX | | < 50 ms |

Per round (s): cp ${CP[*]}; replication ${REPL[*]}; cat ${CAT[*]}; upload ${UP[*]}; replication with watchers ${REPLW[*]}.
Server RSS: idle $((RSS_IDLE / 1024)) MiB, after the first upload $((RSS_BEFORE / 1024)) MiB, at the end $((RSS_AFTER / 1024)) MiB, peak (VmHWM) $((HWM / 1024)) MiB; the watchers received $MSGS messages in all.
MD
)
echo "$TABLE"
if [ -n "${BENCH_OUT:-}" ]; then echo "$TABLE" >> "$BENCH_OUT"; fi
if [ -n "${RESULTS_OUT:-}" ]; then
  printf 'upload_s=%s\ncat_s=%s\nupload_mib=%s\nupload_rounds=%s\n' "$UP_S" "$CAT_S" "$SIZE_MIB" "$ROUNDS" >> "$RESULTS_OUT"
fi

#!/usr/bin/env bash
# Replication and upload benchmarks (release build), against a real labgallery-server:
#   1. replication throughput, WAN model off, one target region, vs `cp` + fsync of the same file
#      on the same disk (our copy also SHA-256-verifies and persists progress);
#   2. upload throughput through UploadImage (our Swift client, 1 MiB chunks) vs `cat file > other` + fsync;
#   3. the same replication with 1,000 gallery watchers attached: throughput vs no watcher, server RSS.
# Prints a table; BENCH_OUT=FILE also writes it there (markdown). SIZE_MIB sets the file size.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-512}
WATCHERS=${WATCHERS:-1000}
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/.build}")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

swift build -c release --product labgallery-server >/dev/null
swift build -c release --product labgallery-bench >/dev/null
BIN=.build/release

now() { date +%s.%N; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }
hwm_kib() { awk '/VmHWM/ {print $2}' /proc/"$1"/status; }
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/image.bin"
BYTES=$((SIZE_MIB << 20))

# Baselines on the same disk, each made durable like our writes are.
rm -f "$WORK/cp.bin"; sync
t0=$(now); cp "$WORK/image.bin" "$WORK/cp.bin"; sync "$WORK/cp.bin"; t1=$(now)
CP_S=$(echo "$t1 - $t0" | bc -l); rm -f "$WORK/cp.bin"
t0=$(now); cat "$WORK/image.bin" > "$WORK/cat.bin"; sync "$WORK/cat.bin"; t1=$(now)
CAT_S=$(echo "$t1 - $t0" | bc -l); rm -f "$WORK/cat.bin"

# A two-region geography: one replica per image, so throughput = one copy.
echo '{"geographies": {"Bench": ["r1", "r2"]}}' > "$WORK/regions.json"
"$BIN/labgallery-server" --port 0 --data-dir "$WORK/data" --regions-file "$WORK/regions.json" --wan-model off \
  --log-level warning > "$WORK/server.out" 2> "$WORK/server.err" & PIDS+=($!); SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(head -1 "$WORK/server.out" | awk -F: '{print $NF}')
TOKEN=$(cat "$WORK/data/admin.token")
RSS_IDLE=$(rss_kib "$SERVER")

bench() { "$BIN/labgallery-bench" --port "$PORT" --token "$TOKEN" --region r1 --file "$WORK/image.bin" "$@"; }
# Warm-up (page cache, database), then the measured runs.
bench --image-id warmup >/dev/null
NOW=$(bench --image-id plain)
RSS_BEFORE=$(rss_kib "$SERVER")
WITH=$(bench --image-id watched --watchers "$WATCHERS")
RSS_AFTER=$(rss_kib "$SERVER"); HWM=$(hwm_kib "$SERVER")

REPL_S=$(field "$NOW" replication_s); UP_S=$(field "$NOW" upload_s)
REPLW_S=$(field "$WITH" replication_s); MSGS=$(field "$WITH" watcher_messages)
mibs() { echo "scale=1; $BYTES / 1048576 / $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

TABLE=$(cat <<MD
| measurement (${SIZE_MIB} MiB file) | time s | MiB/s | ratio |
|---|---|---|---|
| \`cp\` + fsync (same disk) | $(printf %.3f "$CP_S") | $(mibs "$CP_S") | |
| replication, WAN model off (read, SHA-256 verify, fsync, rename) | $REPL_S | $(mibs "$REPL_S") | $(ratio "$CP_S" "$REPL_S") of cp (≥ 0.8) |
| \`cat file > other\` + fsync | $(printf %.3f "$CAT_S") | $(mibs "$CAT_S") | |
| UploadImage, Swift client, 1 MiB chunks | $UP_S | $(mibs "$UP_S") | $(ratio "$CAT_S" "$UP_S") of cat (≥ 0.6) |
| replication with $WATCHERS watchers | $REPLW_S | $(mibs "$REPLW_S") | $(ratio "$REPL_S" "$REPLW_S") of no-watcher run (≥ 0.9) |

Server RSS: idle $((RSS_IDLE / 1024)) MiB, before the watcher run $((RSS_BEFORE / 1024)) MiB, after it $((RSS_AFTER / 1024)) MiB, peak (VmHWM) $((HWM / 1024)) MiB; the $WATCHERS watchers received $MSGS messages in all.
MD
)
echo "$TABLE"
if [ -n "${BENCH_OUT:-}" ]; then echo "$TABLE" >> "$BENCH_OUT"; fi

#!/usr/bin/env bash
# Every benchmark of issue 13 (release builds), side by side in one run (`make bench`):
#   1. unary: h2load -c 8 -m 32 against our interop-server's UnaryCall, a grpcio Python
#      server's UnaryCall, grpc-swift-2's server (NIO HTTP/2 transport, the Swift user's real
#      alternative) and nghttpd serving a static file of the same response size (the ceiling
#      for anything on nghttp2); each checked for grpc-status 0 with nghttp.
#   1b. tail latency: h2load --rps at half of each server's own maximum from 1. (ours,
#      grpc-swift-2's, nghttpd), p50/p99/p99.9 from h2load's per-request log.
#   1c. client benchmark: 8 connections x 32 concurrent unary calls against our interop-server
#      from our generated client (h2rpc-bench unary), grpc-swift-2's client
#      (grpc-swift2-bench unary) and grpcio's Python client (unary_client.py, grpc.aio).
#   2. server streaming: h2rpc-bench stream (our client) against the StreamingOutputCall of our
#      server, grpc-swift-2's server and grpcio's Python server, 1 KiB messages.
#   3. CANCEL_CALLS (10,000) calls cancelled mid-stream, then idle: server RSS before/after.
#   4. TLS: the unary load of 1. over TLS (ALPN h2) against our interop-server and nghttpd,
#      both with the same throwaway certificate (openssl CLI), same h2load settings.
#   5. uploads, replication, templates: Benchmarks/replication.sh and its table (its variables
#      SIZE_MIB, ROUNDS, WATCHERS, TEMPLATE_MIB, TEMPLATE_ROUNDS apply). REPLICATION=0 skips it.
#   6. server RSS per idle connection that made one call: Benchmarks/idle_memory.py,
#      IDLE_CONNECTIONS (1,000) connections; ours, grpcio's, nghttpd. IDLE_MEMORY=0 skips it.
# Last, the "Issue 13 targets" table (Benchmarks/targets.py): each target's figure beside its
# anchors from this run, met or missed by how much. The run conditions (machine, commit, load
# average at the start, at each stage and at the end) head the output.
# Prints the tables; BENCH_OUT=FILE also writes them there (markdown).
# BASELINE_BIN=DIR adds the interop-server and h2rpc-bench found in DIR (an older build) as
# rows of the same run (loaded right after this build), so a change is judged side by side.
# A short run, to check the script only (about 2 minutes):
#   DURATION=2 STREAM_MESSAGES=40000 STREAM_MESSAGES_GRPC_SWIFT2=8000 STREAM_MESSAGES_GRPCIO=4000 CANCEL_CALLS=500 SIZE_MIB=16 \
#   ROUNDS=1 WATCHERS=10 TEMPLATE_MIB=16 TEMPLATE_ROUNDS=1 IDLE_CONNECTIONS=50 Benchmarks/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
STREAMS=${STREAMS:-32}
STREAM_MESSAGES=${STREAM_MESSAGES:-2000000}
# grpc-swift-2's server streams ~10x, grpcio's ~50x slower than ours: fewer messages, the same client.
STREAM_MESSAGES_GRPC_SWIFT2=${STREAM_MESSAGES_GRPC_SWIFT2:-400000}
STREAM_MESSAGES_GRPCIO=${STREAM_MESSAGES_GRPCIO:-100000}
CANCEL_CALLS=${CANCEL_CALLS:-10000}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-1000}
WORK=$(mktemp -d)
PIDS=()
stop_servers() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; PIDS=(); }
cleanup() { stop_servers; rm -rf "$WORK"; }
trap cleanup EXIT
# The figures of the targets table, as key=value lines (replication.sh and idle_memory.py add theirs).
RESULTS="$WORK/results"
: >"$RESULTS"
result() { echo "$1=$2" >>"$RESULTS"; }
# The 1-minute load average as each stage starts (our own load generator and servers count too).
STAGE_LOADS=""
stage() { STAGE_LOADS+="${STAGE_LOADS:+, }$1 $(cut -d' ' -f1 /proc/loadavg)"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }

# Every build first, so that none runs between the measurements.
swift build -c release --product interop-server >/dev/null
swift build -c release --package-path Benchmarks --product h2rpc-bench >/dev/null
swift build -c release --package-path Benchmarks --product grpc-swift2-bench >/dev/null
if [ "${REPLICATION:-1}" != 0 ]; then
  swift build -c release --product labgallery-server >/dev/null
  swift build -c release --package-path Benchmarks --product labgallery-bench >/dev/null
fi
BIN=.build/release
BENCH_BIN=Benchmarks/.build/release
START_DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
START_UPTIME=$(uptime)

# SimpleRequest{response_size: 16} framed (5-byte prefix): 16-byte payload responses.
printf '\x00\x00\x00\x00\x02\x10\x10' > "$WORK/request.bin"
# StreamingOutputCallRequest{response_parameters: [{size: 1024}, {size: 1024}]} framed.
printf '\x00\x00\x00\x00\x0a\x12\x03\x08\x80\x08\x12\x03\x08\x80\x08' > "$WORK/stream-request.bin"
# The same response our server sends: prefix + SimpleResponse{payload{body: 16 zero bytes}}.
mkdir -p "$WORK/www"
python3 - "$WORK/www/unary" <<'PY'
import sys
body = b"\x0a\x12\x12\x10" + b"\x00" * 16
open(sys.argv[1], "wb").write(bytes([0]) + len(body).to_bytes(4, "big") + body)
PY

# TLS: one throwaway self-signed P-256 certificate for both TLS servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.pem" >/dev/null 2>&1

OURS=$(free_port); OURS_GLOBAL=$(free_port); GRPCIO=$(free_port); NGHTTPD=$(free_port)
OURS_TLS=$(free_port); NGHTTPD_TLS=$(free_port); GS2=$(free_port)
# Default: handlers on the event loops (one per core). The second server runs handlers on
# Swift's global executor, as the gallery server does (its handlers block on SQLite).
# --reset_burst: stage 3 cancels CANCEL_CALLS calls on one connection, past the default
# rapid-reset burst (1000, issue 10), which would end it with GOAWAY ENHANCE_YOUR_CALM.
$BIN/interop-server --port "$OURS" --reset_burst $((2 * CANCEL_CALLS)) >"$WORK/ours.log" 2>&1 & PIDS+=($!); OURS_PID=$!
$BIN/interop-server --port "$OURS_GLOBAL" --executor global --event_loops 1 >"$WORK/ours-global.log" 2>&1 & PIDS+=($!)
python3 Tests/Interop/grpcio_peer_server.py --port "$GRPCIO" >"$WORK/grpcio.log" 2>&1 & PIDS+=($!)
nghttpd --no-tls -d "$WORK/www" "$NGHTTPD" >/dev/null 2>&1 & PIDS+=($!)
$BENCH_BIN/grpc-swift2-bench serve --port "$GS2" >"$WORK/grpc-swift2.log" 2>&1 & PIDS+=($!)
$BIN/interop-server --port "$OURS_TLS" --use_tls=true --tls_cert_file "$WORK/tls.pem" --tls_key_file "$WORK/tls.key" \
  >"$WORK/ours-tls.log" 2>&1 & PIDS+=($!)
nghttpd -d "$WORK/www" "$NGHTTPD_TLS" "$WORK/tls.key" "$WORK/tls.pem" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$OURS"; wait_port "$OURS_GLOBAL"; wait_port "$GRPCIO"; wait_port "$NGHTTPD"
wait_port "$OURS_TLS"; wait_port "$NGHTTPD_TLS"; wait_port "$GS2"
if [ -n "${BASELINE_BIN:-}" ]; then
  BASE=$(free_port)
  "$BASELINE_BIN/interop-server" --port "$BASE" --reset_burst $((2 * CANCEL_CALLS)) >"$WORK/base.log" 2>&1 & PIDS+=($!)
  wait_port "$BASE"
fi

grpc_ok() { # url request-file: h2load reads only :status; check the grpc-status trailer with a real request.
  nghttp -v -d "$2" -H 'content-type: application/grpc' -H 'te: trailers' "$1" 2>&1 | grep -aq 'grpc-status: 0' \
    || { echo "$1 did not answer grpc-status 0" >&2; exit 1; }
}
check_grpc_ok() { grpc_ok "${2:-http}://127.0.0.1:$1/grpc.testing.TestService/UnaryCall" "$WORK/request.bin"; }
check_stream_ok() { grpc_ok "http://127.0.0.1:$1/grpc.testing.TestService/StreamingOutputCall" "$WORK/stream-request.bin"; }
check_grpc_ok "$OURS"; check_grpc_ok "$OURS_GLOBAL"; check_grpc_ok "$GRPCIO"; check_grpc_ok "$OURS_TLS" https; check_grpc_ok "$GS2"
check_stream_ok "$OURS"; check_stream_ok "$GS2"; check_stream_ok "$GRPCIO"
if [ -n "${BASELINE_BIN:-}" ]; then check_grpc_ok "$BASE"; check_stream_ok "$BASE"; fi

# Percentiles of h2load's per-request log (its third column, microseconds), in ms.
percentiles() { # log digits quantile...
  python3 - "$@" <<'PY'
import sys
times = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
print(" ".join(f"{times[min(len(times) - 1, int(float(q) * len(times)))] / 1000:.{sys.argv[2]}f}" for q in sys.argv[3:]))
PY
}
h2load_rps() { tr -d , <"$1" | awk '/finished in/ {for (i=1;i<=NF;i++) if ($i ~ /req\/s/) printf "%.0f\n", $(i-1)}'; }

# h2load: prints "req/s p50_ms p99_ms ok total"
load() { # name url [extra args]
  local log="$WORK/$1.h2load.log" out="$WORK/$1.out"
  shift
  h2load -D "$DURATION" --warm-up-time=2 -c "$CLIENTS" -m "$STREAMS" --log-file="$log" "$@" >"$out" 2>&1
  echo "$(h2load_rps "$out") $(percentiles "$log" 2 0.5 0.99) $(awk '/status codes:/ {print $3}' "$out") $(awk '/^requests:/ {print $2}' "$out")"
}
GRPC_ARGS=(-d "$WORK/request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
stage unary
read -r R_OURS P50_OURS P99_OURS OK_OURS N_OURS < <(load ours "http://127.0.0.1:$OURS/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
if [ -n "${BASELINE_BIN:-}" ]; then
  read -r R_BASE P50_BASE P99_BASE OK_BASE N_BASE < <(load base "http://127.0.0.1:$BASE/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
fi
read -r R_OG P50_OG P99_OG OK_OG N_OG < <(load ours-global "http://127.0.0.1:$OURS_GLOBAL/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
read -r R_PY P50_PY P99_PY OK_PY N_PY < <(load grpcio "http://127.0.0.1:$GRPCIO/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
read -r R_GS P50_GS P99_GS OK_GS N_GS < <(load grpc-swift2 "http://127.0.0.1:$GS2/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
read -r R_NG P50_NG P99_NG OK_NG N_NG < <(load nghttpd "http://127.0.0.1:$NGHTTPD/unary")
read -r R_OT P50_OT P99_OT OK_OT N_OT < <(load ours-tls "https://127.0.0.1:$OURS_TLS/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
read -r R_NT P50_NT P99_NT OK_NT N_NT < <(load nghttpd-tls "https://127.0.0.1:$NGHTTPD_TLS/unary")

# Tail latency at half of each server's own maximum (h2load's --rps is per client).
# Prints "achieved_req/s p50_ms p99_ms p99.9_ms".
tail_load() { # name max_rps url [extra args]
  local rate=$(( ${2%.*} / 2 / CLIENTS )) log="$WORK/$1.tail.log" out="$WORK/$1.tail.out"
  shift 2
  h2load -D "$DURATION" --warm-up-time=2 -c "$CLIENTS" -m "$STREAMS" --rps="$rate" --log-file="$log" "$@" >"$out" 2>&1
  echo "$(h2load_rps "$out") $(percentiles "$log" 3 0.5 0.99 0.999)"
}
stage tail
read -r T_OURS T50_OURS T99_OURS T999_OURS < <(tail_load ours "$R_OURS" "http://127.0.0.1:$OURS/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
read -r T_GS T50_GS T99_GS T999_GS < <(tail_load grpc-swift2 "$R_GS" "http://127.0.0.1:$GS2/grpc.testing.TestService/UnaryCall" "${GRPC_ARGS[@]}")
read -r T_NG T50_NG T99_NG T999_NG < <(tail_load nghttpd "$R_NG" "http://127.0.0.1:$NGHTTPD/unary")

# Client benchmark: three clients, one after another, against the same interop-server.
# Prints "calls/s p50_ms p99_ms".
client_load() { # command...
  "$@" --port "$OURS" --connections "$CLIENTS" --concurrency "$STREAMS" --duration "$DURATION" \
    | sed -n 's/.*calls_per_sec=\([0-9]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \2 \3/p'
}
stage clients
read -r C_OURS C50_OURS C99_OURS < <(client_load $BENCH_BIN/h2rpc-bench unary)
read -r C_GS C50_GS C99_GS < <(client_load $BENCH_BIN/grpc-swift2-bench unary)
read -r C_PY C50_PY C99_PY < <(client_load python3 Benchmarks/unary_client.py)

# Server streaming: our client against each server's StreamingOutputCall, 4 streams.
# Prints "messages seconds msgs/s".
stream_load() { # h2rpc-bench port messages
  "$1" stream --port "$2" --messages "$3" --size 1024 --streams 4 \
    | sed -n 's/.*messages=\([0-9]*\) .*seconds=\([0-9.]*\) msgs_per_sec=\([0-9]*\).*/\1 \2 \3/p'
}
stage streaming
read -r M_OURS S_OURS MSGS < <(stream_load $BENCH_BIN/h2rpc-bench "$OURS" "$STREAM_MESSAGES")
if [ -n "${BASELINE_BIN:-}" ]; then
  read -r M_BASE S_BASE BASE_MSGS < <(stream_load "$BASELINE_BIN/h2rpc-bench" "$BASE" "$STREAM_MESSAGES")
fi
read -r M_GS S_GS MSGS_GS < <(stream_load $BENCH_BIN/h2rpc-bench "$GS2" "$STREAM_MESSAGES_GRPC_SWIFT2")
read -r M_PY S_PY MSGS_PY < <(stream_load $BENCH_BIN/h2rpc-bench "$GRPCIO" "$STREAM_MESSAGES_GRPCIO")

# Cancellation: RSS after CANCEL_CALLS mid-stream cancels, once idle.
stage cancel
sleep 1; RSS_BEFORE=$(rss_kib "$OURS_PID")
$BENCH_BIN/h2rpc-bench cancel --port "$OURS" --calls "$CANCEL_CALLS" --concurrency 100 >/dev/null
sleep 3; RSS_AFTER=$(rss_kib "$OURS_PID")
stop_servers # the stages below start their own

result load "-D ${DURATION}s -c $CLIENTS -m $STREAMS"; result clients "$CLIENTS"; result streams "$STREAMS"
result unary_ours "$R_OURS"; result unary_nghttpd "$R_NG"; result unary_grpc_swift2 "$R_GS"; result unary_grpcio "$R_PY"
result client_ours "$C_OURS"; result client_grpc_swift2 "$C_GS"; result client_grpcio "$C_PY"
result tail_ours "$T50_OURS $T99_OURS $T999_OURS"; result tail_nghttpd "$T50_NG $T99_NG $T999_NG"
result tail_grpc_swift2 "$T50_GS $T99_GS $T999_GS"
result stream_ours "$MSGS"; result stream_grpc_swift2 "$MSGS_GS"; result stream_grpcio "$MSGS_PY"

# Uploads (with the rest of replication.sh's figures), then memory per idle connection.
REPLICATION_TABLE=""
if [ "${REPLICATION:-1}" != 0 ]; then
  stage replication
  REPLICATION_TABLE=$(env -u BENCH_OUT RESULTS_OUT="$RESULTS" Benchmarks/replication.sh)
fi
IDLE_TABLE=""
if [ "${IDLE_MEMORY:-1}" != 0 ]; then
  stage idle-memory
  IDLE_TABLE=$(python3 Benchmarks/idle_memory.py --connections "$IDLE_CONNECTIONS" --bin "$BIN" --results "$RESULTS")
  result idle_connections "$IDLE_CONNECTIONS"
fi
END_UPTIME=$(uptime)

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
# The baseline rows, if any, with their own line break in front: no blank line inside a table.
BASE_ROW=""
BASE_STREAM_ROW=""
if [ -n "${BASELINE_BIN:-}" ]; then
  BASE_ROW=$'\n'"| baseline build (\`$BASELINE_BIN\`) interop-server, handlers on $(nproc) event loops | $R_BASE | $P50_BASE | $P99_BASE | $OK_BASE / $N_BASE | $(ratio "$R_BASE" "$R_NG") | $(ratio "$R_BASE" "$R_PY") |"
  BASE_STREAM_ROW=$'\n'"| baseline build (\`$BASELINE_BIN\`) interop-server | $M_BASE | $S_BASE | $BASE_MSGS | $(ratio "$MSGS" "$BASE_MSGS") |"
fi
TABLE=$(cat <<EOT
Run conditions: started $START_DATE, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Benchmarks || echo ' (uncommitted changes)').
Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(swift --version 2>/dev/null | head -1)
Load at the start: $START_UPTIME
Load at the end:   $END_UPTIME
1-minute load average as each stage started (this run's own load included): $STAGE_LOADS

Unary, h2load -D ${DURATION}s -c $CLIENTS -m $STREAMS, 16-byte payload, load generator on the same cores.

| server | req/s | p50 ms | p99 ms | 2xx / requests | ratio vs nghttpd | ratio vs grpcio |
|---|---|---|---|---|---|---|
| H2RPC interop-server (UnaryCall), handlers on $(nproc) event loops | $R_OURS | $P50_OURS | $P99_OURS | $OK_OURS / $N_OURS | $(ratio "$R_OURS" "$R_NG") | $(ratio "$R_OURS" "$R_PY") |
| H2RPC interop-server (UnaryCall), 1 loop, handlers on the global executor | $R_OG | $P50_OG | $P99_OG | $OK_OG / $N_OG | $(ratio "$R_OG" "$R_NG") | $(ratio "$R_OG" "$R_PY") |$BASE_ROW
| grpc-swift-2 2.4.3 server, NIO HTTP/2 transport (UnaryCall) | $R_GS | $P50_GS | $P99_GS | $OK_GS / $N_GS | $(ratio "$R_GS" "$R_NG") | $(ratio "$R_GS" "$R_PY") |
| grpcio Python server (UnaryCall) | $R_PY | $P50_PY | $P99_PY | $OK_PY / $N_PY | $(ratio "$R_PY" "$R_NG") | 1.00 |
| nghttpd static file, same size | $R_NG | $P50_NG | $P99_NG | $OK_NG / $N_NG | 1.00 | $(ratio "$R_NG" "$R_PY") |

Tail latency: h2load -c $CLIENTS -m $STREAMS --rps (per client) so that the total is half of each server's own req/s above.

| server | target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms |
|---|---|---|---|---|---|
| H2RPC interop-server (UnaryCall), handlers on $(nproc) event loops | $(( ${R_OURS%.*} / 2 )) | $T_OURS | $T50_OURS | $T99_OURS | $T999_OURS |
| grpc-swift-2 2.4.3 server (UnaryCall) | $(( ${R_GS%.*} / 2 )) | $T_GS | $T50_GS | $T99_GS | $T999_GS |
| nghttpd static file, same size | $(( ${R_NG%.*} / 2 )) | $T_NG | $T50_NG | $T99_NG | $T999_NG |

Clients: $CLIENTS connections x $STREAMS concurrent unary calls for ${DURATION}s (after 1 s warm-up) against our interop-server (above), 16-byte payload; the client and the server share the cores.

| client | calls/s | p50 ms | p99 ms | ours vs this |
|---|---|---|---|---|
| H2RPC generated client (\`Grpc_Testing_TestService.Client\`, H2ClientTransport) | $C_OURS | $C50_OURS | $C99_OURS | 1.00 |
| grpc-swift-2 2.4.3 client, NIO HTTP/2 transport | $C_GS | $C50_GS | $C99_GS | $(ratio "$C_OURS" "$C_GS") |
| grpcio $(python3 -c "import grpc; print(grpc.__version__)") Python client (grpc.aio) | $C_PY | $C50_PY | $C99_PY | $(ratio "$C_OURS" "$C_PY") |

TLS (ALPN h2, TLS 1.3, one self-signed P-256 certificate for both), the same h2load settings:

| server | req/s | p50 ms | p99 ms | 2xx / requests | ratio vs nghttpd-TLS | ratio vs our cleartext |
|---|---|---|---|---|---|---|
| H2RPC interop-server (UnaryCall), TLS, handlers on $(nproc) event loops | $R_OT | $P50_OT | $P99_OT | $OK_OT / $N_OT | $(ratio "$R_OT" "$R_NT") | $(ratio "$R_OT" "$R_OURS") |
| nghttpd static file, same size, TLS | $R_NT | $P50_NT | $P99_NT | $OK_NT / $N_NT | 1.00 | $(ratio "$R_NT" "$R_OURS") |

Server streaming: h2rpc-bench stream (our client) → each server's StreamingOutputCall, 1 KiB messages, 4 streams.

| server | messages | seconds | messages/s | ours vs this |
|---|---|---|---|---|
| H2RPC interop-server, handlers on $(nproc) event loops | $M_OURS | $S_OURS | $MSGS | 1.00 |$BASE_STREAM_ROW
| grpc-swift-2 2.4.3 server, NIO HTTP/2 transport | $M_GS | $S_GS | $MSGS_GS | $(ratio "$MSGS" "$MSGS_GS") |
| grpcio Python server | $M_PY | $S_PY | $MSGS_PY | $(ratio "$MSGS" "$MSGS_PY") |

$CANCEL_CALLS calls cancelled mid-stream: server RSS $RSS_BEFORE KiB before, $RSS_AFTER KiB after ($(python3 -c "print(f'{($RSS_AFTER-$RSS_BEFORE)*100/$RSS_BEFORE:+.1f}')")%)
${REPLICATION_TABLE:+
Uploads and replication (Benchmarks/replication.sh):

$REPLICATION_TABLE
}${IDLE_TABLE:+
$IDLE_TABLE
}
Issue 13 targets (every figure from this run):

$(python3 Benchmarks/targets.py "$RESULTS")
EOT
)
echo "$TABLE"
if [ -n "${BENCH_OUT:-}" ]; then echo "$TABLE" > "$BENCH_OUT"; fi

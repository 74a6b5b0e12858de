#!/usr/bin/env bash
# PostgreSQL driver comparison (issue 12): libpq vs postgres-nio, side by side in one run against
# one throwaway PostgreSQL 15 cluster made here (initdb in a temp dir as the `postgres` user,
# since initdb refuses root; loopback TCP on a free port plus a unix socket in that dir; trust
# auth; synchronous_commit=off so that a commit's WAL flush, the same for both drivers and noisy
# on a shared disk, does not hide the drivers). The cluster is stopped by its PID on exit, even
# on failure. For each workload (select1: one prepared SELECT 1, the floor; attach: the gallery's
# five-statement serializable transaction) and each concurrency, both drivers run the same
# transactions through a pool of CONNECTIONS; then each driver's client RSS for opening 8
# connections. Build cost: pg_driver_build.sh. Prints a table; BENCH_OUT=FILE also writes it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-8}
CONCURRENCIES=${CONCURRENCIES:-1 8 32}
TRANSACTIONS=${TRANSACTIONS:-10000}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/pg-drivers.XXXXXX)
cleanup() {
  if [ -f "$WORK/data/postmaster.pid" ]; then
    local pid
    pid=$(head -1 "$WORK/data/postmaster.pid")
    kill -INT "$pid" 2>/dev/null || true # fast shutdown
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

swift build -c release --package-path Benchmarks --product pg-driver-bench >/dev/null
BENCH=Benchmarks/.build/release/pg-driver-bench

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chown postgres "$WORK"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --no-sync >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; exit 1; }
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start \
  -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=100 -c synchronous_commit=off" >/dev/null \
  || { cat "$WORK/server.log" >&2; exit 1; }
URL="postgresql://postgres@127.0.0.1:$PORT/postgres"

# run DRIVER WORKLOAD CONCURRENCY: prints "per_sec p50 p99 p999 retries"
run() {
  "$BENCH" --driver "$1" --workload "$2" --concurrency "$3" --connections "$CONNECTIONS" \
    --transactions "$TRANSACTIONS" --url "$URL" \
    | sed -n 's/.*per_sec=\([0-9]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\) p999_ms=\([0-9.]*\) retries=\([0-9]*\).*/\1 \2 \3 \4 \5/p'
}
ROWS=""
for workload in select1 attach; do
  for c in $CONCURRENCIES; do
    for driver in libpq postgres-nio; do
      read -r RATE P50 P99 P999 RETRIES < <(run "$driver" "$workload" "$c")
      ROWS+="| $workload | $driver | $c | $RATE | $P50 | $P99 | $P999 | $RETRIES |"$'\n'
    done
  done
done
MEM_ROWS=""
for driver in libpq postgres-nio; do
  LINE=$("$BENCH" --driver "$driver" --memory --connections 8 --url "$URL")
  MEM_ROWS+="| $driver | $(sed -n 's/.*rss_before_kib=\([0-9]*\).*/\1/p' <<<"$LINE") | $(sed -n 's/.*first_connection_kib=\([-0-9]*\).*/\1/p' <<<"$LINE") | $(sed -n 's/.*per_further_connection_kib=\([-0-9]*\).*/\1/p' <<<"$LINE") |"$'\n'
done

TABLE=$(cat <<EOT
Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(swift --version 2>/dev/null | head -1); $("$PGBIN/postgres" --version), loopback TCP, synchronous_commit=off
Pool of $CONNECTIONS connections, $TRANSACTIONS measured calls per row (after 1000 unmeasured), client and server on the same cores.

| workload | driver | concurrency | calls/s | p50 ms | p99 ms | p99.9 ms | serialization retries |
|---|---|---|---|---|---|---|---|
${ROWS%$'\n'}

Client memory (RSS) for opening 8 connections one by one, each running one prepared SELECT 1:

| driver | RSS before KiB | first connection KiB | each further connection KiB |
|---|---|---|---|
${MEM_ROWS%$'\n'}
EOT
)
echo "$TABLE"
if [ -n "${BENCH_OUT:-}" ]; then echo "$TABLE" >"$BENCH_OUT"; fi

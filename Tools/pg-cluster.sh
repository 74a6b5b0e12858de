#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and CI (Debian's postgresql 15 binaries).
#
#   Tools/pg-cluster.sh start DIR   initdb + pg_ctl start in DIR; prints the superuser URL
#   Tools/pg-cluster.sh url DIR     prints the URL of the cluster in DIR
#   Tools/pg-cluster.sh stop DIR    stops it by the PID in DIR/data/postmaster.pid (fast shutdown)
#
# Run as root, the cluster runs as the `postgres` user (initdb refuses root) and DIR is chowned
# to it; otherwise as the invoking user. Data and the unix socket live in DIR; TCP listens on
# 127.0.0.1 on a free port. fsync is off: a test cluster need not survive a power loss.
# `start` on a DIR whose cluster was stopped starts it again (same port, same data).
set -euo pipefail

usage() { echo "usage: $0 start|stop|url DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

bindir=${PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir=$d; done
fi
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] || {
  echo "$0: no initdb found: install Debian's postgresql (make deps) or set PG_BINDIR" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then
  owner=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  owner=$(id -un)
  as_owner() { "$@"; }
fi

url() {
  local port
  port=$(cat "$dir/port")
  echo "postgresql://$owner@127.0.0.1:$port/postgres"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case $cmd in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      [ "$(id -u)" = 0 ] && chown "$owner" "$dir" && chmod 0700 "$dir"
      as_owner "$bindir/initdb" -D "$dir/data" -U "$owner" -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2; exit 1; }
      free_port >"$dir/port"
      cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $(cat "$dir/port")
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    fi
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
      tail -n 20 "$dir/server.log" >&2; exit 1; }
    url
    ;;
  url)
    dir=$(cd "$dir" && pwd)
    url
    ;;
  stop)
    pidfile="$dir/data/postmaster.pid"
    [ -f "$pidfile" ] || exit 0
    pid=$(head -n 1 "$pidfile")
    # SIGINT: fast shutdown (sessions disconnected); wait for the postmaster to be gone.
    kill -INT "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 600); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    echo "$0: postgres $pid did not stop within 60 s" >&2
    exit 1
    ;;
  *) usage ;;
esac

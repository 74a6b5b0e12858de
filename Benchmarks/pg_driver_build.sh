#!/usr/bin/env bash
# Build cost of each PostgreSQL driver (issue 12), measured on two scratch packages made here in
# a temp dir, each with one executable that connects and runs one prepared `SELECT 1`:
#   postgres-nio  depends on vapor/postgres-nio 1.33.2 only (and so on swift-nio, swift-nio-ssl,
#                 swift-crypto, swift-nio-transport-services, swift-service-lifecycle, ...)
#   libpq         a system-library module (pkg-config libpq, Debian's libpq-dev), no package
# Each: `rm -rf .build`, then `swift build -c release` under /usr/bin/time -v (wall, user, sys,
# peak RSS), then the executable's size (as built and stripped) and the shared libraries it
# needs beyond the Swift runtime. Dependency resolution (git clones from the local package
# copies) is done first and not counted. Prints a markdown table; BENCH_OUT=FILE also writes it.
set -euo pipefail
WORK=$(mktemp -d /tmp/pg-driver-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/nio/Sources/Scratch" "$WORK/libpq/Sources/Scratch" "$WORK/libpq/Sources/CLibPQ"
cat >"$WORK/nio/Package.swift" <<'SWIFT'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "ScratchNIO",
    dependencies: [.package(url: "https://github.com/vapor/postgres-nio", exact: "1.33.2")],
    targets: [.executableTarget(name: "Scratch", dependencies: [.product(name: "PostgresNIO", package: "postgres-nio")])]
)
SWIFT
cat >"$WORK/nio/Sources/Scratch/main.swift" <<'SWIFT'
import PostgresNIO

struct One: PostgresPreparedStatement {
    static let sql = "SELECT 1"
    typealias Row = Int32
    func makeBindings() -> PostgresBindings { PostgresBindings() }
    func decodeRow(_ row: PostgresRow) throws -> Int32 { try row.decode(Int32.self) }
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 5432 : 5432
let client = PostgresClient(
    configuration: .init(host: "127.0.0.1", port: port, username: "postgres", password: nil, database: "postgres", tls: .disable),
    backgroundLogger: Logger(label: "scratch"))
await withTaskGroup(of: Void.self) { group in
    group.addTask { await client.run() }
    do {
        for try await value in try await client.execute(One()) { print(value) }
    } catch {
        print(error)
    }
    group.cancelAll()
}
SWIFT
cat >"$WORK/libpq/Package.swift" <<'SWIFT'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "ScratchLibPQ",
    targets: [
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .executableTarget(name: "Scratch", dependencies: ["CLibPQ"]),
    ]
)
SWIFT
printf 'module CLibPQ [system] {\n    header "shim.h"\n    link "pq"\n    export *\n}\n' >"$WORK/libpq/Sources/CLibPQ/module.modulemap"
printf '#include <libpq-fe.h>\n' >"$WORK/libpq/Sources/CLibPQ/shim.h"
cat >"$WORK/libpq/Sources/Scratch/main.swift" <<'SWIFT'
import CLibPQ

let port = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "5432"
let conn = PQconnectdb("host=127.0.0.1 port=\(port) user=postgres dbname=postgres")
if PQstatus(conn) == CONNECTION_OK, let prepared = PQprepare(conn, "one", "SELECT 1", 0, nil) {
    PQclear(prepared)
    let result = PQexecPrepared(conn, "one", 0, nil, nil, nil, 0)
    if PQresultStatus(result) == PGRES_TUPLES_OK { print(String(cString: PQgetvalue(result, 0, 0))) }
    PQclear(result)
} else {
    print(String(cString: PQerrorMessage(conn)))
}
PQfinish(conn)
SWIFT

# measure NAME: prints "wall_s user_s sys_s peak_rss_mib bytes stripped_bytes libs"
measure() {
  local dir="$WORK/$1"
  (cd "$dir" && swift package resolve >/dev/null)
  rm -rf "$dir/.build/release" "$dir/.build/x86_64-unknown-linux-gnu" "$dir/.build/build.db"
  (cd "$dir" && /usr/bin/time -v swift build -c release >"$dir/build.log" 2>"$dir/time.log") \
    || { cat "$dir/build.log" "$dir/time.log" >&2; exit 1; }
  local bin="$dir/.build/release/Scratch"
  strip -o "$dir/stripped" "$bin"
  local libs
  libs=$(ldd "$bin" | awk '{print $1}' | { grep -v -e '^/' -e '^linux-vdso' -e '^libswift' -e '^libFoundation' -e '^libdispatch' \
    -e '^lib_FoundationICU' -e '^libBlocksRuntime' -e '^libc\.' -e '^libm\.' -e '^libstdc' -e '^libgcc' || true; } | paste -sd, -)
  awk -v bytes="$(stat -c %s "$bin")" -v stripped="$(stat -c %s "$dir/stripped")" -v libs="${libs:-none}" '
    /Elapsed \(wall clock\)/ { n = split($NF, t, ":"); wall = (n == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2] }
    /User time/ { user = $NF } /System time/ { sys = $NF } /Maximum resident/ { rss = $NF / 1024 }
    END { printf "%.1f %.1f %.1f %.0f %s %s %s\n", wall, user, sys, rss, bytes, stripped, libs }' "$dir/time.log"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
read -r NW NU NS NR NB NSB NL < <(measure nio)
read -r LW LU LS LR LB LSB LL < <(measure libpq)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
mib() { python3 -c "print(f'{$1/1048576:.2f}')"; }
sum() { python3 -c "print(f'{$1+$2:.1f}')"; }
TABLE=$(cat <<EOT
Clean release build (\`rm -rf .build\` after resolving, \`swift build -c release\`) of a one-file scratch package;
$(nproc) cores, load average $LOAD_BEFORE before and $LOAD_AFTER after; $(swift --version 2>/dev/null | head -1)

| driver | wall s | user s | sys s | user+sys s | peak RSS MiB | executable MiB | stripped MiB | shared libraries beyond the Swift runtime and libc |
|---|---|---|---|---|---|---|---|---|
| postgres-nio 1.33.2 (package) | $NW | $NU | $NS | $(sum "$NU" "$NS") | $NR | $(mib "$NB") | $(mib "$NSB") | $NL |
| libpq $(pkg-config --modversion libpq) (system library) | $LW | $LU | $LS | $(sum "$LU" "$LS") | $LR | $(mib "$LB") | $(mib "$LSB") | $LL ($(python3 -c "import os; print(f'{os.path.getsize(os.path.realpath(\"/usr/lib/x86_64-linux-gnu/libpq.so.5\"))/1048576:.2f}')") MiB libpq.so.5) |
EOT
)
echo "$TABLE"
if [ -n "${BENCH_OUT:-}" ]; then echo "$TABLE" >"$BENCH_OUT"; fi

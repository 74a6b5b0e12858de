#!/bin/sh
# Builds and runs the CH2Shim C tests: plain, under valgrind, and against Python grpcio.
#   Tests/CH2ShimCTests/run_tests.sh [--no-valgrind] [--no-grpcio]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC="$HERE/../../Sources/CH2Shim"
OUT=${OUT:-/tmp/h2shim-ctests}
mkdir -p "$OUT"
CFLAGS="-std=gnu11 -O1 -g -Wall -Wextra -Werror -I$SRC/include -I$SRC"
gcc $CFLAGS -o "$OUT/h2shim_test" "$HERE/h2shim_test.c" "$SRC"/*.c -lnghttp2 -lpthread
echo "== C tests"
"$OUT/h2shim_test"
case " $* " in *" --no-valgrind "*) ;; *)
  echo "== C tests under valgrind"
  valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=9 "$OUT/h2shim_test"
esac
case " $* " in *" --no-grpcio "*) ;; *)
  echo "== grpcio client -> shim server"
  python3 "$HERE/grpcio_peer.py" client-vs "$OUT/h2shim_test"
  echo "== shim client -> grpcio server"
  python3 "$HERE/grpcio_peer.py" server-vs "$OUT/h2shim_test"
esac
echo "ALL OK"

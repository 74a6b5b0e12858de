#!/bin/sh
# Builds and runs the CH2Shim C tests (one binary: unit tests per file test_<unit>.c,
# end-to-end tests, failmalloc, grpcio modes):
#   plain build:   tests, tests under valgrind, failmalloc under valgrind, grpcio both ways
#   sanitizers:    a second build with AddressSanitizer + UndefinedBehaviorSanitizer
#                  (valgrind and ASan cannot be combined): tests and failmalloc
#   Tests/CH2ShimCTests/run_tests.sh [--no-valgrind] [--no-sanitizers] [--no-grpcio]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC="$HERE/../../Sources/CH2Shim"
# A directory of its own per run (two runs at once must not overwrite each other's binaries).
if [ -z "${OUT:-}" ]; then
  OUT=$(mktemp -d /tmp/h2shim-ctests.XXXXXX)
  trap 'rm -rf "$OUT"' EXIT
fi
mkdir -p "$OUT"
CFLAGS="-std=gnu11 -O1 -g -Wall -Wextra -Werror -DH2_TEST_HOOKS -I$SRC/include -I$SRC"
gcc $CFLAGS -o "$OUT/h2shim_test" "$HERE"/*.c "$SRC"/*.c -lnghttp2 -lssl -lcrypto -lpthread
echo "== C tests"
"$OUT/h2shim_test"
case " $* " in *" --no-valgrind "*) ;; *)
  VG="valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=9"
  echo "== C tests under valgrind"
  $VG "$OUT/h2shim_test"
  echo "== failmalloc under valgrind"
  $VG "$OUT/h2shim_test" failmalloc
esac
case " $* " in *" --no-sanitizers "*) ;; *)
  gcc $CFLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    -o "$OUT/h2shim_test_asan" "$HERE"/*.c "$SRC"/*.c -lnghttp2 -lssl -lcrypto -lpthread
  echo "== C tests under ASan+UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 "$OUT/h2shim_test_asan"
  echo "== failmalloc under ASan+UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 "$OUT/h2shim_test_asan" failmalloc
esac
case " $* " in *" --no-grpcio "*) ;; *)
  echo "== grpcio client -> shim server"
  python3 "$HERE/grpcio_peer.py" client-vs "$OUT/h2shim_test"
  echo "== shim client -> grpcio server"
  python3 "$HERE/grpcio_peer.py" server-vs "$OUT/h2shim_test"
esac
echo "ALL OK"

#!/usr/bin/env bash
# Fails (non-zero, printing the difference) when the generated code in
# Sources/GeneratedCProtos and Sources/GeneratedProtos is not what Tools/generate.sh
# produces from Protos/ — i.e. someone edited a .proto or generated file without regenerating.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIRS=(Sources/GeneratedCProtos Sources/GeneratedProtos)

# Snapshot what is there now (works before the first commit too).
SNAP="$(mktemp -d)"
trap 'rm -rf "$SNAP"' EXIT
for d in "${DIRS[@]}"; do mkdir -p "$SNAP/$d"; cp -a "$d/." "$SNAP/$d/" 2>/dev/null || true; done

Tools/generate.sh >/dev/null

status=0
for d in "${DIRS[@]}"; do
    if ! diff -ruN "$SNAP/$d" "$d"; then status=1; fi
done

# Against the commit too, when there is one: generated files must be committed and current.
if git rev-parse --verify -q HEAD >/dev/null; then
    changes="$(git status --porcelain -- "${DIRS[@]}")"
    if [ -n "$changes" ]; then
        echo "check-generated.sh: generated code differs from the commit:" >&2
        echo "$changes" >&2
        git --no-pager diff -- "${DIRS[@]}" >&2 || true
        status=1
    fi
fi

if [ "$status" -ne 0 ]; then
    echo "check-generated.sh: generated code is stale; run Tools/generate.sh and commit the result." >&2
    exit 1
fi
echo "check-generated.sh: generated code is current."

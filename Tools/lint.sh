#!/usr/bin/env bash
# `swift format` over every hand-written Swift file, with the committed .swift-format:
#   Tools/lint.sh         fails (printing each finding) when a file is not formatted
#   Tools/lint.sh --fix   formats the files in place
# Generated code (Sources/Generated*) is the generator's to shape and is not linted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t FILES < <(git ls-files -co --exclude-standard -- '*.swift' | grep -v '^Sources/Generated' | sort)
if [ "${1:-}" = "--fix" ]; then
    swift format format --in-place --parallel -- "${FILES[@]}"
else
    swift format lint --strict --parallel -- "${FILES[@]}"
    echo "lint.sh: ${#FILES[@]} Swift files formatted as .swift-format says."
fi

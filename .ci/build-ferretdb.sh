#!/usr/bin/env bash
# Build the FerretDB test server (tests/ferretdb) and print the binary path.
#
# Usage: .ci/build-ferretdb.sh            # -> prints e.g. ~/.cache/chat-ferretdb/ferretdb
#        FERRETDB_BIN=/x/ferretdb .ci/build-ferretdb.sh
#
# Needs Go >= 1.24 and access to the Go module proxy on first run (the
# dependencies are pinned by tests/ferretdb/go.sum). Only the binary path goes
# to stdout, so `FERRETDB_BIN=$(.ci/build-ferretdb.sh)` works.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/ferretdb" && pwd)"
out="${FERRETDB_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-ferretdb/ferretdb}"

go="${GO:-$(command -v go || true)}"
if [[ -z "$go" && -x /usr/local/go/bin/go ]]; then
    go=/usr/local/go/bin/go
fi
if [[ -z "$go" ]]; then
    echo "build-ferretdb: no Go toolchain found (set GO=/path/to/go)" >&2
    exit 1
fi

# Rebuild only when the wrapper or its pinned dependencies changed.
if [[ -x "$out" && "$out" -nt "$src/main.go" && "$out" -nt "$src/go.mod" && "$out" -nt "$src/go.sum" ]]; then
    echo "$out"
    exit 0
fi

mkdir -p "$(dirname "$out")"
trap 'rm -f "$out.tmp.$$"' EXIT
echo "build-ferretdb: building $out (first build takes a few minutes)..." >&2
start=$SECONDS
(
    cd "$src"
    # Pure-Go SQLite driver, so no cgo. -buildvcs=false: VCS stamping is
    # useless here and fails in some CI checkouts. Build to a temp name so an
    # interrupted build never leaves a truncated binary that looks up to date.
    CGO_ENABLED=0 "$go" build -trimpath -buildvcs=false -o "$out.tmp.$$" . >&2
)
mv -f "$out.tmp.$$" "$out"
echo "build-ferretdb: done in $((SECONDS - start))s" >&2
echo "$out"

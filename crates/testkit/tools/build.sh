#!/usr/bin/env bash
# Builds the Go tool of tools/NAME (its go.mod's `tool` line) into a cache outside the
# clone, keyed by every file of the tool's directory and this script, and prints the binary's
# path.
# Usage: build.sh NAME
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=$1
mod="$here/$name"
[ -f "$mod/go.mod" ] || { echo "no tool $name under $here" >&2; exit 2; }
key=$(cd "$mod" && find . -type f | LC_ALL=C sort | xargs cat | cat - "$here/build.sh" | sha256sum | cut -c1-16)
cache=${FLOWSTOP_CACHE:-$HOME/.cache/flowstop}
out="$cache/tools/$name-$key"
if [ -x "$out/$name" ]; then
  echo "$out/$name"; exit 0
fi
pkg=$(awk '/^tool /{print $2; exit} /^tool \($/{getline; print $1; exit}' "$mod/go.mod")
mkdir -p "$out.tmp"
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/$name" "$pkg") >&2
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$out/$name"

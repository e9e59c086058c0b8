#!/usr/bin/env bash
# Builds the Go tools of tools/NAME (its go.mod's `tool` lines, in one `go build` so they
# share compiled packages) into a cache outside the clone, keyed by every file of the
# tool's directory and this script, and prints the path of the binary called NAME (the
# others sit beside it). Build tags, if any, are in tools/NAME/build-tags.
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
# Tests running in parallel may ask for the same tool: one builds, the others wait for it.
mkdir -p "$cache/tools"
exec 9> "$out.lock"
flock 9
if [ -x "$out/$name" ]; then
  echo "$out/$name"; exit 0
fi
pkgs=$(awk '/^tool \($/{t=1; next} t&&/^\)/{t=0} t{print $1} /^tool [^(]/{print $2}' "$mod/go.mod")
tags=$(cat "$mod/build-tags" 2>/dev/null || true)
mkdir -p "$out.tmp"
# shellcheck disable=SC2086 # one package per word
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$out.tmp/" $pkgs) >&2
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$out/$name"

#!/usr/bin/env bash
# Builds one pinned tool from its module under hack/tools/<module>/ into
# bin/tools/<name>-<version>, and points bin/<name> at it. Skips the build when
# that version is already there. Usage:
#   hack/build-tool.sh NAME VERSION MODULE PACKAGE [LDFLAGS]
set -euo pipefail

name=$1 version=$2 module=$3 pkg=$4 ldflags=${5:-}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/tools/$name-$version"
link="$root/bin/$name"

if [[ -x "$out" ]]; then
  ln -sfn "tools/$name-$version" "$link"
  echo "tools: $name $version already built"
  exit 0
fi

mkdir -p "$root/bin/tools"
echo "tools: building $name $version from $pkg (module hack/tools/$module) ..."
start=$(date +%s)
log=$(mktemp)
# GOFLAGS=-mod=mod would let go.sum drift; the committed go.sum must be enough.
if ! (cd "$root/hack/tools/$module" && CGO_ENABLED=0 go build -mod=readonly -trimpath \
        -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") >"$log" 2>&1; then
  echo "tools: FAILED to build $name $version ($pkg):" >&2
  sed 's/^/  /' "$log" >&2
  echo "tools: check network access to the Go module proxy and hack/tools/$module/go.mod, then run 'make tools' again." >&2
  rm -f "$out.tmp" "$log"
  exit 1
fi
rm -f "$log"
mv "$out.tmp" "$out"
ln -sfn "tools/$name-$version" "$link"
echo "tools: built $name $version in $(( $(date +%s) - start ))s"

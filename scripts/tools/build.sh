#!/usr/bin/env bash
# Build the Go tools the packaging tests run, once per pinned version, into a
# cache keyed by that version:
#   $CACHE/promtool-<version>/bin/promtool   Prometheus's rule checker (tools/promtool/go.mod)
#   $CACHE/krew-<version>/bin/krew           the kubectl plugin manager  (tools/krew/go.mod)
# Each tool's version is the one its go.mod pins (a `tool` directive). A
# directory is reused while its stamp (go.mod, go.sum, the Go version) matches;
# otherwise it is rebuilt. Modules come from the machine's Go module proxy
# (go env GOPROXY); module and build caches live under $CACHE/go.
#
#   scripts/tools/build.sh promtool|krew [--cached-only]   (prints the bin directory;
#                                      --cached-only: fail instead of building)
# Environment: PODTAP_TOOLS_CACHE (default /var/cache/podtap/tools).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${PODTAP_TOOLS_CACHE:-/var/cache/podtap/tools}
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
name=${1:-}
cached_only=false
[ "${2:-}" = --cached-only ] && cached_only=true

declare -A MODULE=(
  [promtool]=github.com/prometheus/prometheus
  [krew]=sigs.k8s.io/krew
)
declare -A PACKAGE=(
  [promtool]=github.com/prometheus/prometheus/cmd/promtool
  [krew]=sigs.k8s.io/krew/cmd/krew
)
[ -n "$name" ] && [ -n "${MODULE[$name]:-}" ] || { echo "usage: scripts/tools/build.sh promtool|krew [--cached-only]" >&2; exit 2; }
command -v go >/dev/null || { echo "tools: no Go toolchain on PATH (the project's machines have Go preinstalled)" >&2; exit 4; }

moddir="$ROOT/tools/$name"
version=$(cd "$moddir" && go list -m -f '{{.Version}}' "${MODULE[$name]}")
out="$CACHE/$name-$version"
declare -A TAGS=(
  # promtool checks and tests rules: none of Prometheus's service discovery
  # plugins (cloud SDKs, two thirds of the build) are needed
  [promtool]=remove_all_sd
  [krew]=
)
tags=${TAGS[$name]}
want=$({ cat "$moddir/go.mod" "$moddir/go.sum"; go version; echo "tags=$tags"; } | sha256sum | cut -c1-16)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$want" ] && [ -x "$out/bin/$name" ]; then
  echo "$out/bin"
  exit 0
fi
if $cached_only; then
  echo "tools: $name $version is not built: run scripts/tools/build.sh $name" >&2
  exit 1
fi

# The version the binary reports, as upstream's release build sets it.
case $name in
  promtool)
    # Prometheus tags v3.X.Y as module version v0.3XX.Y
    [[ $version =~ ^v0\.3([0-9]{2})\.([0-9]+)$ ]] || { echo "tools: unexpected prometheus module version $version" >&2; exit 1; }
    release="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"
    ldflags="-X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=$version"
    ;;
  krew)
    ldflags="-X sigs.k8s.io/krew/internal/version.gitTag=$version"
    ;;
esac

started=$SECONDS
rm -rf "$out.tmp"; mkdir -p "$out.tmp/bin"
echo "tools: building $name $version (${PACKAGE[$name]}); log: $out.tmp/build.log" >&2
if ! (cd "$moddir" && nice -n 10 go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp/bin/$name" "${PACKAGE[$name]}") >"$out.tmp/build.log" 2>&1; then
  tail -30 "$out.tmp/build.log" >&2
  echo "tools: $name failed to build: see $out.tmp/build.log" >&2
  exit 1
fi
echo "$want" >"$out.tmp/stamp"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "tools: $name $version built in $((SECONDS - started)) s into $out" >&2
echo "$out/bin"

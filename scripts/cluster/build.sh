#!/usr/bin/env bash
# Build the cluster's Go programs once per version, into the cache:
#   $CACHE/kube-<release>/bin: kube-apiserver kube-controller-manager kube-scheduler
#                              kubelet kube-proxy kubectl etcd   (tools/kube/go.mod)
#   $CACHE/helm-<version>/bin: helm                              (tools/helm/go.mod)
#   $CACHE/pause/bin:          pause, the pod sandbox program    (tools/pause)
# A directory is reused while its stamp (go.mod, go.sum and the Go version it
# was built with) matches; otherwise it is rebuilt. The Go module and build
# caches live under $CACHE/go, so a rebuild after a pin change recompiles only
# what changed, and nothing of this touches the user's own Go caches.
#
#   scripts/cluster/build.sh [kube|helm|pause|all] [--cached-only]   (prints the bin directories;
#                                   --cached-only: fail instead of building)
# Environment: PODTAP_CLUSTER_CACHE (default /var/cache/podtap-cluster).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${PODTAP_CLUSTER_CACHE:-/var/cache/podtap-cluster}
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
what=${1:-all}
cached_only=false
[ "${2:-}" = --cached-only ] && cached_only=true

command -v go >/dev/null || { echo "build: no Go toolchain on PATH (the project's machines have Go 1.26 preinstalled)" >&2; exit 4; }

log() { printf '%s build: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# stamp DIR MODULE_DIR: what the programs in DIR were built from.
stamp() { { cat "$2/go.mod"; cat "$2/go.sum" "$2"/*.go 2>/dev/null; go version; } | sha256sum | cut -c1-16; }

# build_tools MODULE_DIR OUT LDFLAGS NAME=PACKAGE...: go build each tool, with progress.
build_tools() {
  local moddir=$1 out=$2 ldflags=$3; shift 3
  local want; want=$(stamp "$out" "$moddir")
  if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$want" ]; then
    log "$(basename "$out"): cached in $out"
    return 0
  fi
  if $cached_only; then
    echo "build: $(basename "$out") is not built (or its pin changed): run scripts/cluster/build.sh" >&2
    exit 1
  fi
  rm -rf "$out.tmp"; mkdir -p "$out.tmp/bin" "$CACHE"
  local started=$SECONDS n=0 total=$#
  (cd "$moddir" && go mod download -x 2>&1 | grep -c '^# get' | sed 's/^/modules fetched: /' >&2) || true
  for spec in "$@"; do
    n=$((n + 1))
    local name=${spec%%=*} pkg=${spec#*=} t0=$SECONDS
    log "[$n/$total] $name ($pkg): compiling; log: $out.tmp/build.log"
    # -v names each package as it is compiled: a ticker shows how far it got.
    (cd "$moddir" && nice -n 10 go build -v -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp/bin/$name" "$pkg") >>"$out.tmp/build.log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      sleep 15
      kill -0 "$pid" 2>/dev/null && log "    $name: $(wc -l <"$out.tmp/build.log") packages compiled so far, $((SECONDS - t0)) s"
    done
    if ! wait "$pid"; then
      tail -30 "$out.tmp/build.log" >&2
      log "$name failed to build: see $out.tmp/build.log"
      exit 1
    fi
    log "[$n/$total] $name: done in $((SECONDS - t0)) s"
  done
  echo "$want" >"$out.tmp/stamp"
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "$(basename "$out"): built in $((SECONDS - started)) s into $out"
}

build_kube() {
  local moddir="$ROOT/tools/kube" release
  release=$(cd "$moddir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  [[ $release =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "build: unexpected k8s.io/kubernetes version '$release' in tools/kube/go.mod" >&2; exit 1; }
  local minor=${BASH_REMATCH[1]} date etcd
  date=$(cd "$moddir" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  etcd=$(cd "$moddir" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  # The version the binaries report (kubectl version, /version, the Node's
  # kubeletVersion): what the upstream build sets from git (hack/lib/version.sh).
  local ld=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $pkg.gitVersion=$release -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  ld+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd"
  build_tools "$moddir" "$CACHE/kube-$release" "$ld" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    kubelet=k8s.io/kubernetes/cmd/kubelet \
    kube-proxy=k8s.io/kubernetes/cmd/kube-proxy \
    kubectl=k8s.io/kubernetes/cmd/kubectl \
    etcd=go.etcd.io/etcd/server/v3
  echo "$CACHE/kube-$release/bin"
}

build_helm() {
  local moddir="$ROOT/tools/helm" version
  version=$(cd "$moddir" && go list -m -f '{{.Version}}' helm.sh/helm/v4)
  build_tools "$moddir" "$CACHE/helm-$version" "-X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    helm=helm.sh/helm/v4/cmd/helm
  echo "$CACHE/helm-$version/bin"
}

build_pause() {
  build_tools "$ROOT/tools/pause" "$CACHE/pause" "" pause=.
  echo "$CACHE/pause/bin"
}

case $what in
  kube) build_kube ;;
  helm) build_helm ;;
  pause) build_pause ;;
  all) build_kube; build_helm; build_pause ;;
  *) echo "usage: scripts/cluster/build.sh [kube|helm|pause|all]" >&2; exit 2 ;;
esac

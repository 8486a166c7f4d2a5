#!/usr/bin/env bash
# A single-node Kubernetes cluster built from upstream sources, for podtap's
# end-to-end tests and for trying podtap for real, on this machine, as root.
#   scripts/cluster.sh up [--layout bridge|ptp] | down | status | kubectl ARGS | exec -- CMD | --help
# The programs are built once per version (scripts/cluster/build.sh: Go
# modules, cached under /var/cache/podtap-cluster), the images once per
# content (scripts/cluster/images.ts: buildah); see scripts/cluster/cluster.ts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" -eq 0 ] || { echo "cluster: run as root (network namespaces, cgroups, mounts)" >&2; exit 3; }
node() { "$ROOT/node_modules/.bin/node" "$@"; }
[ -x "$ROOT/node_modules/.bin/node" ] || scripts/setup.sh >&2

cmd=${1:-help}
case $cmd in
  up|images)
    # refuse a bad command line before minutes of building
    if [ "$cmd" = up ]; then
      case "${2:-}${3:+ $3}${4:+ $4}" in
        ""|"--layout bridge"|"--layout ptp"|--layout=bridge|--layout=ptp) ;;
        *) echo "cluster: up takes [--layout bridge|ptp], not: ${*:2}" >&2; exit 2 ;;
      esac
    fi
    scripts/setup.sh --cluster >&2
    exec 9>/run/lock/podtap-cluster.lock
    flock -n 9 || { echo "cluster: another cluster.sh up/down runs on this machine" >&2; exit 1; }
    PODTAP_CLUSTER_BIN=$(scripts/cluster/build.sh kube)
    PODTAP_CLUSTER_PAUSE_BIN=$(scripts/cluster/build.sh pause)
    export PODTAP_CLUSTER_BIN PODTAP_CLUSTER_PAUSE_BIN
    # Every time: the podtap image must hold this checkout's code (buildah's
    # layer cache makes an unchanged build quick).
    node scripts/cluster/main.ts images
    [ "$cmd" = images ] && exit 0
    ;;
  down)
    exec 9>/run/lock/podtap-cluster.lock
    flock -n 9 || { echo "cluster: another cluster.sh up/down runs on this machine" >&2; exit 1; }
    ;;
esac
exec "$ROOT/node_modules/.bin/node" scripts/cluster/main.ts "$@"

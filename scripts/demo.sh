#!/usr/bin/env bash
# The demo, from a fresh clone, as root: install what it needs, then
# `podtap demo` (a node, three pods and a collector in network namespaces, the
# embedded Kubernetes API, or with --real the upstream kube-apiserver and etcd,
# controller, agent; see README). Options pass through, e.g. scripts/demo.sh --keep
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run it as root (it creates network namespaces and loads BPF programs)" >&2
  exit 1
fi
scripts/setup.sh >&2
# --real: the upstream kube-apiserver and etcd, built from their Go modules
# once per pinned version (cold ~22 min, then cached)
case " $* " in
  *" --real "*) scripts/cluster/build.sh kube >/dev/null ;;
esac
exec npm exec --no -- node tools/dev/main.ts demo "$@"

#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what the README says.
# Needs root (BPF, tc, network namespaces); installs what it needs first.
#   scripts/test.sh [ARGS]                  the suite (ARGS go to vitest)
#   scripts/test.sh --kernel-matrix [ARGS]  then the kernel matrix too:
#       scripts/kernel-matrix.sh, the kernel tests on Debian's 5.10, 6.1 and
#       6.12 under qemu and on this kernel (~5-10 min per kernel)
set -euo pipefail
cd "$(dirname "$0")/.."
matrix=false
if [ "${1:-}" = --kernel-matrix ]; then
  matrix=true
  shift
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the suite needs root (BPF programs, tc, network namespaces)" >&2
  exit 1
fi
# One suite per machine: bpffs (/sys/fs/bpf/podtap) is the host's, shared by
# every network namespace, and the lifecycle tests run `podtap cleanup`, which
# removes every podtap pin. A second suite (another clone, another worktree)
# waits here instead of having its programs removed under it.
exec 9>/run/lock/podtap-test.lock
if ! flock -n 9; then
  echo "test: another podtap suite runs on this machine; waiting for it" >&2
  flock 9
fi
scripts/setup.sh
npm exec -- tsc -p tsconfig.json --noEmit
# The container image, built from the Dockerfile's steps in a debootstrap root
# (no Docker engine here), for test/kernel/image.test.ts, which runs without
# network: cached in /var/tmp/podtap-image, rebuilt where inputs changed.
npm exec -- node test/unit/packaging/lib/image-rootfs.ts
# etcd and kube-apiserver for test/k8s (test/helpers/apiserver.ts), built from
# their Go modules once per pinned version (cold: ~22 min on 2 busy cores;
# cached: a second), outside the private namespace: it needs the module proxy.
scripts/cluster/build.sh kube >/dev/null
# helm, for the chart tests that run helm itself (lint, package, template)
scripts/cluster/build.sh helm >/dev/null
# Prometheus's promtool (the chart's alert rules) and krew (the plugin's
# manifest), built from the Go module proxy once per pinned version: the tests
# run without network.
scripts/tools/build.sh promtool >/dev/null
scripts/tools/build.sh krew >/dev/null

# Run the tests inside a private network namespace: every listener they open
# (the embedded API, collectors, HTTP endpoints) is then invisible from the
# machine's own interfaces. nsenter --net keeps the mount namespace, so
# /sys/fs/bpf stays the host's bpffs.
ns="podtap-test-$$"
ip netns add "$ns"
# Every temporary file of the run (the tests' and the tools' they start) goes
# under one directory, removed at the end whatever happened.
tmp=$(mktemp -d /tmp/podtap-test.XXXXXX)
chmod 1777 "$tmp" # (one test runs the sniffer as a user other than root)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT
ip -n "$ns" link set lo up
rc=0
TMPDIR="$tmp" nsenter --net="/run/netns/$ns" npm exec -- vitest run "$@" || rc=$?
if $matrix; then
  # outside the private namespace (it downloads the kernels; its guests have
  # no network device at all), with this suite's lock, which it inherits
  if ! PODTAP_SUITE_LOCK_HELD=1 scripts/kernel-matrix.sh; then
    echo "test: the kernel matrix failed: above, the kernels and tests that did" >&2
    rc=1
  fi
fi
exit "$rc"

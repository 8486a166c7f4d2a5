#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what the README says.
# Needs root (BPF, tc, network namespaces); installs what it needs first.
#   scripts/test.sh          everything: unit, k8s (real kube-apiserver), kernel
#                            tests, then scripts/e2e.sh on the real cluster, then
#                            the data plane's kernel tests on Debian's 5.10, 6.1
#                            and 6.12 under qemu (scripts/kernel-matrix.sh --qemu-only)
#   scripts/test.sh ARGS     vitest with ARGS only (a subset: no e2e, no matrix)
set -euo pipefail
cd "$(dirname "$0")/.."
full=true
[ $# -eq 0 ] || full=false
phase() { echo "$(date +%H:%M:%S) test: $1 took $((SECONDS - phase_t0)) s" >&2; phase_t0=$SECONDS; }
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
# the clock starts once the lock is ours: the phases' times are the suite's own
suite_t0=$SECONDS
phase_t0=$SECONDS
if $full; then scripts/setup.sh --cluster --kernel-matrix; else scripts/setup.sh; fi
npm exec -- tsc -p tsconfig.json --noEmit
# The container image, built from the Dockerfile's steps in a debootstrap root
# (no Docker engine here), for test/kernel/image.test.ts, which runs without
# network: cached in /var/tmp/podtap-image, rebuilt where inputs changed.
npm exec -- node test/unit/packaging/lib/image-rootfs.ts
# Helm's template engine for the chart tests (tools/helm-render), built once per
# source version: a cold Go build on 2 busy cores can outlast a test's hook
npm exec -- node test/unit/packaging/lib/render.ts >/dev/null
# etcd and kube-apiserver for test/k8s (test/helpers/apiserver.ts), built from
# their Go modules once per pinned version (cold: ~22 min on 2 busy cores;
# cached: a second), outside the private namespace: it needs the module proxy.
# The e2e also needs helm and the pause program (cold: helm ~10 min more).
if $full; then scripts/cluster/build.sh all >/dev/null; else scripts/cluster/build.sh kube >/dev/null; fi
# helm, for the chart tests that run helm itself (lint, package, template)
scripts/cluster/build.sh helm >/dev/null
# Prometheus's promtool (the chart's alert rules) and krew (the plugin's
# manifest), built from the Go module proxy once per pinned version: the tests
# run without network.
scripts/tools/build.sh promtool >/dev/null
scripts/tools/build.sh krew >/dev/null
phase "setup, type check and builds"

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
phase "vitest (unit, k8s, kernel)"
if $full; then
  # outside the private namespace: the cluster makes its own (podtap-node),
  # and its image build fetches npm packages; with this suite's lock
  if ! PODTAP_SUITE_LOCK_HELD=1 scripts/e2e.sh; then
    echo "test: scripts/e2e.sh failed (above: the step and the cluster's diagnostics)" >&2
    rc=1
  fi
  phase "e2e on the real cluster (both layouts)"
  # outside the private namespace (it downloads the kernels; its guests have
  # no network device at all), with this suite's lock, which it inherits.
  # Every qemu kernel (5.10, 6.1, 6.12): vitest's kernel project above was
  # the host's row. 5.10 takes every fallback variant (bounded loop, spin
  # lock, probe read, XDP without frags), 6.1 is the kernel of Debian 12,
  # AL2023 and Bottlerocket, 6.12 the newest LTS; together 13-16 min under
  # TCG on 2 cores, within the 90-minute CI beside the cold Go builds (the
  # warm suite took 22 min with 5.10 alone in CI on 2026-12-06).
  if ! PODTAP_SUITE_LOCK_HELD=1 scripts/kernel-matrix.sh --qemu-only; then
    echo "test: the kernel matrix failed: above, the kernels and tests that did" >&2
    rc=1
  fi
  phase "kernel matrix"
fi
echo "test: the suite took $((SECONDS - suite_t0)) s in all (rc $rc)" >&2
exit "$rc"

#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what the README says.
# Needs root (BPF, tc, network namespaces); installs what it needs first.
#   scripts/test.sh          everything, in two lanes side by side (below): unit,
#                            k8s (real kube-apiserver) and kernel tests,
#                            scripts/e2e.sh on the real cluster, and the data
#                            plane's kernel tests on Debian's 5.10, 6.1 and 6.12
#                            under qemu (scripts/kernel-matrix.sh --qemu-only)
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

# The tests run inside private network namespaces: every listener they open
# (the embedded API, collectors, HTTP endpoints) is then invisible from the
# machine's own interfaces. nsenter --net keeps the mount namespace, so
# /sys/fs/bpf stays the host's bpffs.
# Every temporary file of the run (the tests' and the tools' they start) goes
# under one directory, removed at the end whatever happened.
tmp=$(mktemp -d /tmp/podtap-test.XXXXXX)
chmod 1777 "$tmp" # (one test runs the sniffer as a user other than root)
namespaces=()
trap 'for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
private_ns() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}
# vitest [ARGS] in the private namespace $1
vitest_in() {
  local n=$1
  shift
  TMPDIR="$tmp" nsenter --net="/run/netns/$n" npm exec -- vitest run "$@"
}

if ! $full; then
  private_ns "podtap-test-$$"
  rc=0
  vitest_in "podtap-test-$$" "$@" || rc=$?
  phase "vitest $*"
  echo "test: the suite took $((SECONDS - suite_t0)) s in all (rc $rc)" >&2
  exit "$rc"
fi

# The full suite in two lanes side by side, each a sequence:
#   host:  vitest's kernel project, its k8s project (a real kube-apiserver
#          per file, no BPF), then scripts/e2e.sh. The kernel tests and the
#          e2e use this machine's kernel and its bpffs (/sys/fs/bpf/podtap,
#          which the lifecycle tests empty with `podtap cleanup`), so never
#          at once.
#   other: vitest's unit project (no BPF), then the kernel tests on Debian's
#          5.10, 6.1 and 6.12 under qemu, whose guests have kernels and
#          bpffs of their own and no network device.
# One after the other the phases took 34 min warm (run A, README); the host
# lane mostly waits (on packets, timers, Kubernetes), the qemu guests need
# the CPU. The k8s project is in the host lane because that balances the two
# (measured side by side: kernel 456 s, e2e 437 s; unit and k8s 299 s, the
# three guests' tests 346, 271 and 221 s, run C).
# Each lane's lines carry its name; each step prints its time and result.
lane_rc_dir="$tmp/lanes"
mkdir -p "$lane_rc_dir"
# step LANE NAME CMD...: run CMD, print how long it took; a failure is the
# lane's (recorded) but the lane goes on to its next step
# Each step's output is also kept, so that the end of the run can repeat what
# failed: CI shows only the tail of a 20-minute log, where a failure printed
# 15 minutes earlier by the other lane is long gone.
step() {
  local lane=$1 name=$2 t0=$SECONDS rc=0 log
  shift 2
  log="$lane_rc_dir/$lane.$((++step_no)).log"
  "$@" 2>&1 | tee "$log" || rc=$?
  echo "$(date +%H:%M:%S) test[$lane]: $name took $((SECONDS - t0)) s (rc $rc)" >&2
  if [ "$rc" -ne 0 ]; then
    echo "$name" >>"$lane_rc_dir/$lane"
    echo "$log" >>"$lane_rc_dir/$lane.logs"
  fi
  return 0
}
step_no=0
# failure_digest LOG: what a failed step said of its failures, in at most 120
# lines: vitest's failed files and tests and the start of its "Failed Tests"
# section (the assertion and where); for e2e.sh, the 25 lines that end with
# its last "e2e[LAYOUT]: FAILED" line; else the step's last 40 lines (the
# kernel matrix ends with its failures). Not simply the tail: e2e.sh
# prints its diagnostics (kubelet and containerd logs) after the failure,
# and CI shows only the end of the run, where they hid the failure itself.
failure_digest() {
  local plain lines last
  plain=$(sed 's/\x1b\[[0-9;]*m//g' "$1") # (vitest colours even into a pipe)
  lines=$(grep -E '^ *(FAIL|×) ' <<<"$plain" | sort -u | head -40 || true)
  last=$(grep -nE ' e2e\[[a-z]*\]: FAILED' <<<"$plain" | tail -1 | cut -d: -f1 || true)
  if [ -n "$lines" ]; then
    echo "$lines"
    sed -n '/Failed Tests [0-9]/,$p' <<<"$plain" | grep -v '^ *$' | head -80
  elif [ -n "$last" ]; then
    head -n "$last" <<<"$plain" | tail -25 | cut -c1-400
  else
    tail -40 <<<"$plain" | cut -c1-400
  fi
}
host_lane() {
  step host "vitest --project kernel" vitest_in "podtap-test-$$" --project kernel
  step host "vitest --project k8s" vitest_in "podtap-test-$$" --project k8s
  # outside the private namespace: the cluster makes its own (podtap-node),
  # and its image build fetches npm packages; with this suite's lock
  step host "scripts/e2e.sh (both layouts)" env PODTAP_SUITE_LOCK_HELD=1 scripts/e2e.sh
}
other_lane() {
  step other "vitest --project unit" vitest_in "podtap-test-$$-b" --project unit
  # outside the private namespace (it downloads the kernels; its guests have
  # no network device at all), with this suite's lock, which it inherits.
  # Every qemu kernel (5.10, 6.1, 6.12): the host lane's kernel project is
  # this machine's row. 5.10 takes every fallback variant (bounded loop, spin
  # lock, probe read, XDP without frags), 6.1 is the kernel of Debian 12,
  # AL2023 and Bottlerocket, 6.12 the newest LTS.
  step other "kernel matrix (qemu)" env PODTAP_SUITE_LOCK_HELD=1 scripts/kernel-matrix.sh --qemu-only
}
# (made here: the EXIT trap above is this shell's, not the lanes')
private_ns "podtap-test-$$"
private_ns "podtap-test-$$-b"
# a lane's stdout and stderr, each line prefixed with the lane's name
prefixed() { sed -u "s/^/[$1] /"; }
( host_lane 2>&1 | prefixed host ) &
host_pid=$!
( other_lane 2>&1 | prefixed other ) &
other_pid=$!
# a lane that ended abnormally (killed, say) is a failure too, whatever its steps recorded
wait "$host_pid" || echo "the lane itself (exit $?)" >>"$lane_rc_dir/host"
wait "$other_pid" || echo "the lane itself (exit $?)" >>"$lane_rc_dir/other"
phase "both lanes"
rc=0
for lane in host other; do
  if [ -s "$lane_rc_dir/$lane" ]; then
    rc=1
    echo "test: FAILED in the $lane lane: $(paste -sd, "$lane_rc_dir/$lane" | sed 's/,/, /g') (its lines above start with [$lane])" >&2
  fi
done
# the failures again, last, where a truncated log still shows them
for lane in host other; do
  [ -s "$lane_rc_dir/$lane.logs" ] || continue
  while read -r log; do
    echo "test: what failed in the $lane lane ($(basename "$log")):" >&2
    failure_digest "$log" | sed "s/^/[$lane] /" >&2
  done <"$lane_rc_dir/$lane.logs"
done
echo "test: the suite took $((SECONDS - suite_t0)) s in all (rc $rc)" >&2
exit "$rc"

#!/bin/bash
# The matrix guest's init (after initramfs-init.sh): the host's root, read-only
# under a tmpfs overlay, running the kernel under test. Mounts what a host
# has, makes the kernel package's modules loadable, runs the data plane's
# kernel tests with the repository's Node, writes the results to the shared
# directory (virtiofs tag "share") and powers off.
#
# Kernel command line: podtap.repo=DIR podtap.kdir=DIR (the unpacked kernel
# package) podtap.tests=FILE,FILE... podtap.run=DIR (in the share: the results)
# podtap.spool=DIR (in the share: the host tools' spool, host-tools.ts).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
off() { sync; echo o > /proc/sysrq-trigger; sleep 30; }
trap off EXIT
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs -o mode=0755 run /run
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || true
mkdir -p /run/netns /run/lock
read -r -a cmdline < /proc/cmdline
for a in "${cmdline[@]}"; do
  case "$a" in
    podtap.repo=*) repo="${a#podtap.repo=}" ;;
    podtap.kdir=*) kdir="${a#podtap.kdir=}" ;;
    podtap.tests=*) tests="${a#podtap.tests=}" ;;
    podtap.run=*) run="${a#podtap.run=}" ;;
    podtap.spool=*) spool="${a#podtap.spool=}" ;;
  esac
done
# the kernel package's modules
release=$(uname -r)
mkdir -p "/lib/modules/$release" /share
mount --bind "$kdir/lib/modules/$release" "/lib/modules/$release" || echo "podtap-guest: no modules for $release"
# no tmpfs over /tmp or /var/tmp: what the guest writes there already goes
# to the overlay's tmpfs, and a repository (or kernel cache) cloned below
# them must stay visible
mount -t virtiofs share /share
out="/share/$run"
mkdir -p "$out"
hostname "podtap-$release"
ip link set lo up
# the collector (Node, as slow as everything under TCG) drains its socket
# far slower than the kernel fills it: give it the buffer it asks for
sysctl -qw net.core.rmem_max=67108864
echo "podtap-guest: ready $release"

cd "$repo" || exit 1
# clang and tshark run on the host (guest-bin/host-tool): under TCG clang
# takes ~20 s per object, tshark 5-10 s per file it judges
export PATH="$repo/scripts/kernel-matrix/guest-bin:$repo/node_modules/.bin:$PATH"
export PODTAP_HOST_TOOL_SPOOL="/share/${spool:?no podtap.spool= on the kernel command line}" TMPDIR=/tmp
# V8's code cache and vitest's transforms, kept across kernels and runs:
# under TCG every process start and every module compiled costs seconds
export NODE_COMPILE_CACHE=/share/node-compile-cache VITEST_FS_MODULE_CACHE_PATH=/share/vitest-cache
# podtap's object cache (keyed by sources, clang and the kernel's variant
# defines, as on a node): each variant compiled once, not once per boot
export PODTAP_CACHE_DIR=/share/objects
# the tests' waits, and vitest's, are sized for this machine, not for TCG
export PODTAP_TEST_WAIT_SCALE=15
# probes the kernel and keeps the answers for this boot: the tests, the
# sniffers and the agent read them instead of probing again
t0=$(date +%s)
node src/cli/main.ts features --json > "$out/features.json" 2> "$out/features.err"
echo "podtap-guest: features ($(( $(date +%s) - t0 )) s) $(tr -d '\n' < "$out/features.json")"
IFS=, read -r -a files <<< "$tests"
# through a pipe: on the serial console vitest would redraw a live summary;
# verbose: each test as it ends, so a slow guest shows how far it got.
# One worker thread, not a forked process: a second Node start under TCG
# costs ~10 s
vitest run --project kernel --pool=threads --testTimeout=1800000 --hookTimeout=1800000 --reporter=verbose --reporter=json --outputFile="$out/results.json" "${files[@]}" 2>&1 | cat
echo "${PIPESTATUS[0]}" > "$out/exit"
echo "podtap-guest: done $(cat "$out/exit")"

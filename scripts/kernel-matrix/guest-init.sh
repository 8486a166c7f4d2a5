#!/bin/bash
# The matrix guest's init (after initramfs-init.sh): the host's root, read-only
# under a tmpfs overlay, running the kernel under test. Mounts what a host
# has, makes the kernel package's modules loadable, runs the data plane's
# kernel tests with the repository's Node, writes the results to the shared
# directory (virtiofs tag "share") and powers off.
#
# Kernel command line: podtap.repo=DIR podtap.kdir=DIR (the unpacked kernel
# package) podtap.tests=FILE,FILE... podtap.run=NAME (a directory in the share).
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
  esac
done
# the kernel package's modules, before a tmpfs may hide where they are
release=$(uname -r)
mkdir -p "/lib/modules/$release" /share
mount --bind "$kdir/lib/modules/$release" "/lib/modules/$release" || echo "podtap-guest: no modules for $release"
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=1777 vartmp /var/tmp
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
# clang runs on the host (guest-bin/clang): under TCG it takes ~20 s per object
export PATH="$repo/scripts/kernel-matrix/guest-bin:$repo/node_modules/.bin:$PATH"
export PODTAP_CLANG_SPOOL=/share/clang TMPDIR=/tmp
# V8's code cache, kept across kernels: every podtap process start pays less
export NODE_COMPILE_CACHE=/share/node-compile-cache
# the tests' waits, and vitest's, are sized for this machine, not for TCG
export PODTAP_TEST_WAIT_SCALE=15
node src/cli/main.ts features --json > "$out/features.json" 2> "$out/features.err"
echo "podtap-guest: features $(tr -d '\n' < "$out/features.json")"
IFS=, read -r -a files <<< "$tests"
# through a pipe: on the serial console vitest would redraw a live summary
vitest run --project kernel --testTimeout=1800000 --hookTimeout=1800000 --reporter=default --reporter=json --outputFile="$out/results.json" "${files[@]}" 2>&1 | cat
echo "${PIPESTATUS[0]}" > "$out/exit"
echo "podtap-guest: done $(cat "$out/exit")"

#!/usr/bin/env bash
# Install everything podtap needs on a Debian 12 host (run as root), then the npm
# dependencies (which bring Node.js 24 for every npm script via the `node` package).
#   scripts/setup.sh                  what the test suite and the demo need
#   scripts/setup.sh --cluster        also what scripts/cluster.sh and scripts/e2e.sh need
#   scripts/setup.sh --kernel-matrix  also what scripts/kernel-matrix.sh needs to boot other kernels
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=false
matrix=false
for a in "$@"; do
  case "$a" in
    --cluster) cluster=true ;;
    --kernel-matrix) matrix=true ;;
    *) echo "setup: unknown argument: $a (known: --cluster, --kernel-matrix)" >&2; exit 2 ;;
  esac
done

PKGS=(
  clang llvm           # compiles bpf/*.c to BPF objects (agent, sniff)
  libbpf-dev           # bpf_helpers.h & co. for the BPF C sources
  linux-libc-dev       # uapi headers: linux/bpf.h, linux/pkt_cls.h, ...
  iproute2             # tc, ip: clsact qdisc, cls_bpf filters, veth, netns
  bpftool              # load/pin programs and maps, prog run (BPF_PROG_TEST_RUN)
  tcpdump              # tests: ground-truth capture on the veth
  tshark               # tests: independent pcapng reader and decoder
  iperf3               # tests and bench: TCP bulk traffic
  ethtool              # tests and bench: offload settings
  iputils-ping         # tests and demo: ICMP traffic inside the namespaces
  golang-go            # tests: tools/helm-render renders the chart with Helm's own template engine
  golang-github-masterminds-sprig-dev  # tests: ... its sprig functions
  golang-k8s-sigs-yaml-dev             # tests: ... and Helm's YAML
  debootstrap          # tests: the container image's Debian 12 root (test/kernel/image.test.ts)
  shellcheck           # tests: lint scripts/e2e-kind.sh
)
if $matrix; then
  PKGS+=(
    qemu-system-x86    # kernel matrix: boots Debian's kernels (TCG) with this host's root over virtiofs (its virtiofsd)
    busybox-static     # kernel matrix: the guest's initramfs (loads virtiofs and overlay from the kernel's package)
    cpio               # kernel matrix: packs that initramfs
    kmod               # kernel matrix: depmod for the downloaded kernels; modprobe in the guest
  )
fi
if $cluster; then
  # The single-node cluster of scripts/cluster.sh (Kubernetes itself, etcd and
  # helm are built from their Go modules by scripts/cluster/build.sh).
  # Installing containerd starts nothing here: its package brings a systemd
  # unit only, and cluster.sh runs it itself, inside the node's network namespace.
  PKGS+=(
    containerd                     # the container runtime (CRI) the kubelet talks to
    runc                           # ... and the OCI runtime it starts containers with
    containernetworking-plugins    # CNI plugins: bridge, ptp, host-local, loopback, portmap
    iptables                       # kube-proxy's Service rules and the CNI plugins' masquerade
    conntrack                      # kube-proxy clears stale UDP conntrack entries with it
    buildah                        # builds the images from their Dockerfiles without a Docker engine
    openssl                        # the cluster's certificates and ServiceAccount signing key
  )
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# bpffs for pinned programs and maps
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: warning: could not mount bpffs on /sys/fs/bpf" >&2
fi

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# test/unit/packaging/npm-package.test.ts installs the packed package into an
# empty directory the way a user does, but without network (the suite runs in
# a private network namespace): npm's cache must hold what that install
# resolves, the dependencies' metadata included, which `npm ci` never fetches.
# One install of the same dependencies fills it, again when they change.
deps_key=$(npm exec -- node -p 'JSON.stringify(require("./package.json").dependencies)' | sha256sum | cut -c1-16)
deps_stamp="node_modules/.cache/podtap/package-deps-$deps_key"
if [ ! -f "$deps_stamp" ]; then
  warm=$(mktemp -d)
  npm exec -- node -e 'const p = require("./package.json"); require("fs").writeFileSync(process.argv[1] + "/package.json", JSON.stringify({ name: "podtap-cache-warm", private: true, dependencies: p.dependencies }))' "$warm"
  (cd "$warm" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  rm -rf "$warm"
  mkdir -p "$(dirname "$deps_stamp")" && touch "$deps_stamp"
fi
echo "setup: ok (node $(npm exec -- node --version))"

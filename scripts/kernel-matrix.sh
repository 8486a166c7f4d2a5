#!/usr/bin/env bash
# The data plane's kernel tests on Debian's cloud kernels 5.10, 6.1 and 6.12
# (qemu, TCG) and on this machine's kernel; the README's kernel table.
# Needs root. `scripts/kernel-matrix.sh --help` says more.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "kernel-matrix: needs root (qemu's virtiofs daemon, BPF on this machine's kernel)" >&2
  exit 1
fi
case " $* " in
  *" --help "*|*" -h "*) ;;
  *) scripts/setup.sh --kernel-matrix >/dev/null ;;
esac
exec node_modules/.bin/node scripts/kernel-matrix/main.ts "$@"

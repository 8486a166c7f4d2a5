#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what the README says.
# Needs root (BPF, tc, network namespaces); installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the suite needs root (BPF programs, tc, network namespaces)" >&2
  exit 1
fi
scripts/setup.sh
npm exec -- tsc -p tsconfig.json --noEmit
npm exec -- vitest run "$@"

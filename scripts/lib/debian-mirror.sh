#!/usr/bin/env bash
# Prints the Debian archive URI this machine's apt uses (e.g. http://host/debian),
# read from its apt sources (deb822 *.sources or one-line *.list), so no mirror
# host is ever written into the repository. PODTAP_DEBIAN_MIRROR overrides it.
#   scripts/lib/debian-mirror.sh            # the archive (…/debian)
#   scripts/lib/debian-mirror.sh security   # the security archive (…/debian-security)
set -euo pipefail
kind=${1:-main}
etc=${PODTAP_APT_ETC:-/etc/apt} # tests point this at a made-up apt configuration
if [ -n "${PODTAP_DEBIAN_MIRROR:-}" ]; then
  base=$PODTAP_DEBIAN_MIRROR
else
  base=$( { cat "$etc"/sources.list.d/*.sources 2>/dev/null | sed -nE 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
            cat "$etc"/sources.list "$etc"/sources.list.d/*.list 2>/dev/null | sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p'
          } | grep -E '^https?://[^ ]+/debian/?$' | head -n 1 | sed 's#/$##' || true)
fi
if [ -z "$base" ]; then
  echo "debian-mirror: no Debian archive (a URI ending in /debian) in $etc/sources.list*; set PODTAP_DEBIAN_MIRROR" >&2
  exit 1
fi
case $kind in
  main) echo "$base" ;;
  security) echo "${base%/debian}/debian-security" ;;
  *) echo "debian-mirror: unknown archive '$kind' (main or security)" >&2; exit 2 ;;
esac

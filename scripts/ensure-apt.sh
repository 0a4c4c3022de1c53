#!/usr/bin/env bash
# Installs the named Debian packages if any is missing. Idempotent: when all
# are present it runs no apt command at all (so it is fast and works offline).
# Usage: scripts/ensure-apt.sh PKG...
set -euo pipefail
missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "==> installing Debian packages: ${missing[*]}"
# Another apt (a parallel script, unattended upgrades) may hold the dpkg
# lock: wait for it (bounded) instead of failing.
lock_wait=(-o DPkg::Lock::Timeout=300)
$sudo apt-get "${lock_wait[@]}" update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}"

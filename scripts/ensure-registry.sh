#!/usr/bin/env bash
# Installs Debian's OCI registry, `docker-registry` (the CNCF distribution
# registry 2.8), for tests/oci.rs, which starts its own
# `docker-registry serve CONFIG` on a loopback port with a temporary
# storage directory and stops it by its PID. Idempotent: when the package
# is installed it does nothing at all.
#
# The package's own service (port 5000, /var/lib/docker-registry) is not
# wanted. Where policy-rc.d forbids starting services (containers) the
# package starts nothing; elsewhere its postinst enables and starts it, so
# right after installing it this script stops it and disables it again: by
# its systemd unit, or by the init script's PID file (start-stop-daemon
# --pidfile), never by a process-name pattern. A registry that was already
# installed is left as its operator set it up.
# Usage: scripts/ensure-registry.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q "install ok installed"; then
  exit 0
fi
bash scripts/ensure-apt.sh docker-registry

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ -d /run/systemd/system ]; then
  if systemctl is-active --quiet docker-registry.service \
    || systemctl is-enabled --quiet docker-registry.service 2>/dev/null; then
    echo "==> stopping and disabling the docker-registry service the package started (tests run their own)"
    $sudo systemctl disable --now docker-registry.service
  fi
elif [ -s /var/run/docker-registry.pid ] && kill -0 "$(cat /var/run/docker-registry.pid)" 2>/dev/null; then
  echo "==> stopping the docker-registry service the package started (tests run their own)"
  $sudo /etc/init.d/docker-registry stop
fi

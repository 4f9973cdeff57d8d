#!/usr/bin/env bash
# The metrics test's Prometheus (tests/ui/test_metrics.py scrapes /mlops/metrics with it) and the tools that
# check deploy/'s rules and Alertmanager config: Debian's prometheus and prometheus-alertmanager packages,
# unpacked into .cache/prometheus without installing them (no service is started, no root needed once
# apt's package lists exist).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/prometheus
[ -x "$DEST/usr/bin/prometheus" ] && [ -x "$DEST/usr/bin/amtool" ] && exit 0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if ! (cd "$WORK" && apt-get download -q prometheus prometheus-alertmanager >/dev/null 2>&1); then
  # a fresh machine may have no package lists yet
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  (cd "$WORK" && apt-get download -q prometheus prometheus-alertmanager >/dev/null)
fi
mkdir -p "$DEST"
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$DEST"; done
"$DEST/usr/bin/prometheus" --version | head -1

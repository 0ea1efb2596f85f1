#!/usr/bin/env bash
# Installs the system packages shiplog's tests use for real, when missing.
# Debian/Ubuntu only; everything else comes from the Go module proxy.
set -euo pipefail
pkgs=()
# Packages come here as tests need them (chromium for the UI, rsyslog and its TLS driver rsyslog-gnutls for syslog,
# prometheus-alertmanager for alert delivery, prometheus for promtool's check of rule files, remote read and federation).
want=(rsyslog rsyslog-gnutls chromium prometheus-alertmanager prometheus)
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
done
# axe-core, for the web UI's accessibility checks (e2e/ui*_test.go), from the
# npm registry at the version e2e/axe/package-lock.json pins; test-only.
axe="$(dirname "$0")/../e2e/axe"
if [ ! -f "$axe/node_modules/axe-core/axe.min.js" ] && command -v npm >/dev/null; then
  (cd "$axe" && npm ci --no-audit --no-fund --silent)
fi
[ ${#pkgs[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${pkgs[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

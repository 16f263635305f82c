#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when one is missing (idempotent, quiet).
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v slapd >/dev/null || [ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapadd >/dev/null || need+=(ldap-utils)
command -v xmlsec1 >/dev/null || need+=(xmlsec1)
command -v wrk >/dev/null || need+=(wrk)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# A headless browser for the dashboard's browser tests (tests/dashboard), from Debian's packages:
#
#   chromium   gives /usr/bin/chromium, driven by Playwright for Python (`playwright install`
#              downloads browsers from a CDN and cannot work here; the tests launch this binary
#              with executable_path=/usr/bin/chromium)
#
# Idempotent and cached: apt-get update/install run only when the package is missing. Nothing is
# left running. A warm run prints one summary line:
#
#     chromium.sh: ready in 0.1s (packages cached): Chromium 156.0.8078.129
#
# Usage (tests/run-all.sh, .ci/run):   bash .ci/chromium.sh
#
# Settings (environment):
#     ONEIE_APT_LOCK_TIMEOUT   seconds to wait for another apt/dpkg   (600)
set -Eeuo pipefail

APT_LOCK_TIMEOUT=${ONEIE_APT_LOCK_TIMEOUT:-600}
PACKAGES=(chromium)
APT_LOG=/var/log/oneie-chromium-apt.log
T0=$EPOCHREALTIME

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # log, die, since, apt_ensure

apt_ensure "$APT_LOG" "${PACKAGES[@]}"
state=${APT_INSTALLED:+installed $APT_INSTALLED}
state=${state:-packages cached}

[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is missing after installing ${PACKAGES[*]}"
version=$(/usr/bin/chromium --version 2>/dev/null | head -n 1) || die "chromium --version failed"
echo "chromium.sh: ready in $(since "$T0") ($state): ${version:-chromium}"

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

log() { printf 'chromium.sh: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND (exit $?)"' ERR
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for pkg in "${PACKAGES[@]}"; do
    [[ $'\n'$installed$'\n' == *$'\n'"$pkg installed"$'\n'* ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "must run as root to install ${missing[*]}"
    log "installing ${missing[*]} (apt log: $APT_LOG)"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-q -y -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold --no-install-recommends)
    if ! { apt-get "${apt_opts[@]}" update && apt-get "${apt_opts[@]}" install "${missing[@]}"; } \
        </dev/null >"$APT_LOG" 2>&1; then
        tail -n 25 "$APT_LOG" >&2
        die "apt-get could not install ${missing[*]} (full log: $APT_LOG)"
    fi
    state="installed ${missing[*]}"
else
    state="packages cached"
fi

[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is missing after installing ${PACKAGES[*]}"
version=$(/usr/bin/chromium --version 2>/dev/null | head -n 1) || die "chromium --version failed"
echo "chromium.sh: ready in $(since "$T0") ($state): ${version:-chromium}"

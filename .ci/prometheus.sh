#!/usr/bin/env bash
# Prometheus tools for the tests and benchmarks (DESIGN §6, §7), from Debian's packages:
#
#   prometheus                    gives `prometheus` (the e2e test scrapes the real operator with it)
#                                 and `promtool` (check rules / test rules / check metrics)
#   prometheus-blackbox-exporter  gives `prometheus-blackbox-exporter` (used by a benchmark)
#
# Idempotent and cached: apt-get update/install run only when a package is missing. The packages'
# own services are kept from starting during the install (a policy-rc.d that says "no", provided
# for the duration when the machine has none, as .ci/wordpress.sh does). Nothing is left running.
# A warm run takes well under a second and prints one summary line:
#
#     prometheus.sh: ready in 0.0s (packages cached): prometheus 2.42.0, promtool 2.42.0, blackbox-exporter 0.23.0
#
# Usage (tests/run-all.sh, .ci/run):   bash .ci/prometheus.sh
#
# Settings (environment):
#     ONEIE_APT_LOCK_TIMEOUT   seconds to wait for another apt/dpkg   (600)
set -Eeuo pipefail

APT_LOCK_TIMEOUT=${ONEIE_APT_LOCK_TIMEOUT:-600}
PACKAGES=(prometheus prometheus-blackbox-exporter)
APT_LOG=/var/log/oneie-prometheus-apt.log
T0=$EPOCHREALTIME

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # log, die, since, apt_ensure

# --- packages: install only what is missing -----------------------------------------------------
# No prometheus on :9090 nor blackbox exporter on :9115 started by the packages' postinst.
apt_ensure "$APT_LOG" "${PACKAGES[@]}"
state=${APT_INSTALLED:+installed $APT_INSTALLED}
state=${state:-packages cached}

# --- the binaries run -----------------------------------------------------------------------------
version_of() { # version_of BINARY: the first "version X.Y.Z" its --version prints
    local out
    out=$("$1" --version 2>&1) || die "$1 --version failed: $out"
    [[ $out =~ version[[:space:]]+([0-9][0-9.]*) ]] || die "cannot read the version of $1: $out"
    printf '%s' "${BASH_REMATCH[1]}"
}
for tool in prometheus promtool prometheus-blackbox-exporter; do
    command -v "$tool" >/dev/null || die "$tool is missing after installing ${PACKAGES[*]}"
done
prom=$(version_of prometheus)
promtool=$(version_of promtool)
blackbox=$(version_of prometheus-blackbox-exporter)

echo "prometheus.sh: ready in $(since "$T0") ($state): prometheus $prom, promtool $promtool, blackbox-exporter $blackbox"

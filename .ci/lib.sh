#!/usr/bin/env bash
# Shared by the .ci/*.sh scripts (source it first; it defines functions and the ERR trap only):
#
#   log MESSAGE...              to stderr, prefixed with the script's name
#   die MESSAGE...              log "ERROR: ..." and exit 1 (also on any unexpected failure: ERR trap)
#   since EPOCHREALTIME         seconds since then, one decimal ("1.2s")
#   apt_ensure LOG PACKAGE...   install the PACKAGEs that dpkg does not list as installed, with one
#                               `apt-get update` + `apt-get install` (log in LOG), keeping the
#                               packages' own services from starting (a policy-rc.d saying "no",
#                               provided for the duration when the machine has none: Docker images
#                               ship one). Sets APT_INSTALLED to what it installed ("" when every
#                               package was already there: the cache). Needs root only when
#                               something is missing. Calls the caller's `die` on failure.
#
# Settings (environment):
#     APT_LOCK_TIMEOUT (set by the caller) or ONEIE_APT_LOCK_TIMEOUT: seconds to wait for another
#     apt/dpkg (600)

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND (exit $?)"' ERR
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

APT_INSTALLED=""

apt_ensure() {
    local log=$1
    shift
    local installed pkg
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true)
    local -a missing=()
    for pkg in "$@"; do
        [[ $'\n'$installed$'\n' == *$'\n'"$pkg installed"$'\n'* ]] || missing+=("$pkg")
    done
    APT_INSTALLED=""
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "must run as root to install ${missing[*]}"
    log "installing ${missing[*]} (apt log: $log)"
    local own_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local -a opts=(-q -y -o "DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT:-${ONEIE_APT_LOCK_TIMEOUT:-600}}" -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold --no-install-recommends)
    local ok=1
    { DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" update &&
        DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install "${missing[@]}"; } </dev/null >"$log" 2>&1 || ok=""
    [[ -z $own_policy ]] || rm -f /usr/sbin/policy-rc.d
    if [[ -z $ok ]]; then
        tail -n 25 "$log" >&2
        die "apt-get could not install ${missing[*]} (full log: $log)"
    fi
    APT_INSTALLED="${missing[*]}"
}

#!/usr/bin/env bash
# Stop the php -S server (with its workers) and MariaDB started by .ci/wordpress.sh, found through the
# pid files in the state dir. The state (database, config, application password) stays: the next
# wordpress.sh reuses it. Start from scratch: run this, then `rm -rf "${ONEIE_WP_STATE:-/var/tmp/oneie-wordpress}"`.
set -Euo pipefail

STATE=${ONEIE_WP_STATE:-/var/tmp/oneie-wordpress}
TIMEOUT=${ONEIE_WP_STOP_TIMEOUT:-30}
status=0

log() { printf 'stop-wordpress.sh: %s\n' "$*" >&2; }

cmdline_has() { # cmdline_has PID TEXT: process PID runs (not a zombie) and its command line contains TEXT
    local cmd
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ $cmd == *"$2"* ]]
}

# members PGID TEXT: the processes of the group PGID (our servers are started with setsid: pid = group)
# whose command line contains TEXT; php -S workers stay in the group even when their parent died.
members() {
    local pid
    for pid in $(pgrep -g "$1" 2>/dev/null); do
        if cmdline_has "$pid" "$2"; then echo "$pid"; fi
    done
}

# stop NAME PIDFILE TEXT: TERM the group's matching processes, wait with a deadline, then KILL.
# shellcheck disable=SC2086 # $pids is a list of pids, split on purpose
stop() {
    local name=$1 pidfile=$2 text=$3 pgid pids deadline
    if [[ ! -s $pidfile ]]; then
        log "$name: not running (no $pidfile)"
        return 0
    fi
    pgid=$(<"$pidfile")
    if ! [[ $pgid =~ ^[0-9]+$ ]]; then
        log "$name: ignoring a malformed pid file $pidfile"
        rm -f "$pidfile"
        return 0
    fi
    pids=$(members "$pgid" "$text")
    if [[ -z $pids ]]; then
        log "$name: not running (stale pid file)"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM $pids 2>/dev/null || true
    kill -CONT $pids 2>/dev/null || true # a stopped process acts on TERM only once continued
    deadline=$((SECONDS + TIMEOUT))
    while [[ -n $(members "$pgid" "$text") ]] && ((SECONDS < deadline)); do
        sleep 0.1
    done
    pids=$(members "$pgid" "$text")
    if [[ -n $pids ]]; then
        log "$name (process group $pgid) did not stop within ${TIMEOUT}s: killing it"
        kill -KILL $pids 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while [[ -n $(members "$pgid" "$text") ]] && ((SECONDS < deadline)); do
            sleep 0.1
        done
        status=1
    else
        log "$name (process group $pgid) stopped"
    fi
    rm -f "$pidfile"
}

stop "php -S" "$STATE/run/php-server.pid" "-S 127.0.0.1:"
stop "MariaDB" "$STATE/run/mariadb.pid" "--datadir=$STATE/mariadb"
exit "$status"

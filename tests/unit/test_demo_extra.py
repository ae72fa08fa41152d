"""The operator without its test tooling (issue 14 item 5).

The emulator, the fake providers and the demo need the ``demo`` extra (kmock and the emulator's
validators); the operator's image installs none of it. Here, in a fresh interpreter where kmock
cannot be imported (``sys.modules['kmock'] = None``, what Python does for a module that is not
installed): the operator's code and the CLI load without touching the demo, and ``demo`` says in
one line which extra to install. And the demo's files have one hand-kept source: the wheel's
CRDs and examples are the checkout's ``crds/`` and ``examples/``, through symlinks (tests/run-all.sh
builds the wheel and runs the demo from it outside the checkout: ``.ci/wheel.sh``).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from oneie_operator.testing import repository

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_KMOCK = "import sys; sys.modules['kmock'] = None\n"


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_KMOCK + code], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_operator_and_its_cli_load_nothing_of_the_demo(tmp_path: Path) -> None:
    code = (
        "import oneie_operator.running, oneie_operator.cli.main, oneie_operator.cli.kubectl_plugin\n"
        "import oneie_operator.cli.dashboard.server\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('oneie_operator.testing', 'oneie_operator.demo')))\n"
        "print(loaded)\n"
        "from oneie_operator.cli.main import main\n"
        "sys.exit(main(['--help']))\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "[]", result.stdout
    assert "{run,demo,up,keygen}" in result.stdout


def test_demo_without_the_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    code = "from oneie_operator.cli.main import main\nsys.exit(main(['demo', '--exit', '--workdir', 'w']))\n"
    result = _python(code, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "oneie-operator: the demo needs the optional extra 'demo' (module 'kmock' is missing): "
        "pip install 'oneie-operator[demo]'"
    ]
    assert not (tmp_path / "w").exists(), "nothing started"


def test_kmock_and_the_validators_only_in_the_demo_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"])
    for name in ("kmock", "jsonschema", "cel-python", "kubernetes-validate"):
        assert name not in runtime, f"{name} is a runtime dependency of the operator"
        assert any(dep.startswith(name) for dep in project["optional-dependencies"]["demo"]), name
    assert "oneie-operator[demo]" in project["optional-dependencies"]["test"]
    assert "emulator" not in project["optional-dependencies"], "merged into demo"


def test_the_packaged_crds_and_examples_are_the_checkouts_own() -> None:
    for packaged, source in ((repository.CRD_DIR, ROOT / "crds"), (repository.EXAMPLES_DIR, ROOT / "examples")):
        assert packaged.is_symlink(), f"{packaged} must be a symlink to {source} (one source)"
        assert packaged.resolve() == source.resolve()
    assert [p.name for p in repository.crd_files()] == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


def test_no_third_copy_of_our_crds() -> None:
    """crds/ is the source; the chart's copy is the one helm needs as real files (checked
    byte for byte by tests/chart/test_chart_crds.py); nothing else keeps one."""
    skip = {".git", ".venv", "build", "dist", ".oneie-demo", ".artifacts", "node_modules"}
    copies = set()
    for path in ROOT.rglob("*.yaml"):
        rel = path.relative_to(ROOT)
        if skip & set(rel.parts) or any(part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_symlink() or any(parent.is_symlink() for parent in path.parents if ROOT in parent.parents):
            continue  # the package's links to crds/
        text = path.read_text(encoding="utf-8", errors="replace")
        if "kind: CustomResourceDefinition" in text and "group: one.ie" in text:
            copies.add(rel.parent.as_posix())
    assert copies == {"crds", "charts/oneie-operator/crds"}


def test_the_readme_installs_the_demo_extra_it_runs() -> None:
    """The README's first command installs the extra that `up` needs without a cluster."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip()
    assert first == "python3 -m venv .venv && .venv/bin/pip install -q -e '.[demo]' && .venv/bin/oneie-operator up"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert "demo" in extras

"""Every ``kubectl`` command the docs show for trying things out works verbatim against a running
demo (issue 15, items 4, 5 and 7).

One ``oneie-operator demo`` runs for the module, as a user starts it (a subprocess). The shell
blocks of README.md, docs/gitops.md, docs/observability.md and examples/README.md are read, their
``kubectl`` lines joined across ``\\`` continuations and run with ``bash`` from the repository root,
with ``KUBECONFIG`` set as the README says, in the order the docs give them (the README's, then
examples/README.md's "Watch and switch", then "A failed switch", which leaves the organization
rolled back). Each has an expected exit code and an expected piece of output below: a command
the docs add without an expectation here fails the test. Blocks whose first line is
``# real cluster only`` (helm, Argo CD, Flux, a Secret the demo already made) are skipped with
that reason. Then ``kubectl apply -R -f examples/`` (examples/README.md; the GitOps objects live
in docs/gitops/ so it picks up only the tenant's objects), and last Ctrl-C: the demo exits in under
2 s, without Kopf's ``Unprocessed streams`` warning, removes its kubeconfig, and logged no ERROR
and no retry of the missing Secret while it idled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oneie_operator.demo.environment import repository_root

ROOT = repository_root()
DOCS = ("README.md", "docs/gitops.md", "docs/observability.md", "examples/README.md")
REAL_CLUSTER = "# real cluster only"
APPLY_ALL = "kubectl apply -f examples/namespace.yaml && kubectl apply -R -f examples/"

#: command (verbatim, continuations joined) -> (exit code, text the output must contain).
EXPECTED: dict[str, tuple[int, str]] = {
    # README, "The demo"
    "kubectl get bconn -A": (0, "acme-convex"),
    "kubectl get events -n tenant-acme": (0, "ProviderSwitched"),
    "kubectl get bconn": (0, "acme-supabase"),
    "kubectl oneie status -n tenant-acme": (1, "connections not Ready: tenant-acme/bad-"),
    "kubectl --context platform-owner get bconn -A": (0, "acme-notion"),
    "kubectl --context org-owner -n tenant-acme get secrets": (0, "acme-convex-credentials"),
    "kubectl --context org-user -n tenant-acme get bconn": (0, "acme-wordpress"),
    "kubectl --context org-user -n tenant-acme annotate bconn acme-notion note=x": (1, "Forbidden"),
    "kubectl oneie --context org-user -n tenant-acme probe acme-notion": (2, "403 Forbidden"),
    "kubectl --context org-user auth can-i --list -n tenant-acme": (0, "backendconnections.one.ie"),
    # README, "Organizations"
    "kubectl patch org acme -n tenant-acme --type merge -p "
    """'{"spec":{"backend":{"connectionRef":{"name":"acme-supabase"}}}}'""": (0, "organization.one.ie/acme"),
    "kubectl wait -n tenant-acme --for=condition=Ready org/acme": (0, "condition met"),
    "kubectl get org acme -n tenant-acme -o jsonpath='{.status.lastSwitch}'": (0, '"to":"acme-supabase"'),
    # examples/README.md, "Watch and switch"
    "kubectl get oneie -n tenant-acme": (0, "organization.one.ie/acme"),
    "kubectl get bconn -n tenant-acme -o wide": (0, "acme-convex"),
    "kubectl wait -n tenant-acme --for=condition=Ready bconn/acme-convex org/acme": (0, "condition met"),
    "kubectl get bconn -n tenant-acme --field-selector spec.provider=convex": (0, "acme-convex"),
    "kubectl get bconn -n tenant-acme -l capability.one.ie/realtime": (0, "acme-convex"),
    "kubectl oneie rollback acme -n tenant-acme": (0, "acme-convex"),
    # examples/README.md, "A failed switch"
    "kubectl apply -f examples/notion/": (0, "backendconnection.one.ie/acme-notion"),
    "kubectl patch org acme -n tenant-acme --type merge -p "
    """'{"spec":{"backend":{"connectionRef":{"name":"acme-notion"}}}}'""": (0, "organization.one.ie/acme patched"),
    "kubectl wait -n tenant-acme --for=condition=Stalled org/acme": (0, "condition met"),
    "kubectl get events -n tenant-acme --field-selector reason=SwitchRolledBack": (0, "SwitchRolledBack"),
    "kubectl oneie status acme -n tenant-acme": (1, "acme-convex"),
}
#: A command shown more than once may expect other output at its n-th showing.
LATER: dict[tuple[str, int], str] = {
    # examples/README.md, "A failed switch"
    ("kubectl get org acme -n tenant-acme -o jsonpath='{.status.lastSwitch}'", 3): '"result":"RolledBack"',
}


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str
    real_cluster: bool


def documented_commands() -> list[Command]:
    """The ``kubectl`` lines of the docs' shell blocks, in the order they are read."""
    found: list[Command] = []
    fence = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.S | re.M)
    for name in DOCS:
        text = (ROOT / name).read_text(encoding="utf-8")
        for block in fence.finditer(text):
            if block.group(2) not in ("sh", "bash", "shell"):
                continue
            first = text[: block.start(3)].count("\n") + 1
            lines = [line.strip() for line in block.group(3).splitlines()]
            real = bool(lines) and lines[0].startswith(REAL_CLUSTER)
            logical: list[tuple[int, str]] = []
            pending = ""
            for offset, line in enumerate(lines):
                pending = f"{pending} {line}".strip() if pending else line
                if pending.endswith("\\"):
                    pending = pending[:-1].rstrip()
                    continue
                logical.append((first + offset, pending))
                pending = ""
            found += [Command(f"{name}:{n}", cmd, real) for n, cmd in logical if cmd.startswith("kubectl ")]
    return found


def _without_comment(command: str) -> str:
    """The command without a trailing ``# ...`` comment (outside quotes, after whitespace)."""
    quote = ""
    for i, char in enumerate(command):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i and command[i - 1] in " \t":
            return command[:i].rstrip()
    return command


COMMANDS = documented_commands()


@dataclass
class Demo:
    process: subprocess.Popen[str]
    workdir: Path
    env: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("demo") / ".oneie-demo"
    log = workdir.parent / "demo.log"
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), PATH=os.pathsep.join([bindir, env.get("PATH", "")]))
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "oneie_operator", "demo", "--workdir", str(workdir)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True,
        )
    running = Demo(process, workdir, {**env, "KUBECONFIG": str(workdir / "kubeconfig")}, log)
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in running.output():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not reach its idle state:\n{running.output()[-3000:]}")
            time.sleep(0.2)
        steps = re.search(r"^(\d+) of (\d+) steps went as expected", running.output(), re.M)
        assert steps and steps[1] == steps[2], running.output()[-3000:]
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _run(demo: Demo, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=demo.env, capture_output=True, text=True, timeout=90, check=False,
    )


def test_every_documented_command_has_an_expectation() -> None:
    runnable = {_without_comment(c.text) for c in COMMANDS if not c.real_cluster}
    assert runnable - set(EXPECTED) == set(), "documented commands without an expectation in EXPECTED"
    assert set(EXPECTED) - runnable == set(), "expectations for commands the docs no longer show"
    real = [c.where for c in COMMANDS if c.real_cluster]
    assert any(w.startswith("README.md") for w in real), "README's helm install block is marked real-cluster"


def test_no_doc_points_at_the_old_gitops_directory() -> None:
    for name in (*DOCS, "examples/tenant/README.md", "tests/chart/test_chart_gitops.py"):
        assert "examples/gitops" not in (ROOT / name).read_text(encoding="utf-8"), name
    assert not (ROOT / "examples" / "gitops").exists()


_SEEN: dict[str, int] = {}


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where} {c.text[:60]}" for c in COMMANDS])
def test_documented_command(demo: Demo, command: Command) -> None:
    if command.real_cluster:
        pytest.skip(f"{command.where}: marked '{REAL_CLUSTER}'")
    text = _without_comment(command.text)
    code, needle = EXPECTED[text]
    seen = _SEEN[text] = _SEEN.get(text, 0) + 1
    needle = LATER.get((text, seen), needle)
    result = _run(demo, command.text)  # verbatim, comment included: bash drops it
    output = result.stdout + result.stderr
    assert (result.returncode, needle in output) == (code, True), (
        f"{command.where}: {command.text}\nexit {result.returncode}, expected {code} and {needle!r} in:\n{output}"
    )


def test_apply_all_examples_recursively(demo: Demo) -> None:
    """examples/README.md's ``kubectl apply -R -f examples/`` applies (only) the tenant's objects."""
    assert f"`{APPLY_ALL}`" in (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    result = _run(demo, APPLY_ALL)
    assert result.returncode == 0, result.stdout + result.stderr
    applied = set(re.findall(r"^([\w.]+)/", result.stdout, re.M))
    assert applied == {"namespace", "backendconnection.one.ie", "secret", "organization.one.ie",
                       "rolebinding.rbac.authorization.k8s.io", "deployment.apps"}, result.stdout


def test_ctrl_c_stops_the_demo_quickly_and_cleanly(demo: Demo) -> None:
    idle = demo.output().split("Press Ctrl-C to stop.", 1)[1]
    started = time.monotonic()
    demo.process.send_signal(signal.SIGINT)
    code = demo.process.wait(timeout=30)
    took = time.monotonic() - started
    output = demo.output()
    assert code == 0, output[-3000:]
    assert took < 2.0, f"Ctrl-C took {took:.2f} s"
    assert "Unprocessed streams" not in output
    assert not (demo.workdir / "kubeconfig").exists(), "the demo left its kubeconfig behind"
    assert not demo.workdir.exists(), sorted(p.name for p in demo.workdir.iterdir())
    assert not re.search(r"^\S+ \S+ ERROR ", output, re.M), "the demo's expected failures are not ERRORs"
    assert "Traceback" not in output
    # A missing Secret is waited for (the Secret watch), not retried on a timer while the demo idles.
    assert "failed temporarily: SecretNotFound" not in idle

"""The operator's names on the API (group, version, ``one.ie/`` annotations and labels) are spelled
in one module, ``oneie_operator.names``: a string literal of them anywhere else in the package is
a second definition that can drift (the kubectl plug-in, the dashboard and ``reconcile/usage.py``
each had their own)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import oneie_operator
from oneie_operator import names

PACKAGE = Path(oneie_operator.__file__).parent
#: The group as a whole word (``one.ie``, ``one.ie/probe``, ``capability.one.ie/``,
#: ``backendconnections.one.ie``), not a longer host name that merely contains it.
GROUP_WORD = re.compile(r"(?<![\w-])" + re.escape(names.GROUP) + r"(?![\w-])")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def name_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal (docstrings aside; f-string parts included) that spells
    the API group or version."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if GROUP_WORD.search(node.value) or names.VERSION in node.value:
                hits.append((node.lineno, node.value))
    return hits


def test_the_detector_finds_what_it_looks_for() -> None:
    source = '''
"""Docstrings may mention one.ie/probe and v1alpha1."""
A = "one.ie"
B = {"one.ie/retry": "1"}
C = f"backendconnection.one.ie/{name}"
D = ("one.ie/v1alpha1", "Organization")
E = "cap.capability.one.ie/realtime"
F = "someone.ie.example"  # a different name: not flagged
'''
    assert sorted(line for line, _ in name_literals(source)) == [3, 4, 5, 6, 7]


def test_no_name_is_spelled_outside_the_names_module() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "names.py":
            continue
        for line, text in name_literals(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(PACKAGE)}:{line}: {text!r}")
    assert not found, "spell these with oneie_operator.names instead:\n" + "\n".join(found)


def test_the_names_agree_with_the_crds() -> None:
    """The CRDs are the other place the names live: the module must say what they declare."""
    import yaml

    crds = Path(__file__).resolve().parents[2] / "crds"
    declared = {}
    for path in crds.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                served = [v["name"] for v in spec["versions"] if v.get("served")]
                kind, plural = spec["names"]["kind"], spec["names"]["plural"]
                declared[plural] = (spec["group"], kind, served, doc["metadata"]["name"])
    assert declared[names.CONNECTIONS] == (names.GROUP, names.CONNECTION_KIND, [names.VERSION], names.CONNECTIONS_CRD)
    assert declared[names.ORGANIZATIONS][:3] == (names.GROUP, names.ORGANIZATION_KIND, [names.VERSION])
    assert names.KINDS == {names.CONNECTIONS: names.CONNECTION_KIND, names.ORGANIZATIONS: names.ORGANIZATION_KIND}


def test_names_sit_at_the_bottom_of_the_import_layers() -> None:
    """Everything may import the names; they import nothing of the package."""
    tree = ast.parse((PACKAGE / "names.py").read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [m for m in imported if m.startswith("oneie_operator")] == []

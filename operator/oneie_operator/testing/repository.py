"""The repository's files that the emulator, the demo and the tests load: the CRDs and the examples.

One source: the checkout's top-level ``crds/`` and ``examples/`` (what ``kubectl apply -f`` and the
docs use). ``testing/repo/crds`` and ``testing/repo/examples`` are symlinks to them, which
setuptools follows when it builds a wheel: an installed package carries copies, so
``oneie-operator demo`` runs from any directory; from a checkout (``PYTHONPATH``, ``pip install
-e``) the symlinks lead to the files themselves. The operator's image (``Dockerfile``) copies only
``operator/``: there the links dangle and the wheel has no demo files, as the operator needs none.
The chart keeps its own copy of the CRDs (helm needs real files; tests/chart/test_chart_crds.py).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ['CRD_DIR', 'EXAMPLES_DIR', 'crd_files']

_FILES = Path(__file__).with_name('repo')
CRD_DIR = _FILES / 'crds'
EXAMPLES_DIR = _FILES / 'examples'


def crd_files() -> list[Path]:
    """The CRD manifests, sorted; a clear error when the package was built without them."""
    files = sorted(CRD_DIR.glob('*.yaml'))
    if not files or not (EXAMPLES_DIR / 'namespace.yaml').is_file():
        raise FileNotFoundError(
            f'no CRDs in {CRD_DIR} or no examples in {EXAMPLES_DIR}: this installation was built without '
            "the demo's files (build the package from a checkout of the repository)"
        )
    return files

"""tests/chart/ is not a package: make its helper module (chart_support) importable however
pytest is started (rootdir, importmode). The tools are found, skipped or failed in chart_support."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

"""The real WordPress (DESIGN §7): Debian's ``wordpress`` package, MariaDB and ``php -S`` on 127.0.0.1.

``.ci/wordpress.sh`` starts it (idempotent, cached) and writes ``$ONEIE_WP_STATE/env``
(default ``/var/tmp/oneie-wordpress/env``)::

    WORDPRESS_URL=http://127.0.0.1:18080
    WORDPRESS_USERNAME=admin
    WORDPRESS_APP_PASSWORD=<24 letters and digits>

The session fixture :func:`real_wordpress` reads that file and checks that WordPress accepts the
application password; when the file is missing or WordPress does not answer, it runs the script
itself. If WordPress still cannot be had, the tests **fail** when ``CI`` is set (CI must never pass
by skipping them) and are skipped with the reason otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "wordpress.sh"
STATE_DIR = Path(os.environ.get("ONEIE_WP_STATE", "/var/tmp/oneie-wordpress"))
ENV_FILE = STATE_DIR / "env"
#: A fresh machine installs the packages first (about 25 s here; a slow mirror takes longer).
SCRIPT_TIMEOUT = 280.0


@dataclass(frozen=True)
class RealWordPress:
    url: str
    username: str
    app_password: str

    def __repr__(self) -> str:  # never print the password in a failing test's output
        return f"RealWordPress(url={self.url!r}, username={self.username!r}, app_password='***')"

    def rest(self, route: str, query: str = "") -> str:
        """The ``?rest_route=`` URL of ``route`` (works without pretty permalinks)."""
        return f"{self.url}/?rest_route={route}" + (f"&{query}" if query else "")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments and blank lines ignored; surrounding quotes stripped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _load() -> RealWordPress | None:
    try:
        env = read_env_file(ENV_FILE)
        return RealWordPress(
            url=env["WORDPRESS_URL"].rstrip("/"),
            username=env["WORDPRESS_USERNAME"],
            app_password=env["WORDPRESS_APP_PASSWORD"],
        )
    except (OSError, KeyError):
        return None


def _accepts(wp: RealWordPress) -> str | None:
    """None when WordPress answers ``users/me`` with 200 for these credentials, else why not."""
    token = base64.b64encode(f"{wp.username}:{wp.app_password}".encode()).decode()
    request = urllib.request.Request(
        wp.rest("/wp/v2/users/me"), headers={"Authorization": f"Basic {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
            if body.get("slug") or body.get("id"):
                return None
            return "users/me answered without a user"
    except urllib.error.HTTPError as exc:
        return f"users/me answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{wp.url} does not answer: {exc}"


def _start() -> str | None:
    """Run .ci/wordpress.sh; None on success, else why it failed (its last output lines)."""
    if os.geteuid() != 0:
        return f"{SCRIPT.name} needs root (it installs Debian packages and runs MariaDB)"
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{SCRIPT.name} did not finish within {SCRIPT_TIMEOUT:g}s"
    except OSError as exc:
        return f"cannot run {SCRIPT.name}: {exc}"
    if done.returncode != 0:
        tail = "\n".join((done.stderr + done.stdout).strip().splitlines()[-8:])
        return f"{SCRIPT.name} failed (exit {done.returncode}):\n{tail}"
    return None


@pytest.fixture(scope="session")
def real_wordpress() -> RealWordPress:
    """URL, user name and application password of the real WordPress; starts it when needed."""
    wp = _load()
    problem = _accepts(wp) if wp else f"no {ENV_FILE}"
    if problem is not None:
        failure = _start()
        wp = _load()
        if failure is None:
            problem = _accepts(wp) if wp else f"{SCRIPT.name} succeeded but wrote no {ENV_FILE}"
        else:
            problem = failure
    if problem is not None or wp is None:
        reason = f"the real WordPress is not available: {problem}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return wp

"""Waiting for an object to reach a state: a watch, with a re-read and polling as fallbacks.

The watch starts from the resourceVersion the caller last saw (the response of its own patch),
so no change is missed between the patch and the watch. When the stream ends, expires (410) or
is refused (no ``watch`` permission), the object is read again; after a refusal the wait polls
every quarter second instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from oneie_operator.cli.plugin_common import ExitCode, PluginError
from oneie_operator.cli.plugin_kube import Cluster, remaining

T = TypeVar("T")
POLL_SECONDS = 0.25


def wait_for(
    cluster: Cluster,
    plural: str,
    name: str,
    check: Callable[[dict[str, Any]], T | None],
    *,
    timeout: float,
    what: str,
    start: dict[str, Any] | None = None,
) -> T:
    """Return ``check(obj)`` as soon as it is not ``None``; :class:`PluginError` (exit 3) at the deadline.

    ``check`` sees every version of the object the watch delivers, in order (live progress).
    """
    deadline = time.monotonic() + timeout
    obj = start if start is not None else cluster.require(plural, name)
    use_watch = True
    while True:
        result = check(obj)
        if result is not None:
            return result
        if remaining(deadline) <= 0:
            raise PluginError(f"timed out after {timeout:g}s waiting for {what}", ExitCode.TIMEOUT)
        if use_watch:
            opened = time.monotonic()
            try:
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                for version in cluster.watch(plural, name, rv, remaining(deadline)):
                    obj = version
                    result = check(obj)
                    if result is not None:
                        return result
                    if remaining(deadline) <= 0:
                        break
            except PluginError:
                raise
            except ApiException as exc:
                if exc.status not in (410, 504):  # not "expired": no watching allowed or possible
                    use_watch = False
            except Exception:  # the stream broke (server closed, read timeout): read again  # noqa: S110
                pass
            if time.monotonic() - opened < POLL_SECONDS:  # a stream that ends at once: do not spin
                time.sleep(min(POLL_SECONDS, remaining(deadline)))
        else:
            time.sleep(min(POLL_SECONDS, remaining(deadline)))
        obj = cluster.require(plural, name)

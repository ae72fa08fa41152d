"""Every change the operator makes to Kopf's own behaviour, one module per change.

Each module's docstring says what Kopf behaviour it changes, why, and which Kopf version it was
checked against (:data:`KOPF_CHECKED_VERSION`); ``tests/unit/test_kopf_canaries.py`` holds one
canary per module that fails loudly when the Kopf internals it relies on change (a signature, an
attribute, a log line, a default answer), and one that the installed Kopf is within the pin of
``pyproject.toml`` (``kopf>=1.45,<1.46``). Upgrading Kopf: raise the pin, run the canaries, re-check
each module against the new Kopf, then raise :data:`KOPF_CHECKED_VERSION`.

- :mod:`.causes`: no essence and diff for kinds without change handlers (replaces a Kopf function).
- :mod:`.changing`: our Organization reconcile awaited directly, not through Kopf's progress
  machinery, when Kopf has nothing of the object in progress (replaces a Kopf function).
- :mod:`.diffbase`: the diff-base essence built without deep-copying the status.
- :mod:`.echoes`: the watch event echoing Kopf's own finished status patch, or a binding Secret the
  operator has just written, only indexed (replaces a Kopf function, wraps another).
- :mod:`.emptypatch`: an empty Kopf patch's JSON-patch ops without a deep copy of the object (wraps a Kopf method).
- :mod:`.essencecopy`: Kopf's essence copies made by a copier for JSON data (replaces a module reference).
- :mod:`.fastviews`: Kopf's views of bodies look keys up in plain dicts in one step (replaces two methods).
- :mod:`.mergepatch`: Kopf's merge patches (its status patches) sent by the operator's REST client,
  Kopf's own client when that fails (replaces a Kopf function).
- :mod:`.indexing`: our indexers called directly on each watch event (replaces a Kopf function).
- :mod:`.watching`: our ``@kopf.on.event`` handlers awaited directly (replaces a Kopf function).
- :mod:`.lazy_reprs`: Kopf's ``Body``/``Diff`` ``repr`` short while DEBUG is off (replaces Kopf methods).
- :mod:`.log_lines`: Kopf's log lines of watch handlers' successes dropped, tenant-side temporary
  failures logged as warnings, the demo's stop notice silenced.
- :mod:`.webhook`: the admission server refuses reviews no handler judges (Kopf allows them).

:mod:`.marks` is no patch: what the lean paths of ``watching`` and ``changing`` ask of a marked handler.

Kopf's *settings* (``handlers/lifecycle.py``) are public API and no patch; the canaries check
that each setting we assign exists (Kopf's settings are dataclasses that accept any attribute),
that validating handlers still get ``old`` (``handlers/admission.py``; not in Kopf's typed
signature), and Kopf's namespace-pattern semantics that ``running.kopf_namespaces`` builds on.
"""

#: The Kopf release every module of this package was read against and tested with.
KOPF_CHECKED_VERSION = "1.45.2"

__all__ = ["KOPF_CHECKED_VERSION"]

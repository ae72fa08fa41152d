"""Suite-wide guard: no test module may leave an ``aiohttp`` session unclosed.

A session nobody closed is only reported when the garbage collector reaches it (asyncio logs
"Unclosed client session"), which may be minutes later, in another module whose test then fails
on an error in its log. So every session's creation is remembered, the collector is run at the
end of each module, and a session collected unclosed fails that module, naming where it was made.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

_created: dict[int, str] = {}
_unclosed: list[str] = []
_original_init = aiohttp.ClientSession.__init__
_original_del = aiohttp.ClientSession.__del__


def _init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    _created[id(self)] = "".join(traceback.format_stack(limit=12)[:-1])


def _del(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
    where = _created.pop(id(self), "(unknown)")
    if not self.closed:
        _unclosed.append(where)
    _original_del(self, *args, **kwargs)


aiohttp.ClientSession.__init__ = _init  # type: ignore[method-assign]
aiohttp.ClientSession.__del__ = _del  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="module")
def _no_unclosed_aiohttp_sessions() -> Iterator[None]:
    yield
    gc.collect()
    leaked, _unclosed[:] = list(_unclosed), []
    if leaked:
        pytest.fail(f"{len(leaked)} aiohttp session(s) left unclosed by this module; the first was created at:\n"
                    + leaked[0], pytrace=False)

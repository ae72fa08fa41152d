"""SealedCache: only the version the connection's status names is served; bounded, LRU."""

from __future__ import annotations

from oneie_operator.reconcile.sealedcache import SealedCache


def test_only_the_named_version_is_served() -> None:
    cache = SealedCache()
    cache.put("t", "db", "41", {"token": "v1:k:nonce:ct"})
    assert cache.get("t", "db", "41") == {"token": "v1:k:nonce:ct"}
    assert cache.get("t", "db", "42") is None, "the status names a newer version: read the Secret"
    assert cache.get("t", "other", "41") is None and cache.get("u", "db", "41") is None
    assert cache.get("t", "db", "") is None, "no version in status: never from the cache"
    cache.put("t", "db", "", {"token": "x"})
    assert cache.get("t", "db", "41") == {"token": "v1:k:nonce:ct"}, "an entry without a version is not stored"


def test_a_copy_is_kept() -> None:
    cache = SealedCache()
    sealed = {"token": "a"}
    cache.put("t", "db", "1", sealed)
    sealed["token"] = "changed"
    assert cache.get("t", "db", "1") == {"token": "a"}


def test_least_recently_used_goes_first() -> None:
    cache = SealedCache(capacity=2)
    cache.put("t", "a", "1", {"k": "a"})
    cache.put("t", "b", "1", {"k": "b"})
    assert cache.get("t", "a", "1") is not None  # a is now the most recently used
    cache.put("t", "c", "1", {"k": "c"})
    assert len(cache) == 2
    assert cache.get("t", "b", "1") is None and cache.get("t", "a", "1") is not None

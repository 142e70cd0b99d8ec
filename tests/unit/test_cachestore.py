"""The response cache's memory: a hard byte bound, least recently used out first, Vary, purges."""

from __future__ import annotations

from maitred.front.cachestore import ENTRY_OVERHEAD, Primary, Store, Stored
from maitred.http.caching import Policy

POLICY = Policy(60, 0, 0, 0, (), False)


def stored(body: bytes, policy: Policy = POLICY, tags: frozenset[bytes] = frozenset()) -> Stored:
    return Stored(200, b"HTTP/1.1 200 OK\r\n", b"", body, b"", b"", policy, 0.0, tags)


def key(target: bytes, host: bytes = b"a.example") -> Primary:
    return ("http", host, "", target)


def test_the_bound_is_hard_and_the_least_recently_used_go_first() -> None:
    store = Store(3 * (ENTRY_OVERHEAD + 100))
    for name in (b"/1", b"/2", b"/3"):
        assert store.put(key(name), {}, stored(b"x" * 100))
    assert store.get(key(b"/1"), {}) is not None  # /1 is now the most recent
    store.put(key(b"/4"), {}, stored(b"x" * 100))
    assert store.get(key(b"/2"), {}) is None
    assert store.get(key(b"/1"), {}) is not None
    assert store.evictions == 1
    assert store.size == 3 * (ENTRY_OVERHEAD + 100) <= store.capacity
    assert not store.put(key(b"/big"), {}, stored(b"x" * store.capacity))
    assert store.size <= store.capacity


def test_variants_and_purges() -> None:
    store = Store(1 << 20)
    varying = Policy(60, 0, 0, 0, (b"accept-language",), False)
    store.put(key(b"/v"), {b"accept-language": [b"fr"]}, stored(b"fr", varying))
    store.put(key(b"/v"), {b"accept-language": [b"de"]}, stored(b"de", varying))
    found = store.get(key(b"/v"), {b"accept-language": [b"fr"]})
    assert found is not None and found.body == b"fr"
    assert store.get(key(b"/v"), {}) is None
    store.put(key(b"/t"), {}, stored(b"t", tags=frozenset({b"product-1"})))
    assert store.remove(lambda _, s: b"product-1" in s.tags) == 1
    assert store.remove(lambda k, _: k[3].startswith(b"/v")) == 2
    assert store.size == 0 and not store.vary


def test_replacing_and_evicting_variants_keeps_the_books() -> None:
    varying = Policy(60, 0, 0, 0, (b"accept-language",), False)
    store = Store(2 * (ENTRY_OVERHEAD + 10))
    fr, de = {b"accept-language": [b"fr"]}, {b"accept-language": [b"de"]}
    store.put(key(b"/v"), fr, stored(b"f" * 10, varying))
    store.put(key(b"/v"), fr, stored(b"F" * 10, varying))  # replaced, not added
    assert store.size == ENTRY_OVERHEAD + 10 and store.variants[key(b"/v")] == 1
    store.put(key(b"/v"), de, stored(b"d" * 10, varying))
    store.put(key(b"/w"), {}, stored(b"w" * 10))  # evicts fr, the least recently used
    assert store.get(key(b"/v"), fr) is None
    found = store.get(key(b"/v"), de)
    assert found is not None and found.body == b"d" * 10
    store.put(key(b"/x"), {}, stored(b"x" * 10))  # evicts /w
    store.put(key(b"/y"), {}, stored(b"y" * 10))  # evicts de: /v has no entry left
    assert key(b"/v") not in store.vary and key(b"/v") not in store.variants
    assert store.size == sum(s.size for s in store.entries.values()) <= store.capacity


def test_an_entry_revalidated_in_place_is_counted_again_within_the_bound() -> None:
    store = Store(2 * (ENTRY_OVERHEAD + 10) + 20)
    a, b = stored(b"a" * 10), stored(b"b" * 10)
    store.put(key(b"/a"), {}, a)
    store.put(key(b"/b"), {}, b)
    a.fields = b"X-New: " + b"n" * 13  # 20 bytes more: /a is now the most recent
    store.resized(key(b"/a"), {}, a)
    assert store.size == 2 * (ENTRY_OVERHEAD + 10) + 20 and a.size == ENTRY_OVERHEAD + 30
    a.fields += b"more"  # past the bound: the least recently used (/b) goes
    store.resized(key(b"/a"), {}, a)
    assert store.get(key(b"/b"), {}) is None and store.evictions == 1
    assert store.size == a.size <= store.capacity
    store.resized(key(b"/gone"), {}, stored(b"z"))  # an entry no longer here: nothing
    assert store.size == a.size

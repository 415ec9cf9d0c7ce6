"""The bounded memo tables (asynccluster/http/cache.py, issue 10): a scan of one-off keys
must not stop the keys real traffic repeats from being cached."""

from __future__ import annotations

import random

import pytest

from asynccluster.http.cache import HotCache, RequestCaches
from asynccluster.http.limits import Limits
from asynccluster.http.parser import RequestParser
from asynccluster.http.response import ResponseWriter
from tests.http.test_parser import Recorder


def random_urls(count: int, seed: int = 10) -> list[bytes]:
    rng = random.Random(seed)
    return [b"/scan/%016x" % rng.getrandbits(64) for _ in range(count)]


def lookup(cache: HotCache[bytes, int], key: bytes) -> None:
    """What a user of the cache does: get, and put what a miss computed."""
    if cache.get(key) is None:
        cache.put(key, len(key))


def test_fills_freely_while_there_is_room() -> None:
    cache: HotCache[bytes, int] = HotCache(4)
    for key in (b"a", b"b", b"c", b"d"):
        lookup(cache, key)
    assert len(cache) == 4 and all(key in cache for key in (b"a", b"b", b"c", b"d"))


def test_a_hot_key_stays_cached_through_a_scan_of_one_off_keys() -> None:
    cache: HotCache[bytes, int] = HotCache(512)
    lookup(cache, b"/hot")
    for n, url in enumerate(random_urls(10_000)):
        lookup(cache, url)
        if n % 50 == 0:
            lookup(cache, b"/hot")
    assert b"/hot" in cache
    assert len(cache) == 512


def test_a_hot_key_first_seen_after_the_scan_is_cached_when_asked_again() -> None:
    cache: HotCache[bytes, int] = HotCache(512)
    for url in random_urls(10_000):
        lookup(cache, url)  # fills the table with one-off keys first
    lookup(cache, b"/late-hot")
    assert b"/late-hot" not in cache  # once: on trial
    lookup(cache, b"/late-hot")
    assert b"/late-hot" in cache  # twice: kept, the oldest one-off key made room
    assert len(cache) == 512


def test_none_values_are_promoted_too() -> None:
    cache: HotCache[bytes, bytes | None] = HotCache(1)
    cache.put(b"x-full", None)
    cache.put(b"x-a", None)
    cache.put(b"x-a", None)
    assert cache.get(b"x-a", b"") is None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HotCache(0)


def test_parser_caches_the_hot_path_after_a_random_url_scan() -> None:
    """End to end through the parser, as a worker's connections share one RequestCaches."""
    caches = RequestCaches()
    sink = Recorder()
    for url in random_urls(10_000):
        # A fresh parser each time: its own last-request-line shortcut must not hide the lookup.
        RequestParser(sink, Limits(), caches).feed(b"GET " + url + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    for _ in range(2):
        RequestParser(sink, Limits(), caches).feed(b"GET /api/items?page=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"/api/items?page=1" in caches.targets
    assert b"a" in caches.hosts and b"GET" in caches.methods


def test_response_header_names_are_shared_through_the_writer() -> None:
    names: HotCache[bytes, bytes | None] = HotCache(8)
    ResponseWriter(None, names).start(200, [(b"Content-Length", b"0"), (b"x-a", b"1")])
    assert names.get(b"Content-Length") == b"content-length"
    assert b"x-a" in names and names.get(b"x-a", b"") is None

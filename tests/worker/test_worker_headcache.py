"""The head cache gives exactly what ResponseWriter.start gives: bytes and framing state."""

from __future__ import annotations

from typing import Any

import pytest

from asynccluster.http.errors import ResponseError
from asynccluster.http.response import ResponseWriter, date_header
from asynccluster.worker.headcache import MAX_ENTRIES, HeadCache

DATE = date_header(784111777.0)
CASES: list[tuple[int, Any, bool, str, bool]] = [
    (200, [(b"content-type", b"text/plain"), (b"content-length", b"13")], False, "1.1", True),
    (200, [(b"content-type", b"text/plain")], False, "1.1", True),  # chunked
    (200, [(b"content-type", b"text/plain")], False, "1.0", True),  # close-delimited
    (200, [(b"content-length", b"5")], True, "1.1", True),  # HEAD
    (204, [], False, "1.1", True),
    (304, [(b"etag", b'"x"')], False, "1.1", False),
    (200, [(b"connection", b"close"), (b"content-length", b"0")], False, "1.1", True),
    (404, ((b"x-gen", b"1"),), False, "1.0", True),
]


# The writer's per-response state: every public slot, in the order ResponseWriter.save() and
# restore() use (compared below, so a slot added to the writer is caught). Read here, not in
# headcache.py: compiled classes (mypyc, measured in benchmarks/mypyc_bench.py) have no __slots__.
STATE_SLOTS: tuple[str, ...] = tuple(name for name in ResponseWriter.__slots__ if not name.startswith("_"))


def state_of(writer: ResponseWriter) -> tuple[Any, ...]:
    return tuple(getattr(writer, name) for name in STATE_SLOTS)


@pytest.mark.parametrize("case", CASES)
def test_cached_head_equals_direct(case: tuple[int, Any, bool, str, bool]) -> None:
    status, headers, head_request, version, keep_alive = case
    direct = ResponseWriter()
    expected = direct.start(
        status, list(headers), head_request=head_request, http_version=version, keep_alive=keep_alive, date=DATE
    )
    cache = HeadCache()
    for _ in range(3):  # miss, then hits; a different writer state in between must be overwritten
        writer = ResponseWriter()
        writer.start(500, [], http_version="1.0", keep_alive=False)  # leave unrelated state behind
        assert cache.start(writer, status, list(headers), head_request, version, keep_alive, DATE) == expected
        assert state_of(writer) == state_of(direct)


def test_generator_headers_and_unhashable_pairs() -> None:
    cache = HeadCache()
    writer = ResponseWriter()
    gen = ((name, value) for name, value in [(b"content-length", b"2")])
    head = cache.start(writer, 200, gen, False, "1.1", True, None)
    assert b"content-length: 2\r\n" in head and writer.remaining == 2
    unhashable: Any = [[b"content-length", b"2"]]  # lists, not tuples: apps send these too
    assert cache.start(writer, 200, unhashable, False, "1.1", True, None) == head


def test_errors_are_not_cached() -> None:
    cache = HeadCache()
    for _ in range(2):
        with pytest.raises(ResponseError):
            cache.start(ResponseWriter(), 200, [(b"bad name", b"v")], False, "1.1", True, None)


def test_bounded_and_emptied_when_the_date_changes() -> None:
    cache = HeadCache()
    writer = ResponseWriter()
    for n in range(MAX_ENTRIES + 10):
        cache.start(writer, 200, [(b"x-n", b"%d" % n)], False, "1.1", True, DATE)
    assert len(cache._entries) <= MAX_ENTRIES
    cache.start(writer, 200, [], False, "1.1", True, date_header(784111778.0))
    assert len(cache._entries) == 1

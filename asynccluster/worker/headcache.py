"""Memoized response heads: most apps send the same status and header list again and again.

``ResponseWriter.start`` validates every header name and value and decides the framing: about
1.5 µs for a two-header response, the most expensive single step of a small request. Its
result is a pure function of its inputs (status, the header pairs, HEAD or not, HTTP
version, keep-alive, the current ``date`` line; the server line is fixed per worker), so the
worker remembers it: the encoded head and the writer's framing state after ``start``. A hit
restores both (about 0.3 µs).

Bounded and self-cleaning: the ``date`` line is part of every key, so the table is emptied
whenever the date changes (once a second), and at most :data:`MAX_ENTRIES` heads are kept, the
ones asked for again (:class:`~asynccluster.http.cache.HotCache`: an app sending many one-off
heads does not push out its common ones). One per worker (ServerState.head_cache). Headers
that are not hashable (lists instead of tuples, bytearrays) simply bypass it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asynccluster.http.cache import HotCache
from asynccluster.http.response import ResponseWriter

MAX_ENTRIES = 256


class HeadCache:
    __slots__ = ("_date", "_entries", "_last_entry", "_last_key")

    def __init__(self) -> None:
        self._entries: HotCache[Any, tuple[bytes, tuple[bool, bool, bool, int | None]]] = HotCache(MAX_ENTRIES)
        self._date: bytes | None = None
        # The last key looked up and its entry: an app usually sends the same head again, and
        # comparing with it (element identity first) costs less than hashing the key anew.
        self._last_key: Any = None
        self._last_entry: tuple[bytes, tuple[bool, bool, bool, int | None]] = (b"", (False, False, False, None))

    def start(
        self,
        writer: ResponseWriter,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        head_request: bool,
        http_version: str,
        keep_alive: bool,
        date: bytes | None,
    ) -> bytes:
        """Same result and writer state as ``writer.start(...)``, from the table when possible."""
        if not isinstance(headers, tuple):
            headers = tuple(headers)  # also makes a one-shot iterable reusable
        key = (status, headers, head_request, http_version, keep_alive, date)
        if key == self._last_key:
            last = self._last_entry
            writer.restore(last[1])
            return last[0]
        try:
            hit = self._entries.get(key)
        except TypeError:  # unhashable header pairs: no caching for this response
            return writer.start(
                status, headers, head_request=head_request, http_version=http_version, keep_alive=keep_alive, date=date
            )
        if hit is not None:
            self._last_key = key
            self._last_entry = hit
            writer.restore(hit[1])
            return hit[0]
        head = writer.start(
            status, headers, head_request=head_request, http_version=http_version, keep_alive=keep_alive, date=date
        )
        entries = self._entries
        if date is not self._date:
            entries.clear()
            self._date = date
        entry = (head, writer.save())
        entries.put(key, entry)
        self._last_key = key
        self._last_entry = entry
        return head

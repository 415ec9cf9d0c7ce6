"""Request limits enforced by :class:`asynccluster.http.parser.RequestParser`.

Defaults match ``Config`` (``--limit-request-line`` etc.); the worker builds a ``Limits`` from
its ``Config`` so this package never needs to import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    # Longest request-line in bytes (method SP target SP HTTP-version, without CRLF); longer
    # -> 414, as only the target can make it long (RFC 9112 §3: servers SHOULD support
    # request-lines of at least 8000 octets; RFC 9110 §15.5.15).
    request_line: int = 8192
    # Most header fields in one request; more -> 431 (RFC 6585 §5).
    header_fields: int = 100
    # Largest header section in bytes (field lines incl. CRLF); larger -> 431.
    header_size: int = 32768
    # Largest request body in bytes (0 = no limit); larger -> 413 (RFC 9110 §15.5.14),
    # rejected before reading the body when Content-Length announces it.
    body: int = 0
    # Chunked-body framing bytes (chunk-size lines, extensions, trailers) allowed beyond
    # 16x the data they carry; more -> 400. Extensions are ignored on receipt, so this only
    # stops a client from streaming endless framing (RFC 9112 §7.1.1, CVE-2023-39326 class).
    chunk_framing: int = 16384

"""Response side: the app's (status, headers) in, HTTP/1.1 bytes out, framing enforced.

One :class:`ResponseWriter` per connection encodes one response at a time:

    head = writer.start(status, headers, head_request=..., http_version=..., keep_alive=..., date=...)
    out = writer.body(data)        # framed bytes (a chunk, or data as-is) to write
    out = writer.end()             # b"" or LAST_CHUNK; ResponseError if Content-Length was not met
    writer.keep_alive              # False: close the connection after this response

Framing (RFC 9112 §6.3, RFC 9110 §6.4.1, §8.6): the app's Content-Length is kept and enforced
(too many or too few bytes is a :class:`ResponseError`); without it the body is chunked on
HTTP/1.1 and close-delimited on HTTP/1.0; HEAD, 1xx, 204 and 304 responses have no body.
"""

from __future__ import annotations

import email.utils
import http
from collections.abc import Iterable

from .cache import HotCache
from .errors import ResponseError

__all__ = [
    "LAST_CHUNK",
    "ResponseWriter",
    "date_header",
    "encode_chunk",
    "error_response",
    "http_date",
    "server_header",
    "status_line",
]

LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"
COLON = b": "
_CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
_CLOSE_LINE = b"connection: close\r\n"
_KEEP_ALIVE_LINE = b"connection: keep-alive\r\n"


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""  # the reason-phrase is optional (RFC 9112 §4)


# Every registered status code, pre-encoded. We always answer "HTTP/1.1": a server sends its
# highest version with the request's major version (RFC 9112 §2.3), HTTP/1.0 clients included.
_STATUS_LINES: dict[int, bytes] = {int(s): b"HTTP/1.1 %d %s\r\n" % (s, _reason(s)) for s in http.HTTPStatus}


def status_line(status: int, http_version: str = "1.1") -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (pre-encoded for registered codes)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ResponseError(f"invalid status code {status!r}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def http_date(timestamp: float) -> bytes:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (RFC 9110 §5.6.7)."""
    return email.utils.formatdate(timestamp, usegmt=True).encode("ascii")


def date_header(timestamp: float) -> bytes:
    """The complete ``date`` field line; the worker refreshes it once a second."""
    return b"date: " + http_date(timestamp) + CRLF


def server_header(value: bytes | str | None) -> bytes:
    """The complete ``server`` field line (b"" when disabled)."""
    if not value:
        return b""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return b"server: " + _check_value(raw) + CRLF


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); never call with empty data."""
    return b"%x\r\n%s\r\n" % (len(data), data)


# ---------------------------------------------------------------- header validation

_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# field-value: HTAB, SP, VCHAR, obs-text; never CR, LF or NUL (RFC 9110 §5.5).
_VALUE_CHARS = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
_WS = (32, 9)

# Fields whose value decides framing or connection handling: looked at, not passed blindly.
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection", b"server", b"date"))
# Validated names as the app spells them -> lower-cased name if in _FRAMING, else None
# (HeaderNames, one per worker): one dict lookup per header replaces validating and
# lower-casing every time.
_UNKNOWN = b""
HeaderNames = HotCache[bytes, bytes | None]
HEADER_NAMES_SIZE = 512


def _learn_name(name: bytes, names: HeaderNames) -> bytes | None:
    if not isinstance(name, bytes) or not name or name.translate(None, _TCHAR):
        raise ResponseError(f"invalid response header name {name!r}")
    lname = name.lower()
    kind = lname if lname in _FRAMING else None
    names.put(name, kind)
    return kind


def _check_value(value: bytes) -> bytes:
    if not isinstance(value, bytes) or value.translate(None, _VALUE_CHARS):
        raise ResponseError(f"invalid response header value {value!r}")
    if value and (value[0] in _WS or value[-1] in _WS):
        value = value.strip(b" \t")  # not part of the field value (RFC 9110 §5.5)
    return value


# ---------------------------------------------------------------- the writer


class ResponseWriter:
    """Encodes one response at a time on a connection; reuse it for the next response."""

    __slots__ = ("_names", "_server_line", "chunked", "keep_alive", "no_body", "remaining")

    def __init__(self, server: bytes | str | None = b"asynccluster", names: HeaderNames | None = None) -> None:
        """``names``: the worker's table of validated header names (shared by its writers);
        a writer made without one keeps its own."""
        self._server_line = server_header(server)
        self._names: HeaderNames = names if names is not None else HotCache(HEADER_NAMES_SIZE)
        self.chunked = False
        self.no_body = False
        self.keep_alive = True
        # Body bytes still owed under the app's Content-Length; None: not length-delimited.
        self.remaining: int | None = None

    def start(
        self,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        head_request: bool = False,
        http_version: str = "1.1",
        keep_alive: bool = True,
        date: bytes | None = None,
    ) -> bytes:
        """Encode the response head and set this response's framing.

        ``keep_alive`` is what the request and the worker allow (False when the client asked
        to close or the worker is draining); ``date`` is a :func:`date_header` line or None.
        Raises :class:`ResponseError` for an invalid status, header name or value, or framing.
        """
        parts = [_STATUS_LINES.get(status) or status_line(status)]
        length: bytes | None = None
        coding: bytes | None = None
        own_server = own_date = False
        names = self._names
        get_name = names.get
        for name, value in headers:
            kind = get_name(name, _UNKNOWN)
            if kind is _UNKNOWN:
                kind = _learn_name(name, names)
            if not isinstance(value, bytes) or value.translate(None, _VALUE_CHARS):
                raise ResponseError(f"invalid response header value {value!r}")
            if value and (value[0] in _WS or value[-1] in _WS):
                value = value.strip(b" \t")  # not part of the field value (RFC 9110 §5.5)
            if kind is not None:
                if kind == b"content-length":
                    if length is not None:
                        if length != value:
                            raise ResponseError("conflicting Content-Length headers")
                        continue  # identical duplicate: send once
                    if not value.isdigit():
                        raise ResponseError(f"invalid Content-Length {value!r}")
                    length = value
                elif kind == b"transfer-encoding":
                    coding = value
                    continue  # we write our own, see _frame
                elif kind == b"connection":
                    if b"close" in value.lower():
                        keep_alive = False
                    continue  # connection management is ours (RFC 9112 §9.6)
                elif kind == b"server":
                    own_server = True
                else:
                    own_date = True
            parts += (name, COLON, value, CRLF)
        if not own_server and self._server_line:
            parts.append(self._server_line)
        if date is not None and not own_date:
            parts.append(date)
        self._frame(parts, status, length, coding, head_request, http_version, keep_alive)
        parts.append(CRLF)
        return b"".join(parts)

    def _frame(
        self,
        parts: list[bytes],
        status: int,
        length: bytes | None,
        coding: bytes | None,
        head_request: bool,
        http_version: str,
        keep_alive: bool,
    ) -> None:
        if coding is not None:
            if length is not None:
                raise ResponseError("response has both Content-Length and Transfer-Encoding")
            if coding.strip().lower() != b"chunked":
                raise ResponseError(f"unsupported response Transfer-Encoding {coding!r}")
        no_body = head_request or status < 200 or status == 204 or status == 304
        self.no_body = no_body
        self.chunked = False
        if length is not None and (status < 200 or status == 204):
            # MUST NOT send Content-Length in 1xx or 204 (RFC 9110 §8.6). "0" says no
            # body, which is true: the field is dropped (frameworks add it, e.g. Django).
            # Any other value announces a body such a response cannot have: an app bug.
            if int(length):
                raise ResponseError(f"Content-Length {length.decode()} in a {status} response")
            _drop_content_length(parts)
            length = None
        if length is not None:
            # On 304 the app's value is kept as sent: it is the length the 200 would have had
            # (RFC 9110 §8.6 allows it), and no body follows (as for HEAD).
            self.remaining = int(length)
        else:
            self.remaining = None
            if not no_body:
                if http_version == "1.1":
                    self.chunked = True
                    parts.append(_CHUNKED_LINE)
                else:
                    keep_alive = False  # close-delimited body (RFC 9112 §6.3 item 8)
        self.keep_alive = keep_alive
        if not keep_alive:
            parts.append(_CLOSE_LINE)
        elif http_version == "1.0":
            parts.append(_KEEP_ALIVE_LINE)  # HTTP/1.0 closes unless told otherwise

    def save(self) -> tuple[bool, bool, bool, int | None]:
        """This response's framing state (every public slot), for :meth:`restore`."""
        return (self.chunked, self.keep_alive, self.no_body, self.remaining)

    def restore(self, state: tuple[bool, bool, bool, int | None]) -> None:
        """Set the framing state :meth:`save` returned: the same head again, without ``start``."""
        self.chunked, self.keep_alive, self.no_body, self.remaining = state

    def body(self, data: bytes) -> bytes:
        """Framed bytes for a piece of body (b"" for bodiless responses or empty data)."""
        if self.no_body or not data:
            return b""
        remaining = self.remaining
        if remaining is not None:
            remaining -= len(data)
            if remaining < 0:
                raise ResponseError("response body longer than its Content-Length")
            self.remaining = remaining
            return data
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def last(self, data: bytes) -> bytes:
        """``body(data) + end()`` in one step: the final (often the only) body message."""
        remaining = self.remaining
        if remaining is not None and remaining == len(data) and not self.no_body:
            self.remaining = 0  # the common case: a Content-Length body sent in one piece
            return data
        framed = self.body(data) if data else b""
        end = self.end()
        return framed + end if end else framed

    def end(self) -> bytes:
        """Bytes that finish the body; raises ResponseError if Content-Length was not met."""
        if self.no_body:
            return b""
        if self.remaining:
            raise ResponseError(f"response body {self.remaining} bytes shorter than its Content-Length")
        if self.chunked:
            return LAST_CHUNK
        return b""


def _drop_content_length(parts: list[bytes]) -> None:
    """Remove the Content-Length field line from ``parts`` (name, ": ", value, CRLF runs)."""
    for index in range(1, len(parts) - 3, 4):
        if parts[index].lower() == b"content-length":
            del parts[index : index + 4]
            return


# ---------------------------------------------------------------- canned error responses

_ERROR_TEXT = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    426: b"Upgrade Required",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}
# Fields a status needs beyond the usual ones.
_ERROR_EXTRA = {
    # 426 MUST carry Upgrade (RFC 9110 §15.5.22); Sec-WebSocket-Version says what we speak
    # (RFC 6455 §4.4).
    426: b"upgrade: websocket\r\nsec-websocket-version: 13\r\n",
}


def _line(name: bytes, value: bytes | None) -> bytes:
    """Accept either a header value or an already encoded field line."""
    if not value:
        return b""
    if value.endswith(CRLF):
        return value
    return name + COLON + value + CRLF


def error_response(
    status: int,
    *,
    server_header: bytes | None = None,
    date: bytes | None = None,
) -> bytes:
    """A complete response for a status the server itself gives, with ``Connection: close``.

    ``server_header`` and ``date`` may be bare values or encoded field lines (as made by
    :func:`server_header` and :func:`date_header`); None leaves them out.
    """
    text = _ERROR_TEXT.get(status) or _reason(status) or b"Error"
    body = text + b"\n"
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            _ERROR_EXTRA.get(status, b""),
            _CLOSE_LINE,
            _line(b"server", server_header),
            _line(b"date", date),
            CRLF,
            body,
        )
    )

"""RequestParser: HTTP/1.1 request bytes in, validated request events out (the httptools adapter).

llhttp (through httptools) does the byte-level grammar in strict mode: request-line and field
syntax, bare CR/LF, obs-fold, invalid field names/values, chunk framing, Content-Length digits
and duplicates, Content-Length together with Transfer-Encoding. This adapter adds what llhttp
leaves to the application (RFC 9112/9110; listed in :mod:`asynccluster.http.validate`, where
the checks live), keeping the common request to a few dict/set lookups, and enforces the
:class:`Limits`. Two checks need raw bytes, as llhttp skips what they look at: the spaces of
the request-line and the size of chunk framing (see :meth:`RequestParser.feed`).
"""

from __future__ import annotations

from typing import Any

import httptools

from .cache import TARGET_CACHEABLE, RequestCaches
from .errors import ProtocolError
from .events import RequestHead, RequestSink
from .limits import Limits
from .validate import (
    OWS,
    bad,
    check_fields,
    check_host,
    check_version,
    has_version,
    head_end,
    is_websocket_upgrade,
    method_name,
    no_version,
    parse_target,
    request_line_version,
    scan_request_line,
)

__all__ = ["RequestHead", "RequestParser", "RequestSink"]


# Proxy fields: only noted (head.proxied), so the worker looks for them only when present.
_PROXY = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"))
# Fields needing a look at parse time; everything else is only lower-cased and stored.
_SPECIAL = (
    frozenset((b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"sec-websocket-version"))
    | _PROXY
)

# A request-line's bytes besides method and target: 2 SP and "HTTP/x.y" (RFC 9112 §3).
_LINE_FIXED = 10
# Methods up to this long need no look-up while the target is short of the limit.
_SHORT_METHOD = 8

# No request-line starts with this (the request-line cache's initial entry).
_NO_LINE = b"\0"
# Longest request-target the request-line cache keeps (a line is held per connection).
_LINE_CACHEABLE = 256

# Parser states.
_IDLE = 0  # between messages
_HEAD = 1  # request-line / header section
_BODY = 2  # header section done, body (and trailers) being read
_PAUSED = 3  # after a WebSocket handshake request: bytes are held, not parsed
_DONE = 4  # failed or detached: input is ignored


def _check_version_given(line: bytes | None, line_end: bytes) -> None:
    """llhttp reports 0.9 for "HTTP/0.9" and for a line without a version (400, not 505).

    The raw bytes tell them apart: ``line``, the read that began the request, or else
    ``line_end``, the end of a request-line that came in pieces. A request pipelined behind
    another in one read has neither (see :meth:`RequestParser.feed`): it counts as version-less.
    """
    end = scan_request_line(line, b"")[0] if line is not None else line_end
    if not has_version(end):
        raise no_version()


class _Callbacks:
    """The object httptools calls back; its attributes are bound methods of the parser."""

    __slots__ = ("on_body", "on_header", "on_headers_complete", "on_message_begin", "on_message_complete", "on_url")

    def __init__(self, parser: RequestParser) -> None:
        self.on_message_begin = parser._on_message_begin
        self.on_url = parser._on_url
        self.on_header = parser._on_header
        self.on_headers_complete = parser._on_headers_complete
        self.on_body = parser._on_body
        self.on_message_complete = parser._on_message_complete


class RequestParser:
    """Feed bytes, get :class:`RequestSink` calls; raises :class:`ProtocolError` on bad input.

    After a GET WebSocket handshake (``head.upgrade == b"websocket"``) the parser stops after
    ``on_request_complete`` and holds later bytes unparsed: the worker calls :meth:`detach` to
    take them when it switches protocols (a declined handshake closes the connection).
    After a :class:`ProtocolError` the parser ignores further input.
    """

    __slots__ = (
        "_body_limit",
        "_body_seen",
        "_caches",
        "_chunked",
        "_complete_pending",
        "_fields_max",
        "_framing",
        "_head_fed",
        "_head_max",
        "_head_size",
        "_headers",
        "_held",
        "_host",
        "_hosts",
        "_hp",
        "_known_host",
        "_known_method",
        "_known_target",
        "_last_line",
        "_limits",
        "_line",
        "_line_end",
        "_line_max",
        "_line_tail",
        "_messages",
        "_on_body_sink",
        "_proxied",
        "_sink",
        "_specials",
        "_state",
        "_trailer_size",
        "_upgrade_ok",
        "_url",
        "_url_max",
    )

    def __init__(self, sink: RequestSink, limits: Limits | None = None, caches: RequestCaches | None = None) -> None:
        limits = limits or Limits()
        self._sink = sink
        # Checked methods, targets and Host values: the worker passes its one set (shared by
        # its connections); a parser made without one keeps its own.
        self._caches = caches if caches is not None else RequestCaches()
        # The tables' hit paths, bound once (dict.get of each): per request, no attribute hops.
        self._known_host = self._caches.hosts.get
        self._known_method = self._caches.methods.get
        self._known_target = self._caches.targets.get
        self._on_body_sink = sink.on_body
        self._limits = limits
        # --limit-request-line bounds the whole line, method SP target SP HTTP/x.y: a target
        # up to _url_max bytes fits whatever the method; a longer one is measured exactly.
        self._line_max = limits.request_line
        self._url_max = limits.request_line - _LINE_FIXED - _SHORT_METHOD
        self._fields_max = limits.header_fields
        self._head_max = limits.header_size
        self._body_limit = limits.body
        self._hp = httptools.HttpRequestParser(_Callbacks(self))
        # Versions are checked here (HTTP/1.2 is served as 1.1; 2.0/9.9 get 505 rather than
        # llhttp's generic error). The rest of llhttp stays strict.
        self._hp.set_dangerous_leniencies(lenient_version=True)
        self._state = _IDLE
        self._messages = 0
        self._held = b""
        # For the request-line's spaces: the read that began the current message (checked
        # when its head completes), or the last byte of a request-line split across reads.
        self._line: bytes | None = None
        self._line_tail: bytes | None = None
        # The end of a request-line that arrived in pieces (see scan_request_line), b"": none.
        self._line_end = b""
        self._complete_pending = False  # a chunked request's completion, until measured
        # The last valid request-line seen at the start of a read, with its decoded parts:
        # clients repeat theirs (keep-alive), and a byte-equal line needs no new checks.
        self._last_line: tuple[bytes, str, Any, str] = (_NO_LINE, "", (b"", "", b""), "")
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._host = b""
        self._hosts = 0
        self._proxied = False
        self._specials: dict[bytes, bytes] | None = None
        self._head_fed = 0
        self._body_seen = 0
        self._framing = 0
        self._trailer_size = 0
        self._upgrade_ok = False
        self._chunked = False

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Parse ``data``, calling the sink for each event (pipelined requests included).

        httptools gives no offsets, so the raw-byte checks rely on reads: a request-line's
        spaces are checked when the request begins a read (not when it is pipelined behind
        another in the same read); chunk framing is measured in the reads a chunked request
        does not share with another message (a shared read, or one that starts inside the
        head's final CRLFCRLF, is bounded by its size alone: llhttp buffers no extension).
        """
        state = self._state
        if state >= _PAUSED:
            if state == _PAUSED:
                self._held += data
            return
        if state == _IDLE:
            self._line = data
        elif state == _HEAD and (self._line is not None or self._line_tail is not None):
            self._check_line_pieces(data)  # a head split across reads (uncommon)
        messages = self._messages
        body_before = self._body_seen
        hp = self._hp
        while True:
            try:
                hp.feed_data(data)
                break
            except httptools.HttpParserUpgrade as exc:
                offset = exc.args[0]
                if self._state == _PAUSED:
                    self._held = bytes(data[offset:])
                    return
                # An Upgrade we do not act on (RFC 9110 §7.8: a server MAY ignore it); llhttp
                # has already resumed, so the rest is the next request.
                data = data[offset:]
            except httptools.HttpParserCallbackError as exc:
                self._state = _DONE
                self._release_complete()
                cause = exc.__context__
                if cause is None:
                    raise
                raise cause from None
            except httptools.HttpParserError as exc:
                self._state = _DONE
                self._release_complete()
                raise self._translate(exc) from None
        if self._state == _HEAD and self._line is not None:
            self._check_line_ended(self._line)  # a head that is not complete yet (uncommon)
        if self._messages == messages and self._state == state:
            # No message boundary in this chunk, so all of it belongs to the current message:
            # bound what llhttp/httptools may accumulate across reads.
            if state == _HEAD:
                self._check_head_fed(len(data))
            elif state == _BODY and self._chunked:
                self._check_framing(len(data) - (self._body_seen - body_before))
        elif self._chunked:
            self._check_chunked_read(data, state, self._messages - messages, body_before)

    def detach(self) -> bytes:
        """The connection switched protocols: return the bytes received after the handshake."""
        held, self._held = self._held, b""
        self._state = _DONE
        return held

    def _check_head_fed(self, size: int) -> None:
        self._head_fed += size
        if self._head_fed > self._head_max + self._line_max:
            raise self._fail(ProtocolError(431, "request header section too large"))

    def _check_line_pieces(self, data: bytes) -> None:
        line, self._line = self._line, None  # not None: the previous read began this request
        try:
            if line is None:
                tail, ended = self._line_tail or b"", False
            else:
                tail, ended = scan_request_line(line, b"")
            if not ended:
                tail, ended = scan_request_line(data, tail)
        except ProtocolError as exc:
            raise self._fail(exc) from None
        self._line_tail = None if ended else tail
        if ended:
            self._line_end = tail
            if not has_version(tail):
                raise self._fail(no_version())

    def _check_line_ended(self, line: bytes) -> None:
        """The head is incomplete after the read that began it: refuse a version-less line now.

        Without this, "GET /" CRLF would wait for a header section and time out (RFC 9112 §3:
        it is an invalid request-line, answered 400 as soon as the line is complete).
        """
        try:
            end, ended = scan_request_line(line, b"")
        except ProtocolError as exc:
            raise self._fail(exc) from None
        if ended and not has_version(end):
            raise self._fail(no_version())

    def _check_chunked_read(self, data: bytes, state: int, began: int, body_before: int) -> None:
        """A read with a message boundary, ending in (or just after) a chunked request.

        If it is the only message in the read, its share is known and its framing bounded:
        the read minus the body, minus the head if in it (searched for only when it matters).
        """
        if began == 0:  # it was already being read: its head (_HEAD) or body (_BODY)
            body = self._body_seen - body_before
        elif began == 1 and state == _IDLE:  # it began this read, alone
            body = self._body_seen
        else:
            body = -1
        if body >= 0:
            size = len(data) - body  # its framing, and its head if that is in this read
            limit = self._limits.chunk_framing + 16 * self._body_seen
            if state != _BODY and (not self._complete_pending or self._framing + size > limit):
                start = head_end(data, state == _IDLE)
                size = len(data) - start - body if start >= 0 else 0
            self._check_framing(size)
        self._release_complete()

    def _release_complete(self) -> None:
        if self._complete_pending:
            self._complete_pending = False
            self._sink.on_request_complete()

    def _check_framing(self, size: int) -> None:
        self._framing += size
        if self._framing > self._limits.chunk_framing + 16 * self._body_seen:
            raise self._fail(bad("too much chunked framing (chunk extensions or trailers)"))

    def _fail(self, exc: ProtocolError) -> ProtocolError:
        self._state = _DONE
        return exc

    def _translate(self, exc: Exception) -> ProtocolError:
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            return bad("invalid method")
        if isinstance(exc, httptools.HttpParserInvalidURLError):
            return bad("invalid request-target")
        version = self._hp.get_http_version()
        if version[0] not in "01":
            # e.g. the HTTP/2 connection preface "PRI * HTTP/2.0" (RFC 9113 §3.4).
            return ProtocolError(505, f"HTTP/{version} is not supported")
        return bad(str(exc) or "malformed request")

    # ------------------------------------------------------------ httptools callbacks

    def _on_message_begin(self) -> None:
        self._messages += 1
        self._state = _HEAD
        if self._specials is not None or self._body_seen or self._chunked or self._trailer_size or self._proxied:
            if self._complete_pending:  # a chunked request shares this read: not measured
                self._complete_pending = False
                self._sink.on_request_complete()
            self._reset_message()
        else:  # the common request (no body, no framing fields): reset only what it used
            self._url = b""
            self._headers = []
            self._head_size = 0
            self._hosts = 0
            self._head_fed = 0

    def _on_url(self, piece: bytes) -> None:
        url = self._url + piece
        if len(url) > self._url_max and len(url) + len(self._hp.get_method()) + _LINE_FIXED > self._line_max:
            # The request-line is longer than --limit-request-line; the method is short
            # (llhttp knows only registered ones), so the target is what is too long.
            raise ProtocolError(414, "request-line too long (its request-target)")
        self._url = url

    def _on_header(self, name: bytes, value: bytes) -> None:
        if self._state != _HEAD:
            self._on_trailer(name, value)
            return
        name = name.lower()
        # llhttp drops leading OWS but keeps trailing OWS, which is not part of the value
        # (RFC 9112 §5).
        value = value.rstrip(OWS)
        headers = self._headers
        headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._head_max:
            raise ProtocolError(431, "request header section too large")
        if len(headers) > self._fields_max:
            raise ProtocolError(431, "too many request header fields")
        if name in _SPECIAL:
            if name == b"host":
                self._host = value
                self._hosts += 1
            elif name in _PROXY:
                self._proxied = True
            else:
                self._on_special(name, value)

    def _on_special(self, name: bytes, value: bytes) -> None:
        specials = self._specials
        if specials is None:
            specials = self._specials = {}
        if name == b"content-length" and not value.isdigit():
            # Content-Length = 1*DIGIT (RFC 9110 §8.6): leading zeros are decimal digits like
            # any other ("005" is 5, as llhttp frames it), and OWS around the value is not
            # part of it (RFC 9110 §5.5). Nothing else: no sign, comma, inner space or hex;
            # parsers disagreeing on such values is how requests get smuggled (RFC 9112 §6.3
            # item 5, §11.2). Inline: every request with a body comes here.
            raise bad("invalid Content-Length")
        previous = specials.get(name)
        # Repeated list fields combine into one comma-separated value (RFC 9110 §5.3).
        specials[name] = value if previous is None else previous + b"," + value

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        # Trailer fields are read and discarded: ASGI has no request trailers, and fields such
        # as Content-Length or Host must not be merged into the head (RFC 9110 §6.5.1).
        self._trailer_size += len(name) + len(value) + 4
        if self._trailer_size > self._head_max:
            raise ProtocolError(431, "request trailer section too large")

    def _on_headers_complete(self) -> None:
        hp = self._hp
        line, self._line = self._line, None
        known = self._last_line
        if line is not None and line.startswith(known[0]):
            # The same request-line as the last one checked, byte for byte (CRLF included), at
            # the start of the read: llhttp parsed it the same way, and it was found valid.
            method, target, version = known[1], known[2], known[3]
        else:
            method, target, version = self._request_line(line)
        if self._hosts != 1:
            if self._hosts > 1:
                raise bad("more than one Host header field")
            if version == "1.1":
                raise bad("missing Host header field")
        elif self._known_host(self._host) is None:
            check_host(self._host)
            self._caches.hosts.put(self._host, True)
        content_length: int | None = None
        expect_continue = False
        upgrade: bytes | None = None
        specials = self._specials
        if specials is not None:
            content_length, self._chunked, expect_continue = check_fields(specials, version, self._body_limit)
            if hp.should_upgrade() and is_websocket_upgrade(specials, method, bool(content_length or self._chunked)):
                self._upgrade_ok = True
                upgrade = b"websocket"
        self._state = _BODY
        self._sink.on_request(
            RequestHead(
                method,
                target[0],
                target[1],
                target[2],
                version,
                self._headers,
                hp.should_keep_alive(),
                expect_continue,
                content_length,
                self._chunked,
                upgrade,
                self._proxied,
            )
        )

    def _request_line(self, line: bytes | None) -> tuple[str, tuple[bytes, str, bytes], str]:
        """Check and decode the request-line (method, target, version); remember a valid one."""
        hp = self._hp
        raw_method = hp.get_method()
        url = self._url
        # Set only for a head split across reads, which always comes here: used up at once.
        line_end, self._line_end = self._line_end, b""
        checked = None if line is None else request_line_version(line, raw_method, url)
        version = checked
        if version is None:
            version = hp.get_http_version()  # a str.format() call: the raw bytes are cheaper
            if version != "1.1" and version != "1.0":
                if version == "0.9":
                    _check_version_given(line, line_end)
                version = check_version(version)
        method = self._known_method(raw_method)
        if method is None:
            method = method_name(raw_method)
            self._caches.methods.put(raw_method, method)
        target = self._known_target(url)
        if target is None:
            target = parse_target(url, method)
            if len(url) <= TARGET_CACHEABLE:
                self._caches.targets.put(url, target)
        if checked is not None and line is not None and len(url) <= _LINE_CACHEABLE:
            self._remember_line(line, raw_method, url, (method, target, version))
        return method, target, version

    def _remember_line(self, line: bytes, raw_method: bytes, url: bytes, parts: tuple[str, Any, str]) -> None:
        """Keep ``line``'s request-line if it is exactly "method SP target SP HTTP/1.x CRLF".

        request_line_version has seen single SPs around the target and "HTTP/1.x" after them
        (llhttp checked the rest of the version); the CRLF is checked here, so the kept bytes
        are the whole request-line and nothing else.
        """
        end = len(raw_method) + len(url) + 2 + 8
        if line.startswith(raw_method) and line[end : end + 2] == b"\r\n":
            self._last_line = (line[: end + 2], *parts)

    def _on_body(self, data: bytes) -> None:
        self._body_seen += len(data)
        if self._body_limit and self._body_seen > self._body_limit:
            raise ProtocolError(413, "request body larger than the limit")
        self._on_body_sink(data)

    def _on_message_complete(self) -> None:
        if self._chunked and not self._upgrade_ok:
            # Held until feed() has bounded this read's chunk framing: an error must reach
            # the worker while the request is unfinished, so it replaces the app's response.
            self._state = _IDLE
            self._complete_pending = True
            return
        self._state = _PAUSED if self._upgrade_ok else _IDLE
        self._sink.on_request_complete()

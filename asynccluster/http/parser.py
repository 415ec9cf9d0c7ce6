"""RequestParser: HTTP/1.1 request bytes in, validated request events out.

llhttp (through httptools) does the byte-level grammar in strict mode: request-line and field
syntax, bare CR/LF, obs-fold, invalid field names/values, chunk framing, Content-Length digits
and duplicates, Content-Length together with Transfer-Encoding. This adapter adds what llhttp
leaves to the application (RFC 9112/9110), keeping the common request to a few dict/set
lookups:

- Host: exactly one on HTTP/1.1, at most one on HTTP/1.0, a plausible ``host[:port]``
  (RFC 9112 §3.2, RFC 9110 §7.2);
- version: HTTP/1.x only (1.2+ is answered as 1.1, RFC 9112 §2.3), others -> 505;
- request-target form and characters (RFC 9112 §3.2), percent-decoding of the path;
- framing: Transfer-Encoding codings (only ``chunked``, last, once; none on HTTP/1.0),
  Content-Length as plain ``1*DIGIT`` without leading zeros (RFC 9112 §6, §11.2);
- Expect (only ``100-continue``, else 417), Upgrade (only a GET WebSocket handshake pauses
  the parser), CONNECT -> 501;
- limits: request-target -> 414, header fields / header section -> 431, body -> 413.

Percent-decoding policy: ``path`` is the UTF-8 decoding of the percent-decoded target path.
Invalid ``%`` escapes, invalid UTF-8 and decoded control characters (``%00``, ``%0d%0a`` ...)
give 400 instead of reaching the app: ASGI apps use ``path`` for routing, file lookups and
logs, where a NUL or CRLF is an injection vector. ``raw_path`` keeps the bytes as sent.
"""

from __future__ import annotations

import re
from typing import Protocol

import httptools

from .errors import ProtocolError
from .limits import Limits

__all__ = ["RequestHead", "RequestParser", "RequestSink"]


class RequestSink(Protocol):
    def on_request(self, head: RequestHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_request_complete(self) -> None: ...


class RequestHead:
    """One request's validated head, as handed to :meth:`RequestSink.on_request`."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query_string",
        "raw_path",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        raw_path: bytes,
        path: str,
        query_string: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        content_length: int | None,
        chunked: bool,
        upgrade: bytes | None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = path
        self.query_string = query_string
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.raw_path!r} HTTP/{self.http_version}>"


# ---------------------------------------------------------------- character classes

_ALL_BYTES = bytes(range(256))
# Request-target characters: visible ASCII except '#' (a fragment is not part of any request
# form, RFC 9112 §3.2) and '\' (not a URI character; some stacks turn it into '/', RFC 3986
# §2). llhttp already refuses controls and spaces but lets non-ASCII bytes through.
_TARGET_CHARS = bytes(c for c in range(0x21, 0x7F) if c not in b"#\\")
# Host: uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2) minus ',' (a comma means
# several merged Host values, RFC 9110 §5.3) and minus '@' and '/' (userinfo, path).
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+;=%:[]"
_HEXDIG = b"0123456789abcdefABCDEF"
_DECODED_CTL = re.compile("[\x00-\x1f\x7f]")
_OWS = b" \t"

# Fields needing a look at parse time; everything else is only lower-cased and stored.
_SPECIAL = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"sec-websocket-version")
)

_METHODS: dict[bytes, str] = {}
# Parsed request-targets of recent requests (bounded): most traffic repeats a few URLs.
_TARGETS: dict[bytes, tuple[bytes, str, bytes]] = {}
_TARGETS_MAX = 512
_TARGET_CACHEABLE = 256
_GOOD_HOSTS: set[bytes] = set()
_GOOD_HOSTS_MAX = 64

# Parser states.
_IDLE = 0  # between messages
_HEAD = 1  # request-line / header section
_BODY = 2  # header section done, body (and trailers) being read
_PAUSED = 3  # after a WebSocket handshake request: bytes are held, not parsed
_DONE = 4  # failed or detached: input is ignored


def _bad(reason: str) -> ProtocolError:
    return ProtocolError(400, reason)


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
    take them when it switches protocols, or :meth:`resume` when it answered with plain HTTP.
    After a :class:`ProtocolError` the parser ignores further input.
    """

    __slots__ = (
        "_body_limit",
        "_body_seen",
        "_chunked",
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
        "_limits",
        "_messages",
        "_on_body_sink",
        "_sink",
        "_specials",
        "_state",
        "_trailer_size",
        "_upgrade_ok",
        "_url",
        "_url_max",
    )

    def __init__(self, sink: RequestSink, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self._sink = sink
        self._on_body_sink = sink.on_body
        self._limits = limits
        self._url_max = limits.request_line
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
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._host = b""
        self._hosts = 0
        self._specials: dict[bytes, bytes] | None = None
        self._head_fed = 0
        self._body_seen = 0
        self._framing = 0
        self._trailer_size = 0
        self._upgrade_ok = False
        self._chunked = False

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Parse ``data``, calling the sink for each event (pipelined requests included)."""
        state = self._state
        if state >= _PAUSED:
            if state == _PAUSED:
                self._held += data
            return
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
                cause = exc.__context__
                if cause is None:
                    raise
                raise cause from None
            except httptools.HttpParserError as exc:
                self._state = _DONE
                raise self._translate(exc) from None
        if self._messages == messages and self._state == state:
            # No message boundary in this chunk, so all of it belongs to the current message:
            # bound what llhttp/httptools may accumulate across reads.
            if state == _HEAD:
                self._check_head_fed(len(data))
            elif state == _BODY and self._chunked:
                self._check_framing(len(data) - (self._body_seen - body_before))

    def resume(self) -> None:
        """The worker answered a WebSocket handshake with plain HTTP: parse the held bytes."""
        if self._state != _PAUSED:
            return
        held, self._held = self._held, b""
        self._state = _IDLE
        if held:
            self.feed(held)

    def detach(self) -> bytes:
        """The connection switched protocols: return the bytes received after the handshake."""
        held, self._held = self._held, b""
        self._state = _DONE
        return held

    def _check_head_fed(self, size: int) -> None:
        self._head_fed += size
        if self._head_fed > self._head_max + self._url_max:
            raise self._fail(ProtocolError(431, "request header section too large"))

    def _check_framing(self, size: int) -> None:
        self._framing += size
        if self._framing > self._limits.chunk_framing + 16 * self._body_seen:
            raise self._fail(_bad("too much chunked framing (chunk extensions or trailers)"))

    def _fail(self, exc: ProtocolError) -> ProtocolError:
        self._state = _DONE
        return exc

    def _translate(self, exc: Exception) -> ProtocolError:
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            return _bad("invalid method")
        if isinstance(exc, httptools.HttpParserInvalidURLError):
            return _bad("invalid request-target")
        version = self._hp.get_http_version()
        if version[0] not in "01":
            # e.g. the HTTP/2 connection preface "PRI * HTTP/2.0" (RFC 9113 §3.4).
            return ProtocolError(505, f"HTTP/{version} is not supported")
        return _bad(str(exc) or "malformed request")

    # ------------------------------------------------------------ httptools callbacks

    def _on_message_begin(self) -> None:
        self._messages += 1
        self._state = _HEAD
        if self._specials is not None or self._body_seen or self._chunked or self._trailer_size:
            self._reset_message()
        else:  # the common request (no body, no framing fields): reset only what it used
            self._url = b""
            self._headers = []
            self._head_size = 0
            self._hosts = 0
            self._head_fed = 0

    def _on_url(self, piece: bytes) -> None:
        url = self._url + piece
        if len(url) > self._url_max:
            raise ProtocolError(414, "request-target too long")
        self._url = url

    def _on_header(self, name: bytes, value: bytes) -> None:
        if self._state != _HEAD:
            self._on_trailer(name, value)
            return
        name = name.lower()
        # llhttp drops leading OWS but keeps trailing OWS, which is not part of the value
        # (RFC 9112 §5).
        raw = value
        value = raw.rstrip(_OWS)
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
            else:
                self._on_special(name, value, raw)

    def _on_special(self, name: bytes, value: bytes, raw: bytes) -> None:
        specials = self._specials
        if specials is None:
            specials = self._specials = {}
        if name == b"content-length" and (not raw.isdigit() or (raw[0] == 48 and len(raw) > 1)):
            # Framing gets no leniency: only plain 1*DIGIT, without sign, comma, whitespace or
            # leading zeros. Parsers disagreeing on such values is how requests get smuggled
            # (RFC 9112 §6.3 item 5, §11.2).
            raise _bad("invalid Content-Length")
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
        version = hp.get_http_version()
        if version != "1.1" and version != "1.0":
            version = _check_version(version)
        raw_method = hp.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _method_name(raw_method)
        target = _TARGETS.get(self._url)
        if target is None:
            target = _parse_target(self._url, method)
        if self._hosts != 1:
            if self._hosts > 1:
                raise _bad("more than one Host header field")
            if version == "1.1":
                raise _bad("missing Host header field")
        elif self._host not in _GOOD_HOSTS:
            _check_host(self._host)
        content_length: int | None = None
        expect_continue = False
        upgrade: bytes | None = None
        if self._specials is not None:
            content_length, expect_continue = self._check_fields(self._specials, version)
            if hp.should_upgrade():
                upgrade = self._check_upgrade(self._specials, method, content_length)
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
            )
        )

    def _check_fields(self, specials: dict[bytes, bytes], version: str) -> tuple[int | None, bool]:
        """Framing and Expect: returns (content_length, expect_continue)."""
        content_length: int | None = None
        coding = specials.get(b"transfer-encoding")
        if coding is not None:
            if version == "1.0":
                # RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding; the framing is faulty.
                raise _bad("Transfer-Encoding in an HTTP/1.0 request")
            _check_transfer_coding(coding)
            self._chunked = True
        length = specials.get(b"content-length")
        if length is not None:
            if b"," in length:
                # Same value twice still means two framings a proxy may read differently.
                raise _bad("more than one Content-Length")
            content_length = int(length)
            if self._body_limit and content_length > self._body_limit:
                raise ProtocolError(413, "request body larger than the limit")
        expect = specials.get(b"expect")
        expect_continue = False
        if expect is not None and version == "1.1":
            # RFC 9110 §10.1.1: the only expectation is 100-continue; others MAY get 417.
            # (HTTP/1.0 requests' Expect is ignored, as the RFC requires.)
            for item in expect.split(b","):
                if item.strip(_OWS).lower() != b"100-continue":
                    raise ProtocolError(417, "unsupported expectation")
            expect_continue = True
        return content_length, expect_continue

    def _check_upgrade(self, specials: dict[bytes, bytes], method: str, content_length: int | None) -> bytes | None:
        """llhttp saw ``Connection: upgrade`` + ``Upgrade``: decide whether we may switch."""
        tokens = [t.strip(_OWS).lower() for t in specials.get(b"upgrade", b"").split(b",")]
        if method == "GET" and b"websocket" in tokens:
            version = specials.get(b"sec-websocket-version")
            if version is not None and version.strip(_OWS) != b"13":
                # RFC 6455 §4.4: unsupported version -> 426 with the versions we speak.
                raise ProtocolError(426, "unsupported WebSocket version")
            self._upgrade_ok = True
            return b"websocket"
        if content_length or self._chunked:
            # llhttp does not read the body of an upgrade request; we would misparse it as
            # the next request. Refuse rather than guess.
            raise _bad("request body with an Upgrade we do not perform")
        return None

    def _on_body(self, data: bytes) -> None:
        self._body_seen += len(data)
        if self._body_limit and self._body_seen > self._body_limit:
            raise ProtocolError(413, "request body larger than the limit")
        self._on_body_sink(data)

    def _on_message_complete(self) -> None:
        self._state = _PAUSED if self._upgrade_ok else _IDLE
        self._sink.on_request_complete()


# ---------------------------------------------------------------- helpers (cold paths)


def _check_version(version: str) -> str:
    if version.startswith("1."):
        return "1.1"  # a higher HTTP/1.x minor is served as 1.1 (RFC 9112 §2.3)
    raise ProtocolError(505, f"HTTP/{version} is not supported")


def _method_name(raw: bytes) -> str:
    name = raw.decode("ascii")
    if name == "CONNECT":
        # An origin server has nothing to tunnel to (RFC 9110 §9.3.6, §15.6.2).
        raise ProtocolError(501, "CONNECT is not supported")
    if len(_METHODS) < 64:
        _METHODS[raw] = name
    return name


def _parse_target(url: bytes, method: str) -> tuple[bytes, str, bytes]:
    """Split and check a request-target: (raw_path, path, query_string)."""
    if not url or url.translate(None, _TARGET_CHARS):
        raise _bad("invalid character in request-target")
    first = url[0]
    if first == 47:  # "/": origin-form, RFC 9112 §3.2.1
        rest = url
    elif url == b"*":
        # asterisk-form is only for a server-wide OPTIONS (RFC 9112 §3.2.4).
        if method != "OPTIONS":
            raise _bad("'*' request-target is only allowed with OPTIONS")
        return b"*", "*", b""
    else:
        rest = _absolute_path(url)
    raw_path, _, query = rest.partition(b"?")
    path = _percent_decode(raw_path) if b"%" in raw_path else raw_path.decode("ascii")
    target = (raw_path, path, query)
    if len(url) <= _TARGET_CACHEABLE and len(_TARGETS) < _TARGETS_MAX:
        _TARGETS[url] = target
    return target


def _absolute_path(url: bytes) -> bytes:
    """absolute-form (RFC 9112 §3.2.2): servers MUST accept it; keep path and query."""
    lowered = url[:8].lower()
    if lowered.startswith(b"http://"):
        rest = url[7:]
    elif lowered == b"https://":
        rest = url[8:]
    else:
        raise _bad("request-target is neither origin-form nor absolute-form")
    cut = len(rest)
    for sep in (b"/", b"?"):
        index = rest.find(sep)
        if 0 <= index < cut:
            cut = index
    if cut == 0 or b"@" in rest[:cut]:
        raise _bad("invalid authority in absolute-form request-target")
    path = rest[cut:]
    if not path.startswith(b"/"):
        path = b"/" + path
    return path


def _percent_decode(raw_path: bytes) -> str:
    parts = raw_path.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        pair = part[:2]
        if len(pair) != 2 or pair.translate(None, _HEXDIG):
            raise _bad("invalid percent-encoding in path")
        out.append(bytes((int(pair, 16),)))
        out.append(part[2:])
    try:
        path = b"".join(out).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("percent-decoded path is not UTF-8") from None
    if _DECODED_CTL.search(path):
        raise _bad("control character in percent-decoded path")
    return path


def _check_host(host: bytes) -> None:
    if not host or host.translate(None, _HOST_CHARS):
        raise _bad("invalid Host header field")
    if host.startswith(b"["):
        end = host.find(b"]")
        port = host[end + 1 :] if end > 0 else b"x"
        if port and not (port[:1] == b":" and port[1:].isdigit()):
            raise _bad("invalid Host header field")
    elif host.count(b":") > 1 or host.endswith(b":") or (b":" in host and not host.rpartition(b":")[2].isdigit()):
        raise _bad("invalid Host header field")
    if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
        _GOOD_HOSTS.add(host)


def _check_transfer_coding(value: bytes) -> None:
    """RFC 9112 §6.1/§6.3/§7: only 'chunked', last and once; other codings are unknown."""
    codings = [c.strip(_OWS).lower() for c in value.split(b",")]
    codings = [c for c in codings if c]  # empty list elements are ignored (RFC 9110 §5.6.1)
    if not codings or codings[-1] != b"chunked":
        # chunked not final: the body length cannot be determined -> MUST 400 (§6.3).
        raise _bad("Transfer-Encoding does not end with chunked")
    if len(codings) > 1:
        if b"chunked" in codings[:-1]:
            raise _bad("chunked applied more than once")
        raise ProtocolError(501, "unsupported transfer coding")

"""Request checks llhttp leaves to the application (RFC 9112/9110): the parser's cold paths.

- request-line: exactly one SP between its parts (RFC 9112 §3; the parser looks at raw bytes);
- Host: exactly one on HTTP/1.1, at most one on HTTP/1.0, a plausible ``host[:port]``
  (RFC 9112 §3.2, RFC 9110 §7.2);
- version: HTTP/1.x only (1.2+ is answered as 1.1, RFC 9112 §2.3), other well-formed versions
  -> 505; a request-line without one (HTTP/0.9's "GET /") -> 400 (RFC 9112 §3);
- request-target form and characters (RFC 9112 §3.2), percent-decoding of the path;
- framing: Transfer-Encoding codings (only ``chunked``, last, once; none on HTTP/1.0),
  Content-Length as plain ``1*DIGIT``, leading zeros and OWS around it allowed, nothing else
  (RFC 9110 §8.6, §5.5; RFC 9112 §6, §11.2);
- Expect (only ``100-continue``, else 417), Upgrade (only a GET WebSocket handshake pauses
  the parser), CONNECT -> 501.

:class:`asynccluster.http.parser.RequestParser` calls these only for what it has not seen
before (a new method, request-target or Host value: it keeps the results in the worker's
:class:`~asynccluster.http.cache.RequestCaches`) or for the few fields that need a look
(framing, Expect, Upgrade). The checks are pure functions (nothing is remembered here); each
raises :class:`ProtocolError` with the status to answer.
Limits (414, 431, 413, chunk framing) are the parser's: they depend on its running counts.

Percent-decoding policy: ``path`` is the UTF-8 decoding of the percent-decoded target path.
Invalid ``%`` escapes, invalid UTF-8 and decoded control characters (``%00``, ``%0d%0a`` ...)
give 400 instead of reaching the app: ASGI apps use ``path`` for routing, file lookups and
logs, where a NUL or CRLF is an injection vector. ``raw_path`` keeps the bytes as sent.
"""

from __future__ import annotations

import re

from .errors import ProtocolError

# ---------------------------------------------------------------- character classes

# Request-target characters: visible ASCII except '#' (a fragment is not part of any request
# form, RFC 9112 §3.2) and '\' (not a URI character; some stacks turn it into '/', RFC 3986
# §2). llhttp already refuses controls and spaces but lets non-ASCII bytes through.
_TARGET_CHARS = bytes(c for c in range(0x21, 0x7F) if c not in b"#\\")
# Host: uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2) minus ',' (a comma means
# several merged Host values, RFC 9110 §5.3) and minus '@' and '/' (userinfo, path).
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+;=%:[]"
_HEXDIG = b"0123456789abcdefABCDEF"
_DECODED_CTL = re.compile("[\x00-\x1f\x7f]")
OWS = b" \t"


def bad(reason: str) -> ProtocolError:
    return ProtocolError(400, reason)


# ---------------------------------------------------------------- request-line


def request_line_version(line: bytes, method: bytes, target: bytes) -> str | None:
    """Check the spaces of the request-line that starts ``line``; "1.1"/"1.0" read from it.

    ``line`` is the read that began the request and holds its whole head; ``method`` and
    ``target`` are what llhttp parsed from it. Unless empty lines come first, ``line[size]``
    is an SP; then single SPs put the target right after it and "HTTP/" (checked by llhttp)
    right after the next one. Otherwise the request-line is scanned (empty lines before it,
    or extra spaces: 400). None: ask llhttp the version. This runs for nearly every request,
    and costs less than httptools' get_http_version().
    """
    size = len(method)
    end = size + len(target) + 2
    if line[size] != 32 or line[size + 1] == 32 or line[end] != 72:
        line_end, ended = scan_request_line(line, b"")
        if ended and not has_version(line_end):
            # llhttp also takes RTSP/ and ICE/ versions; HTTP-name is "HTTP" (RFC 9112 §2.3).
            raise no_version()
        return None
    if line[end + 5] == 49:
        minor = line[end + 7]
        if minor == 49:
            return "1.1"
        if minor == 48:
            return "1.0"
    return None


def scan_request_line(data: bytes, tail: bytes) -> tuple[bytes, bool]:
    """Check (the next piece of) a request-line: its parts are separated by exactly one SP.

    RFC 9112 §3: a recipient MAY split on any whitespace run, but lenient parsing is how
    parsers in a chain come to disagree (§3, §11.2); llhttp skips extra spaces, so the parser
    calls this with the raw bytes. ``tail`` is b"" before the request-line began (``data``
    may start with empty lines, RFC 9112 §2.2), else its last bytes so far (a double SP may
    span two reads). Returns (the request-line's last :data:`LINE_END` bytes so far, whether
    it ended in ``data``); once it ended, :func:`has_version` tells whether it had a version.
    """
    start = 0
    if not tail:
        size = len(data)
        while start < size and data[start] in (10, 13):
            start += 1
    eol = data.find(b"\n", start)
    piece = tail + (data[start:] if eol < 0 else data[start:eol])
    if b"  " in piece:
        raise bad("request-line parts must be separated by exactly one SP")
    if eol >= 0:
        return piece.rstrip(b"\r")[-LINE_END:], True
    return piece[-LINE_END - 1 :], False  # one more: the CR before a LF in the next read


# The bytes of a request-line's end that show its version: SP "HTTP/" DIGIT "." DIGIT.
LINE_END = 9
_VERSION_START = b" HTTP/"


def has_version(line_end: bytes) -> bool:
    """Does a complete request-line ending in ``line_end`` carry an HTTP-version?

    A request-target holds no SP, so " HTTP/" there is the separator and the version
    (llhttp checked its digits). Without it the line is "method SP target", HTTP/0.9's form,
    which llhttp reports as version 0.9: that is an invalid request-line (RFC 9112 §3), 400.
    """
    return line_end.startswith(_VERSION_START)


def no_version() -> ProtocolError:
    return bad("request-line has no HTTP version (HTTP/0.9 is not spoken)")


def check_version(version: str) -> str:
    """A version other than 1.1/1.0: the version to answer as, or 505.

    505 is for a well-formed HTTP-version whose major version we do not speak (RFC 9110
    §15.6.6); a request-line without a version is refused with 400 before this is reached.
    """
    if version.startswith("1."):
        return "1.1"  # a higher HTTP/1.x minor is served as 1.1 (RFC 9112 §2.3)
    raise ProtocolError(505, f"HTTP/{version} is not supported")


def method_name(raw: bytes) -> str:
    name = raw.decode("ascii")
    if name == "CONNECT":
        # An origin server has nothing to tunnel to (RFC 9110 §9.3.6, §15.6.2).
        raise ProtocolError(501, "CONNECT is not supported")
    return name


def parse_target(url: bytes, method: str) -> tuple[bytes, str, bytes]:
    """Split and check a request-target: (raw_path, path, query_string)."""
    if not url or url.translate(None, _TARGET_CHARS):
        raise bad("invalid character in request-target")
    first = url[0]
    if first == 47:  # "/": origin-form, RFC 9112 §3.2.1
        rest = url
    elif url == b"*":
        # asterisk-form is only for a server-wide OPTIONS (RFC 9112 §3.2.4).
        if method != "OPTIONS":
            raise bad("'*' request-target is only allowed with OPTIONS")
        return b"*", "*", b""
    else:
        rest = _absolute_path(url)
    raw_path, _, query = rest.partition(b"?")
    path = _percent_decode(raw_path) if b"%" in raw_path else raw_path.decode("ascii")
    return raw_path, path, query


def _absolute_path(url: bytes) -> bytes:
    """absolute-form (RFC 9112 §3.2.2): servers MUST accept it; keep path and query."""
    lowered = url[:8].lower()
    if lowered.startswith(b"http://"):
        rest = url[7:]
    elif lowered == b"https://":
        rest = url[8:]
    else:
        raise bad("request-target is neither origin-form nor absolute-form")
    cut = len(rest)
    for sep in (b"/", b"?"):
        index = rest.find(sep)
        if 0 <= index < cut:
            cut = index
    if cut == 0 or b"@" in rest[:cut]:
        raise bad("invalid authority in absolute-form request-target")
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
            raise bad("invalid percent-encoding in path")
        out.append(bytes((int(pair, 16),)))
        out.append(part[2:])
    try:
        path = b"".join(out).decode("utf-8")
    except UnicodeDecodeError:
        raise bad("percent-decoded path is not UTF-8") from None
    if _DECODED_CTL.search(path):
        raise bad("control character in percent-decoded path")
    return path


# ---------------------------------------------------------------- header fields


def check_host(host: bytes) -> None:
    """One Host value: a plausible ``uri-host [":" port]`` (RFC 9110 §7.2).

    ``port = *DIGIT`` (RFC 3986 §3.2.3): an empty port after the colon is valid ("a:").
    """
    if not host or host.translate(None, _HOST_CHARS):
        raise bad("invalid Host header field")
    if host.startswith(b"["):
        end = host.find(b"]")
        port = host[end + 1 :] if end > 0 else b"x"
        if port and not (port[:1] == b":" and _is_port(port[1:])):
            raise bad("invalid Host header field")
    elif host.count(b":") > 1 or not _is_port(host.partition(b":")[2]):
        raise bad("invalid Host header field")


def _is_port(port: bytes) -> bool:
    """RFC 3986 §3.2.3: ``port = *DIGIT`` (empty included)."""
    return not port or port.isdigit()


def check_fields(specials: dict[bytes, bytes], version: str, body_limit: int) -> tuple[int | None, bool, bool]:
    """Framing and Expect: returns (content_length, chunked, expect_continue).

    ``specials`` holds the combined values of the fields that need a look (repeated list
    fields joined with ',', RFC 9110 §5.3).
    """
    chunked = False
    coding = specials.get(b"transfer-encoding")
    if coding is not None:
        if version == "1.0":
            # RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding; the framing is faulty.
            raise bad("Transfer-Encoding in an HTTP/1.0 request")
        _check_transfer_coding(coding)
        chunked = True
    content_length: int | None = None
    length = specials.get(b"content-length")
    if length is not None:
        if b"," in length:
            # Same value twice still means two framings a proxy may read differently.
            raise bad("more than one Content-Length")
        content_length = int(length)
        if body_limit and content_length > body_limit:
            raise ProtocolError(413, "request body larger than the limit")
    expect = specials.get(b"expect")
    expect_continue = False
    if expect is not None and version == "1.1":
        # RFC 9110 §10.1.1: the only expectation is 100-continue; others MAY get 417.
        # (HTTP/1.0 requests' Expect is ignored, as the RFC requires.)
        for item in expect.split(b","):
            if item.strip(OWS).lower() != b"100-continue":
                raise ProtocolError(417, "unsupported expectation")
        expect_continue = True
    return content_length, chunked, expect_continue


def _check_transfer_coding(value: bytes) -> None:
    """RFC 9112 §6.1/§6.3/§7: only 'chunked', last and once; other codings are unknown."""
    codings = [c.strip(OWS).lower() for c in value.split(b",")]
    codings = [c for c in codings if c]  # empty list elements are ignored (RFC 9110 §5.6.1)
    if not codings or codings[-1] != b"chunked":
        # chunked not final: the body length cannot be determined -> MUST 400 (§6.3).
        raise bad("Transfer-Encoding does not end with chunked")
    if len(codings) > 1:
        if b"chunked" in codings[:-1]:
            raise bad("chunked applied more than once")
        raise ProtocolError(501, "unsupported transfer coding")


def is_websocket_upgrade(specials: dict[bytes, bytes], method: str, has_body: bool) -> bool:
    """llhttp saw ``Connection: upgrade`` + ``Upgrade``: may we switch to WebSocket?"""
    tokens = [t.strip(OWS).lower() for t in specials.get(b"upgrade", b"").split(b",")]
    if method == "GET" and b"websocket" in tokens:
        version = specials.get(b"sec-websocket-version")
        if version is not None and version.strip(OWS) != b"13":
            # RFC 6455 §4.4: unsupported version -> 426 with the versions we speak.
            raise ProtocolError(426, "unsupported WebSocket version")
        return True
    if has_body:
        # llhttp does not read the body of an upgrade request; we would misparse it as
        # the next request. Refuse rather than guess.
        raise bad("request body with an Upgrade we do not perform")
    return False


# ---------------------------------------------------------------- raw bytes


def head_end(data: bytes, at_message_start: bool) -> int:
    """Offset just past the first header section end in ``data``; -1 if there is none.

    ``at_message_start``: ``data`` begins with a request (empty lines before it are skipped,
    RFC 9112 §2.2), else it begins inside one. A header section holds no empty line, so the
    first CRLFCRLF ends it. If that terminator straddles the start of ``data`` the one found
    is a later one, or none: callers may underestimate what follows the head, never
    overestimate it.
    """
    if at_message_start and data[0] in (10, 13):
        start, size = 1, len(data)
        while start < size and data[start] in (10, 13):
            start += 1
        end = data.find(b"\r\n\r\n", start)
    else:
        end = data.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else -1

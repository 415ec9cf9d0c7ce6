"""Every Http11Probe case replayed over a real socket against the real worker server.

The cases (``../shared/conformance/http11probe-cases.json``, or ``$ASYNCCLUSTER_CONFORMANCE``)
carry the outcomes RFC 9110/9112 accept (``expected``). ``PREFERRED`` below states, per case,
the outcome the RFC prefers and why. The test fails if any outcome is outside the accepted
ones, and if any response is not valid HTTP/1.1 for h11 (a strict, independent client).
``benchmarks/conformance_score.py`` prints how many scored cases got the preferred outcome
(uvicorn: 85 of 125 "Pass" in the probe's own run).

Outcome vocabulary (as in ``expected``): a status code, ``2xx``, ``close`` (no response,
server closed), ``timeout`` (no response, connection left open), ``!101`` (anything but a
protocol switch), ``2xx + close`` (a 2xx, then the server closes).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import pytest

REPO = Path(__file__).resolve().parent.parent
CASES_FILE = Path(
    os.environ.get("ASYNCCLUSTER_CONFORMANCE") or REPO.parent / "shared" / "conformance" / "http11probe-cases.json"
)
HOST = b"localhost:8080"
FIRST_BYTE_DEADLINE = 3.0  # no response within this: "timeout" (the server's header timeout is longer)
CLOSE_DEADLINE = 0.5  # after a complete response: did the server close? (the probe waits 50 ms)

# ---------------------------------------------------------------- the RFC's preferred outcomes

P400 = "400"
PREFERRED: dict[str, tuple[str, str]] = {
    "COMP-BASELINE": ("2xx", "a valid request"),
    "RFC9112-2.2-BARE-LF-REQUEST-LINE": (
        P400,
        "9112 §2.2: a bare LF MAY be accepted; rejecting avoids parser disagreement",
    ),
    "RFC9112-2.2-BARE-LF-HEADER": (P400, "9112 §2.2: as above, in a field line"),
    "RFC9112-5.1-OBS-FOLD": (P400, "9112 §5.2: obs-fold in a request MUST be rejected (or replaced)"),
    "RFC9110-5.6.2-SP-BEFORE-COLON": (P400, "9112 §5.1: whitespace before the colon MUST be rejected with 400"),
    "RFC9112-3-MULTI-SP-REQUEST-LINE": (P400, "9112 §3: invalid request-line SHOULD get 400"),
    "RFC9112-7.1-MISSING-HOST": (P400, "9112 §3.2: an HTTP/1.1 request without Host MUST get 400"),
    "RFC9112-2.3-INVALID-VERSION": ("505", "9110 §15.6.6: major version not supported"),
    "RFC9112-5-EMPTY-HEADER-NAME": (P400, "9110 §5.1: a field name is a non-empty token"),
    "RFC9112-3-CR-ONLY-LINE-ENDING": (P400, "9112 §2.2: a bare CR MUST be rejected or replaced"),
    "RFC9112-3-MISSING-TARGET": (P400, "9112 §3: no request-target"),
    "RFC9112-3.2-FRAGMENT-IN-TARGET": (P400, "9112 §3.2: a fragment is not part of origin-form"),
    "RFC9112-2.3-HTTP09-REQUEST": (P400, "9112 §3: 'GET /' has no HTTP-version: an invalid request-line, 400 at once"),
    "RFC9112-5-INVALID-HEADER-NAME": (P400, "9110 §5.1: field name must be a token"),
    "RFC9112-5-HEADER-NO-COLON": (P400, "9112 §5: a field line needs a colon"),
    "RFC9110-5.4-DUPLICATE-HOST": (P400, "9112 §3.2: more than one Host MUST get 400"),
    "RFC9112-6.1-CL-NON-NUMERIC": (P400, "9112 §6.3: invalid Content-Length MUST get 400"),
    "RFC9112-6.1-CL-PLUS-SIGN": (P400, "9110 §8.6: Content-Length is 1*DIGIT"),
    "COMP-WHITESPACE-BEFORE-HEADERS": (P400, "9112 §2.2: whitespace before the first field MUST be rejected"),
    "COMP-DUPLICATE-HOST-SAME": (P400, "9112 §3.2: more than one Host, even identical"),
    "COMP-HOST-WITH-USERINFO": (P400, "9110 §7.2: Host is uri-host[:port], no userinfo"),
    "COMP-HOST-WITH-PATH": (P400, "9110 §7.2: Host has no path"),
    "COMP-ASTERISK-WITH-GET": (P400, "9112 §3.2.4: asterisk-form only for OPTIONS"),
    "COMP-OPTIONS-STAR": ("2xx", "9112 §3.2.4: OPTIONS * is valid"),
    "COMP-UNKNOWN-TE-501": (P400, "9112 §6.3: chunked not final MUST get 400 (501 is the SHOULD of §6.1)"),
    "COMP-LEADING-CRLF": ("2xx", "9112 §2.2: a server SHOULD ignore an empty line before the request (probe: 400)"),
    "COMP-ABSOLUTE-FORM": ("2xx", "9112 §3.2.2: a server MUST accept absolute-form"),
    "COMP-METHOD-CASE": (P400, "9110 §9.1: methods are case-sensitive; 'get' is not GET"),
    "COMP-POST-CL-BODY": ("2xx", "9112 §6.2: a well-framed body"),
    "COMP-POST-CL-ZERO": ("2xx", "9112 §6.2: an empty body"),
    "COMP-POST-NO-CL-NO-TE": ("2xx", "9112 §6.3: no framing means no body"),
    "COMP-POST-CL-UNDERSEND": ("400/close/timeout", "9112 §6.2: wait for the announced body"),
    "COMP-CHUNKED-BODY": ("2xx", "9112 §7.1: valid chunked body"),
    "COMP-CHUNKED-MULTI": ("2xx", "9112 §7.1: valid chunked body"),
    "COMP-CHUNKED-EMPTY": ("2xx", "9112 §7.1: valid empty chunked body"),
    "COMP-CHUNKED-NO-FINAL": ("400/close/timeout", "9112 §7.1: wait for the last chunk"),
    "COMP-UPGRADE-POST": ("!101", "6455 §4.1: the handshake is a GET"),
    "COMP-UPGRADE-MISSING-CONN": ("!101", "9110 §7.8: Upgrade needs Connection: upgrade"),
    "COMP-UPGRADE-UNKNOWN": ("!101", "9110 §7.8: never switch to an unknown protocol"),
    "COMP-METHOD-CONNECT": ("501", "9110 §9.3.6: an origin server does not tunnel"),
    "COMP-EXPECT-UNKNOWN": ("417", "9110 §10.1.1: unknown expectation MAY get 417"),
    "COMP-GET-WITH-CL-BODY": ("2xx", "9110 §9.3.1: a GET body has no semantics but is well framed"),
    "COMP-CHUNKED-EXTENSION": ("2xx", "9112 §7.1.1: unknown chunk extensions are ignored"),
    "COMP-UPGRADE-INVALID-VER": ("426", "6455 §4.4: unsupported version -> 426 + Sec-WebSocket-Version"),
    "COMP-METHOD-TRACE": ("2xx", "9110 §9.3.8: TRACE is the app's to allow or refuse"),
    "COMP-HOST-EMPTY-VALUE": (P400, "9110 §7.2: an origin-form request needs an authority"),
    "COMP-REQUEST-LINE-TAB": (P400, "9112 §3: request-line separators are single SP"),
    "COMP-VERSION-MISSING-MINOR": (P400, "9112 §2.3: HTTP-version is HTTP/DIGIT.DIGIT"),
    "COMP-VERSION-LEADING-ZEROS": (P400, "9112 §2.3: one digit each"),
    "COMP-VERSION-WHITESPACE": (P400, "9112 §2.3: no whitespace in HTTP-version"),
    "COMP-CONNECTION-CLOSE": ("2xx + close", "9112 §9.6: close after responding to Connection: close"),
    "COMP-HTTP10-DEFAULT-CLOSE": ("2xx + close", "9112 §9.3: HTTP/1.0 without keep-alive closes"),
    "COMP-HTTP10-NO-HOST": ("2xx", "9112 §3.2: Host is only required in HTTP/1.1"),
    "COMP-HTTP12-VERSION": ("2xx", "9112 §2.3: a higher 1.x minor is served as 1.1"),
    "COMP-TRACE-WITH-BODY": ("2xx", "9110 §9.3.8: app's decision; the framing is valid"),
    "COMP-CHUNKED-TRAILER-VALID": ("2xx", "9112 §7.1.2: trailers are allowed"),
    "COMP-CHUNKED-HEX-UPPERCASE": ("2xx", "9112 §7.1: chunk-size is HEXDIG, any case"),
    "SMUG-CL-TE-BOTH": (P400, "9112 §6.1: MAY reject CL+TE; rejecting ends the ambiguity"),
    "SMUG-DUPLICATE-CL": (P400, "9110 §8.6: differing Content-Lengths MUST get 400"),
    "SMUG-CL-LEADING-ZEROS": ("2xx", "9110 §8.6: Content-Length = 1*DIGIT; '005' is decimal 5 (issue 8 item 5)"),
    "SMUG-TE-XCHUNKED": (P400, "9112 §6.1: unknown coding, CL present"),
    "SMUG-TE-TRAILING-SPACE": (P400, "9112 §6.1: CL+TE"),
    "SMUG-TE-SP-BEFORE-COLON": (P400, "9112 §5.1: whitespace before colon"),
    "SMUG-CL-NEGATIVE": (P400, "9110 §8.6: 1*DIGIT"),
    "SMUG-CLTE-PIPELINE": (P400, "9112 §6.1: CL+TE"),
    "SMUG-TECL-PIPELINE": (P400, "9112 §6.1: CL+TE"),
    "SMUG-CL-TRAILING-SPACE": ("2xx", "9110 §5.5: trailing OWS is not part of the field value (issue 8 item 5)"),
    "SMUG-TE-DOUBLE-CHUNKED": (P400, "9112 §7: chunked MUST NOT be applied twice"),
    "SMUG-CL-EXTRA-LEADING-SP": ("2xx", "9110 §5.5: leading OWS is not part of the value (probe: 400)"),
    "SMUG-TE-CASE-MISMATCH": (P400, "9112 §6.1: CL+TE"),
    "SMUG-CL-COMMA-DIFFERENT": (P400, "9110 §8.6: differing values MUST get 400"),
    "SMUG-TE-NOT-FINAL-CHUNKED": (P400, "9112 §6.3: chunked not final MUST get 400"),
    "SMUG-TE-HTTP10": (P400, "9112 §6.1: TE in HTTP/1.0 is faulty framing"),
    "SMUG-CHUNK-BARE-SEMICOLON": (P400, "9112 §7.1.1: chunk-ext needs a name"),
    "SMUG-BARE-CR-HEADER-VALUE": (P400, "9112 §2.2: bare CR"),
    "SMUG-CL-OCTAL": (P400, "9110 §8.6: 1*DIGIT"),
    "SMUG-CHUNK-UNDERSCORE": (P400, "9112 §7.1: chunk-size is 1*HEXDIG"),
    "SMUG-TE-EMPTY-VALUE": (P400, "9112 §6.1: empty Transfer-Encoding"),
    "SMUG-TE-LEADING-COMMA": (P400, "9112 §6.1: CL+TE"),
    "SMUG-TE-DUPLICATE-HEADERS": (P400, "9112 §6.1: identity is not a coding; CL+TE"),
    "SMUG-CHUNK-HEX-PREFIX": (P400, "9112 §7.1: no 0x prefix"),
    "SMUG-CL-HEX-PREFIX": (P400, "9110 §8.6: 1*DIGIT"),
    "SMUG-CL-INTERNAL-SPACE": (P400, "9110 §8.6: 1*DIGIT"),
    "SMUG-CHUNK-LEADING-SP": (P400, "9112 §7.1: no whitespace before chunk-size"),
    "SMUG-CHUNK-MISSING-TRAILING-CRLF": (P400, "9112 §7.1: chunk-data ends with CRLF"),
    "SMUG-CHUNK-EXT-LF": (P400, "9112 §2.2: bare LF in chunk framing"),
    "SMUG-CHUNK-SPILL": (P400, "9112 §7.1: more data than the chunk-size"),
    "SMUG-CHUNK-LF-TERM": (P400, "9112 §2.2: bare LF in chunk framing"),
    "SMUG-CHUNK-EXT-CTRL": (P400, "9112 §7.1.1: chunk-ext is tokens"),
    "SMUG-CHUNK-EXT-CR": (P400, "9112 §2.2: bare CR"),
    "SMUG-TE-VTAB": (P400, "9110 §5.5: CTL in a field value"),
    "SMUG-TE-FORMFEED": (P400, "9110 §5.5: CTL in a field value"),
    "SMUG-TE-NULL": (P400, "9110 §5.5: NUL in a field value"),
    "SMUG-CHUNK-LF-TRAILER": (P400, "9112 §2.2: bare LF in chunk framing"),
    "SMUG-TE-IDENTITY": (P400, "9112 §7: identity is not a transfer coding"),
    "SMUG-CHUNK-NEGATIVE": (P400, "9112 §7.1: chunk-size is 1*HEXDIG"),
    "SMUG-TRANSFER_ENCODING": ("2xx", "9110 §5.1: Transfer_Encoding is a different field; CL frames"),
    "SMUG-CL-COMMA-SAME": (P400, "9110 §8.6: MAY accept identical values; refusing ends ambiguity"),
    "SMUG-CHUNKED-WITH-PARAMS": (P400, "9112 §7: chunked has no parameters"),
    "SMUG-EXPECT-100-CL": ("2xx", "9110 §10.1.1: 100-continue is honoured"),
    "SMUG-TRAILER-CL": (P400, "9110 §6.5.1: framing fields in trailers"),
    "SMUG-TRAILER-TE": (P400, "9110 §6.5.1: framing fields in trailers"),
    "SMUG-TRAILER-HOST": ("2xx", "9110 §6.5.2: trailers are discarded, never merged"),
    "SMUG-TRAILER-AUTH": ("2xx", "9110 §6.5.2: trailers are discarded, never merged"),
    "SMUG-HEAD-CL-BODY": ("2xx", "9112 §6.2: the request body is framed by Content-Length"),
    "SMUG-OPTIONS-CL-BODY": ("2xx", "9112 §6.2: the request body is framed by Content-Length"),
    "SMUG-CL-UNDERSCORE": (P400, "9110 §8.6: 1*DIGIT"),
    "SMUG-CL-NEGATIVE-ZERO": (P400, "9110 §8.6: 1*DIGIT"),
    "SMUG-CL-DOUBLE-ZERO": ("2xx", "9110 §8.6: 1*DIGIT; '00' is 0 (issue 8 item 5)"),
    "SMUG-CL-LEADING-ZEROS-OCTAL": (
        "2xx",
        "9110 §8.6: 1*DIGIT is decimal: '0200' is 200, never octal (issue 8 item 5)",
    ),
    "SMUG-TE-OBS-FOLD": (P400, "9112 §5.2: obs-fold"),
    "SMUG-TE-TRAILING-COMMA": (P400, "9112 §6.1: CL+TE"),
    "SMUG-TE-TAB-BEFORE-VALUE": (P400, "9112 §6.1: CL+TE"),
    "SMUG-ABSOLUTE-URI-HOST-MISMATCH": ("2xx", "9112 §3.2.2: the target's authority wins over Host"),
    "SMUG-MULTIPLE-HOST-COMMA": (P400, "9110 §7.2: Host is a single value"),
    "SMUG-CHUNK-BARE-CR-TERM": (P400, "9112 §2.2: bare CR"),
    "SMUG-TRAILER-CONTENT-TYPE": ("2xx", "9110 §6.5.2: trailers are discarded, never merged"),
    "MAL-BINARY-GARBAGE": ("400/close/timeout", "not HTTP"),
    "MAL-LONG-URL": ("414", "9110 §15.5.15: target longer than the server will parse"),
    "MAL-LONG-HEADER-VALUE": ("431", "6585 §5: header section too large"),
    "MAL-MANY-HEADERS": ("431", "6585 §5: too many fields"),
    "MAL-NUL-IN-URL": (P400, "3986: NUL is not a URI character"),
    "MAL-CONTROL-CHARS-HEADER": (P400, "9110 §5.5: CTL in a field value"),
    "MAL-INCOMPLETE-REQUEST": ("400/close/timeout", "incomplete head: wait (then 408)"),
    "MAL-EMPTY-REQUEST": ("400/close/timeout", "nothing sent: wait (then close)"),
    "MAL-LONG-HEADER-NAME": ("431", "6585 §5: header section too large"),
    "MAL-LONG-METHOD": (P400, "9110 §9.1: not a method"),
    "MAL-NON-ASCII-HEADER-NAME": (P400, "9110 §5.1: field name must be a token"),
    "MAL-NON-ASCII-URL": (P400, "3986 §2: non-ASCII must be percent-encoded"),
    "MAL-CL-OVERFLOW": (P400, "9110 §8.6: a length we cannot represent is invalid"),
    "MAL-WHITESPACE-ONLY-LINE": (P400, "9112 §3: not a request-line"),
    "MAL-NUL-IN-HEADER-VALUE": (P400, "9110 §5.5: NUL in a field value"),
    "MAL-CHUNK-SIZE-OVERFLOW": (P400, "9112 §7.1: chunk-size overflow"),
    "MAL-H2-PREFACE": ("505", "9113 §3.4: h2 preface to an HTTP/1.1-only server"),
    "MAL-CL-EMPTY": (P400, "9110 §8.6: empty Content-Length"),
    "MAL-CL-TAB-BEFORE-VALUE": ("2xx", "9110 §5.5: leading OWS (HTAB) is not part of the value (probe: 400)"),
    "MAL-URL-BACKSLASH": (P400, "3986 §2: '\\' is not a URI character"),
    "MAL-URL-OVERLONG-UTF8": (P400, "3986 §2 + RFC 3629: raw non-ASCII, and not valid UTF-8"),
    "MAL-URL-PERCENT-NULL": (P400, "decoded path with NUL: refused before it reaches the app"),
    "MAL-URL-PERCENT-CRLF": (P400, "decoded path with CR/LF: refused before it reaches the app"),
    "MAL-CHUNK-EXT-64K": (P400, "9112 §7.1.1: a server ought to limit chunk extension length"),
    "MAL-RANGE-OVERLAPPING": ("2xx", "9110 §14.2: Range is the app's to honour or ignore"),
    "MAL-POST-CL-HUGE-NO-BODY": ("400/close/timeout", "9112 §6.2: wait for the body; nothing preallocated"),
}


# ---------------------------------------------------------------- cases and payloads


def _request(head: bytes, body: bytes = b"") -> bytes:
    return head + b"\r\nHost: " + HOST + b"\r\n\r\n" + body


# Cases whose stored rawRequest is truncated at 8 KiB or lost non-ASCII bytes to '?': rebuilt
# the way Http11Probe builds them (checked against the stored prefix in _payload()).
REBUILT: dict[str, Callable[[], bytes]] = {
    "MAL-LONG-URL": lambda: _request(b"GET /" + b"A" * 100_000 + b" HTTP/1.1"),
    "MAL-LONG-HEADER-VALUE": lambda: _request(b"GET / HTTP/1.1").replace(
        b"\r\n\r\n", b"\r\nX-Big: " + b"B" * 100_000 + b"\r\n\r\n"
    ),
    "MAL-MANY-HEADERS": lambda: _request(b"GET / HTTP/1.1").replace(
        b"\r\n\r\n", b"\r\n" + b"".join(b"X-H-%d: value\r\n" % i for i in range(10_000)) + b"\r\n"
    ),
    "MAL-LONG-HEADER-NAME": lambda: _request(b"GET / HTTP/1.1").replace(
        b"\r\n\r\n", b"\r\n" + b"A" * 100_000 + b": val\r\n\r\n"
    ),
    "MAL-LONG-METHOD": lambda: _request(b"A" * 100_000 + b" / HTTP/1.1"),
    "MAL-CHUNK-EXT-64K": lambda: (
        b"POST / HTTP/1.1\r\nHost: " + HOST + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=" + b"a" * 65_536 + b"\r\nhello\r\n0\r\n\r\n"
    ),
    "MAL-NON-ASCII-HEADER-NAME": lambda: _request(b"GET / HTTP/1.1").replace(
        b"\r\n\r\n", b"\r\nX-T\xc3\xabst: value\r\n\r\n"
    ),
    "MAL-NON-ASCII-URL": lambda: _request(b"GET /caf\xc3\xa9 HTTP/1.1"),
    "MAL-URL-OVERLONG-UTF8": lambda: _request(b"GET /\xc0\xaf HTTP/1.1"),
    "MAL-CONTROL-CHARS-HEADER": lambda: _request(b"GET / HTTP/1.1").replace(
        b"\r\n\r\n", b"\r\nX-Test: abc\x07\x08\x0bdef\r\n\r\n"
    ),
}


def load_cases() -> list[dict[str, Any]]:
    with CASES_FILE.open(encoding="utf-8") as handle:
        cases: list[dict[str, Any]] = json.load(handle)["cases"]
    return cases


def payload(case: dict[str, Any]) -> bytes:
    stored = case["rawRequest"].encode("latin-1")
    build = REBUILT.get(case["id"])
    if build is None:
        return stored
    rebuilt = build()
    known = stored.split(b"?")[0] if b"?" in stored else stored[:8192]
    assert rebuilt.startswith(known), f"{case['id']}: rebuilt payload does not match the stored one"
    return rebuilt


# ---------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    status: int | None  # first response's status; None: no response
    closed: bool  # the server closed the connection (after its response, if any)
    body: bytes = b""

    def describe(self) -> str:
        if self.status is None:
            return "close" if self.closed else "timeout"
        return f"{self.status}{' + close' if self.closed else ''}"


def matches(outcome: Outcome, spec: str) -> bool:
    """Is ``outcome`` one of the outcomes ``spec`` (an ``expected`` string) lists?"""
    spec = re.sub(r"\((pass|warn)\)", "", spec)
    for alternative in re.split(r",|\bor\b", spec):
        alternative = alternative.strip()
        if alternative == "2xx + close":
            if outcome.status is not None and 200 <= outcome.status < 300 and outcome.closed:
                return True
            continue
        for token in alternative.split("/"):
            if _token_matches(outcome, token.strip()):
                return True
    return False


def _token_matches(outcome: Outcome, token: str) -> bool:
    status = outcome.status
    if token == "close":
        return status is None and outcome.closed
    if token == "timeout":
        return status is None and not outcome.closed
    if token == "!101":
        return status != 101 and (status is not None or outcome.closed)
    if token == "2xx":
        return status is not None and 200 <= status < 300
    if token.isdigit():
        return status == int(token)
    raise AssertionError(f"unknown outcome token {token!r}")


# ---------------------------------------------------------------- the server and the client


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Like the probe's reference servers: POST bodies are echoed, everything else gets 'OK'."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    content = body if scope["method"] in ("POST", "PUT", "PATCH") else b"OK"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(content))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def check_with_h11(case_id: str, method: bytes, data: bytes) -> tuple[int | None, bytes, bool]:
    """Parse every response in ``data`` with h11; return (first status, first body, complete)."""
    first: tuple[int | None, bytes, bool] = (None, b"", False)
    rest = data
    index = 0
    while rest:
        client = h11.Connection(h11.CLIENT)
        name = method.decode("ascii") if index == 0 and method in (b"HEAD", b"GET", b"POST") else "GET"
        client.send(h11.Request(method=name, target="/", headers=[("host", "localhost")]))
        client.send(h11.EndOfMessage())
        client.receive_data(rest)
        status: int | None = None
        body = b""
        complete = False
        while True:
            try:
                event = client.next_event()
            except h11.RemoteProtocolError as exc:
                raise AssertionError(f"{case_id}: h11 rejects the response: {exc}\n{data[:400]!r}") from exc
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                complete = True
                break
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                break  # NEED_DATA: a close-delimited body, or an incomplete response
        if index == 0:
            first = (status, body, complete)
        if not complete:
            break
        rest = client.trailing_data[0]
        index += 1
    return first


async def replay(port: int, case: dict[str, Any]) -> Outcome:
    raw = payload(case)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b""
    closed = False
    try:
        if raw:
            writer.write(raw)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIRST_BYTE_DEADLINE
        method = raw.split(b" ", 1)[0]
        while True:
            status, _, complete = check_with_h11(case["id"], method, data) if data else (None, b"", False)
            if complete:
                # A full response: give the server a moment to close (it should right away).
                deadline = min(deadline, loop.time() + CLOSE_DEADLINE)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except asyncio.TimeoutError:
                break
            except ConnectionError:
                closed = True  # e.g. RST after the server closed with our unread bytes pending
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    status, body, _ = check_with_h11(case["id"], raw.split(b" ", 1)[0], data) if data else (None, b"", False)
    return Outcome(status, closed, body)


async def run_cases(cases: list[dict[str, Any]]) -> dict[str, Outcome]:
    """Start a real worker server on 127.0.0.1 and replay every case on its own connection."""
    from asynccluster.config import Config
    from asynccluster.worker.server import Server

    # Long header timeout: an incomplete request must read as "timeout" (the probe's read
    # timeout is shorter than any server's header timeout), not as a 408.
    config = Config(app="tests:echo", lifespan="off", access_log=False, header_timeout=60.0)
    server = Server(config, echo_app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    await server.startup()
    await server.start_serving([sock])
    try:
        outcomes = await asyncio.gather(*(replay(port, case) for case in cases))
    finally:
        await server.drain(1.0)
        await server.shutdown()
        sock.close()
    return {case["id"]: outcome for case, outcome in zip(cases, outcomes, strict=True)}


def score(cases: list[dict[str, Any]], outcomes: dict[str, Outcome]) -> tuple[int, int, list[str]]:
    """(preferred, scored, ids of scored cases that missed the preferred outcome)."""
    scored = [case for case in cases if case["scored"]]
    missed = [case["id"] for case in scored if not matches(outcomes[case["id"]], PREFERRED[case["id"]][0])]
    return len(scored) - len(missed), len(scored), missed


# ---------------------------------------------------------------- the tests

pytestmark = pytest.mark.skipif(not CASES_FILE.exists(), reason=f"conformance cases not found at {CASES_FILE}")


def test_table_covers_every_case_and_is_consistent() -> None:
    cases = load_cases()
    assert sorted(PREFERRED) == sorted(case["id"] for case in cases)
    for case in cases:
        preferred = PREFERRED[case["id"]][0]
        # The preferred outcome must itself be accepted: check it on a synthetic outcome.
        probes = [Outcome(None, True), Outcome(None, False)] + [
            Outcome(code, closed) for code in (200, 400, 414, 417, 426, 431, 501, 505) for closed in (False, True)
        ]
        assert any(matches(o, preferred) for o in probes), case["id"]
        assert all(matches(o, case["expected"]) for o in probes if matches(o, preferred)), case["id"]


async def test_every_case_within_accepted_outcomes() -> None:
    cases = load_cases()
    outcomes = await run_cases(cases)
    outside = [
        f"{case['id']}: got {outcomes[case['id']].describe()}, accepted {case['expected']!r}"
        for case in cases
        if not matches(outcomes[case["id"]], case["expected"])
    ]
    assert not outside, "\n".join(outside)
    # The echo cases prove the body reached the app intact.
    assert outcomes["COMP-CHUNKED-MULTI"].body == b"hello world"
    assert outcomes["COMP-POST-CL-BODY"].body == b"hello"
    preferred, total, _ = score(cases, outcomes)
    assert preferred > 85, f"only {preferred}/{total} preferred outcomes (uvicorn: 85)"

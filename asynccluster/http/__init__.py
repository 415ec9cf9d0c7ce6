"""Sans-IO HTTP/1.1: bytes in -> calls out; response parts in -> bytes out.

No asyncio, no sockets, nothing else from the package (tests/test_architecture.py holds
this). httptools (llhttp) sits behind one adapter, :class:`RequestParser`.

Contract with the worker (asynccluster/worker/protocol.py), fixed so both sides can be
built in parallel:

parser.py
    class RequestParser:
        def __init__(self, sink: RequestSink, limits: Limits) -> None
        def feed(self, data: bytes) -> None
            # Parses as much as ``data`` holds, calling the sink for every event, pipelined
            # requests included. Raises ProtocolError on invalid or over-limit input; the
            # connection must then be answered with error_response(exc.status) and closed.
        def detach(self) -> bytes / def resume(self) -> None
            # After a GET WebSocket handshake (head.upgrade == b"websocket") the parser holds
            # later bytes unparsed: detach() returns them when switching protocols, resume()
            # parses them as HTTP when the app answered without switching. Other Upgrade
            # requests are plain requests (upgrade None).
    class RequestSink(typing.Protocol):
        def on_request(self, head: RequestHead) -> None     # header section complete, validated
        def on_body(self, data: bytes) -> None               # a piece of the (de-chunked) body
        def on_request_complete(self) -> None                # the whole message was read
    class RequestHead (__slots__): method: str, raw_path: bytes, path: str (percent-decoded,
        UTF-8), query_string: bytes, http_version: str ("1.1" or "1.0"),
        headers: list[tuple[bytes, bytes]] (names lower-cased, order and duplicates kept),
        keep_alive: bool, expect_continue: bool, content_length: int | None, chunked: bool,
        upgrade: bytes | None, proxied: bool (a Forwarded/X-Forwarded-* field is present)
errors.py
    class ProtocolError(Exception): status: int, reason: str
limits.py
    @dataclass(frozen=True, slots=True) class Limits: request_line, header_fields,
        header_size, body (0 = none), chunk_framing. Limits.from_config(config) lives in the worker side,
        so http/ need not import config (it may: config has no asyncio).
response.py
    def status_line(status: int, http_version: str = "1.1") -> bytes      # pre-encoded
    class ResponseWriter(server): start(status, headers, *, head_request, http_version,
        keep_alive, date) -> head bytes; body(data) -> framed bytes; end() -> b"" or
        LAST_CHUNK; attributes keep_alive, chunked, no_body, remaining. It chooses framing (Content-Length given and
        enforced, else chunked on 1.1, else close-delimited on 1.0; no body for HEAD, 1xx,
        204, 304), validate app headers (ResponseError for the app's mistakes), add
        date/server/connection headers.
    def encode_chunk(data: bytes) -> bytes ; LAST_CHUNK: bytes
    def error_response(status: int, *, server_header: bytes | None, date: bytes | None) -> bytes
        # a complete canned response with Connection: close (400, 408, 413, 414, 431, 500,
        # 503, 505 ...)
    def http_date(timestamp: float) -> bytes    # IMF-fixdate (RFC 9110 §5.6.7)
    def date_header(timestamp) -> bytes / server_header(value) -> bytes   # whole field lines
proxy.py
    class TrustedProxies: from a list of IPs/CIDRs ("*" = all); trusts(host) / ``in``;
        resolve(headers, client, scheme) -> (client, scheme) from X-Forwarded-For/-Proto or Forwarded (RFC 7239),
        only when the peer is trusted.
"""

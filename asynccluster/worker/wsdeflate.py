"""permessage-deflate (RFC 7692) for the WebSocket server: negotiation and the codec. No I/O.

Negotiation (§5, §7.1): the client offers one or more ``permessage-deflate`` configurations
in ``Sec-WebSocket-Extensions``; the server takes the first one it can honour and answers
with the parameters in force:

- ``server_no_context_takeover``: the client asks us to reset our compressor after each
  message; honoured. We never ask it ourselves (keeping the context compresses better).
- ``client_no_context_takeover``: the client will reset its compressor; echoed, and we then
  reset our decompressor per message too (less memory, same result).
- ``server_max_window_bits=N`` (8-15): our compressor's window is at most N, and at most
  :data:`SERVER_WINDOW_BITS` (12) in any case, answered as ``server_max_window_bits=12`` (§7.1.2.1
  lets the answer add it): with zlib's ``memLevel`` 5 a compressor then costs ~20 KiB per
  connection instead of ~256 KiB, for a few percent of ratio (the ``websockets`` library's
  defaults, hence uvicorn's). zlib cannot make raw deflate streams with an 8-bit window, so
  an offer with 8 is declined (the next offer, if any, is tried; else no compression).
- ``client_max_window_bits[=N]``: the client's window. Our decompressor's 15-bit window
  reads any smaller window, so a value is accepted and echoed, and a bare offer is left out
  of the answer (the client then uses 15, §7.1.2.2).

Codec (§7.2): a compressed message is one raw deflate stream flushed with Z_SYNC_FLUSH minus
its final ``00 00 ff ff``; the receiver appends those four bytes before inflating. Inflating
is bounded by ``--ws-max-size`` (a small message that inflates past it is a 1009, not a
zip bomb). Undecodable data is a 1007 (the payload is not what the extension promised).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from asynccluster.worker.wsframes import WebSocketError

EXTENSION = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: removed after compressing, appended before inflating
COMPRESSION_LEVEL = 6  # zlib's default: most of level 9's ratio at a fraction of its CPU
SERVER_WINDOW_BITS = 12  # our compressor's largest window (see above: memory per connection)
MEM_LEVEL = 5


@dataclass(frozen=True)
class DeflateParams:
    """The parameters in force on one connection (what the server answered)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = SERVER_WINDOW_BITS
    client_max_window_bits: int | None = None  # None: not in the answer (the client uses 15)

    def header(self) -> bytes:
        """The Sec-WebSocket-Extensions value of the answer."""
        parts = [EXTENSION]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts).encode("ascii")


def negotiate(headers: list[tuple[bytes, bytes]]) -> DeflateParams | None:
    """The first ``permessage-deflate`` offer we can honour, or None (no compression)."""
    for name, value in headers:
        if name != b"sec-websocket-extensions":
            continue
        for offer in value.decode("latin-1").split(","):
            params = _accept_offer(offer)
            if params is not None:
                return params
    return None


def _accept_offer(offer: str) -> DeflateParams | None:
    items = [item.strip() for item in offer.split(";")]
    if items[0].lower() != EXTENSION:
        return None
    seen: set[str] = set()
    server_reset = client_reset = False
    server_bits = SERVER_WINDOW_BITS
    client_bits: int | None = None
    for item in items[1:]:
        if not item:
            continue
        key, _, raw = item.partition("=")
        key, raw = key.strip().lower(), raw.strip().strip('"')
        if key in seen:
            return None  # §7: a parameter given twice makes the offer invalid
        seen.add(key)
        if key == "server_no_context_takeover" and not raw:
            server_reset = True
        elif key == "client_no_context_takeover" and not raw:
            client_reset = True
        elif key == "server_max_window_bits":
            bits = _window_bits(raw)
            if bits is None or bits == 8:  # invalid, or a window zlib cannot compress with
                return None
            server_bits = min(bits, SERVER_WINDOW_BITS)
        elif key == "client_max_window_bits":
            if raw:
                client_bits = _window_bits(raw)
                if client_bits is None:
                    return None
        else:
            return None  # an unknown parameter, or a value where none is allowed
    return DeflateParams(server_reset, client_reset, server_bits, client_bits)


def _window_bits(raw: str) -> int | None:
    if not raw.isdigit() or (len(raw) > 1 and raw.startswith("0")):
        return None
    bits = int(raw)
    return bits if 8 <= bits <= 15 else None


class PerMessageDeflate:
    """One connection's compressor and decompressor (RFC 7692 §7.2)."""

    __slots__ = ("_compressor", "_decompressor", "max_size", "params")

    def __init__(self, params: DeflateParams, max_size: int) -> None:
        self.params = params
        self.max_size = max_size  # bytes of one inflated message (--ws-max-size)
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, payload: bytes) -> bytes:
        """One message's payload, compressed (the frame gets RSV1)."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                COMPRESSION_LEVEL, zlib.DEFLATED, -self.params.server_max_window_bits, MEM_LEVEL
            )
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        # Reused for the next message unless the client asked for a fresh context each time.
        self._compressor = None if self.params.server_no_context_takeover else compressor
        if data.endswith(TAIL):
            data = data[:-4]
        return data or b"\x00"  # §7.2.3.6: an empty message is one empty stored block

    def decompress(self, payload: bytes) -> bytes:
        """One message's inflated payload; WebSocketError 1009 past max_size, 1007 if corrupt."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(-15)
        try:
            data = decompressor.decompress(payload + TAIL, self.max_size + 1)
        except zlib.error as exc:
            raise WebSocketError(1007, f"invalid compressed data ({exc})") from None
        if len(data) > self.max_size:
            raise WebSocketError(1009, "message too big (once inflated)")
        self._decompressor = None if self.params.client_no_context_takeover else decompressor
        return data

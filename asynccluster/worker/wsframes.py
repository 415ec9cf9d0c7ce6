"""RFC 6455 framing, sans-IO: client frames in (validated, unmasked, reassembled), server frames out.

Used by :mod:`asynccluster.worker.websocket`. Violations raise :class:`WebSocketError` with the
close code to send (RFC 6455 §7.4.1): 1002 protocol error, 1009 message too big.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_MESSAGE = 16 * 1024 * 1024  # bytes of one (reassembled) message; larger: close 1009

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# Close codes a peer may send (RFC 6455 §7.4.1, §7.4.2, and 1012-1014 from the IANA registry
# §11.7 set up): 1005/1006/1015 never go on the wire, 1004 is reserved, 1016-2999 unassigned.
# 3000-4999 are for libraries and applications (§7.4.2).
VALID_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
# A close frame's payload is at most 125 bytes (§5.5): the code's 2, and the reason's.
MAX_CLOSE_REASON = 123


class WebSocketError(Exception):
    """A protocol violation by the client: close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def valid_key(key: bytes | None) -> bool:
    """A base64 nonce of 16 bytes (RFC 6455 §4.1 item 7)."""
    if not key:
        return False
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        return False


def encode_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One unmasked, final frame (servers never mask, RFC 6455 §5.1); ``rsv1`` marks a
    compressed message (RFC 7692 §6)."""
    length = len(payload)
    first = 0xC0 | opcode if rsv1 else 0x80 | opcode
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = bytes((first, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + length.to_bytes(8, "big")
    return header + payload


def sendable_close_code(code: object) -> bool:
    """May ``code`` go on the wire in a close frame (RFC 6455 §7.4)? ``code`` is what an app sent."""
    if not isinstance(code, int) or isinstance(code, bool):
        return False
    return code in VALID_CLOSE_CODES or 3000 <= code <= 4999


def close_payload(code: int, reason: str = "") -> bytes:
    """Code and UTF-8 reason; a reason over 123 bytes is cut at a character boundary (§5.5:
    control frames carry at most 125 bytes; §5.6/§7.1.6: the reason is valid UTF-8)."""
    data = reason.encode("utf-8", "replace")  # a lone surrogate becomes "?", never an error
    if len(data) > MAX_CLOSE_REASON:
        # Decoding with "ignore" drops only the character the cut split (the rest is valid).
        data = data[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + data


# XOR tables for unmasking large payloads: _XOR[m] maps each byte b to b ^ m (64 KiB in all).
_XOR = [bytes(b ^ m for b in range(256)) for m in range(256)]

# Below this many bytes one big-integer XOR is fastest; above it, big-integer conversion costs
# grow faster than the payload, and four bytes.translate passes (one per key byte) are about 2.7x
# faster at 64 KiB (ws_bench: unmasking was most of a 64 KiB echo's cost).
_TRANSLATE_FROM = 2048


def unmask(data: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte masking key (RFC 6455 §5.3)."""
    length = len(data)
    if not length:
        return b""
    if length < _TRANSLATE_FROM:
        key = (mask * (length // 4 + 1))[:length]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    out = bytearray(data)
    for offset in range(4):
        out[offset::4] = out[offset::4].translate(_XOR[mask[offset]])
    return bytes(out)


class FrameReader:
    """Bytes in, complete messages and control frames out; raises WebSocketError."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.buffer = bytearray()
        self.max_message = max_message
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0
        # permessage-deflate negotiated (wsdeflate.py): RSV1 may mark a message's first frame,
        # whose reassembled payload this inflates (RFC 7692 §6.1).
        self.inflate: Callable[[bytes], bytes] | None = None
        self._fragment_compressed = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(opcode, payload) of every complete message or control frame in the buffer."""
        buffer = self.buffer
        buffer += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return out
            fin, opcode, payload, compressed = frame
            message = self._assemble(fin, opcode, payload, compressed)
            if message is not None:
                out.append(message)

    def _next_frame(self) -> tuple[bool, int, bytes, bool] | None:
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70 and (first & 0x70 != 0x40 or self.inflate is None):
            raise WebSocketError(1002, "reserved bits set (no extension was negotiated)")
        if not second & 0x80:
            raise WebSocketError(1002, "client frames must be masked")
        opcode = first & 0x0F
        length = second & 0x7F
        position = 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            position = 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            position = 10
        if opcode >= 0x8:
            if opcode not in (CLOSE, PING, PONG):
                raise WebSocketError(1002, f"reserved opcode {opcode:#x}")
            if not first & 0x80 or length > 125:
                raise WebSocketError(1002, "control frames must be final and at most 125 bytes")
        elif opcode not in (CONTINUATION, TEXT, BINARY):
            raise WebSocketError(1002, f"reserved opcode {opcode:#x}")
        if length > self.max_message:
            raise WebSocketError(1009, "message too big")
        end = position + 4 + length
        if len(buffer) < end:
            return None
        mask = bytes(buffer[position : position + 4])
        payload = unmask(bytes(buffer[position + 4 : end]), mask)
        del buffer[:end]
        return bool(first & 0x80), opcode, payload, bool(first & 0x40)

    def _assemble(self, fin: bool, opcode: int, payload: bytes, compressed: bool) -> tuple[int, bytes] | None:
        if compressed and (opcode >= 0x8 or opcode == CONTINUATION):
            raise WebSocketError(1002, "RSV1 set on a control or continuation frame")  # RFC 7692 §6.1
        if opcode >= 0x8:
            return opcode, payload  # control frames may arrive between fragments
        if opcode == CONTINUATION:
            if not self._fragment_opcode:
                raise WebSocketError(1002, "continuation frame without a message to continue")
        elif self._fragment_opcode:
            raise WebSocketError(1002, "new message before the fragmented one was finished")
        else:
            self._fragment_opcode = opcode
            self._fragment_compressed = compressed
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if self._fragment_size > self.max_message:
            raise WebSocketError(1009, "message too big")
        if not fin:
            return None
        data = b"".join(self._fragments)
        opcode = self._fragment_opcode
        self._fragments = []
        self._fragment_opcode = 0
        self._fragment_size = 0
        if self._fragment_compressed and self.inflate is not None:
            self._fragment_compressed = False
            data = self.inflate(data)
        return opcode, data

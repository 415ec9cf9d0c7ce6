"""Client address and scheme from proxy headers, believed only from trusted peers.

``--proxy-headers`` with ``--forwarded-allow-ips``: when the immediate peer is a trusted proxy,
the client is the rightmost address in ``X-Forwarded-For`` (or ``Forwarded: for=``) that is
not itself a trusted proxy, and the scheme comes from ``X-Forwarded-Proto`` (or
``Forwarded: proto=``). Anything left of the first untrusted hop was written by the client
and is ignored. The standard ``Forwarded`` header (RFC 7239) wins over the X- headers when
both are present. Unix-socket peers (no address) are always trusted, as in uvicorn: only
local processes can connect to them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

__all__ = ["TrustedProxies", "parse_forwarded"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Client = tuple[str, int] | None

_SCHEMES = {b"http": "http", b"https": "https", b"ws": "ws", b"wss": "wss"}
_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class TrustedProxies:
    """The set of peers allowed to set client and scheme through proxy headers."""

    __slots__ = ("_all", "_hosts", "_known", "_networks")

    def __init__(self, trusted: Iterable[str] = ("127.0.0.1",)) -> None:
        self._all = False
        self._hosts: set[Address] = set()
        self._networks: list[Network] = []
        # Verdicts for peer strings already seen (bounded): resolve() runs for every request.
        self._known: dict[str, bool] = {}
        for item in trusted:
            entry = item.strip()
            if not entry:
                continue
            if entry == "*":
                self._all = True
            elif "/" in entry:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                self._hosts.add(ipaddress.ip_address(entry))

    def __contains__(self, host: object) -> bool:
        """Is this peer address trusted? None (a unix socket peer) always is."""
        if host is None or self._all:
            return True
        if not isinstance(host, str):
            return False
        known = self._known.get(host)
        if known is None:
            known = self._check(host)
            if len(self._known) < 1024:
                self._known[host] = known
        return known

    def trusts(self, host: str | None) -> bool:
        """Same as ``host in proxies``: lets the worker decide once per connection."""
        return host in self

    def _check(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False  # an obfuscated or unknown identifier (RFC 7239 §6.3) is not a proxy
        if address in self._hosts:
            return True
        return any(address in network for network in self._networks)

    def resolve(self, headers: Sequence[tuple[bytes, bytes]], client: Client, scheme: str) -> tuple[Client, str]:
        """(client, scheme) for a request from ``client`` (None for a unix socket peer).

        ``headers`` are the request's lower-cased headers; ``scheme`` is "http"/"https" for
        HTTP requests or "ws"/"wss" for WebSocket ones, and stays in the same family.
        """
        if (client[0] if client else None) not in self:
            return client, scheme
        forwarded: list[bytes] = []
        forwarded_for: list[bytes] = []
        proto: bytes | None = None
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)
            elif name == b"x-forwarded-proto":
                proto = value
        if not forwarded and not forwarded_for and proto is None:
            return client, scheme
        if forwarded:
            # RFC 7239: each proxy appends one element; the proto that the chosen client used
            # is in that client's element.
            hops = parse_forwarded(b",".join(forwarded))
            index = self._client_index([hop.get("for", "") for hop in hops])
            if index is None:
                return client, scheme
            proto_text = hops[index].get("proto")
            return _client(hops[index].get("for", ""), client), _scheme(proto_text, scheme)
        chain = [part.strip().decode("latin-1") for part in b",".join(forwarded_for).split(b",")]
        chain = [hop for hop in chain if hop]
        index = self._client_index(chain)
        if index is not None:
            client = _client(chain[index], client)
        if proto is not None:
            # The nearest proxy's value is the last one.
            scheme = _scheme(proto.split(b",")[-1].decode("latin-1"), scheme)
        return client, scheme

    def _client_index(self, chain: list[str]) -> int | None:
        """Index of the rightmost hop that is not a trusted proxy (all trusted: the first)."""
        if not chain:
            return None
        for index in range(len(chain) - 1, -1, -1):
            if _split_host_port(chain[index])[0] not in self:
                return index
        return 0


def _client(hop: str, peer: Client) -> Client:
    host, port = _split_host_port(hop)
    if host is None or not _is_address(host):
        return peer  # "unknown" or an obfuscated identifier (RFC 7239 §6): keep the peer
    return (host, port)


def _scheme(value: str | None, current: str) -> str:
    """Map a forwarded proto onto the current scheme family (http/https or ws/wss)."""
    if not value:
        return current
    proto = _SCHEMES.get(value.strip().lower().encode("latin-1"))
    if proto is None:
        return current
    if current in ("ws", "wss"):
        return _WS_SCHEME[proto]
    return "https" if proto in ("https", "wss") else "http"


def _is_address(host: str) -> bool:
    """An IP literal; an IPv6 zone id only of RFC 3986 unreserved characters (``ip_address``
    takes anything after ``%``, and this value goes into the scope and the access log:
    ``fe80::1%ab" "c`` forged a log line in the attack run on issue 8)."""
    _, percent, zone = host.partition("%")
    if percent and not _ZONE.fullmatch(zone):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_ZONE = re.compile(r"[A-Za-z0-9._~-]{1,32}")


def _split_host_port(hop: str) -> tuple[str | None, int]:
    """'1.2.3.4', '1.2.3.4:80', '[::1]:80', '::1' -> (host, port); port 0 if absent."""
    hop = hop.strip()
    if not hop:
        return None, 0
    if hop.startswith("["):
        end = hop.find("]")
        if end < 0:
            return None, 0
        host, rest = hop[1:end], hop[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif hop.count(":") == 1:
        host, _, port = hop.partition(":")
    else:
        host, port = hop, ""  # a bare IPv6 address (X-Forwarded-For style) or a name
    return host, int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else 0


def parse_forwarded(value: bytes) -> list[dict[str, str]]:
    """RFC 7239 §4: ``Forwarded: for=a;proto=https, for="[2001:db8::1]:80"`` -> hops.

    Parameter names are case-insensitive; values are tokens or quoted-strings. A malformed
    element yields an empty dict so it still counts as a hop.
    """
    hops: list[dict[str, str]] = []
    for element in _split_outside_quotes(value.decode("latin-1"), ","):
        hop: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, sep, raw = pair.partition("=")
            name = name.strip().lower()
            if not sep or not name:
                continue
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            hop[name] = raw
        hops.append(hop)
    return hops


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]

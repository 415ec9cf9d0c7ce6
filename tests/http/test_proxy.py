"""TrustedProxies: client and scheme from proxy headers, only from trusted peers."""

from __future__ import annotations

import pytest

from asynccluster.http.proxy import TrustedProxies, parse_forwarded

PEER = ("127.0.0.1", 40000)


def xff(value: bytes, proto: bytes | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"a"), (b"x-forwarded-for", value)]
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto))
    return headers


def test_trust_matching() -> None:
    trusted = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1", " "])
    assert "127.0.0.1" in trusted and "10.2.3.4" in trusted and "::1" in trusted
    assert "[::1]" in trusted
    assert "11.0.0.1" not in trusted and "unknown" not in trusted and "_hidden" not in trusted
    assert None in trusted  # unix socket peer
    assert "8.8.8.8" in TrustedProxies(["*"])


def test_untrusted_peer_headers_ignored() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    client = ("203.0.113.9", 5555)
    assert proxies.resolve(xff(b"1.2.3.4", b"https"), client, "http") == (client, "http")


def test_no_proxy_headers_keeps_peer() -> None:
    assert TrustedProxies().resolve([(b"host", b"a")], PEER, "http") == (PEER, "http")


def test_x_forwarded_for_rightmost_untrusted_hop() -> None:
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    # The client may have put anything on the left; the first untrusted hop from the right wins.
    headers = xff(b"6.6.6.6, 1.2.3.4, 10.0.0.7", b"https")
    assert proxies.resolve(headers, PEER, "http") == (("1.2.3.4", 0), "https")


def test_all_hops_trusted_gives_leftmost() -> None:
    proxies = TrustedProxies(["*"])
    assert proxies.resolve(xff(b"10.0.0.1, 10.0.0.2"), PEER, "http")[0] == ("10.0.0.1", 0)


def test_multiple_x_forwarded_for_fields_combine() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")]
    assert TrustedProxies().resolve(headers, PEER, "http")[0] == ("2.2.2.2", 0)


def test_ipv6_and_ports_in_x_forwarded_for() -> None:
    proxies = TrustedProxies()
    assert proxies.resolve(xff(b"2001:db8::1"), PEER, "http")[0] == ("2001:db8::1", 0)
    assert proxies.resolve(xff(b"[2001:db8::1]:8080"), PEER, "http")[0] == ("2001:db8::1", 8080)
    assert proxies.resolve(xff(b"1.2.3.4:99"), PEER, "http")[0] == ("1.2.3.4", 99)


def test_garbage_client_keeps_peer() -> None:
    assert TrustedProxies().resolve(xff(b"not-an-ip"), PEER, "http")[0] == PEER


@pytest.mark.parametrize(
    ("proto", "scheme", "expected"),
    [(b"https", "http", "https"), (b"HTTPS", "http", "https"), (b"http", "https", "http"),
     (b"https", "ws", "wss"), (b"wss", "ws", "wss"), (b"gopher", "http", "http"),
     (b"http, https", "http", "https")],
)  # fmt: skip
def test_forwarded_proto(proto: bytes, scheme: str, expected: str) -> None:
    headers = [(b"x-forwarded-proto", proto)]
    assert TrustedProxies().resolve(headers, PEER, scheme) == (PEER, expected)


def test_forwarded_header_rfc7239() -> None:
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    headers = [(b"forwarded", b'for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1, For=10.0.0.5;proto=http')]
    assert proxies.resolve(headers, PEER, "http") == (("2001:db8:cafe::17", 4711), "https")


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"forwarded", b"for=2.2.2.2;proto=https")]
    assert TrustedProxies().resolve(headers, PEER, "http") == (("2.2.2.2", 0), "https")


def test_forwarded_obfuscated_identifier_keeps_peer() -> None:
    headers = [(b"forwarded", b"for=_hidden;proto=https")]
    assert TrustedProxies().resolve(headers, PEER, "http") == (PEER, "https")


def test_unix_socket_peer_is_trusted() -> None:
    assert TrustedProxies(["10.0.0.1"]).resolve(xff(b"1.2.3.4"), None, "http")[0] == ("1.2.3.4", 0)


def test_parse_forwarded_quoting() -> None:
    hops = parse_forwarded(b'for="a,b;c";proto=https, for=x;, ,for="q\\"uote"')
    assert hops == [{"for": "a,b;c", "proto": "https"}, {"for": "x"}, {"for": 'q"uote'}]


@pytest.mark.parametrize(
    "value",
    [b'[fe80::1%ab" "c]:80', b"fe80::1%a\xc2\x85b", b"fe80::1%" + b"z" * 40, b"[::1]:\xd9\xa1"],
)
def test_a_forged_zone_id_or_port_never_becomes_the_client(value: bytes) -> None:
    """Attack run on issue 8: ``ipaddress`` takes anything after ``%``; the client address goes
    into the scope and the access log, so only RFC 3986 unreserved zone ids are taken."""
    proxies = TrustedProxies(["127.0.0.1"])
    (host, port), _ = proxies.resolve(xff(value), PEER, "http")
    assert (host, port) == PEER or (host == "::1" and port == 0)


def test_a_plain_zone_id_is_kept() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    assert proxies.resolve(xff(b"[fe80::1%eth0]:8080"), PEER, "http")[0] == ("fe80::1%eth0", 8080)

"""Who may change the cluster from the dashboard (issue 12): token, same origin, right host.

Read-only views (the page, the stream, /status, /metrics) need nothing: the admin endpoint
binds 127.0.0.1 unless told otherwise. A state-changing request (reload, scale, restart)
must be all of:

- a ``POST`` (no GET has a side effect, so a link or an <img> cannot trigger one);
- carrying the admin token in ``X-Asynccluster-Token`` (or ``Authorization: Bearer``),
  compared in constant time (``hmac.compare_digest``);
- same-origin, when a browser says where it comes from: ``Sec-Fetch-Site`` must be
  ``same-origin`` (or ``none``: typed by the user) and ``Origin`` must be this very
  ``http://HOST`` (the Fetch standard sends both on a cross-site POST). A custom header also
  forces a CORS preflight, which this endpoint never approves.

And for every dashboard route while the endpoint listens on loopback, the ``Host`` must be a
loopback name or an IP literal: a DNS-rebinding page (``evil.example`` resolving to
127.0.0.1) is then refused even for read-only views.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

TOKEN_HEADER = "x-asynccluster-token"
LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def new_token() -> str:
    """A random token for ``--admin-token`` left empty (printed at start)."""
    return secrets.token_urlsafe(24)


def host_name(host_header: str) -> str:
    """``"127.0.0.1:9000"`` -> ``"127.0.0.1"``, ``"[::1]:9000"`` -> ``"::1"``, lowercased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK_NAMES


def host_allowed(headers: dict[str, str], bound_host: str) -> bool:
    """Bound to loopback: the Host must be loopback or an IP literal. Bound elsewhere: any Host
    (the operator chose to expose it; put a proxy with authentication in front)."""
    if not is_loopback(bound_host):
        return True
    name = host_name(headers.get("host", ""))
    if not name or name in LOOPBACK_NAMES:
        return True  # HTTP/1.0 without Host: not a browser
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def presented_token(headers: dict[str, str]) -> str:
    token = headers.get(TOKEN_HEADER, "")
    if not token:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    return token


def refuse_action(method: str, headers: dict[str, str], token: str) -> tuple[int, str] | None:
    """None if the action may run; else (status, why) to answer with."""
    if method != "POST":
        return 405, "actions are POST requests"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None and origin != f"http://{headers.get('host', '')}":
        return 403, "cross-origin request refused (Origin does not match Host)"
    presented = presented_token(headers)
    if not presented:
        return 403, "the admin token is required (X-Asynccluster-Token header)"
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return 403, "wrong admin token"
    return None


__all__ = ["TOKEN_HEADER", "host_allowed", "new_token", "refuse_action"]

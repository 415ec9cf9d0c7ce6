"""The ASGI ``http`` scope, built once for HTTP/1.1 and HTTP/2 (issue 10).

A connection builds its template once (:func:`connection_template`: the keys that are the same
for every request on it), and each request is a shallow copy with the per-request keys set
(:func:`request_scope`). The template already holds every per-request key, so the copy is full
size and setting them never resizes it.
"""

from __future__ import annotations

from typing import Any, Protocol

from asynccluster.worker.state import ServerState

PATHSEND = "http.response.pathsend"  # the ASGI Path Send extension's key (cycle.py; issue 16)


class RequestLine(Protocol):
    """What a scope takes from a parsed request: http.events.RequestHead (HTTP/1.1) and
    http.h2.Request (HTTP/2) both have it."""

    @property
    def method(self) -> str: ...
    @property
    def raw_path(self) -> bytes: ...
    @property
    def path(self) -> str: ...
    @property
    def query_string(self) -> bytes: ...
    @property
    def headers(self) -> Any: ...


def peer_address(value: Any) -> tuple[str, int] | None:
    """An ASGI (host, port) from a socket address; None for unix sockets and unknowns."""
    if isinstance(value, (tuple, list)) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def connection_template(
    state: ServerState, http_version: str, scheme: str, server: Any, client: tuple[str, int] | None
) -> dict[str, Any]:
    """The keys every request on one connection shares; the per-request ones as placeholders."""
    return {
        "type": "http",
        "asgi": state.asgi,
        "http_version": http_version,
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": state.root_path,
        "extensions": {},
        "method": "",
        "path": "",
        "raw_path": b"",
        "query_string": b"",
        "headers": (),
        "state": None,
    }


def request_scope(
    template: dict[str, Any],
    state: ServerState,
    head: RequestLine,
    tls: dict[str, Any] | None,
    resolve_proxy: bool,
    pathsend: bool,
) -> dict[str, Any]:
    """One request's scope from its connection's template and the parsed ``head``.

    ``tls``: the connection's ASGI tls extension (None: plain TCP). ``resolve_proxy``: the
    peer is a trusted proxy that sent a proxy header: client and scheme come from those
    headers (http/proxy.py). ``pathsend``: offer the Path Send extension (issue 16).
    """
    scope = template.copy()
    scope["method"] = head.method
    root_path = state.root_path
    if root_path:
        scope["path"] = root_path + head.path
        scope["raw_path"] = root_path.encode() + head.raw_path
    else:
        scope["path"] = head.path
        scope["raw_path"] = head.raw_path
    scope["query_string"] = head.query_string
    scope["headers"] = headers = head.headers
    # Apps and middleware may write into extensions: one request's must not leak into the
    # next on this connection (the template's dict would be shared by every copy).
    extensions: dict[str, Any] = {} if tls is None else {"tls": tls.copy()}
    if pathsend:
        extensions[PATHSEND] = {}
    scope["extensions"] = extensions
    lifespan_state = state.lifespan_state
    # A shallow copy per request (ASGI lifespan "state"); most apps keep none: a new dict is cheaper.
    scope["state"] = lifespan_state.copy() if lifespan_state else {}
    if resolve_proxy:
        proxies = state.proxies
        assert proxies is not None  # a peer is trusted only when proxies are configured
        scope["client"], scope["scheme"] = proxies.resolve(headers, scope["client"], scope["scheme"])
    return scope

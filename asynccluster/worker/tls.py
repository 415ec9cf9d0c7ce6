"""TLS for the worker's listeners (issue 13): the SSLContext, the ASGI ``tls`` extension, and
the count of handshakes that never completed.

- :func:`create_ssl_context` builds the stdlib :class:`ssl.SSLContext` from the ``--ssl-*``
  settings. Each worker calls it when it starts (``Server.load_tls``), so a reload (every
  worker replaced) reads the certificate files again and a renewed certificate is served
  without a restart. A file that cannot be used raises :class:`TLSConfigError` with a message
  naming the file and the reason; the worker exits with ``exitcodes.TLS`` before it is ready,
  which the master treats like broken code (no respawn storm; a reload rolls back).
- :func:`tls_extension` fills the ASGI TLS extension (asgi-spec ``extensions/tls``) from a
  connection's ``ssl_object``.
- :func:`tls_factory` tells the handshake watch (tlswatch.py) of each protocol it hands out,
  and :class:`TlsHttpProtocol` tells it when the handshake completed: the watch counts the
  ones that never did, and the server logs one summary line per interval, not one per
  connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import ssl
from typing import TYPE_CHECKING, Any, cast

from asynccluster.config import Config
from asynccluster.worker.protocol import HttpProtocol

if TYPE_CHECKING:
    from asynccluster.worker.state import ServerState

logger = logging.getLogger("asynccluster.worker")

CERT_REQS = {
    "none": ssl.CERT_NONE,
    "0": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "1": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
    "2": ssl.CERT_REQUIRED,
}
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# ssl.SSLObject.version() -> the ASGI extension's tls_version (the TLS wire version number).
WIRE_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TLSConfigError(Exception):
    """The TLS settings cannot be used; ``str()`` names the file and the reason."""


class Http2Unavailable(TLSConfigError):
    """``--http 2`` was asked for but the h2 package is not installed."""


def tls_enabled(config: Config) -> bool:
    return bool(config.ssl_certfile)


def check_tls_settings(config: Config) -> None:
    """TLS settings given without --ssl-certfile: refuse (TLSConfigError) rather than serve
    plain HTTP to someone who asked for TLS (newcomer trial: --ssl-keyfile alone did)."""
    if tls_enabled(config):
        return
    given = [
        flag
        for flag, value in (
            ("--ssl-keyfile", config.ssl_keyfile),
            ("--ssl-keyfile-password", config.ssl_keyfile_password),
            ("--ssl-ca-certs", config.ssl_ca_certs),
            ("--ssl-ciphers", config.ssl_ciphers),
        )
        if value
    ]
    if given:
        raise TLSConfigError(f"TLS: {', '.join(given)} given without --ssl-certfile (the certificate to serve)")


def http2_enabled(config: Config) -> bool:
    """Whether HTTP/2 is served: ``--http 2``, or ``auto`` with the h2 package installed.

    Raises TLSConfigError's sibling :class:`Http2Unavailable` for ``--http 2`` without h2.
    """
    if config.http == "1.1":
        return False
    available = importlib.util.find_spec("h2") is not None
    if config.http == "2" and not available:
        raise Http2Unavailable("--http 2 needs the h2 package: pip install 'asynccluster[http2]'")
    return available


def alpn_protocols(config: Config) -> tuple[str, ...]:
    """What ALPN offers, preferred first (RFC 7301; RFC 9113 §3.2: "h2" over TLS)."""
    return ("h2", "http/1.1") if http2_enabled(config) else ("http/1.1",)


def create_ssl_context(config: Config, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """A server-side SSLContext from the ``--ssl-*`` settings; raises TLSConfigError.

    ``alpn`` is the list offered in the handshake, preferred first (RFC 7301): ``h2`` is
    offered only when HTTP/2 is on.
    """
    if config.ssl_keyfile_password and not config.ssl_keyfile and not config.ssl_certfile:
        raise TLSConfigError("--ssl-keyfile-password given without --ssl-certfile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[config.ssl_min_version]
    # Forward secrecy per connection and no renegotiation (a DoS lever), as nginx does.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        context.options |= ssl.OP_NO_RENEGOTIATION
    _load_chain(context, config)
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"--ssl-ciphers {config.ssl_ciphers!r}: no cipher matches that list") from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"--ssl-ca-certs {config.ssl_ca_certs}: {_reason(exc)}") from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise TLSConfigError(f"--ssl-cert-reqs {config.ssl_cert_reqs} needs --ssl-ca-certs (the CAs to trust)")
    context.set_alpn_protocols(list(alpn))
    return context


def _load_chain(context: ssl.SSLContext, config: Config) -> None:
    certfile, keyfile = config.ssl_certfile, config.ssl_keyfile or None
    password = config.ssl_keyfile_password or None
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path and not os.path.exists(path):  # load_cert_chain's error names no file
            raise TLSConfigError(f"TLS: {flag} {path}: no such file")
    try:
        # A password callback, not the password: an encrypted key without one must fail here
        # with our message, not block on a terminal prompt.
        context.load_cert_chain(certfile, keyfile, password=lambda: (password or "").encode())
    except FileNotFoundError as exc:
        raise TLSConfigError(f"TLS: cannot read {exc.filename or certfile}: no such file") from None
    except PermissionError as exc:
        raise TLSConfigError(f"TLS: cannot read {exc.filename or certfile}: permission denied") from None
    except ssl.SSLError as exc:
        what = f"--ssl-certfile {certfile}" + (f" / --ssl-keyfile {keyfile}" if keyfile else "")
        reason = _reason(exc)
        if _encrypted(keyfile or certfile) and exc.reason in (None, "PEM_LIB", "BAD_DECRYPT"):
            reason = "cannot decrypt the private key: wrong or missing --ssl-keyfile-password"
        raise TLSConfigError(f"TLS: {what}: {reason}") from None
    except OSError as exc:
        raise TLSConfigError(f"TLS: cannot read {certfile}: {exc}") from None


def _encrypted(path: str) -> bool:
    """Whether a PEM file holds an encrypted private key (PKCS#8 or the legacy header)."""
    try:
        with open(path, "rb") as file:
            return b"ENCRYPTED" in file.read(1 << 20)
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    """An OpenSSL error in words people search for."""
    reason = getattr(exc, "reason", None) or ("PEM_LIB" if "PEM lib" in str(exc) else "")
    text = {
        "KEY_VALUES_MISMATCH": "the private key does not match the certificate",
        "BAD_DECRYPT": "wrong --ssl-keyfile-password (or the key is encrypted and none was given)",
        "NO_START_LINE": "not a PEM file (no BEGIN line)",
        "PEM_LIB": "not a valid PEM certificate or private key",
        "NO_CERTIFICATE_OR_CRL_FOUND": "no certificate found in the file",
    }.get(reason)
    return text or str(exc)


# ---------------------------------------------------------------- the ASGI tls extension


def server_cert_pem(config: Config) -> str | None:
    """The first certificate of --ssl-certfile as PEM text (the extension's ``server_cert``)."""
    try:
        with open(config.ssl_certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    return text[start : stop + len(end)] + "\n" if start >= 0 and stop >= 0 else None


def tls_extension(ssl_object: Any, server_cert: str | None) -> dict[str, Any]:
    """The ASGI TLS extension (asgi-spec extensions.rst, "TLS") for one connection.

    ``client_cert_chain`` holds the peer's own certificate only: the stdlib exposes the
    verified chain from Python 3.13 (used when present). ``cipher_suite`` is None: the
    stdlib gives the suite's name, not its IANA number.
    """
    chain: list[str] = []
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    verified = getattr(ssl_object, "get_verified_chain", None)
    if der and verified is not None:
        try:
            chain = [str(cert.public_bytes()) for cert in verified()]  # PEM text by default (3.13)
        except (AttributeError, ValueError, ssl.SSLError):
            chain = []
    if der and not chain:
        chain = [ssl.DER_cert_to_PEM_cert(der)]
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": _rfc4514_name(ssl_object.getpeercert()) if der else None,
        "client_cert_error": None,  # a certificate that fails verification fails the handshake
        "tls_version": WIRE_VERSIONS.get(ssl_object.version() or "") if ssl_object is not None else None,
        "cipher_suite": None,
    }


def _rfc4514_name(cert: dict[str, Any] | None) -> str | None:
    """The subject as an RFC 4514 string: RDNs most significant last, ``,``-separated."""
    if not cert or "subject" not in cert:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC"}  # fmt: skip
    rdns = []
    for rdn in reversed(cert["subject"]):
        rdns.append("+".join(f"{short.get(key, key)}={_escape(value)}" for key, value in rdn))
    return ",".join(rdns)


def _escape(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out


# ---------------------------------------------------------------- counting failed handshakes


class TlsHttpProtocol(HttpProtocol):
    """HttpProtocol on a TLS transport: scheme ``https``, the tls extension, the watch told."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        state = self.state
        watch = state.tls_watch
        if watch is not None:
            watch.completed(self)
        ssl_object = transport.get_extra_info("ssl_object")
        tls = tls_extension(ssl_object, watch.server_cert if watch else None)
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            # ALPN chose HTTP/2 (offered with --http 2|auto): the connection is an H2Protocol's.
            from asynccluster.worker.h2protocol import H2Protocol

            protocol = H2Protocol(state, "https", tls)
            cast(asyncio.Transport, transport).set_protocol(protocol)
            protocol.connection_made(transport)
            return
        super().connection_made(transport)
        self.scope_template["scheme"] = "https"
        self.tls = tls


def tls_factory(state: ServerState) -> HttpProtocol:
    """The protocol factory for a TLS listener."""
    protocol = TlsHttpProtocol(state)
    watch = state.tls_watch
    if watch is not None:
        watch.started(protocol, state.loop.time())
    return protocol

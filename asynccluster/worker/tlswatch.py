"""Counting TLS handshakes that never completed (issue 13), apart from tls.py so that the
worker's shared state can hold the watch without importing the connection code.

The loop closes such connections quietly: plaintext sent to the TLS port, a client
certificate that fails verification, or silence past ``--ssl-handshake-timeout``. The watch
notices that a protocol it was told about was never connected, and logs one summary line per
:data:`REPORT_SECONDS`, not one per connection.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("asynccluster.worker")

# Failed handshakes are summarised in one warning per this many seconds.
REPORT_SECONDS = 10.0


class HandshakeWatch:
    """Protocols handed to the loop for a TLS connection whose handshake has not completed.

    A protocol that is not connected within the handshake timeout (plus a tick) never will be:
    the loop closed the connection (bad or no handshake) or is closing it now. Memory is
    bounded by the accept rate times that timeout.
    """

    def __init__(self, timeout: float, server_cert: str | None) -> None:
        self.timeout = timeout  # the handshake timeout plus a tick (the loop aborts at the timeout)
        self.server_cert = server_cert
        self.pending: dict[object, float] = {}
        self.failed = 0  # total, for tests and stats
        self.unreported = 0
        self.report_at = 0.0

    def started(self, protocol: object, now: float) -> None:
        self.pending[protocol] = now + self.timeout

    def completed(self, protocol: object) -> None:
        self.pending.pop(protocol, None)

    def sweep(self, now: float) -> None:
        """Called by the server's tick: count (and forget) handshakes past their deadline."""
        if self.pending:
            expired = [protocol for protocol, deadline in self.pending.items() if deadline <= now]
            for protocol in expired:
                del self.pending[protocol]
            self.failed += len(expired)
            self.unreported += len(expired)
        if self.unreported and now >= self.report_at:
            logger.warning(
                "TLS: %d connection(s) closed without a completed handshake since the last report "
                "(plaintext to the TLS port, a client certificate that failed verification, or "
                "no handshake within --ssl-handshake-timeout)",
                self.unreported,
            )
            self.unreported = 0
            self.report_at = now + REPORT_SECONDS

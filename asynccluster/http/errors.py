"""Errors of the sans-IO HTTP layer.

:class:`ProtocolError` is the client's fault (bad or over-limit input): the worker answers
with ``error_response(exc.status)`` and closes the connection. :class:`ResponseError` is the
application's fault (an invalid response head): the worker logs it and answers 500 if nothing
was sent yet.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Invalid or over-limit request input; answer ``status`` and close the connection."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class ResponseError(Exception):
    """The application produced a response head that cannot be sent as HTTP/1.1."""

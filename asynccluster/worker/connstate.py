"""The life of one HTTP/1.1 connection as a state machine, written down (issue 10).

Written the way h11 writes its own (``h11/_state.py``): a table of ``state x event -> state``,
and one method (:meth:`~asynccluster.worker.connection.Http1Connection.to`) that applies an
event and refuses one the table does not list (:class:`IllegalTransition`: a bug, never
input). Each state also says what the connection's ``deadline`` means, so the server's
once-a-tick sweep needs no other flag. Beside the state, like h11's ``keep_alive``, the
connection keeps one request-level boolean, ``accepting`` (False once a request said
Connection: close, or drain/an error ended keep-alive: later requests are not answered).

::

    FRESH --HEAD_STARTS--> HEAD --REQUEST--> BODY --BODY_DONE--> BUSY --KEEP_ALIVE--> IDLE
    (header_timeout:       (408)            (408 unless we      (no timer:   (keep-alive
     close silently)                         paused reading)     the app's)   timeout)
    IDLE --HEAD_STARTS--> HEAD;   BUSY --REQUEST--> BODY (a pipelined request)
    HEAD --WHOLE_REQUEST--> BUSY (a request without a body: REQUEST and BODY_DONE as one entry)
    FRESH/IDLE --REQUEST/WHOLE_REQUEST/UPGRADE--> (a whole head in one read: HEAD is skipped)
    BUSY --BODY_OWED--> BODY (answered before its body ended);  BODY --BODY_EXPIRED--> BUSY
    HEAD/BUSY --UPGRADE--> UPGRADE (a WebSocket handshake waits for its turn and the app)
    IDLE/BUSY/BODY --DRAIN--> DRAIN_IDLE;  BUSY --KEEP_ALIVE_DRAINING--> DRAIN_IDLE
    DRAIN_IDLE --HEAD_STARTS--> HEAD (answered with Connection: close)
    any open state --CLOSE--> CLOSING (close once the output is flushed)
    any open state --ERROR_SENT--> LINGER (error response out or drain grace over: write
      side shut, reading and discarding until the client closes or the deadline, RFC 9112 §9.6)
    LINGER --CLOSE--> CLOSING;  any state --LOST--> CLOSED (connection_lost, or handed over)

The full table, with the rarer pairs, is :data:`TRANSITIONS`.

A transition is ``TRANSITIONS[state][event]``: two dict lookups (an IntEnum hashes as its
int), no allocation, and the table applied is the table written.
"""

from __future__ import annotations

from enum import IntEnum


class ConnState(IntEnum):
    """Where a connection is; the comment says what its ``deadline`` does, if anything."""

    FRESH = 0  # accepted, nothing received yet: at the deadline (header_timeout) close silently
    IDLE = 1  # keep-alive between requests: at the deadline (keep-alive timeout) close silently
    HEAD = 2  # a request head is arriving: at the deadline 408, then close
    BODY = 3  # the client owes request body bytes: 408 at the deadline (unless we paused reading)
    BUSY = 4  # requests being answered, nothing owed by the client: no deadline (the app's time)
    UPGRADE = 5  # a WebSocket handshake waits for earlier responses, then for the app: no deadline
    DRAIN_IDLE = 6  # the worker drains, the connection is idle: staged close at the deadline
    CLOSING = 7  # close once the output is flushed: no deadline
    LINGER = 8  # error response sent, write side shut, reading and discarding: close at the deadline
    CLOSED = 9  # gone (connection_lost), or handed over to a WebSocket session


class Event(IntEnum):
    """What happens to a connection (the table's columns)."""

    HEAD_STARTS = 0  # the first bytes of a request head arrived
    REQUEST = 1  # a request head is complete; its body (maybe empty) follows
    UPGRADE = 2  # the request head is a WebSocket handshake
    BODY_DONE = 3  # the request being read is complete
    BODY_OWED = 4  # answered, but the rest of its body is still due (--body-timeout)
    KEEP_ALIVE = 5  # every response is out and nothing is being read: wait for the next request
    KEEP_ALIVE_DRAINING = 6  # the same while the worker drains: the drain's staged close
    DRAIN = 7  # the worker drains; the connection is idle (or only an unread body is arriving)
    BODY_EXPIRED = 8  # the body timer fired: the request is failed (408) or answered as it stands
    CLOSE = 9  # close once the output is flushed (Connection: close, an aborted response, a timeout)
    ERROR_SENT = 10  # an error response went out (or the drain shut the write side): linger
    LOST = 11  # the transport is gone, or a WebSocket session owns it now
    # A request head without a body (no Content-Length or 0, not chunked): the request is
    # complete at once, so REQUEST and BODY_DONE are one table entry (one transition per
    # request on the hot path, not two; issue 16).
    WHOLE_REQUEST = 12


S, E = ConnState, Event
_OPEN = (S.FRESH, S.IDLE, S.HEAD, S.BODY, S.BUSY, S.UPGRADE, S.DRAIN_IDLE)

# state -> {event -> next state}. Self-loops are written down too: an event that leaves the
# state as it is there is legal there; every pair not listed is a bug (IllegalTransition).
TRANSITIONS: dict[ConnState, dict[Event, ConnState]] = {
    # From FRESH and IDLE a head that arrives whole in one read is applied as it completes
    # (protocol.data_received applies HEAD_STARTS only to a head still incomplete after the
    # read: HEAD matters only between reads, where the sweep may see it).
    S.FRESH: {E.HEAD_STARTS: S.HEAD, E.REQUEST: S.BODY, E.WHOLE_REQUEST: S.BUSY, E.UPGRADE: S.UPGRADE},
    S.IDLE: {
        E.HEAD_STARTS: S.HEAD,
        E.REQUEST: S.BODY,
        E.WHOLE_REQUEST: S.BUSY,
        E.UPGRADE: S.UPGRADE,
        E.DRAIN: S.DRAIN_IDLE,
    },
    S.HEAD: {E.REQUEST: S.BODY, E.WHOLE_REQUEST: S.BUSY, E.UPGRADE: S.UPGRADE},
    S.BODY: {
        E.BODY_DONE: S.BUSY,
        E.BODY_OWED: S.BODY,  # re-armed: the answered request's rest is still due
        E.BODY_EXPIRED: S.BUSY,
        E.DRAIN: S.DRAIN_IDLE,
        # A bad body was dropped (its cycle removed) while earlier responses were still out:
        # when they are, nothing is read any more.
        E.KEEP_ALIVE: S.IDLE,
        E.KEEP_ALIVE_DRAINING: S.DRAIN_IDLE,
    },
    S.BUSY: {
        E.REQUEST: S.BODY,  # pipelined behind the responses being written
        E.WHOLE_REQUEST: S.BUSY,  # the same without a body: nothing owed by the client
        E.UPGRADE: S.UPGRADE,
        E.BODY_OWED: S.BODY,
        E.KEEP_ALIVE: S.IDLE,
        E.KEEP_ALIVE_DRAINING: S.DRAIN_IDLE,
        E.DRAIN: S.DRAIN_IDLE,
    },
    S.UPGRADE: {},
    # Drained while the rest of an answered body was arriving, and a request followed it.
    S.DRAIN_IDLE: {E.HEAD_STARTS: S.HEAD, E.REQUEST: S.BODY, E.WHOLE_REQUEST: S.BUSY, E.UPGRADE: S.UPGRADE},
    S.CLOSING: {E.ERROR_SENT: S.LINGER},  # an error answered after close was asked for
    S.LINGER: {E.CLOSE: S.CLOSING},  # the linger deadline: close for good
    S.CLOSED: {},
}
for _state in _OPEN:
    TRANSITIONS[_state][E.CLOSE] = S.CLOSING
    TRANSITIONS[_state][E.ERROR_SENT] = S.LINGER
for _state in S:
    TRANSITIONS[_state][E.LOST] = S.CLOSED
del _state

# States whose deadline the server's sweep acts on.
TIMED = frozenset((S.FRESH, S.IDLE, S.HEAD, S.BODY, S.DRAIN_IDLE, S.LINGER))


class IllegalTransition(RuntimeError):
    """An event the table does not allow in the current state: a bug in the worker."""

    def __init__(self, state: ConnState, event: Event) -> None:
        super().__init__(f"connection in state {state.name} cannot take event {event.name}")
        self.state = state
        self.event = event


def next_state(state: ConnState, event: Event) -> ConnState:
    """The state after ``event`` in ``state``; :class:`IllegalTransition` if the table has none."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(state, event) from None


# Module-level aliases of the members for the per-request path: on Python 3.11 reading a
# member through its class (``ConnState.BODY``) goes through a descriptor and costs ~0.2 µs,
# a module global ~20 ns (several are read per request). Same objects: ``is`` still holds.
FRESH, IDLE, HEAD, BODY, BUSY = S.FRESH, S.IDLE, S.HEAD, S.BODY, S.BUSY
UPGRADE, DRAIN_IDLE, CLOSING, LINGER, CLOSED = S.UPGRADE, S.DRAIN_IDLE, S.CLOSING, S.LINGER, S.CLOSED
ON_HEAD_STARTS, ON_REQUEST, ON_UPGRADE, ON_BODY_DONE = E.HEAD_STARTS, E.REQUEST, E.UPGRADE, E.BODY_DONE
ON_BODY_OWED, ON_KEEP_ALIVE, ON_KEEP_ALIVE_DRAINING = E.BODY_OWED, E.KEEP_ALIVE, E.KEEP_ALIVE_DRAINING
ON_DRAIN, ON_BODY_EXPIRED, ON_CLOSE, ON_ERROR_SENT, ON_LOST = E.DRAIN, E.BODY_EXPIRED, E.CLOSE, E.ERROR_SENT, E.LOST
ON_WHOLE_REQUEST = E.WHOLE_REQUEST

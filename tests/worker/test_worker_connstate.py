"""The HTTP/1.1 connection's state machine (worker/connstate.py, issue 10): the written table
is what the connection applies, every legal transition works, anything else is refused."""

from __future__ import annotations

import asyncio

import pytest

from asynccluster.config import Config
from asynccluster.observe.stats import WorkerStats
from asynccluster.worker.connstate import (
    TIMED,
    TRANSITIONS,
    ConnState,
    Event,
    IllegalTransition,
    next_state,
)
from asynccluster.worker.protocol import HttpProtocol
from asynccluster.worker.state import ServerState
from tests.worker.apps import hello

LEGAL = [(state, event, target) for state, row in TRANSITIONS.items() for event, target in row.items()]
ILLEGAL = [(state, event) for state in ConnState for event in Event if event not in TRANSITIONS[state]]


def connection_in(state: ConnState) -> HttpProtocol:
    """An HttpProtocol (no transport: only its state is exercised) put in ``state``."""
    config = Config(access_log=False, proxy_headers=False, lifespan="off")
    protocol = HttpProtocol(ServerState(config, hello, WorkerStats(), asyncio.new_event_loop()))
    protocol.state.loop.close()
    protocol.conn_state = state
    return protocol


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(ConnState)


@pytest.mark.parametrize(("state", "event", "target"), LEGAL, ids=lambda v: getattr(v, "name", v))
def test_every_legal_transition_is_applied(state: ConnState, event: Event, target: ConnState) -> None:
    assert next_state(state, event) is target
    protocol = connection_in(state)
    protocol.to(event)
    assert protocol.conn_state is target


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=lambda v: v.name)
def test_every_other_pair_is_refused(state: ConnState, event: Event) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, event)
    protocol = connection_in(state)
    with pytest.raises(IllegalTransition, match=f"{state.name} cannot take event {event.name}"):
        protocol.to(event)
    assert protocol.conn_state is state  # a refused event changes nothing


def test_a_closed_connection_takes_nothing_but_lost() -> None:
    assert TRANSITIONS[ConnState.CLOSED] == {Event.LOST: ConnState.CLOSED}


def test_every_open_state_can_close_and_fail() -> None:
    for state in ConnState:
        if state < ConnState.CLOSING:
            assert TRANSITIONS[state][Event.CLOSE] is ConnState.CLOSING
            assert TRANSITIONS[state][Event.ERROR_SENT] is ConnState.LINGER


def test_every_state_with_a_deadline_is_left_by_some_event() -> None:
    for state in TIMED:
        assert any(target is not state for target in TRANSITIONS[state].values())


def test_the_request_path_is_a_walk_through_the_table() -> None:
    """A keep-alive request, a pipelined one, an unread body, drain and close, in order."""
    walk = [
        (Event.HEAD_STARTS, ConnState.HEAD),
        (Event.REQUEST, ConnState.BODY),
        (Event.BODY_DONE, ConnState.BUSY),
        (Event.REQUEST, ConnState.BODY),  # pipelined behind the first response
        (Event.BODY_OWED, ConnState.BODY),  # answered before its body ended
        (Event.BODY_DONE, ConnState.BUSY),
        (Event.KEEP_ALIVE, ConnState.IDLE),
        (Event.DRAIN, ConnState.DRAIN_IDLE),
        (Event.ERROR_SENT, ConnState.LINGER),  # the drain's staged close
        (Event.CLOSE, ConnState.CLOSING),
        (Event.LOST, ConnState.CLOSED),
    ]
    state = ConnState.FRESH
    for event, expected in walk:
        state = next_state(state, event)
        assert state is expected, event

"""Every channel message round-trips through the one encode/decode pair; anything else is a
MessageError (a ValueError) that says what is wrong (contracts/messages.py, issue 10)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from asynccluster.contracts import messages
from asynccluster.contracts.messages import (
    FROM_MASTER,
    FROM_WORKER,
    MAX_TEXT,
    Diagnose,
    DiagnoseResult,
    DumpTasks,
    Errors,
    Heartbeat,
    Message,
    MessageError,
    Online,
    Phase,
    Ready,
    Recycle,
    ReopenLogs,
    Stop,
    Stopping,
    decode,
    encode,
)

EXAMPLES: list[Message] = [
    Online(pid=1234, incarnation=2),
    Phase("lifespan startup"),
    Ready(pid=1234),
    Heartbeat(stats={"requests": 5, "status": {"200": 5}}, loop_lag=0.0012, rss=50 << 20, cpu=1.25, time=1.7e9),
    Heartbeat(stats={}, loop_lag=0, rss=0, cpu=0, time=0, app_metrics={"orders": {"type": "counter"}}),
    Recycle("max-requests: served 50 requests (limit 50)"),
    Stopping("lifespan startup failed: boom"),
    Stopping("SIGTERM", draining=True, forced=3),
    Errors(groups=[{"type": "KeyError", "frame": "app.py:7", "count": 2}], dropped=1, slow=[{"ms": 900.0}]),
    Errors(),
    DiagnoseResult(id=7, ok=True, result={"top": []}),
    DiagnoseResult(id=8, ok=False, error="this worker is draining"),
    Stop(timeout=30.0, reason="reload"),
    ReopenLogs(),
    DumpTasks(),
    Diagnose(id=7, op="memory", seconds=10.0, top=3),
    Diagnose(id=9, op="sample", seconds=2.5, rate=250),
]


def test_every_message_type_has_an_example_and_a_docstring() -> None:
    kinds = {type(m) for m in EXAMPLES}
    assert kinds == FROM_WORKER | FROM_MASTER and not FROM_WORKER & FROM_MASTER
    assert len(kinds) == 12
    for kind in kinds:
        assert kind.__doc__ and ("Worker -> master" in kind.__doc__ or "Master -> worker" in kind.__doc__), kind


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.kind)
def test_round_trip(message: Message) -> None:
    body = encode(message)
    assert json.loads(body)["type"] == message.kind
    assert decode(body) == message
    assert type(decode(body)) is type(message)


def test_a_float_field_takes_a_json_integer_and_is_a_float() -> None:
    decoded = decode(b'{"type":"stop","timeout":5}')
    assert decoded == Stop(timeout=5.0) and isinstance(decoded, Stop) and type(decoded.timeout) is float


def test_defaults_fill_what_is_left_out_and_unknown_keys_are_ignored() -> None:
    assert decode(b'{"type":"stopping","reason":"x","from_a_newer_worker":1}') == Stopping("x")
    assert decode(b'{"type":"errors"}') == Errors()


def test_messages_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Stop(timeout=1.0).timeout = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"{x}", "not JSON"),
        (b"[]", "JSON object, not list"),
        (b'"ready"', "JSON object, not str"),
        (b"{}", "unknown message type 'None'"),
        (b'{"type":"launch"}', "unknown message type 'launch'"),
        (b'{"type":7}', "unknown message type '7'"),
        (b'{"type":"' + b"x" * 1000 + b'"}', "unknown message type 'xxxxxxxx"),
        (b'{"type":"ready"}', "a 'ready' message without pid"),
        (b'{"type":"online"}', "without incarnation, pid"),
        (b'{"type":"ready","pid":"12"}', "ready.pid must be int, not str"),
        (b'{"type":"ready","pid":true}', "ready.pid must be int, not bool"),
        (b'{"type":"ready","pid":1.5}', "ready.pid must be int, not float"),
        (b'{"type":"stop","timeout":"5"}', "stop.timeout must be int or float, not str"),
        (b'{"type":"stop","timeout":null}', "stop.timeout must be int or float, not NoneType"),
        (b'{"type":"stopping","reason":"x","draining":1}', "stopping.draining must be bool, not int"),
        (b'{"type":"errors","groups":{}}', "errors.groups must be list, not dict"),
        (b'{"type":"errors","groups":[1]}', "errors.groups must be dict, not int"),
        (b'{"type":"diagnose-result","id":1,"ok":true,"result":[]}', "diagnose-result.result must be dict"),
    ],
)
def test_garbage_is_a_message_error_that_says_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(MessageError) as caught:
        decode(body)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 200  # a peer's junk is not echoed at length into the log
    assert isinstance(caught.value, ValueError)


def test_a_message_of_the_other_direction_is_refused() -> None:
    with pytest.raises(MessageError, match="'stop' message is not sent in this direction"):
        decode(encode(Stop(timeout=1.0)), FROM_WORKER)
    with pytest.raises(MessageError, match="'ready' message is not sent in this direction"):
        decode(encode(Ready(pid=1)), FROM_MASTER)
    assert decode(encode(Ready(pid=1)), FROM_WORKER) == Ready(pid=1)


def test_a_value_json_cannot_hold_is_sent_as_its_text() -> None:
    # An app's metric may hold anything; the heartbeat must still go (issue 9).
    body = encode(Heartbeat(stats={}, loop_lag=0, rss=0, cpu=0, time=0, app_metrics={"when": object}))
    decoded = decode(body)
    assert isinstance(decoded, Heartbeat) and decoded.app_metrics == {"when": str(object)}


def test_payload_is_the_fields_without_the_kind() -> None:
    beat = Heartbeat(stats={"requests": 1}, loop_lag=0.5, rss=2, cpu=3.0, time=4.0)
    assert beat.payload() == {"stats": {"requests": 1}, "loop_lag": 0.5, "rss": 2, "cpu": 3.0, "time": 4.0,
                              "app_metrics": None}  # fmt: skip


def test_a_kind_is_registered_once() -> None:
    with pytest.raises(TypeError, match="its own kind"):

        @dataclasses.dataclass(frozen=True)
        class Again(Message):
            kind = "ready"


def test_from_object_is_what_decode_uses_on_parsed_json() -> None:
    parsed: Any = {"type": "phase", "phase": "importing"}
    assert messages.from_object(parsed) == Phase("importing")


def test_json_nested_past_the_recursion_limit_is_a_message_error() -> None:
    # Found by the attack on issue 10: an app that found the channel fd wrote [[[[...]]]]; the
    # master logged a RecursionError traceback per frame and dropped the rest of the read.
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MessageError, match="nested too deeply"):
        decode(body)


def test_a_long_text_field_is_cut_to_max_text() -> None:
    # A forged 10,000-character stop reason was logged verbatim (a 10 KB log line).
    message = decode(json.dumps({"type": "stopping", "reason": "x" * 10_000}).encode())
    assert isinstance(message, Stopping)
    assert len(message.reason) == MAX_TEXT and message.reason.endswith("...(cut)")
    short = decode(json.dumps({"type": "stopping", "reason": "shutting down"}).encode())
    assert isinstance(short, Stopping) and short.reason == "shutting down"

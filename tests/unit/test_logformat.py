"""--log-format json: one JSON object per record, the message's key=value fields as keys."""

from __future__ import annotations

import json
import logging
import sys

from schedd.server.logformat import JsonFormatter, message_fields


def test_leading_fields_are_parsed_until_free_text() -> None:
    assert message_fields("event=map_grown from_mib=16 to_mib=32 path=/d/state") == {
        "event": "map_grown",
        "from_mib": 16,
        "to_mib": 32,
        "path": "/d/state",
    }
    assert message_fields("event=state_rebuild state=/s set_aside=/s.torn: the machine ...") == {
        "event": "state_rebuild",
        "state": "/s",
        "set_aside": "/s.torn",
    }
    assert message_fields("event=x error=Boom('a b') n=1") == {"event": "x", "error": "Boom('a"}
    assert message_fields("Raft journal damaged: x=1") == {}
    assert message_fields("") == {}
    assert message_fields("event=health_changed node=n1 reason=-") == {
        "event": "health_changed",
        "node": "n1",
        "reason": "-",
    }


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("schedd.node", logging.WARNING, __file__, 1, msg, args, info)


def test_a_record_becomes_one_json_line() -> None:
    line = JsonFormatter().format(
        _record("event=node_started node=%s level=x grpc=%s", "n1", "h:1")
    )
    assert "\n" not in line
    got = json.loads(line)
    assert got["level"] == "WARNING"  # a field named like a fixed key does not overwrite it
    assert got["logger"] == "schedd.node"
    assert got["message"] == "event=node_started node=n1 level=x grpc=h:1"
    assert got["event"] == "node_started" and got["node"] == "n1" and got["grpc"] == "h:1"
    assert got["time"].endswith("Z") and "T" in got["time"]


def test_a_traceback_stays_inside_the_object() -> None:
    line = JsonFormatter().format(_record("event=rpc_failed method=%s", "X", exc=True))
    assert "\n" not in line
    got = json.loads(line)
    assert "ValueError: boom" in got["exception"]

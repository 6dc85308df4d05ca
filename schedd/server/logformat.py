"""How a node's log lines look: ``key=value`` text (the default) or one JSON object per line.

schedd's messages are written as ``event=NAME k=v k=v[: free text]``. The JSON form keeps the
whole message under ``message`` and lifts those leading ``key=value`` fields into keys of the
object, so a log pipeline can filter on ``event`` without parsing text. Lines that do not follow
the convention (pysyncobj's, tracebacks) are kept whole in ``message`` (and ``exception``).

Failure contract: formatting never raises for any message; a field that would overwrite one of
the fixed keys (time, level, logger, message, exception) is dropped, the message still has it.
"""

from __future__ import annotations

import json
import logging
import re
import time

TEXT_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
FORMATS = ("text", "json")

_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(\S*)")
_INT = re.compile(r"-?[0-9]{1,18}")
_FIXED = frozenset({"time", "level", "logger", "message", "exception"})


def message_fields(message: str) -> dict[str, str | int]:
    """The leading ``key=value`` tokens of a message, in order, until the first token that is
    not one (free text). A value ending in ``:`` ends the fields (``k=v: text``); whole
    integers become ints. Pure."""
    out: dict[str, str | int] = {}
    for token in message.split(" "):
        m = _FIELD.fullmatch(token)
        if m is None:
            break
        key, value = m.group(1), m.group(2)
        last = value.endswith(":")
        if last:
            value = value[:-1]
        out[key] = int(value) if _INT.fullmatch(value) else value
        if last:
            break
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601 with milliseconds), level, logger,
    message, the message's fields, and ``exception`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in message_fields(message).items():
            if key not in _FIXED:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(kind: str) -> logging.Formatter:
    """The formatter for ``--log-format`` ``kind`` (one of :data:`FORMATS`)."""
    if kind == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)

"""A small TOML writer for what schedctl writes: the config file and ``job export``.

Python reads TOML (tomllib) but cannot write it. This covers the value types those documents
hold: strings, integers, floats, booleans, arrays of them, tables and arrays of tables. Top-level
tables become ``[section]`` headers, arrays of tables ``[[name]]`` headers; a table inside an
array-of-tables entry is written inline (``retry = { max_attempts = 3 }``). ``tomllib.loads``
of the output gives back the input (tested).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def key(k: str) -> str:
    """A bare key when TOML allows one, else a quoted key."""
    return k if _BARE.match(k) else string(k)


def string(s: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's; DEL must be escaped too)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def value(v: Any) -> str:
    """One value in TOML syntax; tables are written inline."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(str(k))} = {value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _section(path: list[str], table: Mapping[str, Any], out: list[str]) -> None:
    plain = [
        (k, v) for k, v in table.items() if not isinstance(v, Mapping) and not _is_table_array(v)
    ]
    for k, v in plain:
        out.append(f"{key(k)} = {value(v)}")
    for k, v in table.items():
        if isinstance(v, Mapping):
            sub = [*path, key(k)]
            if out:
                out.append("")
            out.append(f"[{'.'.join(sub)}]")
            _section(sub, v, out)
    for k, v in table.items():
        if _is_table_array(v):
            name = ".".join([*path, key(k)])
            for entry in v:
                if out:
                    out.append("")
                out.append(f"[[{name}]]")
                for ek, ev in entry.items():
                    out.append(f"{key(ek)} = {value(ev)}")


def dumps(doc: Mapping[str, Any]) -> str:
    """The TOML text of ``doc``, ending in a newline."""
    out: list[str] = []
    _section([], doc, out)
    return "\n".join(out) + "\n"

"""Client-side address helpers shared by the SDK (:mod:`schedd.client`) and the worker agent
(:mod:`schedd.agent`): parsing ``host:port`` lists, reading a follower's leader hint, back-off.

Pure: no grpc, no clock, no I/O. Bad input raises :class:`schedd.errors.InvalidArgument` naming
the field (it is also a ``ValueError``). The public names are re-exported by
:mod:`schedd.client`; this module is private.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from schedd import errors

__all__ = [
    "LEADER_METADATA_KEY",
    "backoff_delays",
    "leader_hint",
    "parse_endpoint",
    "parse_endpoints",
]

#: Trailing-metadata key in which a follower names the leader's gRPC address ("" = unknown).
LEADER_METADATA_KEY = "schedd-leader"

_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.\-]+)):(?P<port>\d{1,5})$"
)


def parse_endpoint(text: str, field: str = "endpoints") -> str:
    """Validate one ``host:port`` (or ``[v6addr]:port``) address and return it stripped.

    Raises :class:`schedd.errors.InvalidArgument` naming ``field`` when it is malformed.
    """
    text = text.strip()
    m = _HOST_PORT.match(text)
    if not m:
        raise errors.InvalidArgument(
            field, f"{text!r} is not host:port (for example 127.0.0.1:7101)"
        )
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise errors.InvalidArgument(field, f"{text!r} has port {port}; want 1-65535")
    return text


def parse_endpoints(endpoints: str | Sequence[str], field: str = "endpoints") -> list[str]:
    """Turn ``"h1:p1,h2:p2"`` or ``["h1:p1", "h2:p2,h3:p3"]`` into a list of unique addresses.

    Order is kept (the first one is tried first); blanks are ignored; an empty result or a
    malformed address raises :class:`schedd.errors.InvalidArgument` naming ``field``.
    """
    items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise errors.InvalidArgument(field, f"{item!r} is not a host:port string")
        for part in item.split(","):
            if part.strip():
                ep = parse_endpoint(part, field)
                if ep not in out:
                    out.append(ep)
    if not out:
        raise errors.InvalidArgument(field, "no endpoint given; want host:port[,host:port...]")
    return out


def leader_hint(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The leader address a follower put in the trailing metadata, or ``""`` when there is none.

    A hint that is not a valid ``host:port`` is ignored (treated as "leader unknown").
    """
    for key, value in metadata or ():
        if key.lower() != LEADER_METADATA_KEY:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = text.strip()
        if not text:
            return ""
        try:
            return parse_endpoint(text)
        except errors.InvalidArgument:
            return ""
    return ""


def backoff_delays(initial: float = 0.05, maximum: float = 1.0) -> Iterator[float]:
    """Back-off delays in seconds: ``initial``, doubling, capped at ``maximum``; never ends."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)

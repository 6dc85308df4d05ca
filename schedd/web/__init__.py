"""The web dashboard each node serves with ``schedd run --http HOST:PORT`` (docs/dashboard.md).

Modules, along the data flow: :mod:`~schedd.web.server` (uvicorn in a thread of the node),
:mod:`~schedd.web.app` (routes and actions), :mod:`~schedd.web.sessions` (sign-in, CSRF),
:mod:`~schedd.web.gateway` (SDK clients carrying the user's token), :mod:`~schedd.web.queries`
(what each page asks the API), :mod:`~schedd.web.viewmodel` (records to rows; pure) and
:mod:`~schedd.web.figures` (rates of the node's counters; pure). The dashboard is a client of
the gRPC API like any other: it imports the SDK and the models, never the state machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schedd.web.server import DashboardServer

__all__ = ["dashboard_server"]


def dashboard_server(
    listen: str,
    *,
    node_id: str,
    endpoints: Sequence[str],
    cert: str = "",
    key: str = "",
    ca: str = "",
    insecure: bool = False,
    plaintext: bool = False,
    figures: Callable[[], dict[str, float]] | None = None,
) -> DashboardServer:
    """Bind ``listen`` and return (not yet started) a :class:`~schedd.web.server.DashboardServer`:
    HTTPS with the node's certificate unless ``plaintext``; its SDK clients reach
    ``endpoints`` with the node's TLS files (``cert``/``key`` for mutual TLS, ``ca`` to verify
    the nodes) or in plaintext when the node is ``insecure``."""
    from schedd.web.app import Dashboard, create_app
    from schedd.web.gateway import ClusterAccess, Gateway
    from schedd.web.server import DashboardServer
    from schedd.web.sessions import Sessions

    access = ClusterAccess(
        tuple(endpoints), ca or None, cert or None, key or None, insecure=insecure
    )
    https = not plaintext
    dash = Dashboard(Gateway(access), Sessions(), https=https, node_id=node_id, figures=figures)
    return DashboardServer(
        listen, create_app(dash), cert=cert if https else "", key=key if https else ""
    )

"""A pytest plugin with a ``schedd_cluster`` fixture: a real local schedd cluster per test.

Enable it in your ``conftest.py``::

    pytest_plugins = ["schedd.pytest_plugin"]

then::

    def test_nightly_job(schedd_cluster) -> None:
        job = schedd_cluster.client.create_job("nightly", cron="0 3 * * *")
        assert job.next_due_at is not None

    @pytest.mark.schedd_cluster(nodes=1)            # options of schedd.testing.local_cluster
    def test_with_one_node(schedd_cluster) -> None: ...

The fixture yields a :class:`schedd.testing.RunningCluster` (``client``, ``endpoints``,
``kill_leader()``, ``async_client()``, ``cluster`` for everything else), started in the test's
``tmp_path`` (so the node logs are kept with pytest's temp dirs) and stopped after the test.
Starting one takes about two seconds; share one per module by writing a module-scoped fixture
around :func:`schedd.testing.local_cluster`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from schedd.testing import RunningCluster

__all__ = ["pytest_configure", "schedd_cluster"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``schedd_cluster`` marker (its keyword arguments configure the fixture)."""
    config.addinivalue_line(
        "markers",
        "schedd_cluster(**options): options of schedd.testing.local_cluster for the "
        "schedd_cluster fixture (nodes, extra_args, timeout, client_timeout, retry_for)",
    )


@pytest.fixture
def schedd_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningCluster]:
    """A started 3-node schedd cluster with a leader and a client: a
    :class:`schedd.testing.RunningCluster`. Options come from a ``schedd_cluster`` marker."""
    from schedd.testing import local_cluster  # imported late: plugin loading stays cheap

    marker = request.node.get_closest_marker("schedd_cluster")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    with local_cluster(root=str(tmp_path / "schedd-cluster"), **options) as cluster:
        yield cluster

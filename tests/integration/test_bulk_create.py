"""CreateJobs on a real 3-node cluster: 2,000 jobs in two calls reach every node; a retried
call creates nothing and answers the same; one invalid job fails the whole call naming it and
creates nothing; a name that exists is that job's ALREADY_EXISTS while the others are created;
a reader may not; the asyncio client does the same."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from schedd import errors
from schedd.client import Client
from schedd.sdk.credentials import Credentials
from schedd.testing import LocalCluster

pytestmark = pytest.mark.integration


def spec(i: int) -> dict[str, object]:
    return {
        "name": f"bulk-{i:04d}",
        "cron": f"{i % 60} {i % 24} * * *",
        "queue": "bulk",
        "payload": f'{{"n": {i}}}',
        "request_id": f"bulk-create-{i}",
    }


def outcomes(results: list) -> list[tuple[str, str, str, int]]:  # type: ignore[type-arg]
    return [(r.name, r.code, r.message, r.job.uid if r.job else 0) for r in results]


def count_jobs(client: Client, prefix: str = "") -> int:
    return sum(j.name.startswith(prefix) for j in client.list_jobs(limit=None))


def test_bulk_create_on_a_three_node_cluster(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    with c.client(retry_for=30, timeout=30) as client:
        first = client.create_jobs([spec(i) for i in range(1000)])
        second = client.create_jobs([spec(i) for i in range(1000, 2000)])
        assert [r.code for r in first + second] == ["OK"] * 2000
        assert [r.index for r in second] == list(range(1000))
        assert len({r.job.uid for r in first if r.job}) == 1  # one entry: one log index
        assert first[0].job is not None and first[0].job.queue == "bulk"
        assert count_jobs(client, "bulk-") == 2000
        _, digest = c.wait_converged(timeout=60)  # every node holds the same 2,000 jobs

        # a retry of the first call (same request ids): nothing new, the same answers
        again = client.create_jobs([spec(i) for i in range(1000)])
        assert outcomes(again) == outcomes(first)
        assert count_jobs(client, "bulk-") == 2000

        # one invalid job: the call fails naming it, and nothing is created
        bad = [{"name": f"never-{i}", "every_ms": 60_000} for i in range(5)]
        bad[3] = {"name": "never-3", "cron": "61 * * * *"}
        with pytest.raises(errors.InvalidArgument, match=r"jobs\[3\]\.schedule\.cron: '61"):
            client.create_jobs(bad)
        dup = [{"name": "twice", "every_ms": 60_000}, {"name": "twice", "every_ms": 60_000}]
        with pytest.raises(errors.InvalidArgument, match=r"jobs\[1\]\.name: 'twice' is also"):
            client.create_jobs(dup)
        assert count_jobs(client, "never-") == 0 and count_jobs(client, "twice") == 0

        # a name that exists: that job's ALREADY_EXISTS; the others are created
        mixed = client.create_jobs(
            [
                {"name": "fresh-1", "every_ms": 60_000},
                {"name": "bulk-0007", "every_ms": 60_000},
                {"name": "fresh-2", "every_ms": 60_000, "on_success": "fresh-1"},
            ]
        )
        assert [r.code for r in mixed] == ["OK", "ALREADY_EXISTS", "OK"]
        assert "bulk-0007" in mixed[1].message and isinstance(mixed[1].error, errors.AlreadyExists)
        assert client.get_job("fresh-2").on_success == "fresh-1"
        assert client.get_job("bulk-0007").schedule.cron == "7 7 * * *"  # unchanged

        # the audit trail names each job created, with who
        records, _ = client.list_audit(target="fresh-2")
        assert [(r.action, r.code) for r in records] == [("create_job", "OK")]

        # a reader may not create, in bulk or not
        reader = client.create_token("bulk-reader", ["reader"], ttl_s=600).secret
        creds = Credentials(
            ca=c.ca_file, cert=c.admin_cert.cert, key=c.admin_cert.key, token=reader
        )
        with Client(c.endpoints, credentials=creds, retry_for=30) as r:
            with pytest.raises(errors.PermissionDenied):
                r.create_jobs([{"name": "by-reader", "every_ms": 60_000}])
        assert count_jobs(client, "by-reader") == 0

    async def with_asyncio() -> list[str]:
        async with c.async_client(retry_for=30) as ac:
            out = await ac.create_jobs(
                [{"name": f"async-{i}", "every_ms": 60_000} for i in range(3)]
            )
            return [r.code for r in out]

    assert asyncio.run(with_asyncio()) == ["OK"] * 3
    _, after = c.wait_converged(timeout=60)
    assert after != digest

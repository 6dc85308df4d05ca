"""A worker that connects while its cluster elects a new leader is told the new leader as soon
as the node it asked knows it: not the dead leader (which followers name until their election
timeout) and not "no leader known" (which sends the worker round the nodes with a back-off)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from schedd.pb import api_grpc, api_pb2
from schedd.sdk.endpoints import LEADER_METADATA_KEY
from schedd.testing import LocalCluster

pytestmark = pytest.mark.integration


def test_a_worker_connecting_during_an_election_is_told_the_new_leader(tmp_path: Path) -> None:
    cluster = LocalCluster(str(tmp_path / "c"), nodes=3)  # the product's election timeouts
    cluster.start()
    try:
        old = cluster.wait_for_leader(timeout=30)
        cluster.wait_converged(timeout=30)
        asked = next(n for n in cluster.procs if n != old)
        creds = cluster.worker_credentials
        channel = creds.channel(cluster.spec(asked).grpc)
        try:
            grpc.channel_ready_future(channel).result(timeout=10)  # TLS up before the kill
            cluster.kill_node(old)
            # The followers' Raft links to the dead leader close at once; they elect a new one
            # only after 0.4 s at the earliest, and name the dead one until then.
            time.sleep(0.1)
            hello = api_pb2.WorkerMessage(hello=api_pb2.Hello(worker_id="wf", queues=["q"]))
            call = api_grpc.WorkerServiceStub(channel).Connect(
                iter([hello]), metadata=creds.metadata, timeout=10
            )
            try:
                first = next(call)
            except grpc.RpcError as e:
                assert e.code() is grpc.StatusCode.UNAVAILABLE, e.details()
                named = dict(e.trailing_metadata() or ()).get(LEADER_METADATA_KEY, "")
            else:  # the node asked won the election: it serves the worker itself
                assert first.WhichOneof("body") == "welcome"
                named = cluster.spec(asked).grpc
                call.cancel()
        finally:
            channel.close()
        new = cluster.wait_for_leader(timeout=30, exclude=old)
        assert named == cluster.spec(new).grpc, (
            f"told {named!r}; the dead leader was {cluster.spec(old).grpc}, the new one "
            f"{cluster.spec(new).grpc}"
        )
    finally:
        cluster.stop()

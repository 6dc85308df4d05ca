"""A client request id is bound to a hash of its request (schedd.server.service.scope_request):
two spellings of the same request (namespace ``default`` written out or left empty, as an SDK
from before namespaces sends it) must hash alike, or the retry of an ambiguous write is refused
as "a different request" (the chaos scenario ambiguous-client-write caught that)."""

from __future__ import annotations

from typing import Any

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sdk import core
from schedd.server.service import scope_request


class _Context:
    def auth_context(self) -> dict[str, Any]:
        return {}


def _hash(method: str, req: Any) -> bytes:
    cmd = command_pb2.Command(request_id="rid-1")
    return scope_request(cmd, _Context(), method, req).request_hash  # type: ignore[arg-type]


def _create(ns: str) -> api_pb2.CreateJobRequest:
    return api_pb2.CreateJobRequest(
        name="nightly",
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 2 * * *"),
        request_id="rid-1",
        namespace=ns,
    )


def test_the_default_namespace_hashes_the_same_written_out_or_not() -> None:
    assert _hash("CreateJob", _create("")) == _hash("CreateJob", _create("default"))
    update = api_pb2.UpdateJobRequest(job=_create("default"))
    assert _hash("UpdateJob", update) == _hash(
        "UpdateJob", api_pb2.UpdateJobRequest(job=_create(""))
    )
    trig = api_pb2.TriggerJobRequest(name="nightly", request_id="rid-1")
    assert _hash("TriggerJob", trig) == _hash(
        "TriggerJob",
        api_pb2.TriggerJobRequest(name="nightly", request_id="rid-1", namespace="default"),
    )


def test_another_namespace_or_request_hashes_differently() -> None:
    assert _hash("CreateJob", _create("team-a")) != _hash("CreateJob", _create(""))
    other = _create("")
    other.schedule.cron = "0 3 * * *"
    assert _hash("CreateJob", other) != _hash("CreateJob", _create(""))


def test_the_sdk_sends_the_default_namespace_as_an_empty_field() -> None:
    call = core.in_namespace(core.get_job("nightly"), "default")
    assert call.request.namespace == ""
    call = core.in_namespace(core.get_job("nightly"), "team-a")
    assert call.request.namespace == "team-a"

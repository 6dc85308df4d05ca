"""The SDK's decisions without a network: endpoint parsing, leader hints, status-code mapping,
and the leader-following retry loop driven by a scripted fake cluster and a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from schedd import errors
from schedd.client import (
    Action,
    Client,
    backoff_delays,
    classify,
    error_from_status,
    leader_hint,
    parse_endpoint,
    parse_endpoints,
    summarize_failure,
)
from schedd.clock import FakeClock
from schedd.pb import api_pb2, types_pb2

# ---- endpoints -----------------------------------------------------------------------------


def test_parse_endpoints_accepts_comma_string_and_lists() -> None:
    assert parse_endpoints("a:1, b:2 ,c:3") == ["a:1", "b:2", "c:3"]
    assert parse_endpoints(["a:1", "b:2,c:3"]) == ["a:1", "b:2", "c:3"]
    assert parse_endpoints(" 127.0.0.1:7101 ") == ["127.0.0.1:7101"]


def test_parse_endpoints_drops_blanks_and_duplicates_keeping_order() -> None:
    assert parse_endpoints("b:2,,a:1,b:2,") == ["b:2", "a:1"]


def test_parse_endpoint_ipv6_and_hostnames() -> None:
    assert parse_endpoint("[::1]:7101") == "[::1]:7101"
    assert parse_endpoint("node-1.example.com:443") == "node-1.example.com:443"


@pytest.mark.parametrize(
    "bad", ["", " , ", "localhost", "host:", ":7101", "host:0", "host:65536", "a b:1", "h:1:2"]
)
def test_parse_endpoints_rejects_malformed_naming_the_field(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        parse_endpoints(bad, field="--endpoints")
    assert info.value.field == "--endpoints"
    assert info.value.message.startswith("--endpoints: ")


def test_parse_endpoints_rejects_non_strings() -> None:
    with pytest.raises(errors.InvalidArgument):
        parse_endpoints(["a:1", 7])  # type: ignore[list-item]


def test_client_rejects_bad_settings_before_any_network() -> None:
    with pytest.raises(errors.InvalidArgument):
        Client("")
    with pytest.raises(errors.InvalidArgument):
        Client("a:1", timeout=0)
    with pytest.raises(errors.InvalidArgument):
        Client("a:1", retry_for=-1)


# ---- leader hints --------------------------------------------------------------------------


def test_leader_hint_reads_the_key_as_str_or_bytes() -> None:
    assert leader_hint([("other", "x"), ("schedd-leader", "10.0.0.2:7102")]) == "10.0.0.2:7102"
    assert leader_hint((("schedd-leader", b"10.0.0.3:7103"),)) == "10.0.0.3:7103"
    assert leader_hint([("Schedd-Leader", " h:1 ")]) == "h:1"


@pytest.mark.parametrize(
    "metadata",
    [None, [], [("other", "h:1")], [("schedd-leader", "")], [("schedd-leader", "not an addr")]],
)
def test_leader_hint_is_empty_when_absent_blank_or_invalid(metadata: Any) -> None:
    assert leader_hint(metadata) == ""


# ---- classification and error mapping ------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "ABORTED", "FAILED_PRECONDITION"]
)
@pytest.mark.parametrize("idempotent", [True, False])
def test_final_codes_are_never_retried(code: str, idempotent: bool) -> None:
    assert classify(code, hint="b:2", current="a:1", idempotent=idempotent) is Action.FAIL


def test_unavailable_follows_a_hint_else_rotates() -> None:
    assert classify("UNAVAILABLE", hint="b:2", current="a:1", idempotent=False) is Action.FOLLOW
    assert classify("UNAVAILABLE", hint="", current="a:1", idempotent=False) is Action.ROTATE
    # a node naming itself is mid-election: ask it again after a back-off
    assert classify("UNAVAILABLE", hint="a:1", current="a:1", idempotent=True) is Action.RETRY


def test_deadline_rotates_only_when_resending_is_safe() -> None:
    assert classify("DEADLINE_EXCEEDED", hint="", current="a:1", idempotent=True) is Action.ROTATE
    assert classify("DEADLINE_EXCEEDED", hint="", current="a:1", idempotent=False) is Action.FAIL


def test_a_write_that_timed_out_before_any_connection_is_safe_to_resend() -> None:
    kw: dict[str, Any] = {"hint": "", "current": "a:1", "idempotent": False}
    assert classify("DEADLINE_EXCEEDED", maybe_sent=False, **kw) is Action.ROTATE
    assert classify("DEADLINE_EXCEEDED", maybe_sent=True, **kw) is Action.FAIL


@pytest.mark.parametrize("code", ["INTERNAL", "UNKNOWN", "UNIMPLEMENTED", "PERMISSION_DENIED"])
def test_other_codes_fail(code: str) -> None:
    assert classify(code, hint="", current="a:1", idempotent=True) is Action.FAIL


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("NOT_FOUND", errors.NotFound),
        ("ALREADY_EXISTS", errors.AlreadyExists),
        ("ABORTED", errors.StaleFence),
        ("FAILED_PRECONDITION", errors.FailedPrecondition),
        ("UNAVAILABLE", errors.Unavailable),
        ("DEADLINE_EXCEEDED", errors.OutcomeUnknown),
        ("INTERNAL", errors.Internal),
    ],
)
def test_error_from_status_maps_codes_to_types(code: str, cls: type[errors.SchedError]) -> None:
    err = error_from_status(code, "job 'x' something")
    assert type(err) is cls
    assert err.message == "job 'x' something"


def test_invalid_argument_keeps_the_field() -> None:
    err = error_from_status("INVALID_ARGUMENT", "schedule.cron: invalid cron expression 'x'")
    assert isinstance(err, errors.InvalidArgument)
    assert err.field == "schedule.cron"
    assert err.message == "schedule.cron: invalid cron expression 'x'"


def test_unavailable_with_hint_is_not_leader_carrying_it() -> None:
    err = error_from_status("UNAVAILABLE", "not the leader", hint="b:2")
    assert isinstance(err, errors.NotLeader)
    assert isinstance(err, errors.Unavailable)
    assert err.leader == "b:2"


def test_unknown_codes_become_internal_naming_the_code_on_one_line() -> None:
    err = error_from_status("UNIMPLEMENTED", "Method\nnot found!")
    assert type(err) is errors.Internal
    assert err.message == "UNIMPLEMENTED: Method not found!"
    assert error_from_status("DATA_LOSS", "").message == "DATA_LOSS"


def test_denials_and_limits_are_typed_and_final() -> None:
    assert type(error_from_status("UNAUTHENTICATED", "x")) is errors.Unauthenticated
    assert type(error_from_status("PERMISSION_DENIED", "x")) is errors.PermissionDenied
    assert type(error_from_status("RESOURCE_EXHAUSTED", "x")) is errors.ResourceExhausted
    for code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"):
        assert classify(code, hint="", current="a:1", idempotent=True) is Action.FAIL


def test_summarize_failure_shortens_grpc_connection_noise() -> None:
    noisy = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
        "Failed to connect to remote host: Connection refused"
    )
    assert summarize_failure("UNAVAILABLE", noisy) == "connection refused"
    assert (
        summarize_failure("DEADLINE_EXCEEDED", "Deadline Exceeded", 2.5) == "no answer within 2.5s"
    )
    assert summarize_failure("UNAVAILABLE", "no leader\nknown") == "no leader known"
    assert summarize_failure("UNAVAILABLE", "") == "unavailable"


def test_backoff_doubles_from_50ms_to_a_1s_cap() -> None:
    it = backoff_delays()
    assert [next(it) for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


# ---- the retry loop against a scripted fake cluster ----------------------------------------


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "", leader: str | None = None) -> None:
        super().__init__(details)
        self._code, self._details = code, details
        self._md = () if leader is None else (("schedd-leader", leader),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md


Handler = Callable[[str, str, Any], Any]
REFUSED = "failed to connect to all addresses; last error: Connection refused"


class FakeCluster:
    """Stands in for Client._stub: every RPC goes to ``handler(target, method, request)``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[str, str, Any]] = []

    def stub(self, target: str) -> Any:
        cluster = self

        class Service:
            def __getattr__(self, method: str) -> Callable[..., Any]:
                def call(request: Any, timeout: float | None = None) -> Any:
                    assert timeout is not None, "every call has a deadline"
                    cluster.calls.append((target, method, request))
                    return cluster.handler(target, method, request)

                return call

        class Node:
            jobs = runs = cluster = Service()

        return Node()


def make_client(
    handler: Handler, endpoints: str = "a:1,b:2,c:3", retry_for: float = 20.0, wait_for: float = 0.0
) -> tuple[Client, FakeCluster, FakeClock, list[float]]:
    clock = FakeClock()
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.advance(s)

    client = Client(
        endpoints, timeout=1.0, retry_for=retry_for, wait_for=wait_for, clock=clock, sleep=sleep
    )
    fake = FakeCluster(handler)
    client._stub = fake.stub  # type: ignore[method-assign]
    return client, fake, clock, sleeps


def job_response(name: str = "j") -> api_pb2.JobResponse:
    return api_pb2.JobResponse(job=types_pb2.Job(name=name))


def test_follower_hint_is_followed_even_outside_the_endpoint_list() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        if target != "leader:9":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "not the leader", leader="leader:9")
        return job_response(req.name)

    client, fake, _, sleeps = make_client(handler)
    assert client.get_job("j").name == "j"
    assert [t for t, _, _ in fake.calls] == ["a:1", "leader:9"]
    assert sleeps == []  # a hint is followed at once
    assert client.leader == "leader:9"
    client.get_job("j")  # the next call goes straight to the leader
    assert [t for t, _, _ in fake.calls][-1] == "leader:9"
    assert len(fake.calls) == 3


def test_dead_nodes_are_rotated_past_with_backoff() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        if target in ("a:1", "b:2"):
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)
        return job_response()

    client, fake, _, sleeps = make_client(handler)
    client.get_job("j")
    assert [t for t, _, _ in fake.calls] == ["a:1", "b:2", "c:3"]
    assert sleeps == [0.05, 0.1]


def test_gives_up_after_retry_for_with_an_actionable_unavailable() -> None:
    # Reachable nodes that know no leader (an election): retried for retry_for, as before.
    def handler(target: str, method: str, req: Any) -> Any:
        if target == "a:1":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no leader known")

    client, fake, clock, _ = make_client(handler, retry_for=5.0)
    start = clock.monotonic()
    with pytest.raises(errors.Unavailable) as info:
        client.get_job("j")
    assert not isinstance(info.value, grpc.RpcError)
    assert not isinstance(info.value, errors.Unreachable)
    assert 4.0 <= clock.monotonic() - start <= 5.0
    msg = info.value.message
    assert "no leader reachable at a:1,b:2,c:3" in msg
    assert "schedctl cluster status" in msg
    assert {t for t, _, _ in fake.calls} == {"a:1", "b:2", "c:3"}


def test_no_endpoint_reachable_fails_after_one_round_naming_them() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)

    client, fake, clock, sleeps = make_client(handler, retry_for=20.0)
    with pytest.raises(errors.Unreachable) as info:
        client.get_job("j")
    assert [t for t, _, _ in fake.calls] == ["a:1", "b:2", "c:3"]
    assert sum(sleeps) < 1.0
    msg = info.value.message
    assert "no node could be reached (a:1, b:2, c:3: connection refused)" in msg
    assert "is the cluster running?" in msg and "schedd dev" in msg and "SCHEDD_ENDPOINTS" in msg
    assert "not applied" not in msg  # a read


def test_a_write_that_reached_no_node_says_it_was_not_applied() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)

    client, _, _, _ = make_client(handler)
    with pytest.raises(errors.Unreachable) as info:
        client.pause_job("j")
    assert info.value.message.startswith("PauseJob not applied: no node could be reached")
    assert "may or may not" not in info.value.message


def test_wait_for_keeps_trying_unreachable_endpoints_until_it_passes() -> None:
    calls = 0

    def handler(target: str, method: str, req: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < 8:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)
        return job_response()

    client, _, clock, _ = make_client(handler, retry_for=1.0, wait_for=30.0)
    start = clock.monotonic()
    assert client.get_job("j").name == "j"
    assert clock.monotonic() - start > 1.0  # past retry_for: wait_for is the longer budget

    def refused(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)

    client, _, clock, _ = make_client(refused, wait_for=3.0)
    start = clock.monotonic()
    with pytest.raises(errors.Unreachable):
        client.get_job("j")
    assert 2.0 <= clock.monotonic() - start <= 3.0


@pytest.mark.parametrize(
    ("details", "needle"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:7: Tls "
            "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
            "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer",
            "SCHEDD_CA / --ca",
        ),
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:7: Tls "
            "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL "
            "routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
            "does not speak TLS",
        ),
        (
            "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:7: "
            "Socket closed",
            "plaintext client at a TLS port",
        ),
    ],
)
def test_tls_mismatches_are_named_not_reported_as_no_leader(details: str, needle: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, details)

    client, _, _, _ = make_client(handler)
    with pytest.raises(errors.Unreachable) as info:
        client.get_job("j")
    assert needle in info.value.message and "TLS" in info.value.message
    assert "no leader" not in info.value.message


def test_hint_ping_pong_between_two_nodes_backs_off_and_ends() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        other = "b:2" if target == "a:1" else "a:1"
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "not the leader", leader=other)

    client, _, _, sleeps = make_client(handler, retry_for=3.0)
    with pytest.raises(errors.Unavailable):
        client.get_job("j")
    assert sleeps, "bouncing between hints must back off"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.ABORTED, errors.StaleFence),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.INTERNAL, errors.Internal),
    ],
)
def test_final_answers_raise_typed_errors_after_one_attempt(
    code: grpc.StatusCode, cls: type[errors.SchedError]
) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(code, "name: nope")

    client, fake, _, _ = make_client(handler)
    with pytest.raises(cls):
        client.get_job("j")
    assert len(fake.calls) == 1


def test_timed_out_write_without_request_id_is_outcome_unknown_not_retried() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    client, fake, _, _ = make_client(handler)
    with pytest.raises(errors.OutcomeUnknown):
        client.delete_job("j")
    with pytest.raises(errors.OutcomeUnknown) as info:
        client.complete_run("r", 7, success=False)
    assert "no answer within 1s" in info.value.message
    assert len(fake.calls) == 2


def test_server_side_deadline_message_is_kept() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "proposal not committed in 5s")

    client, _, _, _ = make_client(handler)
    with pytest.raises(errors.OutcomeUnknown) as info:
        client.pause_job("j")
    assert "PauseJob at a:1: proposal not committed in 5s" in info.value.message


def test_a_timed_out_success_is_resent_with_the_same_fence() -> None:
    sent: list[tuple[str, int]] = []

    def handler(target: str, method: str, req: Any) -> Any:
        sent.append((req.run_id, req.fence))
        if len(sent) == 1:
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return api_pb2.CompleteRunResponse()

    client, _, _, _ = make_client(handler)
    client.complete_run("r", 7, success=True)
    assert sent == [("r", 7), ("r", 7)]


def test_create_retries_after_timeout_with_the_same_generated_request_id() -> None:
    seen: list[str] = []

    def handler(target: str, method: str, req: Any) -> Any:
        seen.append(req.request_id)
        if len(seen) < 3:
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return job_response(req.name)

    client, _, _, _ = make_client(handler)
    client.create_job("j", cron="* * * * *")
    assert len(seen) == 3
    assert len(set(seen)) == 1
    assert len(seen[0]) == 32 and int(seen[0], 16) >= 0  # uuid4 hex


def test_each_create_gets_a_fresh_request_id_unless_given() -> None:
    seen: list[str] = []

    def handler(target: str, method: str, req: Any) -> Any:
        seen.append(req.request_id)
        return job_response() if method == "CreateJob" else api_pb2.TriggerJobResponse()

    client, _, _, _ = make_client(handler)
    client.create_job("a", cron="* * * * *")
    client.create_job("b", cron="* * * * *")
    client.create_job("c", at_ms=5, request_id="mine")
    client.trigger_job("a", request_id="t1")
    client.trigger_job("a")
    assert seen[0] != seen[1]
    assert seen[2:4] == ["mine", "t1"]
    assert len(seen[4]) == 32


def test_create_job_builds_the_schedule() -> None:
    reqs: list[api_pb2.CreateJobRequest] = []

    def handler(target: str, method: str, req: Any) -> Any:
        reqs.append(req)
        return job_response()

    client, _, _, _ = make_client(handler)
    client.create_job("a", cron="0 3 * * *", tz="Europe/Berlin", queue="q", payload="{}")
    client.create_job("b", at_ms=1_700_000_000_000, max_attempts=3)
    assert reqs[0].schedule.kind == types_pb2.SCHEDULE_KIND_CRON
    assert (reqs[0].schedule.cron, reqs[0].schedule.timezone) == ("0 3 * * *", "Europe/Berlin")
    assert (reqs[0].queue, reqs[0].payload) == ("q", "{}")
    assert reqs[1].schedule.kind == types_pb2.SCHEDULE_KIND_AT
    assert (reqs[1].schedule.at_ms, reqs[1].max_attempts) == (1_700_000_000_000, 3)


@pytest.mark.parametrize("kwargs", [{}, {"cron": "* * * * *", "at_ms": 1}])
def test_create_job_needs_exactly_one_schedule(kwargs: dict[str, Any]) -> None:
    client, fake, _, _ = make_client(lambda *a: job_response())
    with pytest.raises(errors.InvalidArgument) as info:
        client.create_job("a", **kwargs)
    assert info.value.field == "schedule"
    assert fake.calls == []


def test_protobuf_type_errors_become_invalid_argument() -> None:
    client, fake, _, _ = make_client(lambda *a: job_response())
    with pytest.raises(errors.InvalidArgument):
        client.get_job(123)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        client.complete_run("r", -1, success=True)
    assert fake.calls == []


def test_list_jobs_pages_with_after_name() -> None:
    names = [f"job{i:04d}" for i in range(2500)]

    def handler(target: str, method: str, req: api_pb2.ListJobsRequest) -> Any:
        start = 0 if not req.after_name else names.index(req.after_name) + 1
        page = names[start : start + min(req.limit, 700)]  # the server caps pages at 700
        return api_pb2.ListJobsResponse(jobs=[types_pb2.Job(name=n) for n in page])

    client, fake, _, _ = make_client(handler)
    assert [j.name for j in client.list_jobs(limit=None)] == names
    assert [j.name for j in client.list_jobs(limit=1000)] == names[:1000]
    assert [j.name for j in client.list_jobs(limit=3)] == names[:3]


def test_list_jobs_stops_when_the_server_ignores_after_name() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        return api_pb2.ListJobsResponse(jobs=[types_pb2.Job(name="a"), types_pb2.Job(name="b")])

    client, fake, _, _ = make_client(handler)
    assert [j.name for j in client.list_jobs(limit=None)] == ["a", "b"]
    assert len(fake.calls) == 2


def test_cluster_status_reports_each_node_and_never_raises() -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        assert method == "GetNodeStatus"
        if target == "b:2":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)
        if target == "c:3":
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return api_pb2.NodeStatus(node_id="n1", role="leader")

    client, _, _, _ = make_client(handler)
    reports = client.cluster_status(timeout=0.5)
    assert [(ep, st is not None, err) for ep, st, err in reports] == [
        ("a:1", True, ""),
        ("b:2", False, "connection refused"),
        ("c:3", False, "no answer within 0.5s"),
    ]
    assert reports[0][1] is not None and reports[0][1].role == "leader"


def test_closed_client_refuses_calls_with_a_sched_error() -> None:
    client = Client("127.0.0.1:1")
    client.close()
    client.close()  # idempotent
    with pytest.raises(errors.FailedPrecondition):
        client.get_job("j")

"""The SDK's typed records (schedd.models) against the protobuf descriptors: same field names,
enum numbers equal to the protobuf ones, lossless from_pb/to_pb, JSON-ready to_dict."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from schedd import errors, models
from schedd.pb import api_pb2, types_pb2
from tests.unit.test_cli_json import _fill  # fills any message, enums with unnamed numbers too

RECORDS: list[tuple[type[models.Record], type[Message]]] = [
    (models.Schedule, types_pb2.Schedule),
    (models.RetryPolicy, types_pb2.RetryPolicy),
    (models.Job, types_pb2.Job),
    (models.Run, types_pb2.Run),
    (models.NodeStatus, api_pb2.NodeStatus),
    (models.BackfillResult, api_pb2.BackfillResponse),
    (models.Explanation, api_pb2.ExplainResponse),
]
ENUMS: list[tuple[type[models.ProtoEnum], Any]] = [
    (models.ScheduleKind, types_pb2.ScheduleKind),
    (models.DstGap, types_pb2.DstGap),
    (models.DstRepeat, types_pb2.DstRepeat),
    (models.MisfirePolicy, types_pb2.MisfirePolicy),
    (models.OverlapPolicy, types_pb2.OverlapPolicy),
    (models.SkipReason, types_pb2.SkipReason),
    (models.RunOrigin, types_pb2.RunOrigin),
    (models.JobState, types_pb2.JobState),
    (models.RunState, types_pb2.RunState),
    (models.Outcome, api_pb2.Outcome),
]


def _repeated(fd: FieldDescriptor) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == FieldDescriptor.LABEL_REPEATED  # type: ignore[attr-defined]


def populated(desc: Descriptor, seed: int = 1) -> Any:
    """A message with every field set to a distinct non-default value (nested ones too)."""
    msg = desc._concrete_class()

    def scalar(fd: FieldDescriptor, n: int) -> Any:
        if fd.enum_type is not None:
            values = [v.number for v in fd.enum_type.values]
            return values[1 + n % (len(values) - 1)]
        if fd.type == FieldDescriptor.TYPE_STRING:
            return f"{fd.name}-{n}"
        if fd.type == FieldDescriptor.TYPE_BOOL:
            return True
        if fd.type == FieldDescriptor.TYPE_DOUBLE:
            return 1.5 + n
        return 1_700_000_000_000 + n if fd.name.endswith("_ms") else 3 + n

    for i, fd in enumerate(desc.fields):
        n = seed + i
        sub = fd.message_type
        if sub is not None and sub.GetOptions().map_entry:
            getattr(msg, fd.name).update({"zone": f"z{n}", "gpu": "yes"})
        elif sub is not None and _repeated(fd):
            getattr(msg, fd.name).extend([populated(sub, n), populated(sub, n + 7)])
        elif sub is not None:
            getattr(msg, fd.name).CopyFrom(populated(sub, n))
        elif _repeated(fd):
            getattr(msg, fd.name).extend([scalar(fd, n), scalar(fd, n + 1)])
        else:
            setattr(msg, fd.name, scalar(fd, n))
    return msg


@pytest.mark.parametrize(("record", "pb"), RECORDS, ids=lambda x: getattr(x, "__name__", ""))
def test_record_fields_are_the_protobuf_fields_in_order(
    record: type[Any], pb: type[Message]
) -> None:
    assert [f.name for f in dataclasses.fields(record)] == [f.name for f in pb.DESCRIPTOR.fields]
    assert record._pb is pb


@pytest.mark.parametrize(("enum_cls", "pb"), ENUMS, ids=lambda x: getattr(x, "__name__", ""))
def test_enum_members_are_the_protobuf_values(enum_cls: type[models.ProtoEnum], pb: Any) -> None:
    prefix = pb.Name(0).removesuffix("UNSPECIFIED")
    assert {m.name: m.value for m in enum_cls} == {
        name.removeprefix(prefix): number for name, number in pb.items()
    }
    for member in enum_cls:
        assert member == pb.Value(member.proto_name)  # e.g. RunState.DEAD == RUN_STATE_DEAD
        assert member.name == "UNSPECIFIED" or enum_cls.parse(member.word) is member


@pytest.mark.parametrize(("record", "pb"), RECORDS, ids=lambda x: getattr(x, "__name__", ""))
def test_from_pb_to_pb_round_trips_a_fully_populated_message(
    record: type[Any], pb: type[Message]
) -> None:
    msg = populated(pb.DESCRIPTOR)
    rec = record.from_pb(msg)
    assert rec.to_pb() == msg
    assert record.from_pb(rec.to_pb()) == rec


@pytest.mark.parametrize(("record", "pb"), RECORDS, ids=lambda x: getattr(x, "__name__", ""))
def test_empty_message_round_trips_and_unset_optionals_are_none(
    record: type[Any], pb: type[Message]
) -> None:
    rec = record.from_pb(pb())
    assert rec == record()
    assert rec.to_pb() == pb()


def _json_equal(ours: Any, theirs: Any) -> None:
    """protobuf's JSON mapping writes 64-bit integers as strings; ours as numbers."""
    if isinstance(ours, dict):
        assert set(ours) == set(theirs)
        for key in ours:
            _json_equal(ours[key], theirs[key])
    elif isinstance(ours, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            _json_equal(a, b)
    elif isinstance(ours, int) and not isinstance(ours, bool) and isinstance(theirs, str):
        assert str(ours) == theirs
    else:
        assert ours == theirs


@pytest.mark.parametrize(("record", "pb"), RECORDS, ids=lambda x: getattr(x, "__name__", ""))
def test_to_dict_is_json_ready_and_matches_protobuf_json(
    record: type[Any], pb: type[Message]
) -> None:
    msg = populated(pb.DESCRIPTOR)
    doc = record.from_pb(msg).to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert list(doc) == [f.name for f in pb.DESCRIPTOR.fields]  # field-number order
    _json_equal(doc, json_format.MessageToDict(msg, preserving_proto_field_name=True))


def test_job_presence_semantics() -> None:
    job = models.Job.from_pb(types_pb2.Job(name="j"))
    assert job.retry is None and not job.HasField("retry")
    assert isinstance(job.schedule, models.Schedule)  # always a record
    assert job.schedule.anchor_ms is None and not job.schedule.HasField("anchor_ms")
    with pytest.raises(ValueError):
        job.HasField("name")  # no presence, as in protobuf
    explicit = models.Job.from_pb(
        types_pb2.Job(
            retry=types_pb2.RetryPolicy(initial_backoff_ms=0),
            schedule=types_pb2.Schedule(anchor_ms=0),
        )
    )
    assert explicit.retry is not None and explicit.retry.initial_backoff_ms == 0
    assert explicit.HasField("retry") and explicit.schedule.anchor_ms == 0
    assert explicit.to_pb().retry.HasField("initial_backoff_ms")
    assert explicit.to_pb().schedule.HasField("anchor_ms")
    assert job.to_dict()["retry"] is None and job.to_dict()["schedule"]["anchor_ms"] is None


def test_enums_compare_with_protobuf_constants_and_serialize_as_names() -> None:
    run = models.Run.from_pb(
        types_pb2.Run(state=types_pb2.RUN_STATE_SUCCEEDED, origin=types_pb2.RUN_ORIGIN_TRIGGER)
    )
    assert run.state == types_pb2.RUN_STATE_SUCCEEDED and run.state is models.RunState.SUCCEEDED
    assert isinstance(run.state, int) and run.state.word == "succeeded"
    assert run.to_dict()["state"] == "RUN_STATE_SUCCEEDED"
    assert run.to_dict()["origin"] == "RUN_ORIGIN_TRIGGER"
    assert json.dumps(int(run.state)) == "3"
    assert run.done and not models.Run(state=models.RunState.LEASED).done


def test_unknown_enum_numbers_from_a_newer_server_are_kept() -> None:
    run = models.Run.from_pb(types_pb2.Run(state=42))  # type: ignore[arg-type]
    assert int(run.state) == 42 and run.state.name == "UNKNOWN_42"
    assert run.to_pb().state == 42
    assert run.to_dict()["state"] == 42
    assert not run.done


def test_timestamps_have_utc_datetime_properties() -> None:
    run = models.Run(scheduled_ms=1_700_000_000_123, finished_ms=0)
    assert run.scheduled_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert run.finished_at is None
    job = models.Job(next_due_ms=86_400_000, state=models.JobState.PAUSED)
    assert job.next_due_at == datetime(1970, 1, 2, tzinfo=UTC) and job.paused
    assert models.Schedule(at_ms=1000).at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert models.Explanation(slot_ms=0).slot_at is None


def test_records_are_frozen_and_collections_are_tuples_and_dicts() -> None:
    run = models.Run.from_pb(types_pb2.Run(run_id="r", tags={"zone": "a"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.run_id = "x"  # type: ignore[misc]
    assert run.tags == {"zone": "a"} and type(run.tags) is dict
    ns = models.NodeStatus.from_pb(api_pb2.NodeStatus(peers=["n2", "n3"], role="leader"))
    assert ns.peers == ("n2", "n3") and ns.is_leader
    ex = models.Explanation.from_pb(api_pb2.ExplainResponse(runs=[types_pb2.Run(run_id="a")]))
    assert ex.runs == (models.Run(run_id="a"),)


def test_from_pb_rejects_the_wrong_message_type() -> None:
    with pytest.raises(TypeError, match="schedd.v1.Job"):
        models.Job.from_pb(types_pb2.Run())


def test_enum_parse_accepts_words_numbers_and_protobuf_names() -> None:
    assert models.RunState.parse("dead") is models.RunState.DEAD
    assert models.RunState.parse("RUN_STATE_DEAD") is models.RunState.DEAD
    assert models.OverlapPolicy.parse("buffer-one") is models.OverlapPolicy.BUFFER_ONE
    assert models.RunState.parse(6) is models.RunState.DEAD
    for bad in ("zombie", "unspecified", 99, True):
        with pytest.raises(errors.InvalidArgument):
            models.RunState.parse(bad)


def test_node_report_is_a_tuple_with_names() -> None:
    ok = models.NodeReport("a:1", models.NodeStatus(node_id="n1"), "")
    endpoint, status, error = ok
    assert (endpoint, error, ok.ok) == ("a:1", "", True) and status is ok.status
    down = models.NodeReport("b:2", None, "connection refused")
    assert not down.ok
    assert down.to_dict() == {"endpoint": "b:2", "status": None, "error": "connection refused"}
    assert ok.to_dict()["status"]["node_id"] == "n1"


def test_equal_records_hash_alike_even_with_map_fields() -> None:
    a = models.Run.from_pb(types_pb2.Run(run_id="r", tags={"zone": "a", "gpu": "1"}))
    b = models.Run(run_id="r", tags={"gpu": "1", "zone": "a"})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert models.Run(run_id="r") != models.Job(name="r")
    assert len({models.Job(name="x"), models.Job(name="y")}) == 2


# ---- the compiled conversion ----------------------------------------------------------------

_ALL_RECORDS = sorted(models._RECORD_BY_PROTO.values(), key=lambda c: c.__name__)


@st.composite
def record_messages(draw: st.DrawFn) -> tuple[type[Any], Any]:
    record = draw(st.sampled_from(_ALL_RECORDS))
    msg = record._pb()
    _fill(draw, msg, 2)  # enums also set to numbers no member names
    return record, msg


@settings(max_examples=400, deadline=None)
@given(record_messages())
def test_the_compiled_conversion_is_the_plan_interpreted(case: tuple[type[Any], Any]) -> None:
    record, msg = case
    got, want = record.from_pb(msg), record._from_pb_reference(msg)
    assert got == want and hash(got) == hash(want)
    assert got.to_dict() == want.to_dict()
    for f in dataclasses.fields(record):  # the same kinds of values, enum members identical
        a, b = getattr(got, f.name), getattr(want, f.name)
        assert type(a) is type(b), f.name
        if isinstance(a, models.ProtoEnum):  # named members are singletons; UNKNOWN_<n> not
            assert a.name == b.name and (a is b or a.name.startswith("UNKNOWN_")), f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.__setattr__(dataclasses.fields(record)[0].name, None)


def test_every_record_uses_a_compiled_conversion() -> None:
    """Negative control: the property above would hold trivially if from_pb fell back."""
    for record in _ALL_RECORDS:
        record.from_pb(record._pb())
        convert = record.__dict__["_convert_cache"]
        assert convert.__name__ == "convert", record

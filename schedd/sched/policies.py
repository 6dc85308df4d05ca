"""Misfire and overlap policies: names <-> protobuf values, defaults, and the words used in
run records. Pure; shared by validation, apply, the SDK and schedctl. docs/policies.md is the
user guide."""

from __future__ import annotations

from collections.abc import Iterable

from schedd.errors import InvalidArgument
from schedd.pb import types_pb2

DEFAULT_MISFIRE = types_pb2.MISFIRE_POLICY_FIRE_ONCE
DEFAULT_MISFIRE_GRACE_MS = 60_000
DEFAULT_CATCHUP_WINDOW_MS = 86_400_000
DEFAULT_MAX_CATCHUP = 100
MAX_MAX_CATCHUP = 10_000
DEFAULT_OVERLAP = types_pb2.OVERLAP_POLICY_ALLOW
MAX_CONCURRENT_LIMIT = 1000

MISFIRE_NAMES: dict[str, int] = {
    "skip": types_pb2.MISFIRE_POLICY_SKIP,
    "fire_once": types_pb2.MISFIRE_POLICY_FIRE_ONCE,
    "fire_all": types_pb2.MISFIRE_POLICY_FIRE_ALL,
}
OVERLAP_NAMES: dict[str, int] = {
    "allow": types_pb2.OVERLAP_POLICY_ALLOW,
    "forbid": types_pb2.OVERLAP_POLICY_FORBID,
    "buffer_one": types_pb2.OVERLAP_POLICY_BUFFER_ONE,
    "replace": types_pb2.OVERLAP_POLICY_REPLACE,
}
SKIP_REASON_TEXT: dict[int, str] = {
    types_pb2.SKIP_REASON_MISFIRE: "missed (misfire policy skip)",
    types_pb2.SKIP_REASON_COALESCED: "missed; a later missed slot ran for it (misfire policy fire_once)",
    types_pb2.SKIP_REASON_CATCHUP_WINDOW: "missed by more than the catch-up window",
    types_pb2.SKIP_REASON_CATCHUP_LIMIT: "missed; over the max_catchup limit (misfire policy fire_all)",
    types_pb2.SKIP_REASON_OVERLAP: "an earlier run was still active (overlap policy / max_concurrent)",
    types_pb2.SKIP_REASON_BUFFER_FULL: "an earlier run was active and one firing was already buffered",
    types_pb2.SKIP_REASON_PAUSED: "the job was paused",
    types_pb2.SKIP_REASON_MAX_RUNS: "the job had reached max_runs",
    types_pb2.SKIP_REASON_DST_GAP: "the local time did not exist (daylight-saving gap; dst_gap is skip)",
    types_pb2.SKIP_REASON_QUOTA: "the namespace held its max_runs stored runs (schedctl namespace get)",
    types_pb2.SKIP_REASON_UPSTREAM_FAILED: "an upstream run it depends on did not succeed",
    types_pb2.SKIP_REASON_DEPENDENCY_TIMEOUT: "its upstreams did not decide it within the dependency timeout",
}
SKIP_REASON_WORD: dict[int, str] = {
    types_pb2.SKIP_REASON_MISFIRE: "misfire",
    types_pb2.SKIP_REASON_COALESCED: "coalesced",
    types_pb2.SKIP_REASON_CATCHUP_WINDOW: "catchup_window",
    types_pb2.SKIP_REASON_CATCHUP_LIMIT: "catchup_limit",
    types_pb2.SKIP_REASON_OVERLAP: "overlap",
    types_pb2.SKIP_REASON_BUFFER_FULL: "buffer_full",
    types_pb2.SKIP_REASON_PAUSED: "paused",
    types_pb2.SKIP_REASON_MAX_RUNS: "max_runs",
    types_pb2.SKIP_REASON_DST_GAP: "dst_gap",
    types_pb2.SKIP_REASON_QUOTA: "quota",
    types_pb2.SKIP_REASON_UPSTREAM_FAILED: "upstream_failed",
    types_pb2.SKIP_REASON_DEPENDENCY_TIMEOUT: "dependency_timeout",
}
ORIGIN_WORD: dict[int, str] = {
    types_pb2.RUN_ORIGIN_UNSPECIFIED: "",
    types_pb2.RUN_ORIGIN_SCHEDULE: "schedule",
    types_pb2.RUN_ORIGIN_CATCHUP: "catchup",
    types_pb2.RUN_ORIGIN_TRIGGER: "trigger",
    types_pb2.RUN_ORIGIN_BACKFILL: "backfill",
    types_pb2.RUN_ORIGIN_CHAIN: "chain",
    types_pb2.RUN_ORIGIN_DEPENDENCY: "dependency",
}
#: trigger rules of depends_on (docs/dependencies.md)
TRIGGER_RULE_NAMES: dict[str, int] = {
    "all_succeeded": types_pb2.TRIGGER_RULE_ALL_SUCCEEDED,
    "all_done": types_pb2.TRIGGER_RULE_ALL_DONE,
    "any_succeeded": types_pb2.TRIGGER_RULE_ANY_SUCCEEDED,
}


def _from(
    value: str | int, names: dict[str, int], valid: Iterable[int], field: str, what: str
) -> int:
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        if key not in names:
            raise InvalidArgument(field, f"{value!r} is not {what} (one of {', '.join(names)})")
        return names[key]
    if value not in valid:
        raise InvalidArgument(field, f"{value} is not {what}")
    return value


# The numbers each enum defines (EnumTypeWrapper.values() builds a new list on every call, and
# validation asks for every job of a bulk create).
_MISFIRE_NUMBERS = frozenset(types_pb2.MisfirePolicy.values())
_OVERLAP_NUMBERS = frozenset(types_pb2.OverlapPolicy.values())
TRIGGER_RULE_NUMBERS = frozenset(types_pb2.TriggerRule.values())


def misfire_from(value: str | int, field: str = "misfire") -> int:
    """A misfire policy from its name (``skip``, ``fire_once``, ``fire_all``) or pb value."""
    return _from(value, MISFIRE_NAMES, _MISFIRE_NUMBERS, field, "a misfire policy")


def overlap_from(value: str | int, field: str = "overlap") -> int:
    """An overlap policy from its name (``allow``, ``forbid``, ``buffer_one``, ``replace``)."""
    return _from(value, OVERLAP_NAMES, _OVERLAP_NUMBERS, field, "an overlap policy")


def trigger_rule_from(value: str | int, field: str = "trigger_rule") -> int:
    """A trigger rule from its name (``all_succeeded``, ``all_done``, ``any_succeeded``)."""
    return _from(value, TRIGGER_RULE_NAMES, TRIGGER_RULE_NUMBERS, field, "a trigger rule")


def trigger_rule_name(value: int) -> str:
    for k, v in TRIGGER_RULE_NAMES.items():
        if v == value:
            return k
    return "all_succeeded" if value == 0 else str(value)


def misfire_name(value: int) -> str:
    for k, v in MISFIRE_NAMES.items():
        if v == value:
            return k
    return "fire_once" if value == 0 else str(value)


def overlap_name(value: int) -> str:
    for k, v in OVERLAP_NAMES.items():
        if v == value:
            return k
    return "allow" if value == 0 else str(value)


def skip_reason_word(value: int) -> str:
    return SKIP_REASON_WORD.get(value, "")


def origin_word(value: int) -> str:
    return ORIGIN_WORD.get(value, "")

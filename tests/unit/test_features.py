"""Feature levels in apply (schedd.state.apply.features): reports are recorded, the level only
rises, and a level above this version's stops the node (UNSUPPORTED) without changing state."""

from __future__ import annotations

import pytest

from schedd.pb import command_pb2
from schedd.state import keys
from schedd.state.apply import UNSUPPORTED, MemoryState, encode, features

T0 = 1_700_000_000_000


def report(node: str, level: int) -> bytes:
    c = command_pb2.Command(now_ms=T0)
    c.report_features.node_id = node
    c.report_features.supported = level
    return encode(c)


def set_level(level: int) -> bytes:
    c = command_pb2.Command(now_ms=T0)
    c.set_feature_level.level = level
    return encode(c)


def level_of(state: MemoryState) -> int:
    raw = state.get("meta", keys.FEATURE_LEVEL)
    return 0 if raw is None else keys.from_be64(raw)


def test_reports_keep_each_nodes_latest_level() -> None:
    state = MemoryState()
    assert state.apply(report("n1", 2), 1).ok
    assert state.apply(report("n2", 1), 2).ok
    assert state.apply(report("n1", 1), 3).ok  # downgraded: the latest report counts
    assert features.node_levels(state.get("meta", keys.NODE_FEATURES)) == {"n1": 1, "n2": 1}
    assert not state.apply(report("", 1), 4).ok


def test_the_level_only_rises() -> None:
    state = MemoryState()
    assert state.apply(set_level(1), 1).ok and level_of(state) == 1
    assert state.apply(set_level(2), 2).ok and level_of(state) == 2
    assert state.apply(set_level(1), 3).ok and level_of(state) == 2


def test_a_level_above_this_version_is_not_understood_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = MemoryState()
    assert state.apply(set_level(1), 1).ok
    before = {db: dict(v) for db, v in state.data.items() if db != "meta"}
    result = state.apply(set_level(features.SUPPORTED + 1), 2)
    assert result.code == UNSUPPORTED and "above" in result.message
    assert level_of(state) == 1
    assert {db: dict(v) for db, v in state.data.items() if db != "meta"} == before
    # an older version (supporting level 1) meets level 2 the same way
    monkeypatch.setattr(features, "SUPPORTED", features.BASELINE)
    assert state.apply(set_level(features.MEMBERSHIP), 3).code == UNSUPPORTED

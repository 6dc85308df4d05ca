"""One dispatcher tick never proposes an entry over the Raft entry limit, and no entry ever
needs pysyncobj's chunked transfer (which can cut a pickle short).

The dispatcher bounds every list of a tick's Batch (by count or bytes) and every string in it
(names and ids by validation, error and reason texts by clipping). Here the worst case of each
list, all at once and with the longest strings allowed, is encoded and compared with the limit.
"""

from __future__ import annotations

from schedd.pb import command_pb2
from schedd.raft.settings import RaftSettings
from schedd.server.dispatcher import DispatchSettings
from schedd.server.leases import LeaseTable
from schedd.server.validate import MAX_ERROR_BYTES, MAX_RELEASE_REASON_BYTES, clip_text
from schedd.state.apply import encode

NAME = "j" * 128  # validate.NAME_RE: at most 128 characters
WORKER = "w" * 128  # the service refuses longer worker ids
RUN = f"{NAME}:{2**63 - 1}:{2**62}"  # job:uid:scheduled_ms
BIG = 2**62


def worst_case_batch(s: DispatchSettings) -> command_pb2.Command:
    completion = command_pb2.CompleteItem(
        run_id=RUN,
        fence=BIG,
        success=False,
        error=clip_text("\u00e9" * 10**6, MAX_ERROR_BYTES),
        exit_code=-(2**31),
        worker_id=WORKER,
    )
    completions: list[command_pb2.CompleteItem] = []
    budget = s.max_completion_bytes_per_tick
    while budget >= 0 or not completions:  # what Dispatcher._take_completions takes
        budget -= completion.ByteSize() + 8
        if budget < 0 and completions:
            break
        completions.append(completion)
    released = [
        command_pb2.ExpireItem(
            run_id=RUN,
            fence=BIG,
            released=True,
            reason=f"released by worker {WORKER}: " + "r" * MAX_RELEASE_REASON_BYTES,
            worker_id=WORKER,
        )
        for _ in range(s.max_releases_per_tick)
    ]
    expired = [
        command_pb2.ExpireItem(
            run_id=RUN,
            fence=BIG,
            reason=f"lease expired (worker {WORKER} sent no heartbeat for {s.lease_ttl_s:g}s)",
        )
        for _ in range(1000)
    ]  # LeaseTable.take_expired's limit
    timed_out = [
        command_pb2.ExpireItem(
            run_id=RUN,
            fence=BIG,
            reason="run timeout: still running 6d 23h 59m 59s after it started",
        )
        for _ in range(s.max_timeouts_per_tick)
    ]
    fires = [
        command_pb2.FireItem(
            name=NAME,
            uid=BIG,
            from_due_ms=BIG,
            slots_ms=[BIG],
            next_due_ms=BIG,
            policy=True,
            dues_ms=[BIG],
            dropped_first_ms=BIG,
            dropped_last_ms=BIG,
            dropped_count=BIG,
            late_first_ms=BIG,
            late_last_ms=BIG,
            late_count=BIG,
            dst_gap_ms=[BIG],
        )
        for _ in range(s.max_fires_per_tick)
    ]
    grants = [
        command_pb2.GrantItem(run_id=RUN, attempt=2**31, worker_id=WORKER)
        for _ in range(s.max_grants_per_tick)
    ]
    late = [command_pb2.DispatchTimeoutItem(run_id=RUN, attempt=2**31) for _ in range(1000)]
    cmds = [
        command_pb2.Command(
            complete_runs=command_pb2.CompleteRunsCmd(
                items=completions, retry_backoff_ms=BIG, dead_letter=True
            )
        ),
        command_pb2.Command(
            expire_leases=command_pb2.ExpireLeasesCmd(
                items=released + expired + timed_out, retry_backoff_ms=BIG, dead_letter=True
            )
        ),
        command_pb2.Command(fire_due=command_pb2.FireDueCmd(items=fires, catchup_spacing_ms=BIG)),
        command_pb2.Command(
            grant_leases=command_pb2.GrantLeasesCmd(items=grants, lease_ttl_ms=BIG)
        ),
        command_pb2.Command(dispatch_timeout=command_pb2.DispatchTimeoutCmd(items=late)),
        command_pb2.Command(
            prune_runs=command_pb2.PruneRunsCmd(
                run_ids=[RUN] * s.prune_runs_per_entry,
                request_ids=["q" * 128] * s.prune_requests_per_pass,
                request_ttl_ms=BIG,
            )
        ),
    ]
    return command_pb2.Command(now_ms=BIG, batch=command_pb2.Batch(commands=cmds))


def test_worst_case_tick_fits_one_raft_entry() -> None:
    size = len(encode(worst_case_batch(DispatchSettings())))
    r = RaftSettings()
    assert size < r.max_entry_bytes < r.append_batch_bytes, (size, r.max_entry_bytes)


def test_the_check_can_fail() -> None:
    """Negative control: without the completion byte budget, one tick could exceed the limit."""
    size = len(encode(worst_case_batch(DispatchSettings(max_completion_bytes_per_tick=4 << 20))))
    assert size > RaftSettings().max_entry_bytes


def test_take_expired_limit_is_what_the_bound_assumes() -> None:
    table = LeaseTable(1.0)
    for i in range(1500):
        table.add(f"r{i}", i + 1, "w", 0.0)
    assert len(table.take_expired(10.0)) == 1000


def test_clip_text_keeps_short_texts_and_marks_cut_ones() -> None:
    assert clip_text("boom", MAX_ERROR_BYTES) == "boom"
    cut = clip_text("x" * 10_000, MAX_ERROR_BYTES)
    assert len(cut.encode()) <= MAX_ERROR_BYTES and cut.endswith("more bytes cut]")
    wide = clip_text("\u20ac" * 10_000, MAX_ERROR_BYTES)  # 3 bytes each: cut at a boundary
    assert len(wide.encode()) <= MAX_ERROR_BYTES and wide.startswith("\u20ac" * 100)

"""Apply's output is pinned: recorded logs replay to the recorded states and results.

Every replica of a cluster applies the same log. During a rolling upgrade two versions of
schedd apply it side by side, so a new version must write exactly what the old one wrote for
every entry the old one understands: the same bytes under the same keys, the same results
(the leader sends the granted runs to workers, the service answers clients from them). A
change that writes differently needs a new feature level (``schedd.state.apply.features``).

``tests/unit/data/apply_corpus.bin.gz`` holds logs recorded from the apply model, the
dependency model and a dispatcher workload, at feature level 5 and again at 6
(``python3 scripts/gen_apply_corpus.py``), each with the digest of the state it leaves and a
digest of every result it produced. Recordings are only ever added: the ones an older version
made pin what it wrote. This test
replays them, on the dict replica and on a real LMDB store (the store's own write loop, with
and without the leader's pending feed), and compares.

It fails on any change of apply's output. A new feature level adds a source of recordings
that use it; rewriting existing recordings is only for a change that is meant to write
differently and is safe in a mixed cluster (say why in the commit).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from schedd.state.apply import MemoryState, Result
from schedd.state.apply.txn import request_record
from schedd.state.store import Store

CORPUS = Path(__file__).parent / "data" / "apply_corpus.bin.gz"
MAGIC = b"SCHEDD-APPLY-CORPUS-1\n"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class Recording:
    """One replica's applied entries, in order, and what they must produce."""

    name: str
    entries: tuple[tuple[int, bytes], ...]  # (log index, entry bytes)
    results: str  # sha256 over the fingerprints of every entry's result
    digest: str  # MemoryState.digest() after the last entry


def fingerprint(result: Result) -> bytes:
    """Everything a caller of apply reads from a result, as bytes; equal fingerprints mean
    equal results."""
    out = [
        result.code.encode(),
        result.message.encode(),
        b"j" + (result.job.SerializeToString(deterministic=True) if result.job else b"-"),
        b"r" + (result.run.SerializeToString(deterministic=True) if result.run else b"-"),
        b"c%d e%d" % (result.count, result.existing),
    ]
    for g in result.granted:
        out.append(
            b"g"
            + g.run.SerializeToString(deterministic=True)
            + g.payload.encode()
            + b"%d" % g.run_timeout_ms
        )
    for code, msg in result.items:
        out.append(b"i" + code.encode() + b"\x00" + msg.encode())
    for r in result.revoked:
        out.append(b"v%r" % ((r.run_id, r.fence, r.worker_id, r.reason),))
    if result.tally is not None:
        out.append(b"t%r" % (result.tally,))
    for sub in result.sub:
        out.append(b"s" + fingerprint(sub))
    return b"\x01".join(x.replace(b"\x01", b"\x01\x01") for x in out) + b"\x02"


def results_hash(results: list[Result]) -> str:
    h = hashlib.sha256()
    for r in results:
        h.update(fingerprint(r))
    return h.hexdigest()


def write_corpus(path: Path, recordings: list[Recording]) -> None:
    parts = [MAGIC, _U32.pack(len(recordings))]
    for rec in recordings:
        for text in (rec.name, rec.results, rec.digest):
            raw = text.encode()
            parts += [_U32.pack(len(raw)), raw]
        parts.append(_U32.pack(len(rec.entries)))
        for index, data in rec.entries:
            parts += [_U64.pack(index), _U32.pack(len(data)), data]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(parts), compresslevel=9, mtime=0))


def read_corpus(path: Path = CORPUS) -> list[Recording]:
    raw = gzip.decompress(path.read_bytes())
    assert raw.startswith(MAGIC), f"{path}: not an apply corpus"
    pos = len(MAGIC)

    def take(n: int) -> bytes:
        nonlocal pos
        pos += n
        return raw[pos - n : pos]

    def text() -> str:
        return take(_U32.unpack(take(4))[0]).decode()

    out = []
    for _ in range(_U32.unpack(take(4))[0]):
        name, results, digest = text(), text(), text()
        entries = []
        for _ in range(_U32.unpack(take(4))[0]):
            index = _U64.unpack(take(8))[0]
            entries.append((index, take(_U32.unpack(take(4))[0])))
        out.append(Recording(name, tuple(entries), results, digest))
    assert pos == len(raw), f"{path}: {len(raw) - pos} trailing bytes"
    return out


def replay(rec: Recording) -> tuple[str, str]:
    """(results hash, state digest) of ``rec``'s entries applied to a fresh dict replica."""
    state = MemoryState()
    results = [state.apply(data, index) for index, data in rec.entries]
    return results_hash(results), state.digest()


def _recordings() -> list[Recording]:
    return read_corpus()


def test_the_corpus_covers_the_hot_path_and_the_policies() -> None:
    """The corpus is not empty and reaches what the hot path and the models do (a corpus that
    lost a source would still pass the replay tests)."""
    recs = _recordings()
    sources = {r.name.split("/")[0] for r in recs}
    assert sources == {
        "apply-model",
        "deps-model",
        "dispatcher",
        "apply-model-6",
        "dispatcher-6",
        "deps-model-7",
    }, sources
    assert sum(len(r.entries) for r in recs) > 5_000


@pytest.mark.parametrize("chunk", range(4))
def test_recorded_logs_replay_to_the_recorded_states_and_results(chunk: int) -> None:
    recs = _recordings()[chunk::4]
    diverged = []
    for rec in recs:
        results, digest = replay(rec)
        if (results, digest) != (rec.results, rec.digest):
            what = "results" if results != rec.results else "state"
            diverged.append(f"{rec.name} ({what})")
    assert not diverged, (
        f"apply's output changed for {len(diverged)} of {len(recs)} recorded logs: "
        f"{diverged[:5]}. A change of what apply writes needs a new feature level "
        "(see this module's docstring)"
    )


@pytest.mark.parametrize("feed", [False, True], ids=["follower", "leader"])
def test_the_lmdb_store_writes_the_recorded_states(tmp_path: Path, feed: bool) -> None:
    """The store's own write loop (both of its variants) ends in the recorded states."""
    recs = [r for r in _recordings() if r.name.startswith("dispatcher")]
    assert len(recs) == 5
    recs += _recordings()[::25]
    for n, rec in enumerate(recs):
        store = Store(str(tmp_path / f"s{n}"))
        try:
            if feed:
                store.watch_pending(lambda index, added, removed: None)
            results = [store.apply_entry(data, index) for index, data in rec.entries]
            assert (results_hash(results), store.digest()) == (rec.results, rec.digest), rec.name
        finally:
            store.close()


def test_the_replay_sees_a_change_of_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a grant that writes its run one field differently is caught."""
    import schedd.state.apply as apply_module
    from schedd.state.apply import leases

    real = leases._grant_leases

    def changed(txn, cmd, index, now):  # type: ignore[no-untyped-def]
        result = real(txn, cmd, index, now)
        for g in result.granted:
            g.run.started_ms += 1
            txn.put_run(g.run)
        return result

    monkeypatch.setitem(apply_module._HANDLERS, "grant_leases", changed)
    rec = next(r for r in _recordings() if r.name.startswith("dispatcher"))
    assert replay(rec) != (rec.results, rec.digest)


@settings(max_examples=300, deadline=None)
@given(
    code=st.text(),
    message=st.text(),
    at=st.integers(0, 2**63 - 1),
    job=st.text(),
    run=st.text(),
    digest=st.one_of(st.just(""), st.text(min_size=1)),
)
def test_a_request_record_is_what_json_dumps_wrote(
    code: str, message: str, at: int, job: str, run: str, digest: str
) -> None:
    """The request record is built without json.dumps, byte for byte as json.dumps built it
    (quotes, backslashes, control characters and non-ASCII text included)."""
    record = {"code": code, "message": message, "at": at, "job": job, "run": run}
    if digest:
        record["hash"] = digest
    want = json.dumps(record, sort_keys=True).encode()
    assert request_record(code, message, at, job, run, digest) == want

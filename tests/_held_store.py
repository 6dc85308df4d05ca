"""A real :class:`Store` whose snapshot copies wait until the test lets them go (a slow disk,
made deterministic), or fail. The copy itself is LMDB's; only its start is held."""

from __future__ import annotations

import threading
from typing import Any

from schedd.state.store import SnapshotSource, Store


class HeldStore(Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = threading.Event()  # set: copies wait for `release`
        self.release = threading.Event()
        self.copying = threading.Event()  # a copy has started (and may be held)
        self.fail_with: BaseException | None = None
        self.written: list[str] = []

    def snapshot_source(self, raft_meta: tuple[Any, Any, Any]) -> Held:  # type: ignore[override]
        return Held(super().snapshot_source(raft_meta), self)


class Held:
    def __init__(self, source: SnapshotSource, store: HeldStore) -> None:
        self.source, self.store = source, store

    @property
    def paused_s(self) -> float:
        return self.source.paused_s

    def write(self, filename: str, rate_bytes_s: float = 0.0) -> int:
        try:
            self.store.copying.set()
            if self.store.hold.is_set():
                assert self.store.release.wait(60), "the test never released the copy"
            if self.store.fail_with is not None:
                raise self.store.fail_with
            size = self.source.write(filename, rate_bytes_s)
        finally:
            self.source.close()
        self.store.written.append(filename)
        return size

    def cancel(self) -> None:
        self.source.cancel()

    def close(self) -> None:
        self.source.close()

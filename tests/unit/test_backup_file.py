"""The backup file (schedd.backup): written atomically, verified, and refused in one line when
it is not a backup, damaged, truncated or of a newer format."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from schedd.backup import (
    FORMAT_VERSION,
    MAGIC,
    BackupError,
    BackupHeader,
    extract_image,
    read_header,
    verify,
    write_backup,
)

IMAGE = bytes(range(256)) * 4096  # 1 MiB


def _header(image: bytes = IMAGE, **kw: object) -> BackupHeader:
    fields: dict[str, object] = dict(
        format_version=FORMAT_VERSION,
        applied_index=42,
        created_ms=1_700_000_000_000,
        size_bytes=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        node_ids=("n1", "n2", "n3"),
        next_fence=7,
    )
    fields.update(kw)
    return BackupHeader(**fields)  # type: ignore[arg-type]


def _chunks(image: bytes) -> list[bytes]:
    return [image[i : i + 100_000] for i in range(0, len(image), 100_000)]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "b.snap"
    seen: list[tuple[int, int]] = []
    write_backup(str(path), _header(), _chunks(IMAGE), lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(IMAGE), len(IMAGE))
    assert verify(str(path)) == _header()
    assert read_header(str(path))[0].node_ids == ("n1", "n2", "n3")
    extract_image(str(path), str(tmp_path / "data.mdb"))
    assert (tmp_path / "data.mdb").read_bytes() == IMAGE
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_damaged_stream_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "b.snap"
    with pytest.raises(BackupError, match="damaged"):
        write_backup(str(path), _header(), _chunks(IMAGE)[:-1])
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_truncation_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "b.snap"
    write_backup(str(path), _header(), _chunks(IMAGE))
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / "flipped.snap").write_bytes(bytes(raw))
    with pytest.raises(BackupError, match="checksum mismatch"):
        verify(str(tmp_path / "flipped.snap"))
    (tmp_path / "short.snap").write_bytes(path.read_bytes()[:-5])
    with pytest.raises(BackupError, match="truncated"):
        verify(str(tmp_path / "short.snap"))
    (tmp_path / "other").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(BackupError, match="not a schedd backup"):
        verify(str(tmp_path / "other"))
    with pytest.raises(BackupError, match="cannot read"):
        verify(str(tmp_path / "missing"))


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.snap"
    write_backup(str(path), _header(format_version=FORMAT_VERSION + 1), _chunks(IMAGE))
    with pytest.raises(BackupError, match="newer"):
        verify(str(path))
    assert path.read_bytes().startswith(MAGIC)

"""The backup file of ``schedctl snapshot save`` / ``schedd restore``: a header, then the image.

Layout::

    MAGIC (b"SCHEDD-BACKUP\\n")
    4 bytes, big-endian: length of the header
    header: JSON (UTF-8), the fields of :class:`BackupHeader`
    image: ``size_bytes`` bytes, a compacted LMDB data file of the replicated state

The image's SHA-256 is in the header, as the leader computed it before sending; writing checks
the bytes received against it, and :func:`verify` and :func:`extract_image` check them again.

Failure contract: every problem with a file (missing, not a backup, a newer format, truncated,
checksum mismatch, an I/O error) raises :class:`BackupError` with one line saying what is wrong
and what to do; a failed :func:`write_backup` leaves no file at ``path`` (it writes a temporary
file and renames it into place only once it is complete and synced).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

MAGIC = b"SCHEDD-BACKUP\n"
#: the version of this file layout and of the header
FORMAT_VERSION = 1
_LEN = struct.Struct(">I")
_MAX_HEADER = 1 << 20
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup file that cannot be written, read or trusted; ``str()`` is one line."""


@dataclass(frozen=True)
class BackupHeader:
    """What a backup holds (``schedctl snapshot inspect`` prints it).

    ``applied_index`` is the last Raft log index the image includes; ``next_fence`` the fence
    the next lease would have been given (a restored cluster continues from it, so fences never
    go backwards)."""

    format_version: int
    applied_index: int
    created_ms: int
    size_bytes: int
    sha256: str
    cluster_id: str = ""
    node_ids: tuple[str, ...] = field(default_factory=tuple)
    leader_id: str = ""
    next_fence: int = 0
    jobs: int = 0
    runs: int = 0
    schedd_version: str = ""

    def to_json(self) -> bytes:
        d = asdict(self)
        d["node_ids"] = list(self.node_ids)
        return json.dumps(d, sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes, path: str) -> BackupHeader:
        try:
            d = json.loads(raw)
            version = int(d["format_version"])
            if version > FORMAT_VERSION:
                raise BackupError(
                    f"{path}: backup format {version} is newer than this schedd understands "
                    f"({FORMAT_VERSION}); use the schedd version that wrote it or a newer one"
                )
            return BackupHeader(
                format_version=version,
                applied_index=int(d["applied_index"]),
                created_ms=int(d["created_ms"]),
                size_bytes=int(d["size_bytes"]),
                sha256=str(d["sha256"]),
                cluster_id=str(d.get("cluster_id", "")),
                node_ids=tuple(str(n) for n in d.get("node_ids", ())),
                leader_id=str(d.get("leader_id", "")),
                next_fence=int(d.get("next_fence", 0)),
                jobs=int(d.get("jobs", 0)),
                runs=int(d.get("runs", 0)),
                schedd_version=str(d.get("schedd_version", "")),
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise BackupError(f"{path}: the backup header is damaged ({e})") from None


def write_backup(
    path: str,
    header: BackupHeader,
    chunks: Iterable[bytes],
    progress: Callable[[int, int], None] | None = None,
) -> BackupHeader:
    """Write ``header`` and the image bytes of ``chunks`` to ``path`` atomically: a temporary
    file next to it, fsynced, checked against the header's size and SHA-256, then renamed over
    ``path`` and the directory fsynced. ``progress(done, total)`` after each chunk."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise BackupError(f"cannot write {path}: {e.strerror}") from None
    try:
        digest = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as f:
            raw = header.to_json()
            f.write(MAGIC + _LEN.pack(len(raw)) + raw)
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, header.size_bytes)
            f.flush()
            os.fsync(f.fileno())
        if done != header.size_bytes or digest.hexdigest() != header.sha256:
            raise BackupError(
                f"the snapshot received is damaged ({done} of {header.size_bytes} bytes, sha256 "
                f"{'matches' if digest.hexdigest() == header.sha256 else 'differs'}); "
                "save it again"
            )
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BackupError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return header


def read_header(path: str) -> tuple[BackupHeader, int]:
    """The header of the backup at ``path`` and the offset its image starts at."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic != MAGIC:
                raise BackupError(
                    f"{path} is not a schedd backup (made by `schedctl snapshot save`)"
                )
            raw_len = f.read(_LEN.size)
            (length,) = _LEN.unpack(raw_len) if len(raw_len) == _LEN.size else (-1,)
            if not 0 < length <= _MAX_HEADER:
                raise BackupError(f"{path}: the backup header is damaged (length {length})")
            raw = f.read(length)
            if len(raw) != length:
                raise BackupError(f"{path}: the backup is truncated inside its header")
            return BackupHeader.from_json(raw, path), len(MAGIC) + _LEN.size + length
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror or e}") from None


def _copy_image(path: str, out: Callable[[bytes], object] | None) -> BackupHeader:
    header, offset = read_header(path)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if out is not None:
                    out(chunk)
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror or e}") from None
    if size != header.size_bytes:
        raise BackupError(
            f"{path}: the image is {size} bytes, the header says {header.size_bytes} "
            "(truncated or appended to); use another backup"
        )
    if digest.hexdigest() != header.sha256:
        raise BackupError(
            f"{path}: checksum mismatch (sha256 {digest.hexdigest()}, the header says "
            f"{header.sha256}): the file is damaged; use another backup"
        )
    return header


def verify(path: str) -> BackupHeader:
    """The header, once the image's size and SHA-256 match it (else BackupError)."""
    return _copy_image(path, None)


def extract_image(path: str, dest: str) -> BackupHeader:
    """Write the verified image of backup ``path`` to the file ``dest`` (fsynced)."""
    try:
        with open(dest, "wb") as out:
            header = _copy_image(path, out.write)
            out.flush()
            os.fsync(out.fileno())
    except OSError as e:
        raise BackupError(f"cannot write {dest}: {e.strerror or e}") from None
    return header

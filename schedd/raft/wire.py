"""What may come out of a Raft frame: bounded sizes and a pickle that cannot run code.

pysyncobj 0.3.17 frames every message as ``i32 length | Fernet(zlib(pickle(message)))`` and
decodes it with ``pickle.loads``: anyone who can produce one valid frame (every holder of the
Raft password, and without a password anyone at all) can make a node call any Python function.
It also buffers a frame of whatever length the prefix claims before checking anything.

This module decides what a frame may be, without doing any I/O:

* :class:`WireLimits`: the largest frame accepted from a peer that has not yet proved it knows
  the password (a few hundred bytes are needed: a random key and an address), the largest from
  one that has, and the largest decompressed message. A length prefix over the limit closes the
  connection before a byte of the frame is buffered (:mod:`schedd.raft.transport`).
* :func:`loads`: a restricted unpickler. pysyncobj's messages and log entries are built from
  dicts, lists, tuples, str, int, float, bool, None and bytes; protocol 2 (pysyncobj's) encodes
  bytes as ``_codecs.encode(text, "latin1")`` and ``b""`` as ``bytes()``. Those two calls, with
  exactly those arguments, are the only callables it resolves; any other global (``os.system``,
  ``builtins.open``, pysyncobj's ``TCPNode`` of a membership change, which schedd never makes)
  raises :class:`pickle.UnpicklingError`.
* :func:`decompress`: zlib with an output cap, so a small frame cannot inflate into gigabytes.

The same :func:`loads` replaces pysyncobj's own for log entries (applied on every node, so a
peer that may send frames still cannot smuggle a pickle into the log for the others to run).
"""

from __future__ import annotations

import io
import pickle
import zlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WireLimits:
    """Frame size limits of one node's Raft port (bytes).

    * ``handshake_frame``: until a peer's first frame has been decrypted with the password (or
      on a connection that has not yet said which node it is), frames above this close the
      connection. pysyncobj's handshake frames are about 150 bytes.
    * ``frame``: any later frame. pysyncobj's largest message carries entries whose stored
      (pickled) commands add up to just under ``append_batch_bytes``, plus one more entry.
      Pickle protocol 2 writes bytes as latin-1 text in UTF-8, up to twice their size, and it
      does so twice here: a ``max_entry_bytes`` command is stored pickled (up to 2x) and the
      message pickles the stored bytes again (2x); Fernet adds a third (base64). The limit is
      at least that worst case ((4 MiB + 2 x 3 MiB) x 2 x 4/3 ~ 27 MiB for schedd's settings)
      and at least 32 MiB. A frame is buffered once, never grown by concatenation.
    * ``message``: a frame's decompressed size.
    """

    handshake_frame: int = 4096
    frame: int = 32 << 20
    message: int = 64 << 20

    @staticmethod
    def for_batches(append_batch_bytes: int, max_entry_bytes: int) -> WireLimits:
        worst = (append_batch_bytes + 2 * max_entry_bytes) * 2 + (1 << 20)
        frame = max(32 << 20, worst * 4 // 3 + (1 << 20))
        return WireLimits(frame=frame, message=2 * frame)


class FrameRefused(Exception):
    """A frame that is too large, does not decompress within the limit, or does not decode."""


def _latin1(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise pickle.UnpicklingError("only bytes() without arguments is allowed")
    return b""


_ALLOWED = {
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,  # protocol 2's name (find_class gets it unmapped)
    ("builtins", "bytes"): _empty_bytes,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a Raft message")
        return found


def loads(data: bytes) -> Any:
    """Unpickle a pysyncobj message or log entry; raises :class:`pickle.UnpicklingError` (or
    another ``Exception``) on anything but plain data."""
    return _Unpickler(io.BytesIO(data)).load()


def dumps(obj: Any) -> bytes:
    """pysyncobj's encoding (protocol 2), unchanged, so nodes of either kind interoperate."""
    return pickle.dumps(obj, 2)


def decompress(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, limit)
    if d.unconsumed_tail or not d.eof:
        raise FrameRefused(f"message larger than {limit} bytes once decompressed, or truncated")
    return out


class PickleShim:
    """Stands in for the ``pysyncobj.pickle`` module inside ``pysyncobj.syncobj`` (installed by
    :mod:`schedd.raft.adapter`): the same functions, with :func:`loads` restricted."""

    @staticmethod
    def loads(data: bytes | str) -> Any:
        """Raises only :class:`pickle.UnpicklingError` (the adapter stops the node on one)."""
        try:
            return loads(data if isinstance(data, bytes) else data.encode("utf-8"))
        except pickle.UnpicklingError:
            raise
        except Exception as e:  # a truncated or malformed pickle: EOFError, ValueError, ...
            raise pickle.UnpicklingError(f"{type(e).__name__}: {e}") from None

    @staticmethod
    def dumps(obj: Any, protocol: int | None = None) -> bytes:
        return dumps(obj)

    @staticmethod
    def to_bytes(data: bytes | str) -> bytes:
        return data if isinstance(data, bytes) else data.encode("utf-8")


__all__ = ["FrameRefused", "PickleShim", "WireLimits", "decompress", "dumps", "loads"]

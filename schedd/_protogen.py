"""Generate the protobuf/gRPC modules (schedd.v1.*_pb2) from the .proto files.

The generated package ``schedd/v1`` is a build product: setup.py writes it into the wheel, and a
source checkout writes it next to the sources on first import (it is git-ignored). A stamp file
holds a hash of the .proto files so an edited .proto regenerates automatically.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE_PROTO_DIR = os.path.join(os.path.dirname(_HERE), "proto")
_STAMP = ".proto-hash"


def _proto_files(proto_dir: str) -> list[str]:
    base = os.path.join(proto_dir, "schedd", "v1")
    return sorted(os.path.join(base, f) for f in os.listdir(base) if f.endswith(".proto"))


def _hash(files: list[str]) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def generate(proto_dir: str, out_root: str) -> None:
    """Run protoc for every file in ``proto_dir/schedd/v1`` into ``out_root/schedd/v1``."""
    from grpc_tools import protoc  # build-time dependency only when generating

    files = _proto_files(proto_dir)
    out_pkg = os.path.join(out_root, "schedd", "v1")
    os.makedirs(out_pkg, exist_ok=True)
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out_root}",
            f"--grpc_python_out={out_root}", f"--pyi_out={out_root}", *files]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {proto_dir}; run it by hand to see the error")
    with open(os.path.join(out_pkg, "__init__.py"), "w") as f:
        f.write('"""Generated from proto/schedd/v1 by schedd._protogen; do not edit."""\n')
    with open(os.path.join(out_pkg, _STAMP), "w") as f:
        f.write(_hash(files))


def _stamp_is(stamp: str, want: str) -> bool:
    try:
        with open(stamp) as f:
            return f.read() == want
    except FileNotFoundError:
        return False


def ensure_generated() -> None:
    """Make ``schedd.v1`` importable; regenerate in a source checkout when a .proto changed."""
    if not os.path.isdir(_SOURCE_PROTO_DIR):
        return  # installed from a wheel: generated at build time
    files = _proto_files(_SOURCE_PROTO_DIR)
    stamp = os.path.join(_HERE, "v1", _STAMP)
    want = _hash(files)
    if _stamp_is(stamp, want):
        return
    os.makedirs(os.path.join(_HERE, "v1"), exist_ok=True)
    # Several processes may start at once (a test cluster): generate under a lock.
    with open(os.path.join(_HERE, "v1", ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stamp_is(stamp, want):
            return
        generate(_SOURCE_PROTO_DIR, os.path.dirname(_HERE))
        for name in list(sys.modules):
            if name.startswith("schedd.v1."):
                del sys.modules[name]

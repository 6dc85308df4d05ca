"""schedctl: the command-line client of schedd (entry point :func:`schedctl.main.main`)."""

from __future__ import annotations

import os

# grpc's C core logs a failed TLS handshake at INFO on stderr, once per attempt, before
# schedctl prints its own one-line error that says the same; show grpc's errors only. Set
# before anything imports grpc (the variable is read once); an explicit setting wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

"""schedctl: the command-line client of schedd (entry point :func:`schedctl.main.main`)."""

from __future__ import annotations

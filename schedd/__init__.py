"""schedd: a Raft-replicated job scheduler.

Public façades: :mod:`schedd.client` (SDK) and :mod:`schedd.agent` (worker agent). Everything
else is private to the daemon.
"""

__version__ = "0.1.0"

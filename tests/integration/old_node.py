"""``python -m tests.integration.old_node run ...``: ``schedd run`` as a version that supports
feature levels up to ``SCHEDD_TEST_FEATURES`` (default 1: before online membership changes),
for rolling-upgrade tests. Test tooling: it only lowers the level the node reports and accepts."""

from __future__ import annotations

import os

from schedd.state.apply import features

features.SUPPORTED = int(os.environ.get("SCHEDD_TEST_FEATURES", str(features.BASELINE)))

if __name__ == "__main__":
    from schedd.server.cmd import main

    main(prog_name="schedd")

"""``python -m chaos.powerloss_node run ...``: ``schedd run`` under the power-loss model.

Test tooling for the chaos suite, never used in production. Before schedd opens anything, a
:class:`chaos.powerloss.Shadow` of the ``--data-dir`` is started in ``$SCHEDD_SHADOW_DIR`` (a
baseline: whatever exists now survived the last cut) and installed into this process, so every
sync the node makes is mirrored there; after a SIGKILL, :func:`chaos.powerloss.cut` rebuilds the
data directory as a power cut would leave it. schedd's boot id (``schedd.server.node._boot_id``, how it
tells a machine crash from a process crash) is the model's, which every cut changes. Then it is
exactly ``python -m schedd``.
"""

from __future__ import annotations

import os
import sys

from chaos.powerloss import ENV_SHADOW_DIR, Shadow, boot_id

ENV_COMPACTION = "CHAOS_RAFT_COMPACTION"


def _data_dir(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--data-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--data-dir="):
            return arg.split("=", 1)[1]
    return None


def install_from_env(argv: list[str]) -> Shadow:
    """Baseline and install the shadow named by the environment and the command line; exits
    with status 2 when either is missing (a harness mistake, not a node failure)."""
    shadow_dir = os.environ.get(ENV_SHADOW_DIR)
    data_dir = _data_dir(argv)
    if not shadow_dir or not data_dir:
        sys.stderr.write(
            f"chaos.powerloss_node: needs ${ENV_SHADOW_DIR} and --data-dir (test tooling only)\n"
        )
        sys.exit(2)
    shadow = Shadow(data_dir, shadow_dir)
    shadow.baseline()
    shadow.install()
    _model_reboots(shadow_dir)
    return shadow


def _model_reboots(shadow_dir: str) -> None:
    import schedd.server.node

    if not hasattr(schedd.server.node, "_boot_id"):
        sys.stderr.write(
            "chaos.powerloss_node: schedd.server.node has no _boot_id; power cuts are not seen as reboots\n"
        )
        return
    value = boot_id(shadow_dir)
    schedd.server.node._boot_id = lambda: value


def _compaction_from_env() -> None:
    """``CHAOS_RAFT_COMPACTION=<min entries>:<min seconds>``: compact the Raft log that often
    (schedd has no command-line option for it), so snapshots are written, installed on lagging
    followers and cut by power losses too."""
    spec = os.environ.get(ENV_COMPACTION)
    if not spec:
        return
    import dataclasses

    import schedd.raft.settings as settings

    entries, seconds = spec.split(":")
    base = settings.RaftSettings

    @dataclasses.dataclass(frozen=True)
    class Compacting(base):  # type: ignore[valid-type,misc]
        compaction_min_entries: int = int(entries)
        compaction_min_time_s: float = float(seconds)

    settings.RaftSettings = Compacting  # type: ignore[misc,assignment]


if __name__ == "__main__":
    install_from_env(sys.argv[1:])
    _compaction_from_env()
    from schedd.server.cmd import main

    main(prog_name="schedd")

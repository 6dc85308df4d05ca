"""``schedd run --join ENDPOINT``: a new node asks a running cluster to add it, then starts.

Order (as etcd's ``member add`` then ``--initial-cluster-state existing``): the node first asks
the leader (through any member at ``ENDPOINT``; the SDK follows leader hints) to add it as a
member, which commits before this node runs any Raft, and gets the member list back; it then
starts with those members as its peers and catches up from the leader (entries, or the leader's
snapshot when the log was compacted). The leader refuses the addition unless the cluster keeps
a working majority without the new node, so a slow catch-up never stops commits.

A node whose state has recorded a member list ignores ``--join``: it starts from that list (a
restart of a node that joined and caught up). A node that joined but has not applied its own
addition yet asks again (adding is idempotent) rather than start without peers: a node with no
peers would elect itself, a cluster of one.

Credentials: the node's own certificate (with ``--tls-ca``; a node certificate is
cluster-admin), else the bootstrap token file, else ``SCHEDD_TOKEN`` /
``SCHEDD_TOKEN_FILE``; ``--insecure`` clusters need none.
"""

from __future__ import annotations

import logging
import os
import time

from schedd.errors import FailedPrecondition, SchedError
from schedd.sdk.credentials import Credentials

log = logging.getLogger("schedd.server")


def needs_join(data_dir: str) -> bool:
    """Whether a node with ``--join`` must ask the cluster for its members: its state (if any)
    has not recorded a member list yet."""
    from schedd.state.store import Store

    return Store.recorded_members(os.path.join(data_dir, "state")) is None


def credentials(*, ca: str, cert: str, key: str, token_file: str, insecure: bool) -> Credentials:
    if insecure:
        return Credentials(insecure=True)
    env = Credentials.from_env()
    base = Credentials(
        ca=ca or env.ca,
        cert=cert if ca else env.cert,
        key=key if ca else env.key,
        token=env.token,
    )
    if token_file and not base.token:
        base = base.with_token_file(token_file)
    return base


def join(
    endpoint: str,
    node_id: str,
    raft: str,
    grpc_address: str,
    creds: Credentials,
    wait_s: float = 60.0,
) -> list[tuple[str, str, str]]:
    """Ask the cluster at ``endpoint`` to add this node; return the members after the change as
    ``(node_id, raft, grpc)``. A refusal (FAILED_PRECONDITION) is asked again every 2 s for up
    to ``wait_s``; then, or for any other error, raises SchedError with the server's reason (for
    example: a member is down, so the cluster could not commit without the new node)."""
    from schedd.client import Client
    from schedd.sdk import core
    from schedd.state.apply import features

    log.info("event=joining node=%s raft=%s grpc=%s via=%s", node_id, raft, grpc_address, endpoint)
    deadline = time.monotonic() + wait_s
    last = ""
    with Client(endpoint, credentials=creds, wait_for=wait_s, retry_for=wait_s) as client:
        while True:
            # the public add_member without the version check's input: this node's own version
            call = core.add_member(node_id, raft, grpc_address, features.SUPPORTED)
            try:
                members = client._invoke(call)
                break
            except FailedPrecondition as e:
                # a member behind for a moment, another change in progress, a leader just
                # elected: worth asking again until wait_s is up
                if time.monotonic() + 2 > deadline:
                    raise
                if e.message != last:
                    log.warning(
                        "event=join_refused node=%s reason=%r; retrying", node_id, e.message
                    )
                    last = e.message
                time.sleep(2)
    if not any(m.node_id == node_id and m.raft_address == raft for m in members):
        raise SchedError(f"the cluster at {endpoint} did not list {node_id} after adding it")
    log.info(
        "event=joined node=%s members=%s",
        node_id,
        ",".join(f"{m.node_id}@{m.raft_address}" for m in members),
    )
    return [(m.node_id, m.raft_address, m.grpc_address) for m in members]


__all__ = ["credentials", "needs_join", "join"]

"""``schedctl member ...`` and ``schedctl leader transfer``: who the cluster's members are, and
changing them one at a time (docs/operations.md, "Membership")."""

from __future__ import annotations

from collections.abc import Sequence

import click

from schedctl import output
from schedctl.common import Settings, pass_settings
from schedd.models import Member

HEADERS = ["NODE", "ROLE", "RAFT", "GRPC", "CONNECTED", "MATCH", "BEHIND"]


def _rows(members: Sequence[Member]) -> list[list[str]]:
    top = max((m.match_index for m in members if m.leader), default=0)
    rows = []
    for m in members:
        role = "leader" if m.leader else ("follower" if m.voter else "not in Raft config")
        rows.append(
            [
                m.node_id,
                role,
                m.raft_address,
                m.grpc_address,
                "yes" if m.connected else "no",
                str(m.match_index),
                str(max(0, top - m.match_index)) if m.connected or m.leader else "-",
            ]
        )
    return rows


def _emit(s: Settings, members: Sequence[Member], note: str = "") -> None:
    def text() -> str:
        table = output.table(HEADERS, _rows(members))
        return f"{note}\n{table}" if note else table

    s.emit({"members": output.jsonable(list(members))}, text)


@click.group("member")
def member_group() -> None:
    """The cluster's members: list them, add one, remove one (cluster-admin). One change at a
    time; a change that would leave the cluster without a working majority is refused."""


@member_group.command("list")
@pass_settings
def member_list(s: Settings) -> None:
    """Every member as the leader sees it: role, addresses, whether it is connected, and how
    far behind the leader's commit index its log is (BEHIND).

    \b
    Example:
      schedctl member list
    """
    _emit(s, s.client().list_members())


@member_group.command("add")
@click.argument("node_id")
@click.option("--raft", "raft_address", required=True, help="HOST:PORT of its Raft port.")
@click.option("--grpc", "grpc_address", required=True, help="HOST:PORT of its gRPC API.")
@pass_settings
def member_add(s: Settings, node_id: str, raft_address: str, grpc_address: str) -> None:
    """Add NODE_ID as a voting member, before it starts (then start it with
    `schedd run --join`, which also adds it by itself if this step was skipped).

    \b
    Example:
      schedctl member add n4 --raft 10.0.0.4:7001 --grpc 10.0.0.4:7000
    """
    members = s.client().add_member(node_id, raft_address, grpc_address)
    _emit(
        s,
        members,
        f"{node_id} is a member; start it with: schedd run --node-id {node_id} "
        f"--raft {raft_address} --grpc {grpc_address} --join ENDPOINT ...",
    )


@member_group.command("remove")
@click.argument("node_id")
@pass_settings
def member_remove(s: Settings, node_id: str) -> None:
    """Remove member NODE_ID (the leader hands leadership over first when it is the one).
    Then stop its process: it receives nothing more.

    \b
    Example:
      schedctl member remove n3
    """
    members = s.client().remove_member(node_id)
    _emit(s, members, f"{node_id} removed; stop its process and delete its data directory")


@click.group("leader")
def leader_group() -> None:
    """Raft leadership."""


@leader_group.command("transfer")
@click.argument("node_id", required=False, default="")
@pass_settings
def leader_transfer(s: Settings, node_id: str) -> None:
    """Hand leadership to NODE_ID (default: the most caught-up member). The handover follows
    within an election timeout; `schedctl cluster status` shows the new leader.

    \b
    Example:
      schedctl leader transfer n2
    """
    s.client().transfer_leadership(node_id)
    s.emit(
        {"requested": True, "to": node_id or None},
        lambda: f"leadership transfer to {node_id or 'a caught-up member'} requested",
    )

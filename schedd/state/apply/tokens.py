"""API tokens in the replicated state: create (a hash, never the secret) and revoke.

Tokens live in the ``tokens`` database keyed by name. A revoked token keeps its record (with
``revoked_ms``) so the audit question "who had access when" stays answerable, and so the leader
never re-creates a revoked bootstrap token. ``meta.tokens_version`` grows with every change: a
node's authenticator reloads its hash table when it moves (revocation takes effect on every node
as soon as the node has applied the entry).
"""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply.txn import Result, Txn


def _bump(txn: Txn) -> None:
    txn.put("meta", keys.TOKENS_VERSION, keys.be64(txn.counter(keys.TOKENS_VERSION, 0) + 1))


def _get(txn: Txn, name: str) -> types_pb2.Token | None:
    raw = txn.get("tokens", name.encode())
    return None if raw is None else types_pb2.Token.FromString(raw)


def _create_token(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    tok = types_pb2.Token()
    tok.CopyFrom(cmd.create_token.token)
    if not tok.name or len(tok.secret_sha256) != 32:
        return Result("INVALID_ARGUMENT", "token: a name and a 32-byte secret_sha256 are required")
    old = _get(txn, tok.name)
    if old is not None and not old.revoked_ms:
        return Result("ALREADY_EXISTS", f"token {tok.name!r} exists; revoke it first")
    tok.created_ms = now
    tok.revoked_ms = 0
    txn.put("tokens", tok.name.encode(), tok.SerializeToString(deterministic=True))
    _bump(txn)
    return Result(message=f"token {tok.name} created", count=1)


def _revoke_token(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.revoke_token.name
    tok = _get(txn, name)
    if tok is None:
        return Result("NOT_FOUND", f"no token named {name!r}")
    if tok.revoked_ms:
        return Result(message=f"token {name} was already revoked")
    tok.revoked_ms = now
    txn.put("tokens", name.encode(), tok.SerializeToString(deterministic=True))
    _bump(txn)
    return Result(message=f"token {name} revoked", count=1)

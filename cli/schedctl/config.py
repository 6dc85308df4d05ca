"""schedctl's config file: named contexts (sets of endpoints), like kubectl's.

Where: ``$SCHEDD_CONFIG`` if set, else ``$XDG_CONFIG_HOME/schedd/config.toml``, else
``~/.config/schedd/config.toml``. Format (TOML)::

    current-context = "prod"

    [contexts.prod]
    endpoints = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]

    ca = "/etc/schedd/ca.pem"             # optional: TLS roots, client certificate, token
    cert = "/home/me/.schedd/me.pem"
    key = "/home/me/.schedd/me.key"
    token-file = "/home/me/.schedd/prod.token"
    namespace = "team-a"                  # optional: the namespace commands act in

    [contexts.dev]
    endpoints = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"   # schedd dev's ports
    insecure = true                       # nodes started with --insecure (schedd dev --insecure)

A missing file is an empty config. A file that cannot be parsed, or a context without endpoints,
is an InvalidArgument naming the file. schedctl rewrites the file when a ``config`` command changes
it: keys it does not know are kept, comments are not.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schedctl import tomlout
from schedd import errors

#: context key -> the variable it stands in for (schedd.sdk.credentials)
CREDENTIAL_KEYS = {
    "ca": "SCHEDD_CA",
    "cert": "SCHEDD_CERT",
    "key": "SCHEDD_KEY",
    "token-file": "SCHEDD_TOKEN_FILE",
    "insecure": "SCHEDD_INSECURE",
}


def path() -> Path:
    """The config file's location (it may not exist)."""
    explicit = os.environ.get("SCHEDD_CONFIG", "")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "") or str(Path.home() / ".config")
    return Path(base) / "schedd" / "config.toml"


@dataclass
class Config:
    """The parsed file: ``doc`` is the whole TOML document (unknown keys included)."""

    file: Path
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> str:
        value = self.doc.get("current-context", "")
        return value if isinstance(value, str) else ""

    @property
    def contexts(self) -> dict[str, dict[str, Any]]:
        raw = self.doc.get("contexts", {})
        if not isinstance(raw, dict):
            raise errors.InvalidArgument(str(self.file), "'contexts' must be a table")
        return {k: v for k, v in raw.items() if isinstance(v, dict)}

    def endpoints_of(self, name: str, option: str) -> str:
        """The endpoints of context ``name`` as one comma-separated string."""
        ctx = self.contexts.get(name)
        if ctx is None:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise errors.InvalidArgument(
                option,
                f"no context {name!r} in {self.file} (known: {known}; "
                "`schedctl config set-context NAME --endpoints ...` adds one)",
            )
        eps = ctx.get("endpoints")
        if isinstance(eps, list) and all(isinstance(e, str) for e in eps):
            eps = ",".join(eps)
        if not isinstance(eps, str) or not eps.strip():
            raise errors.InvalidArgument(
                option,
                f"context {name!r} in {self.file} has no endpoints "
                '(endpoints = ["host:port", ...])',
            )
        return eps

    def credentials_of(self, name: str) -> dict[str, str]:
        """The context's credential settings as ``SCHEDD_*`` variables (absent keys left out)."""
        ctx = self.contexts.get(name) or {}
        out: dict[str, str] = {}
        for key, var in CREDENTIAL_KEYS.items():
            value = ctx.get(key)
            if value is None:
                continue
            if key == "insecure":
                if not isinstance(value, bool):
                    raise errors.InvalidArgument(
                        str(self.file), f"context {name!r}: insecure must be true or false"
                    )
                if value:
                    out[var] = "1"
            elif isinstance(value, str) and value:
                out[var] = str(Path(value).expanduser())
            else:
                raise errors.InvalidArgument(
                    str(self.file), f"context {name!r}: {key} must be a file path"
                )
        return out

    def set_context(
        self, name: str, endpoints: list[str], credentials: dict[str, Any] | None = None
    ) -> None:
        contexts = self.doc.setdefault("contexts", {})
        ctx = contexts.setdefault(name, {})
        ctx["endpoints"] = endpoints
        for key, value in (credentials or {}).items():
            if value is None or value is False:
                ctx.pop(key, None)
            else:
                ctx[key] = value

    def delete_context(self, name: str) -> None:
        if name not in self.contexts:
            raise errors.NotFound(f"no context {name!r} in {self.file}")
        del self.doc["contexts"][name]
        if self.current == name:
            self.doc.pop("current-context", None)

    def use(self, name: str) -> None:
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise errors.NotFound(f"no context {name!r} in {self.file} (known: {known})")
        self.doc["current-context"] = name

    def save(self) -> None:
        """Write the file atomically (a temporary file renamed over it), creating its folder."""
        self.file.parent.mkdir(parents=True, exist_ok=True)
        text = tomlout.dumps(self.doc)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=self.file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load(file: Path | None = None) -> Config:
    """Read the config file (missing: empty). InvalidArgument naming the file when malformed."""
    file = file or path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(file)
    except OSError as exc:
        raise errors.InvalidArgument(
            str(file), f"cannot read the config file ({exc.strerror})"
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.InvalidArgument(str(file), f"not valid TOML ({exc})") from None
    cfg = Config(file, doc)
    cfg.contexts  # noqa: B018  (checks the shape early)
    return cfg

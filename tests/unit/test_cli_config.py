"""schedctl's config file and contexts: where the file is, the config commands, and which
endpoints a command uses (--endpoints > --context > SCHEDD_ENDPOINTS > current-context)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from schedctl import config

from .test_cli_fakes import FakeServer, invoke


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> type[FakeServer]:
    monkeypatch.setattr("schedctl.main.Client", FakeServer)
    FakeServer.reset()
    return FakeServer


def test_config_path_honours_schedd_config_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SCHEDD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.path() == tmp_path / "xdg" / "schedd" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.path() == tmp_path / "home" / ".config" / "schedd" / "config.toml"
    monkeypatch.setenv("SCHEDD_CONFIG", str(tmp_path / "mine.toml"))
    assert config.path() == tmp_path / "mine.toml"


def test_context_commands(tmp_path: Path) -> None:
    cfg = tmp_path / "xdg" / "schedd" / "config.toml"
    env = {"SCHEDD_CONFIG": None, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    r = invoke("config", "current-context", env=env)
    assert r.exit_code == 3 and "no current-context" in r.stderr
    r = invoke("config", "get-contexts", env=env)
    assert r.exit_code == 0 and "no contexts" in r.stdout
    r = invoke(
        "config", "set-context", "prod", "--endpoints", "10.0.0.1:7101,10.0.0.2:7101", env=env
    )
    assert r.exit_code == 0, r.output
    assert (
        invoke(
            "config", "set-context", "dev", "--endpoints", "127.0.0.1:7101", "--use", env=env
        ).exit_code
        == 0
    )
    assert tomllib.loads(cfg.read_text()) == {
        "contexts": {
            "prod": {"endpoints": ["10.0.0.1:7101", "10.0.0.2:7101"]},
            "dev": {"endpoints": ["127.0.0.1:7101"]},
        },
        "current-context": "dev",
    }
    assert invoke("config", "current-context", env=env).stdout.strip() == "dev"
    r = invoke("config", "use-context", "prod", env=env)
    assert (
        r.exit_code == 0 and invoke("config", "current-context", env=env).stdout.strip() == "prod"
    )
    r = invoke("config", "get-contexts", env=env)
    assert r.stdout.splitlines()[1:] == [
        "         dev   127.0.0.1:7101",
        "*        prod  10.0.0.1:7101,10.0.0.2:7101",
    ]
    doc = json.loads(invoke("--json", "config", "get-contexts", env=env).stdout)
    assert doc["current_context"] == "prod" and doc["file"] == str(cfg)
    assert doc["contexts"] == [
        {"name": "dev", "current": False, "endpoints": ["127.0.0.1:7101"]},
        {"name": "prod", "current": True, "endpoints": ["10.0.0.1:7101", "10.0.0.2:7101"]},
    ]
    r = invoke("config", "use-context", "nope", env=env)
    assert r.exit_code == 3 and "known: dev, prod" in r.stderr
    r = invoke("config", "set-context", "bad", "--endpoints", "nohost", env=env)
    assert r.exit_code == 2 and "--endpoints" in r.stderr
    assert invoke("config", "delete-context", "prod", env=env).exit_code == 0
    assert "current-context" not in tomllib.loads(cfg.read_text())
    assert invoke("config", "delete-context", "prod", env=env).exit_code == 3


def test_unknown_keys_survive_a_rewrite(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '# mine\ncurrent-context = "a"\ncolour = "blue"\n[contexts.a]\nendpoints = "h:1"\nnote = "x"\n'
    )
    assert (
        invoke(
            "config", "set-context", "b", "--endpoints", "h:2", env={"SCHEDD_CONFIG": str(cfg)}
        ).exit_code
        == 0
    )
    doc = tomllib.loads(cfg.read_text())
    assert doc["colour"] == "blue" and doc["contexts"]["a"] == {"endpoints": "h:1", "note": "x"}


def test_endpoint_precedence(server: type[FakeServer], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'current-context = "cur"\n[contexts.cur]\nendpoints = ["cur:1"]\n'
        '[contexts.other]\nendpoints = "other:1,other:2"\n'
    )
    base = {"SCHEDD_CONFIG": str(cfg)}

    def used(*args: str, env: dict[str, str | None]) -> list[str]:
        FakeServer.endpoints_seen.clear()
        r = invoke(*args, "job", "list", env={**base, **env})
        assert r.exit_code == 0, r.output
        return FakeServer.endpoints_seen[-1]

    assert used(env={}) == ["cur:1"]
    assert used(env={"SCHEDD_ENDPOINTS": "env:1"}) == ["env:1"]
    assert used("--context", "other", env={"SCHEDD_ENDPOINTS": "env:1"}) == ["other:1", "other:2"]
    assert used(env={"SCHEDD_CONTEXT": "other"}) == ["other:1", "other:2"]
    assert used(
        "--endpoints", "flag:1", "--context", "other", env={"SCHEDD_ENDPOINTS": "env:1"}
    ) == ["flag:1"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('current-context = "gone"\n', "no context 'gone'"),
        ('current-context = "a"\n[contexts.a]\nport = 1\n', "context 'a'"),
        ("current-context = \n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_exit_2(
    server: type[FakeServer], tmp_path: Path, text: str, needle: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = invoke("job", "list", env={"SCHEDD_CONFIG": str(cfg)})
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: ")


def test_unknown_context_flag_is_exit_2(server: type[FakeServer], tmp_path: Path) -> None:
    r = invoke("--context", "x", "job", "list", env={"SCHEDD_CONFIG": str(tmp_path / "none.toml")})
    assert r.exit_code == 2 and r.stderr.startswith("error: --context: no context 'x'")

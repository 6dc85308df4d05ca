"""`schedctl job preview` for a schedule not yet created: pure, no server."""

from __future__ import annotations

import json

from click.testing import CliRunner
from schedctl.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"SCHEDD_ENDPOINTS": None})


def test_preview_shows_the_dst_shift_on_a_spring_forward_day() -> None:
    r = run(
        "--json",
        "job",
        "preview",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-28T00:00:00Z",
        "--count",
        "3",
    )
    assert r.exit_code == 0, r.output
    # 02:30 does not exist on 2026-03-29 in Berlin: the default policy shifts it to 03:00 CEST.
    assert [d["due_at"] for d in json.loads(r.output)] == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ]


def test_preview_of_an_interval_with_jitter_is_deterministic() -> None:
    a = run(
        "--json",
        "job",
        "preview",
        "--every",
        "90s",
        "--jitter",
        "10s",
        "--after",
        "2026-01-01T00:00:00Z",
    )
    b = run(
        "--json",
        "job",
        "preview",
        "--every",
        "90s",
        "--jitter",
        "10s",
        "--after",
        "2026-01-01T00:00:00Z",
    )
    assert a.exit_code == 0 and a.output == b.output
    due = [d["due_ms"] for d in json.loads(a.output)]
    assert len(due) == 10 and due == sorted(due)
    assert all(0 <= t % 90_000 < 10_000 for t in due)  # each within its slot's jitter window


def test_preview_bad_input_is_one_line_naming_the_option() -> None:
    r = run("job", "preview", "--cron", "61 * * * *")
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --cron:")
    assert run("job", "preview").exit_code == 2


def test_preview_of_a_non_ascii_digit_is_a_usage_error_not_a_crash() -> None:
    # '¹' passes str.isdigit() but not int(): it was "unexpected failure in schedctl: ValueError".
    for cron in ("0 0 * * ¹", "0 0 * * ٣", "0\u00a00 * * *"):
        r = run("job", "preview", "--cron", cron)
        assert r.exit_code == 2, (cron, r.output)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --cron:"), lines
        assert "unexpected failure" not in r.stderr


def test_preview_of_seven_slash_two_lists_sundays_tuesdays_thursdays_and_saturdays() -> None:
    r = run(
        "--json",
        "job",
        "preview",
        "--cron",
        "0 0 * * 7/2",
        "--after",
        "2026-01-01T00:00:00Z",
        "--count",
        "4",
    )
    assert r.exit_code == 0, r.output  # it was refused: "never fires"
    assert [d["due_at"][:10] for d in json.loads(r.output)] == [
        "2026-01-03",
        "2026-01-04",
        "2026-01-06",
        "2026-01-08",
    ]

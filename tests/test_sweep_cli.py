"""`trustwatch sweep` on the toy cloud: output formats, state across runs in the CLI's
SQLite file, the exit codes of replay, --alert through a recording webhook, progress."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from trustwatch import clouds
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply
from trustwatch.cli import main
from trustwatch.clouds import CloudFolder

TOY_BASELINE = "version: 1\ntoy:\n  grants:\n    reader: [alice]\n"


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy cloud registered, its state file, the CLI's state in tmp_path."""
    for name in ("TRUSTWATCH_STATE_URL", "TRUSTWATCH_STATE_TABLE", "TRUSTWATCH_ALERT_ROUTING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli-state.sqlite"))
    monkeypatch.setenv("TOY_STATE", str(tmp_path / "toy.json"))
    (tmp_path / "baseline.yaml").write_text(TOY_BASELINE)
    unregister = clouds.register(CloudFolder("toy", entry_point="main.py", package="toycloud"))
    try:
        yield tmp_path
    finally:
        unregister()
        for module in [m for m in sys.modules if m == "toycloud" or m.startswith("toycloud.")]:
            del sys.modules[module]


def grants(folder: Path, members: list[str], **unit: Any) -> None:
    state = {"units": {"toyland": {"grants": {"reader": members}, **unit}}}
    (folder / "toy.json").write_text(json.dumps(state))


def run(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["sweep", "--baseline", str(folder / "baseline.yaml"), "--cloud", "toy", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[tuple[str, str | None, str]]:
    return [
        (f["actual"], f.get("sweep_status"), f["source"]) for f in map(json.loads, out.splitlines())
    ]


def test_sweeps_report_new_then_open_then_resolved_with_replays_exit_codes(toy, capsys):
    grants(toy, ["alice", "eve"])
    code, out, err = run(toy, capsys)
    assert (code, rows(out)) == (1, [("eve", "new", "sweep")])
    assert "trustwatch: sweep toy toyland: 1 new, 0 open, 0 resolved" in err
    code, out, _ = run(toy, capsys)
    assert (code, rows(out)) == (1, [("eve", "open", "sweep")])
    assert run(toy, capsys, "--fail-on", "critical")[0] == 0  # eve's grant is high
    grants(toy, ["alice"])
    code, out, _ = run(toy, capsys)
    assert (code, rows(out)) == (0, [("eve", "resolved", "sweep")])  # resolved is no drift
    code, out, _ = run(toy, capsys)
    assert (code, out) == (0, "")


def test_an_unread_unit_is_bad_input_and_does_not_hide_findings(toy, capsys):
    grants(toy, ["alice", "eve"])
    run(toy, capsys)
    grants(toy, ["alice"], fail="AccessDenied")
    code, out, err = run(toy, capsys)
    assert code == 4  # eve is still open as last known, and the read failed
    assert rows(out) == [("eve", "open", "sweep")]
    assert "not read (its last sweep's state is kept)" in err
    assert "trustwatch: error: toy toyland: state read failed: ConnectionError: AccessDenied" in err
    grants(toy, ["alice"], errors=["throttled"])
    code, out, _ = run(toy, capsys, "--fail-on", "critical")
    assert code == 2 and rows(out) == [("eve", "open", "sweep")]


def test_a_bad_baseline_or_store_setting_is_bad_input(toy, capsys, monkeypatch):
    (toy / "bad.yaml").write_text("version: 1\ntoy:\n  grants: 3\n")
    assert main(["sweep", "--baseline", str(toy / "bad.yaml"), "--cloud", "toy"]) == 2
    monkeypatch.setenv("TRUSTWATCH_STATE_URL", "ftp://nowhere")
    grants(toy, ["alice"])
    code, _, err = run(toy, capsys)
    assert code == 2 and "sweep state: TRUSTWATCH_STATE_URL names no sweep state store" in err


def test_table_format_and_output_file(toy, capsys):
    grants(toy, ["alice", "eve"])
    code, out, _ = run(toy, capsys, "--format", "table", "-o", str(toy / "report.txt"))
    assert code == 1 and out == ""
    table = (toy / "report.txt").read_text()
    assert "toy.grant.unexpected" in table and "eve was granted reader" in table


def test_html_format_is_the_report_module_or_a_clear_error(toy, capsys):
    grants(toy, ["alice", "eve"])
    code, out, err = run(toy, capsys, "--format", "html")
    if importlib.util.find_spec("trustwatch.report") is None:
        assert code == 2 and out == ""
        assert "trustwatch: --format html: the HTML report is not available" in err
    else:
        assert code == 1 and "<html" in out.lower() and "eve" in out


def test_alert_sends_new_and_resolved_only(toy, capsys, monkeypatch):
    with RecordingHTTPServer(Reply(204, b"")) as hook:
        monkeypatch.setenv("TRUSTWATCH_WEBHOOK_URL", hook.url + "/alerts")
        monkeypatch.setenv("TRUSTWATCH_WEBHOOK_SECRET", "whsec-sweep-cli-0123456789")
        monkeypatch.setenv("TRUSTWATCH_ALERT_ATTEMPTS", "1")
        grants(toy, ["alice", "eve"])
        assert run(toy, capsys, "--alert")[0] == 1
        assert run(toy, capsys, "--alert")[0] == 1
        grants(toy, ["alice"])
        assert run(toy, capsys, "--alert")[0] == 0
        sent = [(r.json()["actual"], r.json()["sweep_status"]) for r in hook.requests]
        assert sent == [("eve", "new"), ("eve", "resolved")]
        grants(toy, ["alice", "mallory"])
        hook.reply(Reply(500, b"down"))
        code, out, err = run(toy, capsys, "--alert")
        assert code == 3 and "alert delivery failed" in err
        assert rows(out) == [("mallory", "new", "sweep")]


def test_alert_without_a_sink_is_bad_input(toy, capsys, monkeypatch):
    for name in ("TRUSTWATCH_SLACK_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_URL", "TRUSTWATCH_SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    grants(toy, ["alice", "eve"])
    code, _, err = run(toy, capsys, "--alert")
    assert code == 2 and "no sink configured" in err


class Terminal(io.StringIO):
    """What a terminal is to rich: a stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal_and_none_when_piped(toy, capsys, monkeypatch):
    grants(toy, ["alice", "eve"])
    run(toy, capsys)
    piped = run(toy, capsys)[2]
    assert "\x1b[" not in piped and "swept" not in piped
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    main(["sweep", "--baseline", str(toy / "baseline.yaml"), "--cloud", "toy"])
    shown = terminal.getvalue()
    assert "\x1b[" in shown and "swept toy toyland" in shown


def test_all_clouds_sweeps_every_cloud_with_a_state_part(toy, capsys):
    grants(toy, ["alice", "eve"])
    code = main(["sweep", "--baseline", str(toy / "baseline.yaml"), "--cloud", "all"])
    out, err = capsys.readouterr()
    assert ("eve", "new", "sweep") in rows(out)
    assert "trustwatch: sweep toy toyland:" in err
    assert code == 1  # the other clouds' units: none in a baseline without their sections


def test_error_texts_from_a_cloud_reach_the_terminal_inert(toy, capsys):
    grants(toy, ["alice"], errors=["role \x1b]0;pwned\x07x\x1b[2J\r\nFAKE: ok \u202eevil"])
    code, _, err = run(toy, capsys)
    assert code == 2
    [line] = [line for line in err.splitlines() if line.startswith("trustwatch: error:")]
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert "FAKE: ok" in line  # the text is kept, on the error's own line

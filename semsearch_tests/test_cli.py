"""The command line through its real entry point: progress while it works, only the days whose
inputs changed, and every user mistake as one line naming what is wrong, with a non-zero exit."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys

import pytest
from dagster import DagsterInstance

from semsearch.cli import main
from semsearch.progress import BarProgress, LineProgress, for_stream
from semsearch.testing.fake_openai_server import FakeOpenAIServer
from semsearch_tests.ops_support import (
    DAYS,
    PROJECT,
    cli_env,
    ops_settings,
    sample_records,
    write_jsonl,
)


def semsearch(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "semsearch.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["themes", "--day", "yesterday"], ["--day", "'yesterday'", "YYYY-MM-DD"]),
        (["backfill", "--from", "11/03", "--to", "2026-11-04"], ["--from", "'11/03'"]),
        (["search", "x", "-k", "many"], ["-k", "'many'"]),
        (["rnu"], ["'rnu'", "choose from"]),
    ],
)
def test_a_malformed_argument_is_one_line_naming_option_value_and_format(
    argv, names, capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("SEMSEARCH_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("semsearch")
    assert all(name in line for name in names), line


def test_a_day_without_themes_says_which_days_have_them(home, capsys):
    assert main(["themes", "--day", "2026-10-01"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--day 2026-10-01" in line
    assert f"themes exist for {DAYS[0]} .. {DAYS[-1]}" in line


def test_a_misspelt_filter_key_names_the_keys_there_are(home, capsys):
    assert main(["search", "card", "--where", "categroy=card_arrival"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "'categroy'" in line and "category" in line.split("'categroy'")[1]


def test_themes_into_a_closed_pipe_ends_quietly(home, tmp_path):
    env = cli_env(home, tmp_path / "dagster")
    process = subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", "themes"],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # `| head` that has read enough
    errors = process.stderr.read()
    assert process.wait(timeout=120) == 141, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_a_refused_api_key_is_one_error_line_and_stops_the_run(tmp_path):
    settings = ops_settings(tmp_path)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
    with FakeOpenAIServer(dimension=8) as server:
        server.script(*["401"] * 50)
        env = cli_env(
            settings,
            tmp_path / "dagster",
            OPENAI_API_KEY="sk-refused",
            SEMSEARCH_EMBEDDING_BACKEND="openai",
            SEMSEARCH_EMBEDDING_MODEL="text-embedding-test",
            SEMSEARCH_OPENAI_BASE_URL=server.base_url,
            SEMSEARCH_OPENAI_EXPECTED_DIMENSION="8",
        )
        done = semsearch("run", env=env)
        requests, where = len(server.requests), server.root_url
    assert done.returncode == 2, done.stderr
    [error] = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert error.startswith("semsearch: error: OPENAI_API_KEY rejected by "), error
    assert where in error and "(401): check the key" in error, error
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.splitlines()) < 12, done.stderr  # progress lines and the error
    assert requests == 1  # the first day's refusal stopped the others
    assert "sk-refused" not in done.stderr + done.stdout


def test_run_runs_only_the_days_whose_inputs_changed_and_says_so(tmp_path, monkeypatch, capsys):
    settings = ops_settings(tmp_path)
    for name, value in cli_env(settings, tmp_path / "dagster").items():
        if name.startswith(("SEMSEARCH_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    write_jsonl(settings.landing_path / "a.jsonl", sample_records(DAYS[:2], per_day=4))

    def runs() -> int:
        with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
            return len(instance.get_runs())

    assert main(["run"]) == 0
    first = capsys.readouterr()
    assert f"running 2 day(s): {DAYS[0]} (new data), {DAYS[1]} (new data)" in first.err
    assert f"{DAYS[0]} (day 1/2)  embeddings: succeeded" in first.err  # plain progress lines
    assert "raw_documents               2        8" in first.out
    before = runs()

    assert main(["run"]) == 0
    again = capsys.readouterr()
    assert "nothing new in the landing folder, and every day is up to date (2 days)" in again.err
    assert runs() == before + 1  # the ingest run only, which found nothing

    write_jsonl(settings.landing_path / "b.jsonl", sample_records([DAYS[1]], per_day=6)[4:])
    assert main(["run"]) == 0
    changed = capsys.readouterr()
    assert f"running 1 day(s): {DAYS[1]} (new data)" in changed.err
    assert "1 other day(s) are up to date" in changed.err

    assert main(["run", "--all"]) == 0
    assert f"running 2 day(s): {DAYS[0]} (--all), {DAYS[1]} (--all)" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_reaches_the_terminal_while_dagster_captures_the_step_output(tmp_path):
    """Dagster points fd 2 at the step's compute log while it runs (dup2): the bar must not."""
    master, replica = pty.openpty()
    terminal = os.fdopen(replica, "w")
    progress = for_stream(terminal)
    assert isinstance(progress, BarProgress)
    saved = os.dup(replica)
    captured = tmp_path / "compute.log"
    with progress, captured.open("w") as log:
        progress.plan([("2026-11-04", 1)])
        os.dup2(log.fileno(), replica)  # what the compute log capture does during a step
        try:
            progress.step("2026-11-04", "chunks", "succeeded")
            progress.finished("2026-11-04", success=True)
        finally:
            os.dup2(saved, replica)
    shown = b""
    while select.select([master], [], [], 0.2)[0]:
        shown += os.read(master, 65536)
    on_screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))
    assert "2026-11-04 (day 1/1) done" in on_screen
    assert "done" not in captured.read_text()
    for fd in (master, saved):
        os.close(fd)
    terminal.close()


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    assert isinstance(for_stream(Terminal()), BarProgress)
    plain = io.StringIO()
    progress = for_stream(plain)
    assert isinstance(progress, LineProgress)
    progress.plan([("2026-11-03", 2), ("2026-11-04", 2)])
    progress.step("2026-11-04", "chunks", "started")
    progress.step("2026-11-04", "chunks", "succeeded")
    progress.step("2026-11-04", "chunks_checks", "succeeded")  # passing checks stay quiet
    progress.step("2026-11-04", "embeddings_checks", "failed")
    assert plain.getvalue().splitlines() == [
        "2026-11-04 (day 2/2)  chunks: succeeded (0.0 s)",
        "2026-11-04 (day 2/2)  embeddings checks: failed",
    ]

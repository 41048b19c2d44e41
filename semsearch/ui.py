"""`semsearch ui`: the Dagster UI and daemon (`dagster dev`) on semsearch's Dagster instance.

It runs `dagster dev` as a child in its own session and passes its output through, so that:
- it is quiet by default: warnings and errors only, not every DEBUG event of every run nor each
  sensor tick's news (the UI shows all of it); `semsearch -v ui` shows Dagster's INFO lines;
- only honest warnings remain: the instance is configured by the project's dagster.yaml (kept
  in step with its copy in DAGSTER_HOME, see `runner.dagster_home`), so dagster dev's "the
  dagster.yaml file will not be used" is dropped, and its advice to use `dg dev` (a tool this
  project does not use) is not printed;
- Ctrl-C (or SIGTERM) stops it in one line: the terminal's interrupt reaches only this process,
  which stops dagster dev and whatever it runs, hides their shutdown tracebacks and says which
  runs were interrupted and how to run them again.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from semsearch.config import Settings
from semsearch.runner import dagster_home

DEFAULT_PORT = 3000
STOP_SECONDS = 60
POLL_SECONDS = 0.2
IN_FLIGHT = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
# dagster dev's misleading lines (see the module docstring), matched on their own words.
SUPERSEDED = "ignore:Function `dev_command` is superseded"
NOT_USED = "file will not be used to configure Dagster"
# Dagster's console lines below WARNING (runs, sensors and services share this format).
CHATTER = re.compile(r" - (DEBUG|INFO) - ")


def free_port(host: str, preferred: int = DEFAULT_PORT) -> int:
    """`preferred` if nothing listens there, else a port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError(f"no free port on {host}")


def _option(args: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def dev_command(workspace: Path, args: Sequence[str], verbose: bool) -> tuple[list[str], str]:
    """The `dagster dev` command line and the URL it serves."""
    args = list(args)
    host = _option(args, "-h", "--host") or "127.0.0.1"
    port = _option(args, "-p", "--port")
    if port is None:
        port = str(free_port(host))
        args += ["-p", port]
    command = [sys.executable, "-W", SUPERSEDED, "-m", "dagster", "dev", "-w", str(workspace)]
    command += ["--log-level", "info" if verbose else "warning", *args]
    return command, f"http://{host}:{port}"


def _relay(source: TextIO, target: TextIO, stopping: threading.Event, verbose: bool) -> None:
    for line in source:
        if stopping.is_set():
            continue  # once stopping, the children's shutdown noise (tracebacks) is not news
        if NOT_USED in line or (not verbose and CHATTER.search(line)):
            continue
        target.write(line)
        target.flush()


def _runs_in_flight(instance: DagsterInstance) -> list:
    return list(instance.get_runs(filters=RunsFilter(statuses=IN_FLIGHT)))


def _describe(run) -> str:
    where = run.tags.get("dagster/partition") or run.tags.get(
        "dagster/asset_partition_range_start", ""
    )
    return f"{run.run_id[:8]} ({run.job_name}{' ' + where if where else ''})"


def serve(
    settings: Settings, args: Sequence[str], say: Callable[[str], None], verbose: bool = False
) -> int:
    home = dagster_home(settings)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command, url = dev_command(Path("workspace.yaml").resolve(), args, verbose)
    child = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the terminal's Ctrl-C reaches us only; we stop the rest
    )
    stopping = threading.Event()
    relay = threading.Thread(
        target=_relay, args=(child.stdout, sys.stderr, stopping, verbose), daemon=True
    )
    relay.start()
    say(
        f"Dagster UI on {url} (DAGSTER_HOME={home}); sensors and backfills run while it is "
        "open. Ctrl-C stops it."
    )
    try:
        # Polled, not one blocking wait: a signal delivered to the relay thread would not
        # interrupt a wait in this one, and Ctrl-C would go unanswered until dagster dev ended.
        while (code := child.poll()) is None:
            time.sleep(POLL_SECONDS)
        relay.join(timeout=5)
        say(f"semsearch ui: dagster dev exited with code {code}")
        return code or 1
    except KeyboardInterrupt:
        return _stop(child, stopping, home, say)


def _group_alive(child: subprocess.Popen) -> bool:
    """Any process of dagster dev's session still running (code servers end after it)."""
    child.poll()  # reap dagster dev itself once it has ended
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(
    child: subprocess.Popen, stopping: threading.Event, home: Path, say: Callable[[str], None]
) -> int:
    stopping.set()
    with DagsterInstance.from_config(str(home)) as instance:
        in_flight = _runs_in_flight(instance)
        os.killpg(child.pid, signal.SIGINT)  # dagster dev, its services and their runs
        deadline = time.monotonic() + STOP_SECONDS
        while _group_alive(child) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        if _group_alive(child):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        ended = [instance.get_run_by_id(r.run_id) for r in in_flight]
    message = "semsearch ui: stopped."
    if ended:
        listed = ", ".join(f"{_describe(r)}: {r.status.value.lower()}" for r in ended if r)
        message += (
            f" Interrupted {len(ended)} run(s) in flight ({listed}); run their days again with "
            "`semsearch run`, or re-execute them from the UI."
        )
    say(message)
    return 0

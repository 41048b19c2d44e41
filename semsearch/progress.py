"""Progress of a command-line run, per day and stage: a bar on a terminal, log lines otherwise.

Both write to stderr, so what a command prints on stdout (results, the summary) stays clean.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress

from semsearch.runner import DayPlan, Progress

DONE = {"succeeded", "failed", "skipped"}
CHECK_SUFFIX = "_checks"
INGEST = "ingest"
NAMED_DAYS = 5


def for_stream(stream: TextIO | None = None) -> Progress:
    """A bar when `stream` (default stderr) is a terminal, plain lines when it is not."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return LineProgress(stream)
    own = _own_handle(stream)
    return BarProgress(own, close=own is not stream)


def _own_handle(stream: TextIO) -> TextIO:
    """A handle of our own on the terminal behind `stream`.

    Dagster captures each step's output by pointing file descriptors 1 and 2 at its compute
    log (`dup2`) while the step runs; a bar drawn through fd 2 then goes into the log and freezes
    on screen. A duplicate of the descriptor, taken before any step starts, still reaches the
    terminal.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream: nothing to redirect
        return stream
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None))


def describe_plan(plan: DayPlan) -> str:
    """Which days run and why, or that nothing needs to."""
    if plan.empty:
        return (
            "nothing new in the landing folder, and every day is up to date "
            f"({len(plan.up_to_date)} days): nothing to run (`semsearch run --all` re-runs "
            "every day)"
        )
    lines = []
    if plan.days:
        named = ", ".join(f"{d} ({plan.reasons[d]})" for d in plan.days[:NAMED_DAYS])
        more = f" and {len(plan.days) - NAMED_DAYS} more" if len(plan.days) > NAMED_DAYS else ""
        lines.append(f"running {len(plan.days)} day(s): {named}{more}")
    if plan.themes_only:
        lines.append(
            f"re-clustering the themes of {len(plan.themes_only)} later day(s) whose window "
            f"holds them ({_span(plan.themes_only)})"
        )
    if plan.up_to_date:
        lines.append(f"{len(plan.up_to_date)} other day(s) are up to date (--all re-runs them)")
    return "\n".join(lines)


def _span(days: list) -> str:
    return str(days[0]) if len(days) == 1 else f"{days[0]} .. {days[-1]}"


def _stage(step: str) -> str:
    """A step's name as a person reads it: `chunks`, `chunks checks`."""
    if step.endswith(CHECK_SUFFIX):
        return step[: -len(CHECK_SUFFIX)] + " checks"
    return "freshness check" if step.startswith("freshness_check") else step


class _Runs:
    """Names runs for people: `ingest`, or the day and its place among the days."""

    def __init__(self) -> None:
        self.days: list[str] = []

    def add(self, runs: list[tuple[str, int]]) -> None:
        self.days += [label for label, _ in runs if label != INGEST]

    def name(self, label: str) -> str:
        if label not in self.days:
            return label
        return f"{label} (day {self.days.index(label) + 1}/{len(self.days)})"


def _line_logger(handler: logging.Handler) -> logging.Logger:
    """A logger writing bare lines through `handler`; outside the logging tree on purpose, so
    the command's log level (WARNING unless -v) does not hide the progress it asked for."""
    logger = logging.Logger("semsearch.progress")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


class LineProgress(Progress):
    """One line per stage that ends (checks only when they fail), one per run that fails."""

    def __init__(self, stream: TextIO) -> None:
        self.log = _line_logger(logging.StreamHandler(stream))  # flushes each line
        self.runs = _Runs()
        self.started: dict[tuple[str, str], float] = {}

    def _say(self, text: str) -> None:
        self.log.info(text)

    def planned(self, plan: DayPlan) -> None:
        self._say(describe_plan(plan))

    def plan(self, runs: list[tuple[str, int]]) -> None:
        self.runs.add(runs)

    def step(self, label: str, step: str, status: str) -> None:
        key = (label, step)
        if status == "started":
            self.started[key] = time.monotonic()
            return
        start = self.started.pop(key, None)
        if step.endswith(CHECK_SUFFIX) and status == "succeeded":
            return
        took = f" ({time.monotonic() - start:.1f} s)" if start is not None else ""
        self._say(f"{self.runs.name(label)}  {_stage(step)}: {status}{took}")

    def finished(self, label: str, success: bool) -> None:
        if not success:
            self._say(f"{self.runs.name(label)}: did not complete (see the summary below)")


class BarProgress(Progress):
    """A bar over every step of every run, naming the day and stage in progress."""

    def __init__(self, stream: TextIO, close: bool = False) -> None:
        self.stream = stream
        self.close = close  # the handle is ours (a duplicate descriptor): close it at the end
        self.console = Console(file=stream)
        # Lines go above the live bar through its console (rich markup for done / failed).
        self.log = _line_logger(
            RichHandler(
                console=self.console,
                show_time=False,
                show_level=False,
                show_path=False,
                markup=True,
                highlighter=NullHighlighter(),
            )
        )
        self.bar = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task("starting", total=0)
        self.runs = _Runs()

    def __enter__(self) -> BarProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
        if self.close:
            self.stream.close()

    def planned(self, plan: DayPlan) -> None:
        self.log.info(describe_plan(plan))

    def plan(self, runs: list[tuple[str, int]]) -> None:
        self.runs.add(runs)
        total = (self.bar.tasks[0].total or 0) + sum(steps for _, steps in runs)
        self.bar.update(self.task, total=total)

    def step(self, label: str, step: str, status: str) -> None:
        self.bar.update(self.task, description=f"{self.runs.name(label)}: {_stage(step)}")
        if status in DONE:
            self.bar.advance(self.task)

    def finished(self, label: str, success: bool) -> None:
        mark = "[green]done[/green]" if success else "[red]did not complete[/red]"
        self.log.info(f"{self.runs.name(label)} {mark}")

"""The `semsearch` command line: demo, run, search, themes, backfill, maintain, ui."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import textwrap
from importlib import resources
from pathlib import Path

from semsearch.config import Settings
from semsearch.errors import PoolBusyError

SAMPLE = "banking77_sample.jsonl"
DEMO_QUERIES = (
    "my card still has not arrived",
    "I was charged twice for the same purchase",
    "how do I change my PIN",
)


def _snippet(text: str, width: int = 90) -> str:
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder="…")


def _print_hits(hits) -> None:
    if not hits:
        print("  (no results)")
    for rank, hit in enumerate(hits, start=1):
        theme = hit.theme_label or hit.theme_id or "-"
        print(
            f"  {rank:>2}. {hit.score:.3f}  {hit.partition_date}  {hit.doc_id:<18} "
            f"[{_snippet(theme, 40)}]  {_snippet(hit.text)}"
        )


def _print_themes(themes, limit: int | None = None) -> None:
    shown = themes if limit is None else themes[:limit]
    for theme in shown:
        example = _snippet(theme.representatives[0], 60) if theme.representatives else ""
        print(
            f"  {theme.theme_id:<16} {theme.size:>5}  {', '.join(theme.keywords[:5]):<55}"
            f" “{example}”"
        )
    if limit is not None and len(themes) > limit:
        print(f"  … and {len(themes) - limit} more (semsearch themes)")


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.query import searcher_for

    searcher = searcher_for(settings)
    if searcher.index.table() is None:  # before loading the model: say it at once
        print(
            f"semsearch: nothing is indexed yet in {settings.home}: run `semsearch demo` or "
            "`semsearch run`",
            file=sys.stderr,
        )
        return 1
    hits = searcher.search(args.query, args.k, args.since, args.until, args.where)
    _print_hits(hits)
    return 0


def cmd_themes(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.query import themes

    found = themes(args.day, settings=settings)
    if not found:
        print("no themes yet: materialize the `themes` asset (semsearch run)")
        return 1
    first, last = found[0].window
    documents = sum(t.size for t in found)
    print(f"themes of the window {first} .. {last} ({documents} documents; size = documents):")
    _print_themes(found)
    return 0


def _summarise(run) -> None:
    stages = ["bronze_documents", "raw_documents", "chunks", "embeddings", "vector_index", "themes"]
    print(f"{'stage':<18}{'partitions':>11}{'rows':>9}{'seconds':>10}")
    for stage in stages:
        records = run.for_asset(stage)
        rows = sum(int(r.metadata.get("dagster/row_count", 0) or 0) for r in records)
        if stage == "themes":
            rows = sum(int(r.metadata.get("themes", 0)) for r in records[-1:])
        seconds = sum(float(r.metadata.get("seconds_total", 0)) for r in records)
        print(f"{stage:<18}{len(records):>11}{rows:>9}{seconds:>10.1f}")
    ingest = run.for_asset("bronze_documents")
    if ingest:
        print(f"rejected records: {ingest[0].metadata.get('rows_rejected', 0)}")
    dead = {r.partition: r.metadata.get("dead_letters", 0) for r in run.for_asset("embeddings")}
    if any(dead.values()):
        days = ", ".join(f"{day}: {n}" for day, n in sorted(dead.items()) if n)
        print(f"dead letters (chunks without a vector, in embedding_dead_letter): {days}")


def _report_failed_days(run) -> int:
    """Every failed or blocked day together, with what stopped it; the exit code."""
    if not run.failed_days:
        return 0
    print(f"\n{len(run.failed_days)} of {len(run.days)} days did not complete:", file=sys.stderr)
    for outcome in run.failed_days:
        causes = [f"blocked by {name}: {why}" for name, why in outcome.failed_checks]
        causes += outcome.errors if not causes else []
        print(f"  {outcome.day} (run {outcome.run_id}):", file=sys.stderr)
        for cause in causes or ["failed (see the run in the Dagster UI)"]:
            print(f"    {cause}", file=sys.stderr)
    print(
        "The other days ran. A blocked day stays out of the index until its data is fixed or "
        "the check's SEMSEARCH_CHECK_* threshold is changed; rejected records are in the "
        "rejected_records table. Then run `semsearch backfill --from DAY --to DAY --in-process`.",
        file=sys.stderr,
    )
    return 1


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.runner import open_instance, run_pipeline

    instance = open_instance(settings)
    run = run_pipeline(settings, instance)
    _summarise(run)
    return _report_failed_days(run)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.query import search, themes
    from semsearch.runner import open_instance, run_pipeline

    landing = settings.landing_path
    landing.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("semsearch.data") / SAMPLE) as sample:
        shutil.copyfile(sample, landing / SAMPLE)
    print(f"sample corpus (Banking77, CC BY 4.0) copied to {landing / SAMPLE}")
    instance = open_instance(settings)
    print(f"materializing through Dagster (DAGSTER_HOME={os.environ['DAGSTER_HOME']}) …")
    run = run_pipeline(settings, instance)
    _summarise(run)
    if _report_failed_days(run):
        return 1
    for query in DEMO_QUERIES:
        print(f"\nsearch: “{query}”")
        _print_hits(search(query, k=3, settings=settings))
    found = themes(settings=settings)
    if found:
        first, last = found[0].window
        print(f"\nthemes of the window {first} .. {last} ({len(found) - 1} themes + outliers):")
        _print_themes(found, limit=15)
    print(
        "\nOpen the Dagster UI on the same data:\n"
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml\n"
        "or simply: .venv/bin/semsearch ui"
    )
    return 0


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, date, datetime

    from semsearch.defs.backfills import days_between, submit_backfill
    from semsearch.defs.definitions import build_definitions
    from semsearch.runner import open_instance, run_days

    try:
        first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    except ValueError as exc:
        raise ValueError(f"backfill dates: {exc} (use YYYY-MM-DD)") from None
    today = datetime.now(UTC).date()  # the last daily partition
    if first < settings.start_date or last > today:
        raise ValueError(
            f"backfill --from {first} --to {last}: partitions run from {settings.start_date} "
            f"(SEMSEARCH_PARTITIONS_START) to {today} (today, UTC)"
        )
    days = days_between(first, last)
    instance, defs = open_instance(settings), build_definitions(settings)
    if args.in_process:
        run = run_days(settings, instance, defs, days)
        for outcome in run.days:
            print(f"  {outcome.day}  {'ok' if outcome.success else 'FAILED'}")
        return _report_failed_days(run)
    backfill_id = submit_backfill(instance, defs, days)
    print(
        f"backfill {backfill_id} submitted: {len(days)} days ({days[0]} .. {days[-1]}).\n"
        "The Dagster daemon runs it (semsearch ui, dagster dev or dagster-daemon run); follow it "
        f"under Overview → Backfills, or run it here instead with --in-process."
    )
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.defs.definitions import build_definitions, console_run_config
    from semsearch.defs.maintenance import MAINTENANCE_JOB
    from semsearch.defs.partitions import LANCEDB_POOL
    from semsearch.defs.run_guard import process_tags, wait_for_pools
    from semsearch.runner import open_instance

    job = build_definitions(settings).resolve_job_def(MAINTENANCE_JOB)
    instance = open_instance(settings)
    wait_for_pools(instance, [LANCEDB_POOL], settings.pool_wait_seconds)
    result = job.execute_in_process(
        instance=instance,
        run_config=console_run_config("INFO" if args.verbose else "WARNING"),
        tags=process_tags(),
        raise_on_error=False,
    )
    if not result.success:
        print(f"maintenance failed: see run {result.run_id} in the Dagster UI", file=sys.stderr)
        return 1
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    metadata = output.step_output_data.metadata
    print(metadata["tables"].value)
    print(
        f"files compacted: {metadata['files_compacted'].value}, vacuumed: "
        f"{metadata['files_vacuumed'].value} (older than "
        f"{settings.maintenance_retention_hours} h); index versions: "
        f"{metadata['index_versions_before'].value} -> {metadata['index_versions_after'].value}"
    )
    return 0


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.runner import dagster_home

    os.environ["DAGSTER_HOME"] = str(dagster_home(settings))
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    extra = args.dagster_args[1:] if args.dagster_args[:1] == ["--"] else args.dagster_args
    os.execv(dagster, [dagster, "dev", "-w", "workspace.yaml", *extra])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="load the sample corpus, run every stage, search and list themes")
    sub.add_parser("run", help="ingest the landing folder and materialize every day with data")
    search = sub.add_parser("search", help="semantic search over the index")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--since", help="first day, YYYY-MM-DD")
    search.add_argument("--until", help="last day, YYYY-MM-DD")
    search.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata equality filter; repeat for several",
    )
    themes = sub.add_parser("themes", help="list the themes of the latest (or a given) window")
    themes.add_argument("--day", help="the window's last day, YYYY-MM-DD")
    backfill = sub.add_parser(
        "backfill", help="re-materialize every daily asset for a range of days"
    )
    backfill.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD")
    backfill.add_argument(
        "--in-process",
        action="store_true",
        help="run the days here, in order, instead of submitting a backfill to the daemon",
    )
    sub.add_parser(
        "maintain",
        help="compact every table, then delete files older versions no longer need "
        "(what maintenance_schedule runs daily under the daemon)",
    )
    ui = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the same data")
    ui.add_argument(
        "dagster_args", nargs=argparse.REMAINDER, help="passed to dagster dev, e.g. -- -p 3001"
    )
    return parser


COMMANDS = {
    "demo": cmd_demo,
    "run": cmd_run,
    "search": cmd_search,
    "themes": cmd_themes,
    "ui": cmd_ui,
    "backfill": cmd_backfill,
    "maintain": cmd_maintain,
}


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    # `kill`, systemd and CI time-outs send SIGTERM: stop as Ctrl-C does, through Dagster's own
    # interrupt handling, so the run in flight is marked as ended rather than left running.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return COMMANDS[args.command](args, settings)
    except ValueError as exc:  # bad input: say what is wrong, no traceback
        print(f"semsearch: error: {exc}", file=sys.stderr)
        return 2
    except PoolBusyError as exc:
        print(f"semsearch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("semsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

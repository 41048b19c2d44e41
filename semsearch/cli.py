"""The `semsearch` command line: demo, run, search, themes, eval, backfill, maintain, ui, serve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

from semsearch.config import Settings
from semsearch.core.search_options import DEFAULT_MODE, MODES
from semsearch.errors import ConfigurationError, PoolBusyError

# A command killed by a closed pipe (`semsearch themes | head`) exits as if by SIGPIPE.
BROKEN_PIPE_EXIT = 128 + signal.SIGPIPE
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
    hits = searcher.search(
        args.query,
        args.k,
        args.since,
        args.until,
        args.where,
        mode=args.mode,
        unit="chunk" if args.chunks else "document",
    )
    _print_hits(hits)
    return 0


def iso_day(value: str) -> date:
    """An argparse type: a day as YYYY-MM-DD, or a one-line error saying so."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a day: use YYYY-MM-DD, e.g. {datetime.now(UTC).date()}"
        ) from None


def cmd_themes(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.query import themes
    from semsearch.storage.delta import DeltaTables
    from semsearch.storage.history import partition_days
    from semsearch.storage.schemas import THEMES_TABLE

    found = themes(args.day, settings=settings)
    if not found:
        days = partition_days(DeltaTables(settings.tables_path), THEMES_TABLE)
        if not days:
            print(
                f"semsearch: no themes yet in {settings.home}: run `semsearch demo` or "
                "`semsearch run`",
                file=sys.stderr,
            )
        else:
            print(
                f"semsearch: error: --day {args.day}: no themes for that day; themes exist for "
                f"{days[0]} .. {days[-1]}",
                file=sys.stderr,
            )
            return 2
        return 1
    first, last = found[0].window
    documents = sum(t.size for t in found)
    print(f"themes of the window {first} .. {last} ({documents} documents; size = documents):")
    _print_themes(found)
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return {"retrieval": cmd_eval_retrieval, "themes": cmd_eval_themes}[args.eval_command](
        args, settings
    )


def _write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"report: {path}")


def cmd_eval_retrieval(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.evaluate import retrieval_table, run_retrieval_eval

    for option, path in (
        ("--corpus", args.corpus),
        ("--queries", args.queries),
        ("--qrels", args.qrels),
    ):
        if path is not None and not path.is_file():
            print(f"semsearch: error: {option} {path}: no such file", file=sys.stderr)
            return 2
    modes = tuple(dict.fromkeys(args.mode)) if args.mode else MODES
    scratch = args.corpus is not None and args.home is None
    home = Path(tempfile.mkdtemp(prefix="semsearch-eval-")) if scratch else args.home
    try:
        with _progress() as progress:
            report = run_retrieval_eval(
                settings, args.queries, args.qrels, args.corpus, home, modes, progress
            )
    except RuntimeError as exc:
        print(f"semsearch: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if scratch:
            shutil.rmtree(home, ignore_errors=True)
    where = "a scratch home" if scratch else report["home"]
    print(
        f"{report['queries_evaluated']} queries over {report['documents_indexed']} documents "
        f"({where}), top {report['k']} documents per query:"
    )
    print(retrieval_table(report))
    if report["judged_documents_not_indexed"]:
        print(
            f"note: {report['judged_documents_not_indexed']} judged documents are not in the "
            "index (another corpus?)"
        )
    _write_report(report, args.report)
    return 0


def cmd_eval_themes(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.evaluate import evaluate_themes

    field = args.labels or settings.eval_label_field
    if not field:
        raise ValueError("give --labels FIELD (a metadata key) or set SEMSEARCH_EVAL_LABEL_FIELD")
    report = evaluate_themes(settings, field, args.day)
    first, last = report["window"]
    print(
        f"themes of the window {first} .. {last} against {field!r}: {report['documents']} "
        f"documents, {report['labelled']} labelled"
    )
    names = {
        "v_measure": "V-measure",
        "homogeneity": "homogeneity",
        "completeness": "completeness",
        "ari": "ARI",
        "noise_share": "noise share",
    }
    print("  ".join(f"{shown} {report[n]:.4f}" for n, shown in names.items()), end="")
    print(f"  themes {report['themes']}")
    if args.report:
        _write_report(report, args.report)
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
    _summarise_warnings(run)


def _summarise_warnings(run) -> None:
    """WARN checks that failed, once per check: on how many days, and the latest message. A
    check of the asset as a whole (freshness) only if its latest evaluation failed."""
    outcomes = [run.ingest, *run.days] if run.ingest else run.days
    by_check: dict[str, list] = {}
    for outcome in outcomes:
        for check in outcome.warnings:
            by_check.setdefault(check.name, []).append((outcome, check))
    for name, seen in sorted(by_check.items()):
        outcome, check = seen[-1]
        if check.partitioned:
            print(
                f"warning: {name} on {len(seen)} day(s), latest {outcome.day}: {check.description}"
            )
        elif not any(name in later.evaluated for later in outcomes[outcomes.index(outcome) + 1 :]):
            print(f"warning: {name}: {check.description}")


def _report_failed_days(run, settings: Settings) -> int:
    """Every failed or blocked day together, with what stopped it and how to release it; the
    exit code."""
    if not run.failed_days:
        return 0
    from semsearch.defs.checks import release_hint

    err = sys.stderr
    print(f"\n{len(run.failed_days)} of {len(run.days)} days did not complete:", file=err)
    for outcome in run.failed_days:
        print(f"  {outcome.day} (run {outcome.run_id}):", file=err)
        for check in outcome.blocked_by:
            print(f"    blocked by {check.name}: {check.description}", file=err)
            files = check.metadata.get("by_file")
            if files:
                listed = ", ".join(f"{path} ({n} rejected)" for path, n in files.items())
                print(
                    f"      rejected records of {listed} are in the rejected_records table: "
                    f"{settings.tables_path / 'rejected_records'} (columns source_file, "
                    "source_row, reason)",
                    file=err,
                )
            print(f"      to release the day: {release_hint(check.name, settings)}", file=err)
        if not outcome.blocked_by:
            for error in outcome.errors or ["failed (see the run in the Dagster UI)"]:
                print(f"    {error}", file=err)
    first, last = run.failed_days[0].day, run.failed_days[-1].day
    print(
        "The other days ran. Once released, run the days again: "
        f"`semsearch backfill --from {first} --to {last} --in-process`.",
        file=err,
    )
    return 1


def _progress():
    from semsearch.progress import for_stream

    return for_stream()


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.runner import open_instance, run_pipeline

    instance = open_instance(settings)
    with _progress() as progress:
        run = run_pipeline(settings, instance, every_day=args.all, progress=progress)
    if run.plan.empty:
        return 0
    _summarise(run)
    return _report_failed_days(run, settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.data import land_sample
    from semsearch.query import search, themes
    from semsearch.runner import open_instance, run_pipeline

    landed = land_sample(settings.landing_path, datetime.now(UTC))
    state = "copied to" if landed.new else "already in"
    print(
        f"sample corpus (Banking77, CC BY 4.0) {state} {landed.path}: {landed.records} "
        f"messages dated {landed.first} .. {landed.last}"
    )
    instance = open_instance(settings)
    print(f"materializing through Dagster (DAGSTER_HOME={os.environ['DAGSTER_HOME']}) …")
    with _progress() as progress:
        run = run_pipeline(settings, instance, progress=progress)
    if not run.plan.empty:
        _summarise(run)
    if _report_failed_days(run, settings):
        return 1
    for query in DEMO_QUERIES:
        print(f"\nsearch: “{query}”")
        _print_hits(search(query, k=3, settings=settings))
    found = themes(settings=settings)
    if found:
        first, last = found[0].window
        print(f"\nthemes of the window {first} .. {last} ({len(found) - 1} themes + outliers):")
        _print_themes(found, limit=15)
    print("\nOpen the Dagster UI on the same data: .venv/bin/semsearch ui")
    return 0


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.defs.backfills import days_between, submit_backfill
    from semsearch.defs.definitions import build_definitions
    from semsearch.defs.partitions import first_partition_day, today
    from semsearch.runner import open_instance, run_days

    first, last = args.first, args.last
    days = days_between(first, last)  # refuses a reversed range
    start, end = first_partition_day(settings), today()
    if first < start or last > end:
        origin = (
            "SEMSEARCH_PARTITIONS_START" if settings.partitions_start else "the first day of data"
        )
        raise ValueError(
            f"backfill --from {first} --to {last}: partitions run from {start} ({origin}) to "
            f"{end} (today, UTC)"
        )
    instance, defs = open_instance(settings), build_definitions(settings)
    if args.in_process:
        with _progress() as progress:
            run = run_days(settings, instance, defs, days, progress=progress)
        for outcome in run.days:
            print(f"  {outcome.day}  {'ok' if outcome.success else 'FAILED'}")
        return _report_failed_days(run, settings)
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
        f", ANN segments merged: {metadata['index_segments_merged'].value}"
    )
    if "cache_rows" in metadata:
        value = {k: v.value for k, v in metadata.items() if k.startswith("cache_")}
        print(
            f"embedding cache: {value['cache_rows']} rows; fragments "
            f"{value['cache_fragments_before']} -> {value['cache_fragments_after']}, rows "
            f"outside the key index {value['cache_unindexed_rows_before']} -> "
            f"{value['cache_unindexed_rows_after']}, versions {value['cache_versions_before']} "
            f"-> {value['cache_versions_after']}"
        )
    return 0


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.ui import serve

    extra = args.dagster_args[1:] if args.dagster_args[:1] == ["--"] else args.dagster_args
    return serve(settings, extra, _say, verbose=args.verbose)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from semsearch.serve.server import serve

    settings = settings.replace(
        serve_host=args.host or settings.serve_host, serve_port=args.port or settings.serve_port
    )
    return serve(settings, lambda text: print(text, flush=True))


def _say(text: str) -> None:
    """A line for the person at the terminal, on stderr (stdout stays for results)."""
    print(text, file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line naming it (and where help is), not a usage dump."""

    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _eval_parser(sub) -> None:
    evaluate = sub.add_parser("eval", help="measure retrieval and themes against judgements")
    kinds = evaluate.add_subparsers(dest="eval_command", required=True, parser_class=_Parser)
    retrieval = kinds.add_parser(
        "retrieval",
        help="nDCG@10, Recall@100 and MRR@10 per mode on a BEIR-format set",
        description="Ingest a BEIR corpus through the pipeline (into a scratch home, or --home), "
        "run every judged query through search, print the metrics per mode side by side and "
        "write a JSON report.",
    )
    retrieval.add_argument("--corpus", type=Path, help="corpus.jsonl (_id or id, title, text)")
    retrieval.add_argument("--queries", type=Path, required=True, help="queries.jsonl")
    retrieval.add_argument(
        "--qrels", type=Path, required=True, help="qrels TSV: query-id, corpus-id, score"
    )
    retrieval.add_argument(
        "--mode",
        action="append",
        choices=MODES,
        help="a search mode to evaluate; repeat for several (default: every mode)",
    )
    retrieval.add_argument(
        "--home",
        type=Path,
        help="evaluation home: with --corpus, the corpus is ingested there and kept (a re-run "
        "reuses it; default: a scratch home, removed after); without --corpus, this home is "
        "evaluated as it is (default: the configured SEMSEARCH_HOME)",
    )
    retrieval.add_argument(
        "--report",
        type=Path,
        default=Path("eval-retrieval.json"),
        help="where to write the JSON report (default eval-retrieval.json)",
    )
    themes = kinds.add_parser(
        "themes", help="V-measure, homogeneity, completeness, ARI of the themes against labels"
    )
    themes.add_argument(
        "--labels", help="metadata key holding each document's label (SEMSEARCH_EVAL_LABEL_FIELD)"
    )
    themes.add_argument("--day", type=iso_day, help="the window's last day (default the latest)")
    themes.add_argument("--report", type=Path, help="also write the figures as JSON here")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="semsearch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="load the sample corpus, run every stage, search and list themes")
    run = sub.add_parser(
        "run", help="ingest the landing folder and materialize the days whose inputs changed"
    )
    run.add_argument("--all", action="store_true", help="materialize every day with data")
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
    search.add_argument(
        "--mode", choices=MODES, default=DEFAULT_MODE, help=f"ranking (default {DEFAULT_MODE})"
    )
    search.add_argument(
        "--chunks", action="store_true", help="rank chunks instead of documents (one per hit)"
    )
    themes = sub.add_parser("themes", help="list the themes of the latest (or a given) window")
    themes.add_argument("--day", type=iso_day, help="the window's last day, YYYY-MM-DD")
    _eval_parser(sub)
    backfill = sub.add_parser(
        "backfill", help="re-materialize every daily asset for a range of days"
    )
    backfill.add_argument(
        "--from", dest="first", type=iso_day, required=True, help="first day, YYYY-MM-DD"
    )
    backfill.add_argument(
        "--to", dest="last", type=iso_day, required=True, help="last day, YYYY-MM-DD"
    )
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
    serve = sub.add_parser("serve", help="the HTTP API and the search and themes pages")
    serve.add_argument("--host", help="address to bind (default SEMSEARCH_SERVE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default SEMSEARCH_SERVE_PORT, 8765)")
    return parser


COMMANDS = {
    "demo": cmd_demo,
    "run": cmd_run,
    "search": cmd_search,
    "themes": cmd_themes,
    "eval": cmd_eval,
    "ui": cmd_ui,
    "backfill": cmd_backfill,
    "maintain": cmd_maintain,
    "serve": cmd_serve,
}


class _StderrNow(logging.StreamHandler):
    """Logs to whatever sys.stderr is when a record is written: the progress bar swaps it for
    one that prints above the bar, so a warning does not break the bar's line."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


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
        handlers=[_StderrNow()],
    )
    try:
        settings = Settings.from_env()
        return COMMANDS[args.command](args, settings)
    except (ValueError, ConfigurationError) as exc:  # bad input: say what is wrong, no traceback
        print(f"semsearch: error: {exc}", file=sys.stderr)
        return 2
    except PoolBusyError as exc:
        print(f"semsearch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("semsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the interpreter's final
        # flush of stdout from failing again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT


if __name__ == "__main__":
    sys.exit(main())

"""The HTTP API on a real uvicorn server over real tables, index and model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from semsearch.core.search_options import MODES
from semsearch.errors import ConfigurationError
from semsearch.query.searcher import searcher_for
from semsearch.serve.app import create_app
from semsearch.serve.server import check_bind
from semsearch.testing.live_server import free_port, live_server
from semsearch_tests.ops_support import DAYS, cli_env

QUERY = "my card payment was declined"


def get(url: str, path: str, **params):
    return requests.get(url + path, params=params, timeout=60)


def test_search_returns_documents_with_passage_date_metadata_and_theme(served):
    url, settings = served
    response = get(url, "/api/search", q=QUERY, k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    hits = body["hits"]
    assert body["mode"] in MODES and 1 <= len(hits) <= 5
    assert len({h["doc_id"] for h in hits}) == len(hits)  # documents, not chunks
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    top = hits[0]
    assert top["partition_date"] in {d.isoformat() for d in DAYS}
    assert isinstance(top["metadata"], dict) and top["text"]
    assert any(h["highlights"] for h in hits)  # "card" or "declined" is marked somewhere
    start, end = next(h for h in hits if h["highlights"])["highlights"][0]
    assert start < end
    assert any(h["theme_id"] for h in hits)
    python_api = searcher_for(settings).search(QUERY, 5)
    assert [h.doc_id for h in python_api] == [h["doc_id"] for h in hits]  # one code path


def test_search_filters_by_day(served):
    url, _ = served
    day = DAYS[1].isoformat()
    hits = get(url, "/api/search", q=QUERY, k=50, since=day, until=day).json()["hits"]
    assert hits and {h["partition_date"] for h in hits} == {day}


@pytest.mark.parametrize(
    ("params", "status", "parameter", "says"),
    [
        ({"q": QUERY, "mode": "psychic"}, 400, "mode", ", ".join(MODES)),
        ({"q": QUERY, "unit": "page"}, 400, "unit", "document, chunk"),
        ({"q": QUERY, "k": 0}, 422, "k", "greater than or equal to 1"),
        ({"q": QUERY, "k": "ten"}, 422, "k", "integer"),
        ({"q": QUERY, "since": "yesterday"}, 422, "since", "date"),
        ({"q": QUERY, "since": "2026-11-05", "until": "2026-11-03"}, 400, "since", "after"),
        ({"q": QUERY, "where": "colour=red"}, 400, "where", "the keys are"),
        ({"q": QUERY, "where": "no-equals-sign"}, 400, "where", "key=value"),
        ({"q": "   "}, 400, "q", "empty"),
        ({}, 422, "q", "required"),
    ],
)
def test_a_bad_search_parameter_is_a_4xx_naming_it(served, params, status, parameter, says):
    url, _ = served
    response = get(url, "/api/search", **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["parameter"] == parameter, error
    assert says.lower() in error["message"].lower(), error
    assert "Traceback" not in response.text


def test_themes_one_theme_and_one_document(served):
    url, _ = served
    themes = get(url, "/api/themes").json()
    assert themes["day"] == DAYS[-1].isoformat() and themes["themes"]
    sizes = [t["size"] for t in themes["themes"]]
    assert sizes == sorted(sizes, reverse=True)
    first = themes["themes"][0]
    theme = get(url, f"/api/themes/{first['theme_id']}", limit=2).json()
    assert theme["theme"]["keywords"] == first["keywords"] and theme["theme"]["label"]
    assert theme["members_total"] == first["size"] and len(theme["members"]) == min(
        2, first["size"]
    )
    assert [d for d, _ in theme["volume"]][0] == first["window"][0]
    assert sum(n for _, n in theme["volume"]) == first["size"]
    second_page = get(url, f"/api/themes/{first['theme_id']}", limit=2, offset=2).json()
    assert not {m["doc_id"] for m in theme["members"]} & {
        m["doc_id"] for m in second_page["members"]
    }
    doc_id = theme["members"][0]["doc_id"]
    document = get(url, f"/api/documents/{doc_id}").json()
    assert document["doc_id"] == doc_id and document["chunks"] and document["text"]
    assert document["theme_id"] == first["theme_id"]
    assert document["versions"] and sum(v["current"] for v in document["versions"]) == 1


def test_unknown_things_are_404_and_bad_days_400(served):
    url, _ = served
    assert get(url, "/api/documents/no-such-doc").status_code == 404
    missing = get(url, "/api/themes/no-such-theme")
    assert missing.status_code == 404 and "ids:" in missing.json()["error"]["message"]
    bad_day = get(url, "/api/themes", day="03/11/2026")
    assert bad_day.status_code == 400 and bad_day.json()["error"]["parameter"] == "day"
    assert get(url, "/api/themes", day="2020-01-01").status_code == 404
    limit = get(url, "/api/themes/x", limit=100000)
    assert limit.status_code == 422 and limit.json()["error"]["parameter"] == "limit"


def test_health_and_openapi(served):
    url, settings = served
    health = get(url, "/api/health").json()
    index = searcher_for(settings).index.table()
    assert health["index_version"] == index.version and health["index_rows"] == index.count_rows()
    assert health["last_materialized_day"] == DAYS[-1].isoformat()
    assert health["model_id"] == searcher_for(settings).backend.model_id
    schema = get(url, "/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/search", "/api/themes", "/api/themes/{theme_id}", "/api/health"} <= paths
    assert "/api/documents/{doc_id}" in paths


def test_a_token_is_checked_on_every_request(clean_days):
    settings, _ = clean_days
    secured = settings.replace(api_token="s3cret-token")
    assert "s3cret-token" not in repr(secured)
    with live_server(create_app(secured, searcher_for(settings))) as url:
        for path in ("/api/health", "/", "/themes", "/openapi.json"):
            denied = requests.get(url + path, timeout=60)
            assert denied.status_code == 401 and denied.json()["error"]["parameter"]
        wrong = {"Authorization": "Bearer nope"}
        assert requests.get(url + "/api/health", headers=wrong, timeout=60).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert requests.get(url + "/api/health", headers=right, timeout=60).status_code == 200


def test_binding_beyond_loopback_needs_a_token(clean_days, tmp_path):
    settings, _ = clean_days
    with pytest.raises(ConfigurationError, match="SEMSEARCH_API_TOKEN"):
        check_bind(settings.replace(serve_host="0.0.0.0"))
    check_bind(settings.replace(serve_host="0.0.0.0", api_token="t"))
    check_bind(settings)
    env = cli_env(settings, tmp_path / "dagster")
    env.pop("SEMSEARCH_API_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "semsearch.cli", "serve", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "SEMSEARCH_API_TOKEN" in result.stderr


def test_the_serve_command_answers_from_its_worker_processes_and_stops_on_a_signal(
    clean_days, tmp_path
):
    """`semsearch serve` as a user starts it (two worker processes by default), on loopback with
    a token: every request must carry it, a search answers, and SIGINT stops every process."""
    settings, _ = clean_days
    port = free_port()
    env = cli_env(settings, tmp_path / "dagster", SEMSEARCH_API_TOKEN="s3cret")
    server = subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url, token = f"http://127.0.0.1:{port}", {"Authorization": "Bearer s3cret"}
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if requests.get(url + "/api/health", headers=token, timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "semsearch serve did not answer"
            time.sleep(0.5)
        assert requests.get(url + "/api/health", timeout=5).status_code == 401
        for _ in range(6):
            response = requests.get(
                url + "/api/search", params={"q": QUERY, "k": 3}, headers=token, timeout=60
            )
            assert response.status_code == 200 and response.json()["hits"], response.text
        children = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        pids = {int(pid) for pid in children}
        assert len(pids) >= 2, children  # the workers (uvicorn may add a helper process)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert "2 worker processes" in out
    assert server.returncode == 0, err
    assert "s3cret" not in out + err
    # Workers are joined before the server exits; multiprocessing's resource tracker leaves
    # once it reads the end of its pipe, just after.
    deadline = time.monotonic() + 15
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    """Running (a zombie is not: it waits for a parent to collect it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_served_process_answers_each_query_on_one_thread_of_every_pool():
    # BLAS threads spin between calls: on 2 cores they made a served hybrid search cost 25 ms
    # of CPU instead of 15 (benchmarks/bench_serve.py). A new interpreter, as a worker is.
    script = (
        "import numpy, threadpoolctl, torch\n"
        "from semsearch.serve.server import one_thread_per_query\n"
        "one_thread_per_query()\n"
        "pools = {p['num_threads'] for p in threadpoolctl.threadpool_info()}\n"
        "print(torch.get_num_threads(), *pools)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["1", "1"]

"""The query path stands on its own: no Dagster to answer a query, one Searcher per process."""

import subprocess
import sys

from semsearch.config import Settings
from semsearch.query import searcher_for


def test_answering_a_query_imports_no_dagster(tmp_path):
    # An empty home: the query runs the whole path (settings, model, index, themes lookup).
    code = (
        "import sys, semsearch\n"
        "from semsearch.config import Settings\n"
        f"settings = Settings(home={str(tmp_path)!r})\n"
        "assert semsearch.search('card not arrived', settings=settings) == []\n"
        "assert semsearch.themes(settings=settings) == []\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_one_searcher_per_settings_per_process(tmp_path):
    settings = Settings(home=str(tmp_path))
    assert searcher_for(settings) is searcher_for(Settings(home=str(tmp_path)))
    assert searcher_for(settings) is not searcher_for(settings.replace(home=str(tmp_path / "b")))

"""Settings that cannot work are refused when read, with the variable named."""

from __future__ import annotations

from semsearch.cli import main


def test_a_home_path_with_a_percent_sign_is_refused_before_any_table_is_written(
    tmp_path, monkeypatch, capsys
):
    # polars' Delta reader percent-decodes local paths: ingest would land files it cannot read.
    home = tmp_path / "85%-faults"
    monkeypatch.setenv("SEMSEARCH_HOME", str(home))
    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert "contains '%'" in error and "SEMSEARCH_HOME" in error
    assert not (home / "tables").exists()

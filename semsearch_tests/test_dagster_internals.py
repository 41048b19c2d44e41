"""Dagster internals semsearch relies on are still where, and what, they were."""

import inspect

from semsearch.defs import dagster_internals


def test_every_internal_import_resolves_to_the_expected_kind_of_object():
    backfill_args = inspect.signature(dagster_internals.PartitionBackfill.from_asset_partitions)
    assert {"asset_graph", "partition_names", "asset_selection", "tags"} <= set(
        backfill_args.parameters
    )
    assert isinstance(dagster_internals.make_new_backfill_id(), str)
    assert dagster_internals.get_current_timestamp() > 1.7e9


def test_no_other_module_imports_dagster_internals():
    import pathlib

    package = pathlib.Path(dagster_internals.__file__).parents[1]
    importers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "dagster._" in path.read_text() and path.name != "dagster_internals.py"
    ]
    assert importers == []

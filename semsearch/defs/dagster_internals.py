"""The few Dagster internals semsearch needs, imported in one place.

Dagster 1.13 has no public import for these. Should a Dagster upgrade move one, this module
fails to import and `semsearch_tests/test_dagster_internals.py` names the symbol, instead of a
sensor or a backfill failing at run time.
"""

from dagster._core.definitions.selector import (  # a backfill's exact target per asset
    PartitionRangeSelector,
    PartitionsByAssetSelector,
    PartitionsSelector,
)
from dagster._core.execution.backfill import PartitionBackfill  # submit an asset backfill
from dagster._core.utils import make_new_backfill_id
from dagster._time import get_current_timestamp

__all__ = [
    "PartitionBackfill",
    "PartitionRangeSelector",
    "PartitionsByAssetSelector",
    "PartitionsSelector",
    "get_current_timestamp",
    "make_new_backfill_id",
]

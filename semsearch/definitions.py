"""The code location Dagster loads (see workspace.yaml): definitions from SEMSEARCH_* settings."""

from semsearch.config import Settings
from semsearch.defs.definitions import build_definitions

defs = build_definitions(Settings.from_env())
